//! The single writer: group commit.
//!
//! One thread owns the database. It takes every request waiting in its
//! queue (up to a cap), evaluates each guard in order against the state as
//! the earlier requests of the same batch left it, gives every successful
//! change its own revision, writes the whole batch in one durable redb
//! transaction, and only then applies it to memory, feeds the watchers and
//! answers the callers. Concurrency therefore turns into bigger batches,
//! not more fsyncs.
//!
//! Lease expiry and automatic compaction are requests the writer makes to
//! itself when its timers fire, so they are ordered with client writes and
//! need no locking of their own.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::Shared;
use super::disk::{Commit, Disk, LiveSnapshot};
use super::encoding::tombstone;
use super::history::RevisionEntry;
use super::lease::{LeaseRecord, now_ms, round_ttl};
use super::mvcc::{State, bounds_contain, key_bounds};
use crate::{
    DeleteRangeResponse, DeleteResponse, EmbeddedConfig, Error, Event, EventKind, KeyValue, Lease,
    LeaseId, Result, Revision,
};

/// A write, as the store's methods hand it to the writer.
pub enum Op {
    Create {
        key: Bytes,
        value: Bytes,
        lease: Option<LeaseId>,
    },
    Update {
        key: Bytes,
        value: Bytes,
        expected: Revision,
        lease: Option<LeaseId>,
    },
    Delete {
        key: Bytes,
        expected: Option<Revision>,
    },
    DeleteRange {
        start: Bytes,
        end: Bytes,
    },
    Compact(Revision),
    LeaseGrant(Duration),
    LeaseKeepAlive(LeaseId),
    LeaseRevoke(LeaseId),
}

pub enum Reply {
    Kv(KeyValue),
    Deleted(DeleteResponse),
    DeletedRange(DeleteRangeResponse),
    Granted(Lease),
    Renewed(Duration),
    Done,
}

pub enum Msg {
    Op(Op, oneshot::Sender<Result<Reply>>),
    Shutdown,
}

/// How often the writer looks for history to compact automatically.
const AUTO_COMPACT_EVERY: Duration = Duration::from_secs(1);
/// Expired leases reaped per batch, so one wake-up stays short.
const MAX_EXPIRIES_PER_BATCH: usize = 64;

pub struct Writer {
    disk: Disk,
    shared: Arc<Shared>,
    rx: Receiver<Msg>,
    config: EmbeddedConfig,
    max_batch: usize,
    next_auto_compact: Instant,
}

impl Writer {
    pub fn new(
        disk: Disk,
        shared: Arc<Shared>,
        rx: Receiver<Msg>,
        config: EmbeddedConfig,
        max_batch: usize,
    ) -> Self {
        Writer {
            disk,
            shared,
            rx,
            config,
            max_batch: max_batch.max(1),
            next_auto_compact: Instant::now(),
        }
    }

