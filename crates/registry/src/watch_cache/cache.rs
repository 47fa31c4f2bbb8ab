//! One resource prefix's cache: every workspace's objects in key order (so
//! a workspace, a namespace in it, or all workspaces is one key range),
//! the recent-event window, the live watchers, and the dispatcher task
//! that keeps them current from a single storage watch.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use parking_lot::RwLock;
use storage::{
    EventKind, KeyValue, RangeRequest, Revision, Store, WatchRequest, WatchResponse, WatchStream,
};

use super::consistent::Fence;
use super::fanout::{CacheEvent, Ended, Receiver, Replay, Watchers};
use super::window::Window;

/// Keys read per page when (re)loading the cache.
const LOAD_PAGE: usize = 10_000;
/// A prefix whose objects exceed this is not cached (served from storage).
pub(crate) const MAX_OBJECT_BYTES: usize = 512 * 1024 * 1024;
/// How many revisions before the current one a cache starts from.
const HISTORY: Revision = 10_000;
/// Pause before retrying a failed load or storage watch.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

pub(crate) struct State {
    pub(crate) ready: bool,
    /// Every event up to this revision is applied.
    pub(crate) revision: Revision,
    pub(crate) objects: BTreeMap<Bytes, KeyValue>,
    pub(crate) bytes: usize,
    pub(crate) window: Window,
    pub(crate) watchers: Watchers,
}

pub struct WatchCache {
    pub(crate) prefix: Bytes,
    store: Arc<dyn Store>,
    pub(crate) state: RwLock<State>,
    pub(crate) fence: Fence,
    /// Whether the engine's watch delivery is trustworthy (see
    /// `consistent`).
    pub(crate) trusted: Arc<AtomicBool>,
    /// Too large to cache: every read goes to storage.
    pub(crate) disabled: AtomicBool,
    /// The newest storage revision this cache has heard of (for lag).
    pub(crate) storage_revision: AtomicI64,
}

/// A new watcher's start.
pub(crate) struct Registered {
    /// The objects at `revision` (snapshot starts only).
    pub initial: Vec<KeyValue>,
    pub replay: Replay,
    pub receiver: Receiver,
    pub revision: Revision,
    /// Whether this started from the current state (else from `revision`).
    pub snapshot: bool,
}

impl Registered {
    /// The revision of the initial state, for snapshot starts.
    pub fn initial_revision(&self) -> Option<Revision> {
        self.snapshot.then_some(self.revision)
    }
}

enum Followed {
    Compacted(Revision),
    Failed,
}

impl WatchCache {
    pub(crate) fn new(prefix: Bytes, store: Arc<dyn Store>, trusted: Arc<AtomicBool>) -> Self {
        WatchCache {
            prefix,
            store,
            state: RwLock::new(State {
                ready: false,
                revision: 0,
                objects: BTreeMap::new(),
                bytes: 0,
                window: Window::new(0),
                watchers: Watchers::default(),
            }),
            fence: Fence::new(),
            trusted,
            disabled: AtomicBool::new(false),
            storage_revision: AtomicI64::new(0),
        }
    }

    pub fn is_ready(&self) -> bool {
        !self.disabled.load(Ordering::Relaxed) && self.state.read().ready
    }

