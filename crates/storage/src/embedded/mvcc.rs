//! The multi-version key space served to readers.
//!
//! Like etcd's key index, every key keeps the versions written since the
//! compaction point (plus the one visible at it), so a read at any retained
//! revision is a binary search per key. Unlike etcd the values live here
//! too: point reads and ranges never touch the disk, which is what makes
//! them fast and never queued behind a commit. The `live` and `log` tables
//! on disk are what this is rebuilt from at open.

use std::collections::{BTreeMap, HashSet};
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use bytes::Bytes;

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

/// The whole engine state readers see. Guarded by one `RwLock`: the writer
/// takes it for writing only to apply an already durable batch, so readers
/// wait at most for an in-memory apply, never for the disk.
pub struct State {
    pub revision: Revision,
    pub compacted: Revision,
    /// Next lease id to hand out; persisted so ids are never reused.
    pub next_lease: LeaseId,
    /// Versions per key in ascending revision order; never empty.
    keys: BTreeMap<Bytes, Vec<Version>>,
    pub history: History,
    pub leases: Leases,
}

/// What the disk held at open.
pub struct Snapshot {
    pub revision: Revision,
    pub compacted: Revision,
    pub next_lease: LeaseId,
    pub live: Vec<KeyValue>,
    pub log: Vec<RevisionEntry>,
    pub leases: Vec<(LeaseId, LeaseRecord)>,
}

impl State {
    /// Rebuilds the versions of every key from the live table and the log:
    /// the first logged event of a key carries the value it had before,
    /// which is its version at the compaction point.
    pub fn restore(snap: Snapshot) -> Result<State> {
        let mut state = State {
            revision: snap.revision,
            compacted: snap.compacted,
            next_lease: snap.next_lease,
            keys: BTreeMap::new(),
            history: History::default(),
            leases: Leases::default(),
        };
        for (id, rec) in snap.leases {
            state.leases.upsert(id, rec);
        }
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
                let versions = state.keys.entry(ev.kv.key.clone()).or_insert_with(|| {
                    ev.prev_kv.iter().map(|p| Version::Put(p.clone())).collect()
                });
                versions.push(match ev.kind {
                    EventKind::Put => Version::Put(ev.kv.clone()),
                    EventKind::Delete => Version::Tombstone(entry.revision),
                });
            }
            state.history.push(Arc::new(entry));
        }
        if last > snap.revision {
            return Err(Error::Corrupted(format!(
                "log reaches revision {last} beyond the stored revision {}",
                snap.revision
            )));
        }
        let mut live_keys = HashSet::with_capacity(snap.live.len());
        for kv in snap.live {
            match state.keys.get(&kv.key).and_then(|v| v.last()) {
                Some(Version::Put(logged)) if logged.mod_revision == kv.mod_revision => {}
                Some(_) => {
                    return Err(Error::Corrupted(format!(
                        "key {} disagrees with its logged history",
                        String::from_utf8_lossy(&kv.key)
                    )));
                }
                None => {
                    state
                        .keys
                        .insert(kv.key.clone(), vec![Version::Put(kv.clone())]);
                }
            }
            if let Some(lease) = kv.lease
                && !state.leases.attach(lease, &kv.key)
            {
                tracing::warn!(
                    key = %String::from_utf8_lossy(&kv.key),
                    lease,
                    "key is attached to a lease that no longer exists; it will not expire"
                );
            }
            live_keys.insert(kv.key);
        }
        for (key, versions) in &state.keys {
            if matches!(versions.last(), Some(Version::Put(_))) && !live_keys.contains(key) {
                return Err(Error::Corrupted(format!(
                    "key {} is in the log but missing from the live table",
                    String::from_utf8_lossy(key)
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

    pub fn latest(&self, key: &[u8]) -> Option<&KeyValue> {
        self.keys.get(key)?.last()?.live()
    }

    pub fn get_at(&self, key: &[u8], at: Revision) -> Option<&KeyValue> {
        visible_at(self.keys.get(key)?, at)
    }

    pub fn range(&self, req: &RangeRequest, at: Revision) -> RangeResponse {
        let mut kvs = Vec::new();
        let mut count: i64 = 0;
        if let Some(bounds) = key_bounds(&req.start, &req.end) {
            for versions in self.keys.range::<[u8], _>(bounds).map(|(_, v)| v) {
                let Some(kv) = visible_at(versions, at) else {
                    continue;
                };
                count += 1;
                if req.count_only || (req.limit > 0 && kvs.len() >= req.limit) {
                    continue;
                }
                kvs.push(if req.keys_only {
                    KeyValue {
                        value: Bytes::new(),
                        ..kv.clone()
                    }
                } else {
                    kv.clone()
                });
            }
        }
        RangeResponse {
            more: !req.count_only && count > kvs.len() as i64,
            kvs,
            count,
            revision: at,
        }
    }

    /// Live keys in `[start, end)` at the latest revision, in key order.
    pub fn live_in<'a>(
        &'a self,
        start: &'a [u8],
        end: &'a [u8],
    ) -> impl Iterator<Item = &'a KeyValue> + 'a {
        key_bounds(start, end)
            .into_iter()
            .flat_map(|b| self.keys.range::<[u8], _>(b))
            .filter_map(|(_, v)| v.last()?.live())
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
            self.keys.entry(key.clone()).or_default().push(version);
        }
        self.revision = entry.revision;
        self.history.push(entry);
    }

    /// Forgets history below `at`: each key keeps the version visible at
    /// `at` (unless that is a deletion) and everything newer.
    pub fn compact(&mut self, at: Revision) {
        let removed = self.history.drain_before(at);
        let mut touched: HashSet<&Bytes> = HashSet::new();
        for entry in &removed {
            touched.extend(entry.events.iter().map(|e| &e.kv.key));
        }
        for key in touched {
            let Some(versions) = self.keys.get_mut(key) else {
                continue;
            };
            let visible = versions.partition_point(|v| v.revision() <= at);
            if visible > 1 {
                versions.drain(..visible - 1);
            }
            if matches!(versions.first(), Some(Version::Tombstone(r)) if *r <= at) {
                versions.remove(0);
            }
            if versions.is_empty() {
                self.keys.remove(key);
            }
        }
        self.compacted = at;
    }

    /// Keys currently tracked (live or with retained history).
    pub fn tracked_keys(&self) -> usize {
        self.keys.len()
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
        assert_eq!(s.get_at(b"/a", 5).map(|kv| &kv.value[..]), Some(&b"2"[..]));
        assert_eq!(s.get_at(b"/a", 6).map(|kv| &kv.value[..]), Some(&b"3"[..]));
        assert!(s.get_at(b"/b", 5).is_none());
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
