//! Leases: a TTL and an absolute deadline, persisted so that expiry
//! survives restarts, plus (in memory) the keys attached to each lease.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::LeaseId;

/// What is stored per lease. Deadlines are absolute wall-clock times, so a
/// lease that expired while the process was down is reaped right after
/// the next open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    pub ttl_ms: i64,
    pub deadline_ms: i64,
}

impl LeaseRecord {
    pub fn alive_at(&self, now_ms: i64) -> bool {
        self.deadline_ms > now_ms
    }

    pub fn ttl(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.ttl_ms).unwrap_or(0))
    }
}

/// TTLs are whole seconds, at least one, as etcd reports them.
pub fn round_ttl(ttl: Duration) -> Duration {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    Duration::from_secs(secs.max(1))
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub struct LeaseState {
    pub record: LeaseRecord,
    pub keys: HashSet<Bytes>,
}

/// Every live lease, with an index by deadline for the expiry timer.
#[derive(Default)]
pub struct Leases {
    by_id: HashMap<LeaseId, LeaseState>,
    by_deadline: BTreeSet<(i64, LeaseId)>,
}

impl Leases {
    pub fn get(&self, id: LeaseId) -> Option<&LeaseState> {
        self.by_id.get(&id)
    }

    /// Creates the lease or moves its deadline, keeping its keys.
    pub fn upsert(&mut self, id: LeaseId, record: LeaseRecord) {
        match self.by_id.get_mut(&id) {
            Some(state) => {
                self.by_deadline.remove(&(state.record.deadline_ms, id));
                state.record = record;
            }
            None => {
                self.by_id.insert(
                    id,
                    LeaseState {
                        record,
                        keys: HashSet::new(),
                    },
                );
            }
        }
        self.by_deadline.insert((record.deadline_ms, id));
    }

    pub fn remove(&mut self, id: LeaseId) {
        if let Some(state) = self.by_id.remove(&id) {
            self.by_deadline.remove(&(state.record.deadline_ms, id));
        }
    }

    pub fn attach(&mut self, id: LeaseId, key: &Bytes) -> bool {
        match self.by_id.get_mut(&id) {
            Some(state) => {
                state.keys.insert(key.clone());
                true
            }
            None => false,
        }
    }

    pub fn detach(&mut self, id: LeaseId, key: &[u8]) {
        if let Some(state) = self.by_id.get_mut(&id) {
            state.keys.remove(key);
        }
    }

    /// The earliest deadline, for the writer's timer.
    pub fn next_deadline(&self) -> Option<i64> {
        self.by_deadline.first().map(|(d, _)| *d)
    }

    /// Up to `max` leases whose deadline has passed.
    pub fn expired(&self, now_ms: i64, max: usize) -> Vec<LeaseId> {
        self.by_deadline
            .iter()
            .take_while(|(d, _)| *d <= now_ms)
            .take(max)
            .map(|(_, id)| *id)
            .collect()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        assert_eq!(round_ttl(Duration::from_millis(1)), Duration::from_secs(1));
        assert_eq!(round_ttl(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(
            round_ttl(Duration::from_millis(2500)),
            Duration::from_secs(3)
        );
        assert_eq!(round_ttl(Duration::from_secs(60)), Duration::from_secs(60));
    }

    #[test]
    fn deadlines_are_indexed() {
        let mut l = Leases::default();
        l.upsert(
            1,
            LeaseRecord {
                ttl_ms: 1000,
                deadline_ms: 50,
            },
        );
        l.upsert(
            2,
            LeaseRecord {
                ttl_ms: 1000,
                deadline_ms: 20,
            },
        );
        assert_eq!(l.next_deadline(), Some(20));
        assert_eq!(l.expired(30, 10), vec![2]);
        // A keep-alive moves the deadline and keeps the keys.
        assert!(l.attach(2, &Bytes::from_static(b"k")));
        l.upsert(
            2,
            LeaseRecord {
                ttl_ms: 1000,
                deadline_ms: 90,
            },
        );
        assert_eq!(l.expired(60, 10), vec![1]);
        assert_eq!(l.get(2).map(|s| s.keys.len()), Some(1));
        l.remove(1);
        assert_eq!(l.next_deadline(), Some(90));
    }
}