    pub fn revision(&self) -> Revision {
        self.state.read().revision
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn note_storage_revision(&self, rev: Revision) {
        self.storage_revision.fetch_max(rev, Ordering::Relaxed);
    }

    // ----------------------------------------------------------- dispatcher

    /// Keeps the cache current for as long as the process runs: load, then
    /// follow one storage watch; resume it after a failure, reload after a
    /// compaction.
    pub(crate) async fn run(self: Arc<Self>) {
        loop {
            let rev = match self.load_with_history().await {
                Ok(Some(rev)) => rev,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(prefix = %String::from_utf8_lossy(&self.prefix), error = %e, "watch cache load failed; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            };
            let mut from = rev;
            loop {
                match self.follow(from).await {
                    Followed::Compacted(compacted) => {
                        tracing::info!(prefix = %String::from_utf8_lossy(&self.prefix), compacted, "watch cache fell behind compaction; reloading");
                        let mut state = self.state.write();
                        state.ready = false;
                        state.watchers.end_all(Ended::Expired { compacted });
                        break;
                    }
                    Followed::Failed => {
                        tokio::time::sleep(RETRY_PAUSE).await;
                        from = self.revision();
                    }
                }
            }
        }
    }

    /// A paged read of the whole prefix at one revision; replaces the
    /// cached objects. `Ok(None)`: too large, the cache turns itself off.
    ///
    /// The snapshot is taken [`HISTORY`] revisions back when storage still
    /// has them: the storage watch then replays those revisions into the
    /// window, so watches from a revision shortly before the cache started
    /// (a client that listed just before) are served from it too.
    async fn load_with_history(&self) -> storage::Result<Option<Revision>> {
        let current = self.store.current_revision().await?;
        let back = current - HISTORY;
        if back > 0 {
            match self.load(Some(back)).await {
                Err(storage::Error::Compacted { .. }) => {}
                other => return other,
            }
        }
        self.load(None).await
    }

    async fn load(&self, at: Option<Revision>) -> storage::Result<Option<Revision>> {
        let mut objects = BTreeMap::new();
        let mut bytes = 0usize;
        let mut req = RangeRequest::prefix(self.prefix.clone()).limit(LOAD_PAGE);
        let mut revision = at;
        loop {
            if let Some(r) = revision {
                req = req.at_revision(r);
            }
            let resp = self.store.range(req.clone()).await?;
            revision = Some(revision.unwrap_or(resp.revision));
            let last = resp.kvs.last().map(|kv| kv.key.clone());
            for kv in resp.kvs {
                bytes += kv.key.len() + kv.value.len();
                objects.insert(kv.key.clone(), kv);
            }
            if bytes > MAX_OBJECT_BYTES {
                tracing::warn!(prefix = %String::from_utf8_lossy(&self.prefix), bytes, "too large for the watch cache; served from storage");
                self.disabled.store(true, Ordering::Relaxed);
                return Ok(None);
            }
            match last {
                Some(k) if resp.more => req = req.starting_after(&k),
                _ => break,
            }
        }
        let rev = revision.unwrap_or(0);
        {
            let mut state = self.state.write();
            state.objects = objects;
            state.bytes = bytes;
            state.revision = rev;
            state.window = Window::new(rev);
            state.ready = true;
        }
        self.note_storage_revision(rev);
        Ok(Some(rev))
    }

    async fn follow(&self, from: Revision) -> Followed {
        let trusted = self.trusted.load(Ordering::Relaxed);
        let mut req = WatchRequest::prefix(self.prefix.clone()).from_revision(from + 1);
        if trusted {
            req = req.with_progress_notify();
        }
        let mut stream = match self.store.watch(req).await {
            Ok(s) => s,
            Err(storage::Error::Compacted { compact_revision }) => {
                return Followed::Compacted(compact_revision);
            }
            Err(e) => {
                tracing::warn!(prefix = %String::from_utf8_lossy(&self.prefix), error = %e, "watch cache storage watch failed");
                return Followed::Failed;
            }
        };
        loop {
            tokio::select! {
                biased;
                next = stream.next() => {
                    if let Some(end) = self.handle(next, trusted) {
                        return end;
                    }
                }
                () = self.fence.wake.notified() => {
                    if let Some(end) = self.drain(&mut stream, trusted).await {
                        return end;
                    }
                }
            }
        }
    }

    /// Answers the pending consistent-read tickets: what storage had at
    /// the moment read here has been applied once the stream is empty.
    async fn drain(&self, stream: &mut WatchStream, trusted: bool) -> Option<Followed> {
        let ticket = self.fence.pending();
        let Ok(rev) = self.store.current_revision().await else {
            return None;
        };
        while let Some(next) = stream.next().now_or_never() {
            if let Some(end) = self.handle(next, trusted) {
                return Some(end);
            }
        }
        if trusted {
            self.advance(rev);
            self.fence.answered(ticket);
        }
        None
    }

    /// Raises the applied revision with nothing to apply (the store's
    /// revision moved on through other prefixes).
    fn advance(&self, rev: Revision) {
        self.note_storage_revision(rev);
        let mut state = self.state.write();
        if rev > state.revision {
            state.revision = rev;
        }
    }

    fn handle(
        &self,
        next: Option<storage::Result<WatchResponse>>,
        trusted: bool,
    ) -> Option<Followed> {
        match next {
            None => Some(Followed::Failed),
            Some(Err(storage::Error::Compacted { compact_revision })) => {
                Some(Followed::Compacted(compact_revision))
            }
            Some(Err(e)) => {
                tracing::warn!(prefix = %String::from_utf8_lossy(&self.prefix), error = %e, "watch cache storage watch ended");
                Some(Followed::Failed)
            }
            Some(Ok(WatchResponse::Progress { revision })) => {
                if trusted {
                    self.advance(revision);
                }
                None
            }
            Some(Ok(WatchResponse::Events(events))) => {
                self.apply(events);
                None
            }
        }
    }

    fn apply(&self, events: Vec<storage::Event>) {
        let mut last = 0;
        let prefix_len = self.prefix.len();
        {
            let mut guard = self.state.write();
            let state = &mut *guard;
            for ev in events {
                let rev = ev.revision();
                if rev <= state.revision {
                    continue; // already loaded (a resumed watch overlaps)
                }
                match ev.kind {
                    EventKind::Put => {
                        state.bytes += ev.kv.key.len() + ev.kv.value.len();
                        if let Some(old) = state.objects.insert(ev.kv.key.clone(), ev.kv.clone()) {
                            state.bytes -= old.key.len() + old.value.len();
                        }
                    }
                    EventKind::Delete => {
                        if let Some(old) = state.objects.remove(&ev.kv.key) {
                            state.bytes -= old.key.len() + old.value.len();
                        }
                    }
                }
                let ev = Arc::new(CacheEvent::new(ev));
                state.watchers.dispatch(prefix_len, &ev);
                state.window.push(ev);
                last = last.max(rev);
            }
            if last > state.revision {
                state.revision = last;
            }
        }
        if last > 0 {
            self.note_storage_revision(last);
        }
    }

    // ---------------------------------------------------------------- reads

    /// Up to `max` objects (0: all) of `[start, end)` as of `at`, and
    /// whether more follow. `None` when the cache cannot answer for `at`
    /// (not loaded, in the future, or older than the window).
    pub(crate) fn range(
        &self,
        start: Bound<&[u8]>,
        end: &[u8],
        at: Revision,
        max: usize,
    ) -> Option<(Vec<KeyValue>, bool)> {
        let state = self.state.read();
        if !state.ready || at > state.revision || !state.window.covers(at) {
            return None;
        }
        Some(view(&state, start, end, at, max))
    }

    /// The object at `key` in the current state (`None`: absent) and the
    /// revision of that state; `None` while the cache is not loaded.
    pub(crate) fn get_current(&self, key: &[u8]) -> Option<(Option<KeyValue>, Revision)> {
        let state = self.state.read();
        if !state.ready {
            return None;
        }
        Some((state.objects.get(key).cloned(), state.revision))
    }

    /// How many objects of `[start, end)` exist as of `at`.
    pub(crate) fn count(&self, start: Bound<&[u8]>, end: &[u8], at: Revision) -> Option<usize> {
        let state = self.state.read();
        if !state.ready || at > state.revision || !state.window.covers(at) {
            return None;
        }
        let undo = state.window.undo(at, start, end);
        let mut n = state
            .objects
            .range::<[u8], _>((start, Bound::Excluded(end)))
            .count();
        for (k, before) in undo {
            let now = state.objects.contains_key(&k);
            match (now, before.is_some()) {
                (true, false) => n -= 1,
                (false, true) => n += 1,
                _ => {}
            }
        }
        Some(n)
    }

    /// Registers a watcher of `collection`: either from just after
    /// `after` (replaying the window), or from the current state (returned
    /// as `initial`). `None` when the cache cannot serve it.
    pub(crate) fn register(
        &self,
        collection: Bytes,
        after: Option<Revision>,
    ) -> Option<Registered> {
        let mut state = self.state.write();
        if !state.ready || self.disabled.load(Ordering::Relaxed) {
            return None;
        }
        let (initial, replay, revision) = match after {
            Some(x) => {
                if !state.window.covers(x) {
                    return None;
                }
                (Vec::new(), state.window.after(x, &collection), x)
            }
            None => {
                let end = storage::prefix_end(&collection);
                let rev = state.revision;
                let (items, _) = view(&state, Bound::Included(&collection), &end, rev, 0);
                (items, Replay::new(), rev)
            }
        };
        let receiver = state.watchers.add(collection);
        Some(Registered {
            initial,
            replay,
            receiver,
            revision,
            snapshot: after.is_none(),
        })
    }

    pub(crate) fn unregister(&self, collection: &[u8], id: u64) {
        self.state.write().watchers.remove(collection, id);
    }
}

/// The objects of `[start, end)` as of `at` (which the window covers): the
/// current objects with the window's later changes undone.
fn view(
    state: &State,
    start: Bound<&[u8]>,
    end: &[u8],
    at: Revision,
    max: usize,
) -> (Vec<KeyValue>, bool) {
    let mut out = Vec::new();
    let current = state
        .objects
        .range::<[u8], _>((start, Bound::Excluded(end)));
    let undo = if at < state.revision {
        state.window.undo(at, start, end)
    } else {
        BTreeMap::new()
    };
    let full = |out: &Vec<KeyValue>| max > 0 && out.len() >= max;
    if undo.is_empty() {
        let mut it = current;
        for (_, kv) in it.by_ref() {
            if full(&out) {
                return (out, true);
            }
            out.push(kv.clone());
        }
        return (out, false);
    }
    let mut current = current.peekable();
    let mut undo = undo.into_iter().peekable();
    loop {
        let next = match (current.peek(), undo.peek()) {
            (None, None) => break,
            (Some((ck, _)), Some((uk, _))) if uk.as_ref() <= ck.as_ref() => {
                let same = uk.as_ref() == ck.as_ref();
                if same {
                    current.next();
                }
                undo.next().and_then(|(_, before)| before)
            }
            (Some(_), _) => current.next().map(|(_, kv)| kv.clone()),
            (None, Some(_)) => undo.next().and_then(|(_, before)| before),
        };
        if let Some(kv) = next {
            if full(&out) {
                return (out, true);
            }
            out.push(kv);
        }
    }
    (out, false)
}
