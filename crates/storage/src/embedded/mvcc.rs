//! The multi-version key space served to readers.
//!
//! Like etcd's key index, every key keeps the versions written since the
//! compaction point (plus the one visible at it), so a read at any retained
//! revision is a binary search per key. Unlike etcd the values live here
//! too: point reads and ranges never touch the disk, which is what makes
//! them fast and never queued behind a commit. The `live` and `log` tables
//! on disk are what this is rebuilt from at open.

use std::collections::{BTreeMap, HashMap};
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use bytes::Bytes;

use super::disk::LiveSnapshot;
use super::history::{History, RevisionEntry};
use super::lease::{LeaseRecord, Leases};
use crate::{Error, EventKind, KeyValue, LeaseId, RangeRequest, RangeResponse, Result, Revision};

/// One version of a key.
#[derive(Clone, Debug)]
pub enum Version {
    Put(KeyValue),
    /// Deleted at this revision.
    Tombstone(Revision),
}

impl Version {
    fn revision(&self) -> Revision {
        match self {
            Version::Put(kv) => kv.mod_revision,
            Version::Tombstone(r) => *r,
        }
    }

    fn live(&self) -> Option<&KeyValue> {
        match self {
            Version::Put(kv) => Some(kv),
            Version::Tombstone(_) => None,
        }
    }
}

/// A key's bookkeeping without its value (32 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub create_revision: Revision,
    pub mod_revision: Revision,
    pub version: i64,
    /// 0: no lease.
    pub lease: LeaseId,
}

impl Meta {
    pub fn of(kv: &KeyValue) -> Meta {
        Meta {
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease.unwrap_or(0),
        }
    }

    pub fn with(&self, key: Bytes, value: Bytes) -> KeyValue {
        KeyValue {
            key,
            value,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            lease: (self.lease != 0).then_some(self.lease),
        }
    }
}

/// What memory holds for one key.
#[derive(Debug)]
enum Slot {
    /// A key untouched since the compaction point: one live version, its
    /// value only on disk (the `live` table). Most keys of a large, mostly
    /// idle store are cold, which is what keeps memory per key small.
    Cold(Meta),
    /// Versions in ascending revision order, values included; never empty.
    /// A key is hot while the retained history mentions it.
    Hot(Vec<Version>),
}

/// Key-values found under the state lock whose values may still have to
/// be read from the disk snapshot (with the lock released).
#[derive(Default)]
pub struct Found {
    pub kvs: Vec<KeyValue>,
    /// Positions in `kvs` whose value is on disk only.
    pub cold: Vec<usize>,
    /// The disk state matching the memory state the keys were read at.
    pub snapshot: Option<Arc<LiveSnapshot>>,
}

impl Found {
    /// Reads the cold values. Call with the state lock released: this may
    /// wait for the disk.
    pub fn complete(mut self) -> Result<Vec<KeyValue>> {
        if self.cold.is_empty() {
            return Ok(self.kvs);
        }
        let Some(snapshot) = self.snapshot else {
            return Err(Error::Corrupted(
                "embedded store: a value is on disk but no disk snapshot is open".into(),
            ));
        };
        snapshot.fill(&mut self.kvs, &self.cold)?;
        Ok(self.kvs)
    }
}

/// The whole engine state readers see. Guarded by one `RwLock`: the writer
/// takes it for writing only to apply an already durable batch, so readers
/// wait at most for an in-memory apply, never for the disk.
pub struct State {
    pub revision: Revision,
    pub compacted: Revision,
    /// Next lease id to hand out; persisted so ids are never reused.
    pub next_lease: LeaseId,
    /// Every key that is live or has retained history.
    keys: BTreeMap<Box<[u8]>, Slot>,
    pub history: History,
    pub leases: Leases,
    /// A read view of the `live` table at exactly `revision`: where cold
    /// values are read from. Replaced by the writer with every applied
    /// batch. `None` only in unit tests without a database.
    pub disk: Option<Arc<LiveSnapshot>>,
}

/// What the disk held at open.
pub struct Snapshot {
    pub revision: Revision,
    pub compacted: Revision,
    pub next_lease: LeaseId,
    /// The live table without its values, in key order.
    pub live: Vec<(Box<[u8]>, Meta)>,
    pub log: Vec<RevisionEntry>,
    pub leases: Vec<(LeaseId, LeaseRecord)>,
}

