//! The bounded window of recent events of one cache: what lets a watch
//! start from a recent revision, and a list be served as of a recent
//! revision (continue tokens, `resourceVersionMatch=Exact`).

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use storage::{EventKind, KeyValue, Revision};

use super::fanout::CacheEvent;

/// Most events a window keeps.
pub(crate) const MAX_EVENTS: usize = 50_000;
/// Most value bytes (new and previous values) a window accounts for.
pub(crate) const MAX_BYTES: usize = 64 * 1024 * 1024;

pub(crate) struct Window {
    events: VecDeque<Arc<CacheEvent>>,
    bytes: usize,
    /// Every event of the prefix with a revision above this one is in the
    /// window.
    start: Revision,
}

fn weight(ev: &CacheEvent) -> usize {
    ev.event.kv.value.len() + ev.event.prev_kv.as_ref().map_or(0, |p| p.value.len())
}

impl Window {
    pub(crate) fn new(start: Revision) -> Self {
        Window {
            events: VecDeque::new(),
            bytes: 0,
            start,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    pub(crate) fn push(&mut self, ev: Arc<CacheEvent>) {
        self.bytes += weight(&ev);
        self.events.push_back(ev);
        while self.events.len() > MAX_EVENTS || self.bytes > MAX_BYTES {
            let Some(old) = self.events.pop_front() else {
                break;
            };
            self.bytes -= weight(&old);
            // Events of one revision (a transaction) leave together, so the
            // window never covers half a revision.
            self.start = old.revision();
            while self
                .events
                .front()
                .is_some_and(|e| e.revision() == self.start)
            {
                if let Some(e) = self.events.pop_front() {
                    self.bytes -= weight(&e);
                }
            }
        }
    }

    /// Whether every event after `rev` is still here.
    pub(crate) fn covers(&self, rev: Revision) -> bool {
        rev >= self.start
    }

    /// The events after `rev` whose key starts with `collection`.
    pub(crate) fn after(&self, rev: Revision, collection: &[u8]) -> VecDeque<Arc<CacheEvent>> {
        let first = self.events.partition_point(|e| e.revision() <= rev);
        self.events
            .range(first..)
            .filter(|e| e.event.kv.key.starts_with(collection))
            .cloned()
            .collect()
    }

    /// What changed in `[start, end)` after `rev`: for each key touched,
    /// its state as of `rev` (`None`: absent then).
    pub(crate) fn undo(
        &self,
        rev: Revision,
        start: Bound<&[u8]>,
        end: &[u8],
    ) -> BTreeMap<Bytes, Option<KeyValue>> {
        let mut before = BTreeMap::new();
        let first = self.events.partition_point(|e| e.revision() <= rev);
        for e in self.events.range(first..) {
            let key = &e.event.kv.key;
            let after_start = match start {
                Bound::Included(s) => key.as_ref() >= s,
                Bound::Excluded(s) => key.as_ref() > s,
                Bound::Unbounded => true,
            };
            if !after_start || key.as_ref() >= end {
                continue;
            }
            // The earliest change after `rev` tells the state at `rev`.
            before
                .entry(key.clone())
                .or_insert_with(|| match e.event.kind {
                    EventKind::Put | EventKind::Delete => e.event.prev_kv.clone(),
                });
        }
        before
    }
}
