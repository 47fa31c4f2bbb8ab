//! Watches: replay from history, then live events, with no gap and no
//! duplicate between the two.
//!
//! The hand-off follows etcd's synced/unsynced split. The writer applies a
//! batch to the state and queues it for the registered watchers in one step
//! under the state's write lock. A new watch, holding the read lock, copies
//! the history entries it must replay (revisions up to the current one) and
//! registers itself: every revision is then either in its replay or
//! delivered live, never both.
//!
//! Fan-out costs what the matching watchers cost, not what all watchers
//! cost: the hub indexes watchers by their key range. Prefix ranges (the
//! usual case: `[p, prefix_end(p))`) sit in a map keyed by the prefix, and an
//! event key `k` looks up `k[..len]` for each distinct registered prefix
//! length; single-key watches sit in a map keyed by the key; any other
//! range is checked against each event (there are few). The work under the
//! write lock per matching watcher is one small push: a delivery shares the
//! batch (`Arc`) and names the events it picks by position; the events are
//! cloned by the watch's own task. Wake-ups happen after the writer releases
//! the state lock ([`Wakeups`]).
//!
//! Live delivery never blocks the writer: each watcher has an unbounded
//! queue with a bound on the events buffered in it. A watcher that falls
//! further behind is cut off with an error telling the client to re-watch
//! from its last revision, rather than growing without bound or silently
//! dropping events. A dropped watch stream reports itself to the hub, which
//! forgets it at its next registration or notification.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use futures::task::AtomicWaker;
use parking_lot::Mutex;
use tokio::time::{Instant, Sleep};

use super::Shared;
use super::history::RevisionEntry;
use super::mvcc::{bounds_contain, key_bounds};
use crate::{Error, Event, Result, Revision, WatchRequest, WatchResponse, WatchStream, prefix_end};

/// Replayed history is sent in messages of about this many events (whole
/// revisions only), so a long replay does not build one giant vector.
const REPLAY_CHUNK_EVENTS: usize = 1024;

/// An emptied queue larger than this gives its memory back, so a burst
/// does not pin memory in an idle watch.
const KEEP_QUEUE_CAPACITY: usize = 8;

/// Index of a watcher in the hub's table (reused after removal).
type WatcherId = u32;

/// Watch streams dropped since the hub last looked: (id, serial).
type Dropped = Arc<Mutex<Vec<(WatcherId, u64)>>>;

/// The registered (live) watchers, indexed by key range.
#[derive(Default)]
pub struct Hub {
    watchers: Vec<Option<Watcher>>,
    free: Vec<WatcherId>,
    live: usize,
    next_serial: u64,
    /// Prefix watches by prefix.
    prefixes: HashMap<Bytes, Vec<WatcherId>>,
    /// Distinct prefixes in `prefixes` by length: the lengths an event key
    /// is cut at to look its prefixes up.
    prefix_lens: BTreeMap<usize, usize>,
    /// Single-key watches by key.
    exact: HashMap<Bytes, Vec<WatcherId>>,
    /// Every other range, checked against each event.
    ranges: Vec<WatcherId>,
    dropped: Dropped,
    /// Scratch for `notify`: (watcher, entry index, event index).
    matches: Vec<(WatcherId, u32, u32)>,
}

struct Watcher {
    /// Tells a recycled id's new watcher from a dropped stream's report.
    serial: u64,
    place: Place,
    /// Live events below this revision are not for this watch (a start
    /// revision in the future).
    min_revision: Revision,
    slot: Arc<Slot>,
}

/// Where a watcher is indexed, by the shape of its range.
enum Place {
    Prefix(Bytes),
    Exact(Bytes),
    Range(Bytes, Bytes),
    /// An empty range: never matches.
    Nowhere,
}

impl Place {
    fn of(start: &Bytes, end: &Bytes) -> Place {
        if key_bounds(start, end).is_none() {
            Place::Nowhere
        } else if end.is_empty() {
            Place::Exact(start.clone())
        } else if *end == prefix_end(start) {
            // `[p, prefix_end(p))` holds exactly the keys starting with `p`
            // (`prefix_end` drops trailing 0xff bytes, and "\0" is no bound).
            Place::Prefix(start.clone())
        } else {
            Place::Range(start.clone(), end.clone())
        }
    }
}

/// One committed batch, shared by every delivery made from it.
type Batch = Arc<[Arc<RevisionEntry>]>;