impl State {
    /// Rebuilds the key space: every live key starts cold (its value stays
    /// on disk); the log then makes the keys it mentions hot, starting from
    /// the value each had at the compaction point (the `prev_kv` of its
    /// first logged event).
    pub fn restore(snap: Snapshot) -> Result<State> {
        let mut leases = Leases::default();
        for (id, rec) in snap.leases {
            leases.upsert(id, rec);
        }
        for (key, meta) in &snap.live {
            if meta.lease != 0 && !leases.attach(meta.lease, &Bytes::copy_from_slice(key)) {
                tracing::warn!(
                    key = %String::from_utf8_lossy(key),
                    lease = meta.lease,
                    "key is attached to a lease that no longer exists; it will not expire"
                );
            }
        }
        // Sorted input: the map is bulk-built with full nodes.
        let keys: BTreeMap<Box<[u8]>, Slot> = snap
            .live
            .into_iter()
            .map(|(k, m)| (k, Slot::Cold(m)))
            .collect();
        let mut state = State {
            revision: snap.revision,
            compacted: snap.compacted,
            next_lease: snap.next_lease,
            keys,
            history: History::default(),
            leases,
            disk: None,
        };
        // The live record of each key the log mentions, to check against
        // the log's last word on it.
        let mut live_of_logged: HashMap<Bytes, Option<Meta>> = HashMap::new();
        // Entries start at the compaction point and strictly increase.
        let mut last = snap.compacted - 1;
        for entry in snap.log {
            if entry.revision <= last {
                return Err(Error::Corrupted(format!(
                    "log entry {} out of order after {last}",
                    entry.revision
                )));
            }
            last = entry.revision;
            for ev in &entry.events {
                let key = &ev.kv.key;
                let version = match ev.kind {
                    EventKind::Put => Version::Put(ev.kv.clone()),
                    EventKind::Delete => Version::Tombstone(entry.revision),
                };
                match state.keys.get_mut(&key[..]) {
                    Some(Slot::Hot(versions)) => versions.push(version),
                    other => {
                        let live = match other {
                            Some(Slot::Cold(meta)) => Some(*meta),
                            _ => None,
                        };
                        live_of_logged.insert(key.clone(), live);
                        let mut versions: Vec<Version> =
                            ev.prev_kv.iter().map(|p| Version::Put(p.clone())).collect();
                        versions.push(version);
                        state.keys.insert(key.to_vec().into(), Slot::Hot(versions));
                    }
                }
            }
            state.history.push(Arc::new(entry));
        }
        if last > snap.revision {
            return Err(Error::Corrupted(format!(
                "log reaches revision {last} beyond the stored revision {}",
                snap.revision
            )));
        }
        for (key, live) in live_of_logged {
            let Some(Slot::Hot(versions)) = state.keys.get(&key[..]) else {
                continue;
            };
            let agrees = match (versions.last(), live) {
                (Some(Version::Put(kv)), Some(meta)) => kv.mod_revision == meta.mod_revision,
                (Some(Version::Tombstone(_)), None) => true,
                (Some(Version::Put(_)), None) => {
                    return Err(Error::Corrupted(format!(
                        "key {} is in the log but missing from the live table",
                        String::from_utf8_lossy(&key)
                    )));
                }
                _ => false,
            };
            if !agrees {
                return Err(Error::Corrupted(format!(
                    "key {} disagrees with its logged history",
                    String::from_utf8_lossy(&key)
                )));
            }
        }
        Ok(state)
    }

    /// The revision a read asking for `requested` is served at.
    pub fn resolve(&self, requested: Option<Revision>) -> Result<Revision> {
        match requested {
            None => Ok(self.revision),
            Some(r) if r <= 0 => Ok(self.revision),
            Some(r) if r > self.revision => Err(Error::FutureRevision {
                requested: r,
                current: self.revision,
            }),
            Some(r) if r < self.compacted => Err(Error::Compacted {
                compact_revision: self.compacted,
            }),
            Some(r) => Ok(r),
        }
    }

    /// The latest version of `key` (its value possibly still on disk).
    pub fn latest(&self, key: &[u8]) -> Found {
        self.found(self.lookup(key, self.revision))
    }

    /// `key` as of revision `at` (its value possibly still on disk).
    pub fn get_at(&self, key: &[u8], at: Revision) -> Found {
        self.found(self.lookup(key, at))
    }

    /// The latest version of `key`, reading a cold value from the disk
    /// snapshot at once (for the writer, which needs it to evaluate a
    /// guard or to report the previous value).
    pub fn latest_now(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        Ok(self.latest(key).complete()?.pop())
    }