    pub fn run(mut self) {
        let mut shutdown = false;
        while !shutdown {
            let mut ops = Vec::new();
            match self.rx.recv_timeout(self.idle_timeout()) {
                Ok(Msg::Op(op, reply)) => ops.push((op, reply)),
                Ok(Msg::Shutdown) | Err(RecvTimeoutError::Disconnected) => shutdown = true,
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Group commit: everything that queued up during the last commit.
            while !shutdown && ops.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(Msg::Op(op, reply)) => ops.push((op, reply)),
                    Ok(Msg::Shutdown) | Err(TryRecvError::Disconnected) => shutdown = true,
                    Err(TryRecvError::Empty) => break,
                }
            }
            self.process(ops);
        }
        self.shared.close();
    }

    /// Sleep until the next lease deadline or compaction check.
    fn idle_timeout(&self) -> Duration {
        let mut timeout = self
            .next_auto_compact
            .saturating_duration_since(Instant::now());
        if let Some(deadline) = self.shared.state.read().leases.next_deadline() {
            let ms = u64::try_from(deadline.saturating_sub(now_ms())).unwrap_or(0);
            timeout = timeout.min(Duration::from_millis(ms));
        }
        timeout
    }

    fn process(&mut self, ops: Vec<(Op, oneshot::Sender<Result<Reply>>)>) {
        let now = now_ms();
        let auto_compact = Instant::now() >= self.next_auto_compact;
        if auto_compact {
            self.next_auto_compact = Instant::now() + AUTO_COMPACT_EVERY;
        }
        let (plan, replies) = {
            let state = self.shared.state.read();
            let mut batch = Batch::new(&state, now);
            let mut replies = Vec::with_capacity(ops.len());
            for (op, reply) in ops {
                replies.push((reply, batch.eval(op)));
            }
            for id in state.leases.expired(now, MAX_EXPIRIES_PER_BATCH) {
                batch.expire(id);
            }
            if auto_compact
                && let Some(target) = state.history.auto_compact_target(
                    batch.revision,
                    batch.compacted,
                    now,
                    self.config.history_age,
                    self.config.history_revisions,
                )
            {
                // Cannot fail: the target is within (compacted, revision].
                let _ = batch.compact(target);
            }
            (batch.finish(), replies)
        };

        if !plan.is_empty() {
            let commit = Commit {
                entries: &plan.entries,
                lease_upserts: &plan.lease_upserts,
                lease_removals: &plan.lease_removals,
                compact: plan.compact,
                revision: plan.revision,
                next_lease: plan.next_lease,
            };
            if let Err(e) = self.disk.commit(&commit) {
                tracing::error!(error = %e, "embedded store commit failed");
                let message = format!("embedded store commit failed: {e}");
                for (reply, outcome) in replies {
                    let outcome = match outcome {
                        Ok(_) => Err(Error::Unavailable {
                            message: message.clone(),
                            retry_after: Some(Duration::from_secs(1)),
                            source: None,
                        }),
                        err => err,
                    };
                    let _ = reply.send(outcome);
                }
                return;
            }
            // The read view readers take cold values from must match the
            // memory state they see, so it is renewed with every apply.
            let snapshot = match self.disk.snapshot() {
                Ok(s) => Some(s),
                Err(e) => {
                    // The previous view still holds every cold value (a key
                    // written by this batch is hot); reads check revisions.
                    tracing::error!(error = %e, "embedded store: renewing the read snapshot failed");
                    None
                }
            };
            self.apply(&plan, snapshot);
        }
        for (reply, outcome) in replies {
            // The caller may have given up; nothing to do then.
            let _ = reply.send(outcome);
        }
    }

    /// Makes a durable batch visible: to readers and to watchers in one
    /// step, under the state lock, which is what lets a new watch register
    /// without a gap or a duplicate (see `watch`).
    fn apply(&self, plan: &Plan, snapshot: Option<Arc<LiveSnapshot>>) {
        let mut state = self.shared.state.write();
        if let Some(snapshot) = snapshot {
            state.disk = Some(snapshot);
        }
        for (id, rec) in &plan.lease_upserts {
            state.leases.upsert(*id, *rec);
        }
        for entry in &plan.entries {
            state.apply(entry.clone());
        }
        for id in &plan.lease_removals {
            state.leases.remove(*id);
        }
        state.next_lease = plan.next_lease;
        if let Some(at) = plan.compact {
            state.compact(at);
        }
        let wakeups = self
            .shared
            .hub
            .lock()
            .notify(&plan.entries, self.shared.watch_buffer);
        drop(state);
        // Waking tasks is not free (it may unpark a runtime thread): do it
        // with the lock released, readers need not wait for it.
        wakeups.wake();
    }
}

/// What a batch changes, ready to be written and applied.
struct Plan {
    entries: Vec<Arc<RevisionEntry>>,
    lease_upserts: Vec<(LeaseId, LeaseRecord)>,
    lease_removals: Vec<LeaseId>,
    compact: Option<Revision>,
    revision: Revision,
    next_lease: LeaseId,
    lease_counter_moved: bool,
}

impl Plan {
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
            && self.lease_upserts.is_empty()
            && self.lease_removals.is_empty()
            && self.compact.is_none()
            && !self.lease_counter_moved
    }
}

/// The state as seen by the requests of one batch: the committed state
/// overlaid with what earlier requests of the batch changed.
struct Batch<'s> {
    state: &'s State,
    now_ms: i64,
    time_ms: i64,
    revision: Revision,
    compacted: Revision,
    next_lease: LeaseId,
    keys: HashMap<Bytes, Option<KeyValue>>,
    leases: HashMap<LeaseId, Option<LeaseRecord>>,
    /// Keys attached to a lease by this batch (the committed state knows
    /// the rest).
    attached: HashMap<LeaseId, Vec<Bytes>>,
    entries: Vec<Arc<RevisionEntry>>,
    compact: Option<Revision>,
}