/// Part of one batch for one watcher: always whole revisions of its range.
struct Delivery {
    batch: Batch,
    picks: Picks,
    /// Events picked (counted against the watcher's buffer bound).
    count: usize,
}

/// Which events of the batch, by (entry, event) position.
enum Picks {
    All,
    One(u32, u32),
    Some(Vec<(u32, u32)>),
}

impl Delivery {
    fn events(&self) -> Vec<Event> {
        match &self.picks {
            Picks::All => self
                .batch
                .iter()
                .flat_map(|entry| entry.events.iter())
                .cloned()
                .collect(),
            Picks::One(e, v) => self.event(*e, *v).into_iter().collect(),
            Picks::Some(picks) => picks
                .iter()
                .filter_map(|(e, v)| self.event(*e, *v))
                .collect(),
        }
    }

    fn event(&self, entry: u32, event: u32) -> Option<Event> {
        self.batch
            .get(entry as usize)?
            .events
            .get(event as usize)
            .cloned()
    }
}

/// A watcher's queue, shared by its hub entry (producer) and its stream.
#[derive(Default)]
struct Slot {
    queue: Mutex<Queue>,
    waker: AtomicWaker,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Delivery>,
    /// Events in `items`.
    buffered: usize,
    /// Set once: the stream ends with this after the queued items.
    end: Option<End>,
}

#[derive(Clone, Copy)]
enum End {
    /// Cut off for falling behind.
    Overflowed,
    /// The store closed.
    Closed,
}

enum Pushed {
    /// Queued; the stream must be woken (its queue was empty).
    Wake,
    Queued,
    /// Over the bound: the watch is ended instead.
    Overflowed,
}

enum Popped {
    Item(Delivery),
    End(End),
    Empty,
}

impl Slot {
    fn push(&self, delivery: Delivery, max_buffered: usize) -> Pushed {
        let mut q = self.queue.lock();
        if q.end.is_some() {
            return Pushed::Queued;
        }
        if q.buffered + delivery.count > max_buffered {
            q.end = Some(End::Overflowed);
            return Pushed::Overflowed;
        }
        let wake = q.items.is_empty();
        q.buffered += delivery.count;
        q.items.push_back(delivery);
        if wake { Pushed::Wake } else { Pushed::Queued }
    }

    fn end(&self, why: End) {
        self.queue.lock().end.get_or_insert(why);
        self.waker.wake();
    }

    fn pop(&self) -> Popped {
        let mut q = self.queue.lock();
        if let Some(delivery) = q.items.pop_front() {
            q.buffered = q.buffered.saturating_sub(delivery.count);
            if q.items.is_empty() && q.items.capacity() > KEEP_QUEUE_CAPACITY {
                q.items = VecDeque::new();
            }
            return Popped::Item(delivery);
        }
        match q.end {
            Some(why) => Popped::End(why),
            None => Popped::Empty,
        }
    }

    /// Nothing queued and not ended.
    fn is_idle(&self) -> bool {
        let q = self.queue.lock();
        q.items.is_empty() && q.end.is_none()
    }
}

/// Streams to wake once the writer has released the state lock.
#[must_use = "the woken streams must be woken"]
pub struct Wakeups(Vec<Arc<Slot>>);

impl Wakeups {
    pub fn wake(self) {
        for slot in self.0 {
            slot.waker.wake();
        }
    }
}

impl Hub {
    /// Queues a committed batch for the watchers whose ranges it touches.
    /// Called by the writer with the state write lock held; the returned
    /// wake-ups are for after the lock is released.
    pub fn notify(&mut self, entries: &[Arc<RevisionEntry>], max_buffered: usize) -> Wakeups {
        self.reap();
        let mut wake = Vec::new();
        if self.live == 0 || entries.is_empty() {
            return Wakeups(wake);
        }
        let mut matches = std::mem::take(&mut self.matches);
        matches.clear();
        let mut total = 0usize;
        for (e, entry) in entries.iter().enumerate() {
            for (v, event) in entry.events.iter().enumerate() {
                total += 1;
                self.candidates(&event.kv.key, |id| matches.push((id, e as u32, v as u32)));
            }
        }
        if !matches.is_empty() {
            // Per watcher, in (revision, position) order.
            matches.sort_unstable();
            let batch: Batch = Arc::from(entries);
            let mut overflowed = Vec::new();
            for group in matches.chunk_by(|a, b| a.0 == b.0) {
                let id = group[0].0;
                let Some(Some(w)) = self.watchers.get(id as usize) else {
                    continue;
                };
                // Entries are in revision order, so the revisions below the
                // watch's start come first.
                let skip = group.partition_point(|(_, e, _)| {
                    entries
                        .get(*e as usize)
                        .is_some_and(|entry| entry.revision < w.min_revision)
                });
                let group = &group[skip..];
                let picks = match group {
                    [] => continue,
                    _ if group.len() == total => Picks::All,
                    [(_, e, v)] => Picks::One(*e, *v),
                    _ => Picks::Some(group.iter().map(|(_, e, v)| (*e, *v)).collect()),
                };
                let delivery = Delivery {
                    batch: batch.clone(),
                    picks,
                    count: group.len(),
                };
                match w.slot.push(delivery, max_buffered) {
                    Pushed::Wake => wake.push(w.slot.clone()),
                    Pushed::Queued => {}
                    Pushed::Overflowed => {
                        wake.push(w.slot.clone());
                        overflowed.push(id);
                    }
                }
            }
            for id in overflowed {
                self.remove(id);
            }
        }
        matches.clear();
        self.matches = matches;
        Wakeups(wake)
    }