    fn lookup(&self, key: &[u8], at: Revision) -> Option<Visible<'_>> {
        let (key, slot) = self.keys.get_key_value(key)?;
        visible(key, slot, at)
    }

    fn found(&self, v: Option<Visible<'_>>) -> Found {
        let mut found = Found::default();
        if let Some(v) = v {
            found.push(v, &self.disk, false);
        }
        found
    }

    /// Keys in the range as of `at`; cold values are read by
    /// [`Found::complete`] once the caller has released the lock.
    pub fn range(&self, req: &RangeRequest, at: Revision) -> (Found, RangeResponse) {
        let mut found = Found::default();
        let mut count: i64 = 0;
        if let Some(bounds) = key_bounds(&req.start, &req.end) {
            for (key, slot) in self.keys.range::<[u8], _>(bounds) {
                let Some(v) = visible(key, slot, at) else {
                    continue;
                };
                count += 1;
                if req.count_only || (req.limit > 0 && found.kvs.len() >= req.limit) {
                    continue;
                }
                found.push(v, &self.disk, req.keys_only);
            }
        }
        let resp = RangeResponse {
            more: !req.count_only && count > found.kvs.len() as i64,
            kvs: Vec::new(),
            count,
            revision: at,
        };
        (found, resp)
    }

    /// Live keys in `[start, end)` at the latest revision, in key order.
    pub fn live_in(&self, start: &[u8], end: &[u8]) -> Found {
        let mut found = Found::default();
        if let Some(bounds) = key_bounds(start, end) {
            for (key, slot) in self.keys.range::<[u8], _>(bounds) {
                if let Some(v) = visible(key, slot, self.revision) {
                    found.push(v, &self.disk, false);
                }
            }
        }
        found
    }

    /// Applies one committed revision.
    pub fn apply(&mut self, entry: Arc<RevisionEntry>) {
        for ev in &entry.events {
            let key = &ev.kv.key;
            if let Some(lease) = ev.prev_kv.as_ref().and_then(|p| p.lease) {
                self.leases.detach(lease, key);
            }
            let version = match ev.kind {
                EventKind::Put => {
                    if let Some(lease) = ev.kv.lease {
                        self.leases.attach(lease, key);
                    }
                    Version::Put(ev.kv.clone())
                }
                EventKind::Delete => Version::Tombstone(entry.revision),
            };
            match self.keys.get_mut(&key[..]) {
                Some(Slot::Hot(versions)) => versions.push(version),
                Some(slot) => {
                    // Cold: the event's previous value (which the writer
                    // read from disk) is again the version at the
                    // compaction point.
                    let mut versions: Vec<Version> =
                        ev.prev_kv.iter().map(|p| Version::Put(p.clone())).collect();
                    versions.push(version);
                    *slot = Slot::Hot(versions);
                }
                None => {
                    self.keys
                        .insert(key.to_vec().into(), Slot::Hot(vec![version]));
                }
            }
        }
        self.revision = entry.revision;
        self.history.push(entry);
    }

    /// Forgets history below `at`: each key keeps the version visible at
    /// `at` (unless that is a deletion) and everything newer. A key left
    /// with only the version visible at `at` turns cold: its value leaves
    /// memory and is read from disk from then on.
    pub fn compact(&mut self, at: Revision) {
        let removed = self.history.drain_before(at);
        let mut touched: Vec<&Bytes> = removed
            .iter()
            .flat_map(|entry| entry.events.iter().map(|e| &e.kv.key))
            .collect();
        touched.sort_unstable();
        touched.dedup();
        let can_cool = self.disk.is_some();
        for key in touched {
            let Some(slot) = self.keys.get_mut(&key[..]) else {
                continue;
            };
            let Slot::Hot(versions) = slot else {
                continue;
            };
            let visible = versions.partition_point(|v| v.revision() <= at);
            if visible > 1 {
                versions.drain(..visible - 1);
            }
            if matches!(versions.first(), Some(Version::Tombstone(r)) if *r <= at) {
                versions.remove(0);
            }
            match versions.as_slice() {
                [] => {
                    self.keys.remove(&key[..]);
                }
                [Version::Put(kv)] if can_cool && kv.mod_revision <= at => {
                    *slot = Slot::Cold(Meta::of(kv));
                }
                _ => {}
            }
        }
        self.compacted = at;
    }

    /// Keys currently tracked (live or with retained history).
    pub fn tracked_keys(&self) -> usize {
        self.keys.len()
    }

    /// Keys whose values are held in memory (the others are on disk only).
    pub fn hot_keys(&self) -> usize {
        self.keys
            .values()
            .filter(|s| matches!(s, Slot::Hot(_)))
            .count()
    }
}

/// A version visible at the revision asked for.
enum Visible<'a> {
    Hot(&'a KeyValue),
    Cold(&'a [u8], &'a Meta),
}