impl<'s> Batch<'s> {
    fn new(state: &'s State, now_ms: i64) -> Self {
        Batch {
            state,
            now_ms,
            // Commit times never go backwards, so age-based compaction can
            // binary-search them even if the wall clock steps back.
            time_ms: now_ms.max(state.history.last_time_ms().unwrap_or(0)),
            revision: state.revision,
            compacted: state.compacted,
            next_lease: state.next_lease,
            keys: HashMap::new(),
            leases: HashMap::new(),
            attached: HashMap::new(),
            entries: Vec::new(),
            compact: None,
        }
    }

    /// The key as this batch sees it; a cold value is read from disk.
    fn current(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        match self.keys.get(key) {
            Some(overlaid) => Ok(overlaid.clone()),
            None => self.state.latest_now(key),
        }
    }

    fn lease(&self, id: LeaseId) -> Option<LeaseRecord> {
        match self.leases.get(&id) {
            Some(overlaid) => *overlaid,
            None => self.state.leases.get(id).map(|l| l.record),
        }
    }

    /// A lease that exists and has not expired (an expired one may not have
    /// been reaped yet; etcd treats it as gone too).
    fn check_lease(&self, lease: Option<LeaseId>) -> Result<()> {
        match lease {
            Some(id) if !self.lease(id).is_some_and(|r| r.alive_at(self.now_ms)) => {
                Err(Error::LeaseNotFound(id))
            }
            _ => Ok(()),
        }
    }

    /// Records one new revision made of `events` (all built with
    /// `self.revision + 1`).
    fn commit_revision(&mut self, events: Vec<Event>) -> Revision {
        self.revision += 1;
        for ev in &events {
            let now = match ev.kind {
                EventKind::Put => {
                    if let Some(lease) = ev.kv.lease {
                        self.attached
                            .entry(lease)
                            .or_default()
                            .push(ev.kv.key.clone());
                    }
                    Some(ev.kv.clone())
                }
                EventKind::Delete => None,
            };
            self.keys.insert(ev.kv.key.clone(), now);
        }
        self.entries.push(Arc::new(RevisionEntry {
            revision: self.revision,
            time_ms: self.time_ms,
            events,
        }));
        self.revision
    }

    fn eval(&mut self, op: Op) -> Result<Reply> {
        match op {
            Op::Create { key, value, lease } => {
                if let Some(current) = self.current(&key)? {
                    return Err(Error::AlreadyExists {
                        current: Box::new(current),
                    });
                }
                self.check_lease(lease)?;
                let rev = self.revision + 1;
                let kv = KeyValue {
                    key,
                    value,
                    create_revision: rev,
                    mod_revision: rev,
                    version: 1,
                    lease,
                };
                self.commit_revision(vec![Event {
                    kind: EventKind::Put,
                    kv: kv.clone(),
                    prev_kv: None,
                }]);
                Ok(Reply::Kv(kv))
            }
            Op::Update {
                key,
                value,
                expected,
                lease,
            } => {
                let Some(current) = self.current(&key)? else {
                    return Err(Error::NotFound { key });
                };
                if current.mod_revision != expected {
                    return Err(Error::Conflict {
                        current: Some(Box::new(current)),
                    });
                }
                let prev = current;
                self.check_lease(lease)?;
                let kv = KeyValue {
                    key,
                    value,
                    create_revision: prev.create_revision,
                    mod_revision: self.revision + 1,
                    version: prev.version + 1,
                    lease,
                };
                self.commit_revision(vec![Event {
                    kind: EventKind::Put,
                    kv: kv.clone(),
                    prev_kv: Some(prev),
                }]);
                Ok(Reply::Kv(kv))
            }
            Op::Delete { key, expected } => {
                let Some(current) = self.current(&key)? else {
                    // A guarded delete of a missing key lost a race with
                    // another delete: a conflict, as in etcd's compare.
                    return Err(match expected {
                        Some(_) => Error::Conflict { current: None },
                        None => Error::NotFound { key },
                    });
                };
                if expected.is_some_and(|e| e != current.mod_revision) {
                    return Err(Error::Conflict {
                        current: Some(Box::new(current)),
                    });
                }
                let prev = current;
                let revision = self.commit_revision(vec![Event {
                    kind: EventKind::Delete,
                    kv: tombstone(key, self.revision + 1),
                    prev_kv: Some(prev.clone()),
                }]);
                Ok(Reply::Deleted(DeleteResponse { prev, revision }))
            }
            Op::DeleteRange { start, end } => {
                let victims = self.live_in(&start, &end)?;
                Ok(Reply::DeletedRange(self.delete_all(victims)))
            }
            Op::Compact(at) => self.compact(at).map(|()| Reply::Done),
            Op::LeaseGrant(ttl) => {
                let ttl = round_ttl(ttl);
                let id = self.next_lease;
                self.next_lease += 1;
                let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
                self.leases.insert(
                    id,
                    Some(LeaseRecord {
                        ttl_ms,
                        deadline_ms: self.now_ms.saturating_add(ttl_ms),
                    }),
                );
                Ok(Reply::Granted(Lease { id, ttl }))
            }
            Op::LeaseKeepAlive(id) => {
                self.check_lease(Some(id))?;
                let Some(rec) = self.lease(id) else {
                    return Err(Error::LeaseNotFound(id));
                };
                let renewed = LeaseRecord {
                    ttl_ms: rec.ttl_ms,
                    deadline_ms: self.now_ms.saturating_add(rec.ttl_ms),
                };
                self.leases.insert(id, Some(renewed));
                Ok(Reply::Renewed(renewed.ttl()))
            }
            Op::LeaseRevoke(id) => {
                if self.lease(id).is_none() {
                    return Err(Error::LeaseNotFound(id));
                }
                self.revoke(id)?;
                Ok(Reply::Done)
            }
        }
    }

