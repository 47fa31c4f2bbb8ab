//! Watches: replay from history, then live events, with no gap and no
//! duplicate between the two.
//!
//! The hand-off follows etcd's synced/unsynced split. The writer applies a
//! batch to the state and hands it to the registered watchers in one step
//! under the state's write lock. A new watch, holding the read lock, copies
//! the history entries it must replay (revisions up to the current one) and
//! registers itself: every revision is then either in its replay or
//! delivered live, never both.
//!
//! Live delivery never blocks the writer: each watcher has an unbounded
//! queue with a bound on the events buffered in it. A watcher that falls
//! further behind is cut off with an error telling the client to re-watch
//! from its last revision, rather than growing without bound or silently
//! dropping events.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::Shared;
use super::history::RevisionEntry;
use super::mvcc::{bounds_contain, key_bounds};
use crate::{Error, Event, Result, Revision, WatchRequest, WatchResponse, WatchStream};

/// Replayed history is sent in messages of about this many events (whole
/// revisions only), so a long replay does not build one giant vector.
const REPLAY_CHUNK_EVENTS: usize = 1024;

/// The registered (live) watchers.
#[derive(Default)]
pub struct Hub {
    watchers: Vec<Watcher>,
}

struct Watcher {
    start: Bytes,
    end: Bytes,
    /// Live events below this revision are not for this watch (a start
    /// revision in the future).
    min_revision: Revision,
    tx: UnboundedSender<Vec<Event>>,
    flow: Arc<Flow>,
}

/// Shared between a watcher's entry in the hub and its stream.
#[derive(Default)]
struct Flow {
    /// Events queued and not yet taken by the stream.
    buffered: AtomicUsize,
    /// Cut off for falling behind.
    overflowed: AtomicBool,
}

impl Hub {
    /// Hands a committed batch to every watcher. Called by the writer with
    /// the state write lock held.
    pub fn notify(&mut self, entries: &[Arc<RevisionEntry>], max_buffered: usize) {
        self.watchers.retain(|w| {
            if w.tx.is_closed() {
                return false; // the stream was dropped
            }
            let Some(bounds) = key_bounds(&w.start, &w.end) else {
                return true;
            };
            let events: Vec<Event> = entries
                .iter()
                .filter(|e| e.revision >= w.min_revision)
                .flat_map(|e| e.events.iter())
                .filter(|ev| bounds_contain(&bounds, &ev.kv.key))
                .cloned()
                .collect();
            if events.is_empty() {
                return true;
            }
            let n = events.len();
            if w.flow.buffered.load(Ordering::Acquire) + n > max_buffered {
                w.flow.overflowed.store(true, Ordering::Release);
                return false; // dropping the sender ends the stream after its backlog
            }
            w.flow.buffered.fetch_add(n, Ordering::AcqRel);
            w.tx.send(events).is_ok()
        });
    }

    fn register(&mut self, watcher: Watcher) {
        // Streams dropped while nothing was written are pruned here too, so
        // an idle store does not accumulate dead watchers.
        self.watchers.retain(|w| !w.tx.is_closed());
        self.watchers.push(watcher);
    }

    /// Ends every watch (the store is closing).
    pub fn close(&mut self) {
        self.watchers.clear();
    }

    pub fn len(&self) -> usize {
        self.watchers.len()
    }
}

/// Starts a watch: see the module documentation for the hand-off.
pub fn open(shared: &Arc<Shared>, req: WatchRequest) -> Result<WatchStream> {
    let start_revision = req.start_revision.filter(|r| *r > 0);
    let (replay, rx, flow, min_revision) = {
        let state = shared.state.read();
        if shared.is_closed() {
            return Err(closed_error());
        }
        if let Some(from) = start_revision
            && from < state.compacted
        {
            let err = Error::Compacted {
                compact_revision: state.compacted,
            };
            return Ok(futures::stream::once(async move { Err(err) }).boxed());
        }
        let replay = match start_revision {
            Some(from) => state.history.since(from),
            None => Vec::new(),
        };
        let min_revision = start_revision.unwrap_or(0).max(state.revision + 1);
        let (tx, rx) = unbounded_channel();
        let flow = Arc::new(Flow::default());
        shared.hub.lock().register(Watcher {
            start: req.start.clone(),
            end: req.end.clone(),
            min_revision,
            tx,
            flow: flow.clone(),
        });
        (replay, rx, flow, min_revision)
    };
    tracing::trace!(
        min_revision,
        replay = replay.len(),
        "embedded watch registered"
    );
    let feed = Feed {
        shared: shared.clone(),
        start: req.start,
        end: req.end,
        replay: replay.into(),
        rx,
        flow,
        progress: req.progress_notify.then_some(shared.progress_interval),
        finished: false,
    };
    Ok(futures::stream::unfold(feed, Feed::next).boxed())
}

/// The consumer side of one watch.
struct Feed {
    shared: Arc<Shared>,
    start: Bytes,
    end: Bytes,
    replay: VecDeque<Arc<RevisionEntry>>,
    rx: UnboundedReceiver<Vec<Event>>,
    flow: Arc<Flow>,
    progress: Option<Duration>,
    finished: bool,
}

impl Feed {
    async fn next(mut self) -> Option<(Result<WatchResponse>, Feed)> {
        if self.finished {
            return None;
        }
        if let Some(events) = self.replay_chunk() {
            return Some((Ok(WatchResponse::Events(events)), self));
        }
        loop {
            let received = match self.progress {
                Some(every) => tokio::time::timeout(every, self.rx.recv()).await.ok(),
                None => Some(self.rx.recv().await),
            };
            match received {
                Some(Some(events)) => {
                    self.flow.buffered.fetch_sub(events.len(), Ordering::AcqRel);
                    return Some((Ok(WatchResponse::Events(events)), self));
                }
                Some(None) => {
                    self.finished = true;
                    let err = if self.flow.overflowed.load(Ordering::Acquire) {
                        Error::Unavailable {
                            message: format!(
                                "watch fell more than {} events behind; re-watch from the \
                                 last delivered revision + 1",
                                self.shared.watch_buffer
                            ),
                            retry_after: None,
                            source: None,
                        }
                    } else {
                        closed_error()
                    };
                    return Some((Err(err), self));
                }
                None => {
                    // Idle. Everything up to the revision read here was
                    // queued before the read (the writer queues under the
                    // write lock), so an empty queue means it was delivered.
                    let revision = self.shared.state.read().revision;
                    if self.rx.is_empty() {
                        return Some((Ok(WatchResponse::Progress { revision }), self));
                    }
                }
            }
        }
    }

    /// The next replay message: whole revisions, filtered to the range.
    fn replay_chunk(&mut self) -> Option<Vec<Event>> {
        let bounds = key_bounds(&self.start, &self.end)?;
        let mut events = Vec::new();
        while events.len() < REPLAY_CHUNK_EVENTS {
            let Some(entry) = self.replay.pop_front() else {
                break;
            };
            events.extend(
                entry
                    .events
                    .iter()
                    .filter(|ev| bounds_contain(&bounds, &ev.kv.key))
                    .cloned(),
            );
        }
        (!events.is_empty()).then_some(events)
    }
}

fn closed_error() -> Error {
    Error::Unavailable {
        message: "embedded store closed; re-watch from the last delivered revision + 1".into(),
        retry_after: None,
        source: None,
    }
}
