//! Fan-out: one event, encoded at most once, shared by every watcher of a
//! collection it belongs to. Each watcher has a bounded queue; a watcher
//! that lets it fill is cut off (its stream ends with an error telling the
//! client to relist) so it never slows the dispatcher or the others.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use storage::{Event, EventKind, Revision};
use tokio::sync::mpsc;

use crate::store::splice_resource_version;

/// Events queued per watcher before it counts as too slow.
pub(crate) const WATCHER_BUFFER: usize = 1024;

/// One storage event as the cache saw it.
pub struct CacheEvent {
    pub event: Event,
    /// The JSON watch line for watchers that see objects as stored.
    line: OnceLock<Option<Bytes>>,
}

impl CacheEvent {
    pub(crate) fn new(event: Event) -> Self {
        CacheEvent {
            event,
            line: OnceLock::new(),
        }
    }

    pub fn revision(&self) -> Revision {
        self.event.kv.mod_revision
    }

    /// `{"type":"…","object":…}\n` for a watcher without conversion,
    /// selectors or annotation: built once, shared by every such watcher.
    /// `None` when the stored bytes cannot be spliced.
    pub fn plain_line(&self) -> Option<Bytes> {
        self.line
            .get_or_init(|| {
                let rev = self.revision();
                let (kind, doc) = match (self.event.kind, &self.event.prev_kv) {
                    (EventKind::Put, None) => ("ADDED", &self.event.kv.value),
                    (EventKind::Put, Some(_)) => ("MODIFIED", &self.event.kv.value),
                    (EventKind::Delete, Some(prev)) => ("DELETED", &prev.value),
                    (EventKind::Delete, None) => return None,
                };
                let obj = splice_resource_version(doc, rev)?;
                let mut line = Vec::with_capacity(obj.len() + 32);
                line.extend_from_slice(b"{\"type\":\"");
                line.extend_from_slice(kind.as_bytes());
                line.extend_from_slice(b"\",\"object\":");
                line.extend_from_slice(&obj);
                line.extend_from_slice(b"}\n");
                Some(Bytes::from(line))
            })
            .clone()
    }
}

/// Why the cache ended a watcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Its queue filled up.
    TooSlow,
    /// The cache lost its storage watch to compaction and relisted.
    Expired { compacted: Revision },
}

struct Slot {
    tx: mpsc::Sender<Arc<CacheEvent>>,
    ended: Arc<OnceLock<Ended>>,
}

/// The live watchers of one cache, by the collection they watch (the
/// resource prefix for all workspaces, a workspace, or a namespace in it).
#[derive(Default)]
pub(crate) struct Watchers {
    by_collection: HashMap<Bytes, HashMap<u64, Slot>>,
    next_id: u64,
    count: usize,
}

/// What a new watcher reads from.
pub(crate) struct Receiver {
    pub id: u64,
    pub rx: mpsc::Receiver<Arc<CacheEvent>>,
    pub ended: Arc<OnceLock<Ended>>,
}

impl Watchers {
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    pub(crate) fn add(&mut self, collection: Bytes) -> Receiver {
        let (tx, rx) = mpsc::channel(WATCHER_BUFFER);
        let ended = Arc::new(OnceLock::new());
        self.next_id += 1;
        let id = self.next_id;
        self.by_collection.entry(collection).or_default().insert(
            id,
            Slot {
                tx,
                ended: ended.clone(),
            },
        );
        self.count += 1;
        Receiver { id, rx, ended }
    }

    pub(crate) fn remove(&mut self, collection: &[u8], id: u64) {
        if let Some(slots) = self.by_collection.get_mut(collection) {
            if slots.remove(&id).is_some() {
                self.count -= 1;
            }
            if slots.is_empty() {
                self.by_collection.remove(collection);
            }
        }
    }

    /// Hands `ev` to every watcher of a collection containing its key:
    /// the whole prefix, the key's workspace, the key's namespace.
    pub(crate) fn dispatch(&mut self, prefix_len: usize, ev: &Arc<CacheEvent>) {
        if self.count == 0 {
            return;
        }
        let key = ev.event.kv.key.clone();
        let mut ends = vec![prefix_len];
        ends.extend(
            key.iter()
                .enumerate()
                .skip(prefix_len)
                .filter(|(_, b)| **b == b'/')
                .map(|(i, _)| i + 1)
                .take(2),
        );
        for end in ends {
            let Some(collection) = key.get(..end) else {
                continue;
            };
            let Some(slots) = self.by_collection.get_mut(collection) else {
                continue;
            };
            let mut gone = Vec::new();
            for (id, slot) in slots.iter() {
                match slot.tx.try_send(ev.clone()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        let _ = slot.ended.set(Ended::TooSlow);
                        gone.push(*id);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => gone.push(*id),
                }
            }
            for id in gone {
                slots.remove(&id);
                self.count -= 1;
            }
            if slots.is_empty() {
                self.by_collection.remove(collection);
            }
        }
    }

    /// Ends every watcher (the cache relisted after compaction).
    pub(crate) fn end_all(&mut self, why: Ended) {
        for (_, slots) in self.by_collection.drain() {
            for (_, slot) in slots {
                let _ = slot.ended.set(why.clone());
            }
        }
        self.count = 0;
    }
}

/// Events of the window a new watcher replays first.
pub(crate) type Replay = VecDeque<Arc<CacheEvent>>;