    fn compact(&mut self, at: Revision) -> Result<()> {
        if at <= self.compacted {
            return Err(Error::Compacted {
                compact_revision: self.compacted,
            });
        }
        if at > self.revision {
            return Err(Error::FutureRevision {
                requested: at,
                current: self.revision,
            });
        }
        self.compacted = at;
        self.compact = Some(at);
        Ok(())
    }

    /// Reaps a lease whose deadline passed, unless this batch renewed it.
    fn expire(&mut self, id: LeaseId) {
        if self.lease(id).is_some_and(|r| !r.alive_at(self.now_ms))
            && let Err(e) = self.revoke(id)
        {
            // Retried at the next wake-up.
            tracing::error!(lease = id, error = %e, "embedded store: lease expiry failed");
        }
    }

    /// Deletes every key still attached to `id` in one revision, then the
    /// lease.
    fn revoke(&mut self, id: LeaseId) -> Result<()> {
        let mut candidates: BTreeSet<Bytes> = self
            .state
            .leases
            .get(id)
            .map(|l| l.keys.iter().cloned().collect())
            .unwrap_or_default();
        if let Some(extra) = self.attached.get(&id) {
            candidates.extend(extra.iter().cloned());
        }
        let mut victims = Vec::new();
        for k in candidates {
            if let Some(kv) = self.current(&k)?
                && kv.lease == Some(id)
            {
                victims.push(kv);
            }
        }
        self.delete_all(victims);
        self.leases.insert(id, None);
        Ok(())
    }

    /// Live keys in `[start, end)` as this batch sees them, in key order.
    fn live_in(&self, start: &[u8], end: &[u8]) -> Result<Vec<KeyValue>> {
        let mut found: BTreeMap<Bytes, KeyValue> = BTreeMap::new();
        for kv in self.state.live_in(start, end).complete()? {
            if !self.keys.contains_key(&kv.key) {
                found.insert(kv.key.clone(), kv);
            }
        }
        if let Some(bounds) = key_bounds(start, end) {
            for (key, kv) in &self.keys {
                if let Some(kv) = kv
                    && bounds_contain(&bounds, key)
                {
                    found.insert(key.clone(), kv.clone());
                }
            }
        }
        Ok(found.into_values().collect())
    }

    /// Deletes `victims` (in key order) in one revision; no revision when
    /// there is nothing to delete, like etcd.
    fn delete_all(&mut self, victims: Vec<KeyValue>) -> DeleteRangeResponse {
        if victims.is_empty() {
            return DeleteRangeResponse {
                deleted: 0,
                revision: self.revision,
            };
        }
        let rev = self.revision + 1;
        let deleted = victims.len() as i64;
        let events = victims
            .into_iter()
            .map(|prev| Event {
                kind: EventKind::Delete,
                kv: tombstone(prev.key.clone(), rev),
                prev_kv: Some(prev),
            })
            .collect();
        let revision = self.commit_revision(events);
        DeleteRangeResponse { deleted, revision }
    }

