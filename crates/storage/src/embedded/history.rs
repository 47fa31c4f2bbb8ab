//! The retained event history: one entry per revision since the compaction
//! point, in memory for watch replay and mirrored in the `log` table so it
//! survives restarts.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::{Event, Revision};

/// Everything one revision changed.
#[derive(Debug)]
pub struct RevisionEntry {
    pub revision: Revision,
    /// Wall-clock commit time (Unix ms); drives age-based compaction.
    pub time_ms: i64,
    /// In key order for a multi-key revision (delete_range, lease expiry).
    pub events: Vec<Event>,
}

/// Entries for every revision `>=` the compaction point, oldest first.
/// Every revision has exactly one entry: each revision is one write that
/// changed at least one key.
#[derive(Default)]
pub struct History {
    entries: VecDeque<Arc<RevisionEntry>>,
}

impl History {
    pub fn push(&mut self, entry: Arc<RevisionEntry>) {
        self.entries.push_back(entry);
    }

    /// Entries with revision `>= from`, for a watch replay. Cheap: the
    /// entries are shared, not copied.
    pub fn since(&self, from: Revision) -> Vec<Arc<RevisionEntry>> {
        let start = self.entries.partition_point(|e| e.revision < from);
        self.entries.range(start..).cloned().collect()
    }

    /// Removes and returns the entries with revision `< before`.
    pub fn drain_before(&mut self, before: Revision) -> Vec<Arc<RevisionEntry>> {
        let n = self.entries.partition_point(|e| e.revision < before);
        self.entries.drain(..n).collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn last_time_ms(&self) -> Option<i64> {
        self.entries.back().map(|e| e.time_ms)
    }

    /// Where automatic compaction may move the compaction point to now:
    /// keep every revision that was current within `max_age` (the point is
    /// the revision that was current `max_age` ago, as etcd's periodic
    /// compaction does), and no more than `max_revisions` revisions. The cap
    /// wins when they disagree, because history lives in memory and must
    /// stay bounded. `None` when there is nothing to compact.
    pub fn auto_compact_target(
        &self,
        current: Revision,
        compacted: Revision,
        now_ms: i64,
        max_age: Duration,
        max_revisions: i64,
    ) -> Option<Revision> {
        let cutoff = now_ms.saturating_sub(i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX));
        let old = self.entries.partition_point(|e| e.time_ms <= cutoff);
        let by_age = old
            .checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .map_or(compacted, |e| e.revision);
        let by_count = current.saturating_sub(max_revisions.max(1));
        let target = by_age.max(by_count).min(current);
        (target > compacted).then_some(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(revision: Revision, time_ms: i64) -> Arc<RevisionEntry> {
        Arc::new(RevisionEntry {
            revision,
            time_ms,
            events: Vec::new(),
        })
    }

    #[test]
    fn since_and_drain_split_on_revision() {
        let mut h = History::default();
        for r in 2..=6 {
            h.push(entry(r, r * 10));
        }
        let revs = |v: Vec<Arc<RevisionEntry>>| v.iter().map(|e| e.revision).collect::<Vec<_>>();
        assert_eq!(revs(h.since(4)), vec![4, 5, 6]);
        assert_eq!(revs(h.since(7)), Vec::<i64>::new());
        assert_eq!(revs(h.drain_before(4)), vec![2, 3]);
        assert_eq!(revs(h.since(0)), vec![4, 5, 6]);
    }

    #[test]
    fn auto_compaction_keeps_age_unless_over_the_cap() {
        let mut h = History::default();
        for r in 2..=11 {
            h.push(entry(r, r * 1000));
        }
        let age = Duration::from_secs(5);
        // Now = 12s: revision 7 was current 5s ago; reads from it on stay.
        assert_eq!(h.auto_compact_target(11, 0, 12_000, age, 100), Some(7));
        // Already compacted there: nothing to do.
        assert_eq!(h.auto_compact_target(11, 7, 12_000, age, 100), None);
        // Nothing old enough yet.
        assert_eq!(h.auto_compact_target(11, 0, 1_000, age, 100), None);
        // The revision cap wins: keep at most 2 revisions.
        assert_eq!(h.auto_compact_target(11, 0, 12_000, age, 2), Some(9));
        // Everything old: compact at the current revision.
        assert_eq!(h.auto_compact_target(11, 0, 100_000, age, 100), Some(11));
    }
}