    /// Calls `f` with every watcher whose range holds `key`, once each.
    fn candidates(&self, key: &[u8], mut f: impl FnMut(WatcherId)) {
        for &len in self.prefix_lens.range(..=key.len()).map(|(len, _)| len) {
            if let Some(ids) = key.get(..len).and_then(|p| self.prefixes.get(p)) {
                ids.iter().copied().for_each(&mut f);
            }
        }
        if let Some(ids) = self.exact.get(key) {
            ids.iter().copied().for_each(&mut f);
        }
        for &id in &self.ranges {
            if let Some(Some(w)) = self.watchers.get(id as usize)
                && let Place::Range(start, end) = &w.place
                && key_bounds(start, end).is_some_and(|b| bounds_contain(&b, key))
            {
                f(id);
            }
        }
    }

    fn register(
        &mut self,
        start: &Bytes,
        end: &Bytes,
        min_revision: Revision,
        slot: Arc<Slot>,
    ) -> (WatcherId, u64) {
        // Streams dropped while nothing was written are forgotten here too,
        // so an idle store does not accumulate dead watchers.
        self.reap();
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.watchers.push(None);
                (self.watchers.len() - 1) as WatcherId
            }
        };
        let place = Place::of(start, end);
        match &place {
            Place::Prefix(prefix) => {
                let ids = self.prefixes.entry(prefix.clone()).or_default();
                if ids.is_empty() {
                    *self.prefix_lens.entry(prefix.len()).or_default() += 1;
                }
                ids.push(id);
            }
            Place::Exact(key) => self.exact.entry(key.clone()).or_default().push(id),
            Place::Range(..) => self.ranges.push(id),
            Place::Nowhere => {}
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        if let Some(entry) = self.watchers.get_mut(id as usize) {
            *entry = Some(Watcher {
                serial,
                place,
                min_revision,
                slot,
            });
        }
        self.live += 1;
        (id, serial)
    }

    fn remove(&mut self, id: WatcherId) {
        let Some(w) = self.watchers.get_mut(id as usize).and_then(Option::take) else {
            return;
        };
        self.live -= 1;
        self.free.push(id);
        match &w.place {
            Place::Prefix(prefix) => {
                if let Some(ids) = self.prefixes.get_mut(prefix) {
                    ids.retain(|x| *x != id);
                    if ids.is_empty() {
                        self.prefixes.remove(prefix);
                        if let Some(n) = self.prefix_lens.get_mut(&prefix.len()) {
                            *n -= 1;
                            if *n == 0 {
                                self.prefix_lens.remove(&prefix.len());
                            }
                        }
                    }
                }
            }
            Place::Exact(key) => {
                if let Some(ids) = self.exact.get_mut(key) {
                    ids.retain(|x| *x != id);
                    if ids.is_empty() {
                        self.exact.remove(key);
                    }
                }
            }
            Place::Range(..) => self.ranges.retain(|x| *x != id),
            Place::Nowhere => {}
        }
    }

    /// Forgets the watchers whose streams were dropped.
    fn reap(&mut self) {
        let dropped = std::mem::take(&mut *self.dropped.lock());
        for (id, serial) in dropped {
            if let Some(Some(w)) = self.watchers.get(id as usize)
                && w.serial == serial
            {
                self.remove(id);
            }
        }
    }

    /// Ends every watch (the store is closing), after what it has queued.
    pub fn close(&mut self) {
        for w in self.watchers.drain(..).flatten() {
            w.slot.end(End::Closed);
        }
        self.free.clear();
        self.live = 0;
        self.prefixes.clear();
        self.prefix_lens.clear();
        self.exact.clear();
        self.ranges.clear();
    }

    pub fn len(&self) -> usize {
        self.live
    }
}