    fn finish(self) -> Plan {
        let mut lease_upserts = Vec::new();
        let mut lease_removals = Vec::new();
        for (id, rec) in self.leases {
            match rec {
                Some(rec) => lease_upserts.push((id, rec)),
                None => lease_removals.push(id),
            }
        }
        Plan {
            entries: self.entries,
            lease_upserts,
            lease_removals,
            compact: self.compact,
            revision: self.revision,
            lease_counter_moved: self.next_lease != self.state.next_lease,
            next_lease: self.next_lease,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::mvcc::Snapshot;

    fn empty_state() -> State {
        State::restore(Snapshot {
            revision: 1,
            compacted: 0,
            next_lease: 1,
            live: Vec::new(),
            log: Vec::new(),
            leases: Vec::new(),
        })
        .expect("empty state")
    }

    fn create(key: &str, lease: Option<LeaseId>) -> Op {
        Op::Create {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::from_static(b"v"),
            lease,
        }
    }

    fn kv(reply: Result<Reply>) -> KeyValue {
        match reply {
            Ok(Reply::Kv(kv)) => kv,
            Ok(_) => panic!("expected a key-value"),
            Err(e) => panic!("expected a key-value, got {e}"),
        }
    }

    /// Later requests of a batch see what earlier ones did, each success
    /// gets the next revision, and failures consume none.
    #[test]
    fn guards_are_evaluated_in_order_within_a_batch() {
        let state = empty_state();
        let mut b = Batch::new(&state, 1_000);
        let a = kv(b.eval(create("/a", None)));
        assert_eq!(a.mod_revision, 2);
        match b.eval(create("/a", None)) {
            Err(Error::AlreadyExists { current }) => assert_eq!(*current, a),
            _ => panic!("expected AlreadyExists"),
        }
        let a2 = kv(b.eval(Op::Update {
            key: a.key.clone(),
            value: Bytes::from_static(b"v2"),
            expected: a.mod_revision,
            lease: None,
        }));
        assert_eq!((a2.mod_revision, a2.version), (3, 2));
        match b.eval(Op::Update {
            key: a.key.clone(),
            value: Bytes::from_static(b"v3"),
            expected: a.mod_revision,
            lease: None,
        }) {
            Err(Error::Conflict { current }) => assert_eq!(current.as_deref(), Some(&a2)),
            _ => panic!("expected Conflict"),
        }
        let b1 = kv(b.eval(create("/b", None)));
        assert_eq!(b1.mod_revision, 4);
        match b.eval(Op::DeleteRange {
            start: Bytes::from_static(b"/"),
            end: Bytes::from_static(b"0"),
        }) {
            Ok(Reply::DeletedRange(d)) => assert_eq!((d.deleted, d.revision), (2, 5)),
            _ => panic!("expected a delete_range"),
        }
        let plan = b.finish();
        let revs: Vec<_> = plan.entries.iter().map(|e| e.revision).collect();
        assert_eq!(revs, vec![2, 3, 4, 5]);
        assert_eq!(plan.revision, 5);
        assert_eq!(
            plan.entries[3].events.len(),
            2,
            "one revision for the range"
        );
    }

    /// A lease granted, used and revoked within one batch takes its keys
    /// with it; a key created on it after the revoke is refused.
    #[test]
    fn lease_lifecycle_within_a_batch() {
        let state = empty_state();
        let mut b = Batch::new(&state, 1_000);
        let lease = match b.eval(Op::LeaseGrant(Duration::from_millis(1500))) {
            Ok(Reply::Granted(l)) => l,
            _ => panic!("expected a grant"),
        };
        assert_eq!(lease.ttl, Duration::from_secs(2));
        let k = kv(b.eval(create("/k", Some(lease.id))));
        assert_eq!(k.lease, Some(lease.id));
        assert!(matches!(b.eval(Op::LeaseRevoke(lease.id)), Ok(Reply::Done)));
        assert!(
            b.current(b"/k").expect("in memory").is_none(),
            "the revoke deleted the key"
        );
        assert!(matches!(
            b.eval(create("/k2", Some(lease.id))),
            Err(Error::LeaseNotFound(_))
        ));
        let plan = b.finish();
        assert_eq!(plan.lease_removals, vec![lease.id]);
        assert!(plan.lease_upserts.is_empty());
        assert_eq!(plan.entries.len(), 2);
    }

    #[test]
    fn compaction_is_bounded_by_the_batch_revision() {
        let state = empty_state();
        let mut b = Batch::new(&state, 1_000);
        assert!(matches!(b.compact(2), Err(Error::FutureRevision { .. })));
        kv(b.eval(create("/a", None)));
        assert!(b.compact(2).is_ok());
        assert!(matches!(
            b.compact(2),
            Err(Error::Compacted {
                compact_revision: 2
            })
        ));
    }
}