fn visible<'a>(key: &'a [u8], slot: &'a Slot, at: Revision) -> Option<Visible<'a>> {
    match slot {
        Slot::Cold(meta) => (meta.mod_revision <= at).then_some(Visible::Cold(key, meta)),
        Slot::Hot(versions) => visible_at(versions, at).map(Visible::Hot),
    }
}

impl Found {
    fn push(&mut self, v: Visible<'_>, disk: &Option<Arc<LiveSnapshot>>, keys_only: bool) {
        match v {
            Visible::Hot(kv) if keys_only => self.kvs.push(KeyValue {
                value: Bytes::new(),
                ..kv.clone()
            }),
            Visible::Hot(kv) => self.kvs.push(kv.clone()),
            Visible::Cold(key, meta) => {
                if !keys_only {
                    if self.snapshot.is_none() {
                        self.snapshot = disk.clone();
                    }
                    self.cold.push(self.kvs.len());
                }
                self.kvs
                    .push(meta.with(Bytes::copy_from_slice(key), Bytes::new()));
            }
        }
    }
}

fn visible_at(versions: &[Version], at: Revision) -> Option<&KeyValue> {
    let n = versions.partition_point(|v| v.revision() <= at);
    versions.get(n.checked_sub(1)?)?.live()
}

/// `[start, end)` as map bounds, with etcd's conventions: an empty end is
/// the single key `start`, an end of `\0` is unbounded. `None` when empty.
pub fn key_bounds<'a>(start: &'a [u8], end: &'a [u8]) -> Option<KeyBounds<'a>> {
    if end.is_empty() {
        Some((Bound::Included(start), Bound::Included(start)))
    } else if end == b"\0" {
        Some((Bound::Included(start), Bound::Unbounded))
    } else if start < end {
        Some((Bound::Included(start), Bound::Excluded(end)))
    } else {
        None
    }
}

/// Bounds from [`key_bounds`].
pub type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

pub fn bounds_contain(bounds: &KeyBounds<'_>, key: &[u8]) -> bool {
    RangeBounds::<[u8]>::contains::<[u8]>(bounds, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Event;

    fn put(key: &str, value: &str, create: Revision, rev: Revision, version: i64) -> Event {
        Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: Bytes::copy_from_slice(key.as_bytes()),
                value: Bytes::copy_from_slice(value.as_bytes()),
                create_revision: create,
                mod_revision: rev,
                version,
                lease: None,
            },
            prev_kv: None,
        }
    }

    fn empty() -> State {
        State {
            revision: 1,
            compacted: 0,
            next_lease: 1,
            keys: BTreeMap::new(),
            history: History::default(),
            leases: Leases::default(),
            disk: None,
        }
    }

    fn apply(s: &mut State, rev: Revision, events: Vec<Event>) {
        s.apply(Arc::new(RevisionEntry {
            revision: rev,
            time_ms: 0,
            events,
        }));
    }

    #[test]
    fn compaction_keeps_the_version_visible_at_the_point() {
        let mut s = empty();
        apply(&mut s, 2, vec![put("/a", "1", 2, 2, 1)]);
        apply(&mut s, 3, vec![put("/a", "2", 2, 3, 2)]);
        let mut del = put("/b", "", 0, 4, 0);
        del.kind = EventKind::Delete;
        apply(&mut s, 4, vec![put("/b", "x", 4, 4, 1)]);
        apply(&mut s, 5, vec![del]);
        apply(&mut s, 6, vec![put("/a", "3", 2, 6, 3)]);
        s.compact(5);
        let value = |at| {
            let kv = s.get_at(b"/a", at).complete().expect("in memory").pop();
            kv.map(|kv| kv.value)
        };
        assert_eq!(value(5).as_deref(), Some(&b"2"[..]));
        assert_eq!(value(6).as_deref(), Some(&b"3"[..]));
        assert!(s.get_at(b"/b", 5).kvs.is_empty());
        // /b's deletion at the compaction point leaves nothing to keep.
        assert_eq!(s.tracked_keys(), 1);
        assert!(matches!(
            s.resolve(Some(4)),
            Err(Error::Compacted {
                compact_revision: 5
            })
        ));
        assert!(matches!(
            s.resolve(Some(7)),
            Err(Error::FutureRevision { .. })
        ));
    }

    #[test]
    fn bounds_follow_etcd_conventions() {
        assert!(key_bounds(b"b", b"a").is_none());
        assert!(key_bounds(b"a", b"a").is_none());
        assert_eq!(
            key_bounds(b"a", b""),
            Some((Bound::Included(&b"a"[..]), Bound::Included(&b"a"[..])))
        );
        assert_eq!(
            key_bounds(b"a", b"\0"),
            Some((Bound::Included(&b"a"[..]), Bound::Unbounded))
        );
    }
}