/// Starts a watch: see the module documentation for the hand-off.
pub fn open(shared: &Arc<Shared>, req: WatchRequest) -> Result<WatchStream> {
    let start_revision = req.start_revision.filter(|r| *r > 0);
    let slot = Arc::new(Slot::default());
    let (replay, id, serial, dropped, min_revision) = {
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
            return Ok(Box::pin(futures::stream::once(async move { Err(err) })));
        }
        let replay = match start_revision {
            Some(from) => state.history.since(from),
            None => Vec::new(),
        };
        let min_revision = start_revision.unwrap_or(0).max(state.revision + 1);
        let mut hub = shared.hub.lock();
        let (id, serial) = hub.register(&req.start, &req.end, min_revision, slot.clone());
        (replay, id, serial, hub.dropped.clone(), min_revision)
    };
    tracing::trace!(
        min_revision,
        replay = replay.len(),
        "embedded watch registered"
    );
    let progress = req.progress_notify.then(|| {
        let every = shared.progress_interval;
        Progress {
            every,
            timer: Box::pin(tokio::time::sleep(every)),
        }
    });
    Ok(Box::pin(Feed {
        shared: shared.clone(),
        start: req.start,
        end: req.end,
        replay: replay.into(),
        slot,
        progress,
        finished: false,
        dropped,
        id,
        serial,
    }))
}

/// The consumer side of one watch.
struct Feed {
    shared: Arc<Shared>,
    start: Bytes,
    end: Bytes,
    replay: VecDeque<Arc<RevisionEntry>>,
    slot: Arc<Slot>,
    progress: Option<Progress>,
    finished: bool,
    /// Where to report this stream's drop, and its hub entry.
    dropped: Dropped,
    id: WatcherId,
    serial: u64,
}

struct Progress {
    every: Duration,
    timer: Pin<Box<Sleep>>,
}

impl Stream for Feed {
    type Item = Result<WatchResponse>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        if let Some(events) = this.replay_chunk() {
            this.rearm();
            return Poll::Ready(Some(Ok(WatchResponse::Events(events))));
        }
        loop {
            match this.slot.pop() {
                Popped::Item(delivery) => {
                    this.rearm();
                    return Poll::Ready(Some(Ok(WatchResponse::Events(delivery.events()))));
                }
                Popped::End(why) => {
                    this.finished = true;
                    return Poll::Ready(Some(Err(this.end_error(why))));
                }
                Popped::Empty => {}
            }
            this.slot.waker.register(cx.waker());
            if !this.slot.is_idle() {
                continue; // queued between the pop and the registration
            }
            let Some(progress) = &mut this.progress else {
                return Poll::Pending;
            };
            if progress.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // Idle. Everything up to the revision read here was queued
            // before the read (the writer queues under the write lock), so
            // an empty queue means it was delivered.
            let revision = this.shared.state.read().revision;
            this.rearm();
            if this.slot.is_idle() {
                return Poll::Ready(Some(Ok(WatchResponse::Progress { revision })));
            }
        }
    }
}

impl Feed {
    /// Restarts the idle timer (something was just delivered).
    fn rearm(&mut self) {
        if let Some(progress) = &mut self.progress {
            let deadline = Instant::now() + progress.every;
            progress.timer.as_mut().reset(deadline);
        }
    }

    /// The next replay message: whole revisions, filtered to the range.
    fn replay_chunk(&mut self) -> Option<Vec<Event>> {
        if self.replay.is_empty() {
            return None;
        }
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
        if self.replay.is_empty() {
            self.replay = VecDeque::new(); // give the replay's memory back
        }
        (!events.is_empty()).then_some(events)
    }

    fn end_error(&self, why: End) -> Error {
        match why {
            End::Overflowed => Error::Unavailable {
                message: format!(
                    "watch fell more than {} events behind; re-watch from the \
                     last delivered revision + 1",
                    self.shared.watch_buffer
                ),
                retry_after: None,
                source: None,
            },
            End::Closed => closed_error(),
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.dropped.lock().push((self.id, self.serial));
    }
}

fn closed_error() -> Error {
    Error::Unavailable {
        message: "embedded store closed; re-watch from the last delivered revision + 1".into(),
        retry_after: None,
        source: None,
    }
}
