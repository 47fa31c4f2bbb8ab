//! The watch cache: per resource prefix, one storage watch feeds an
//! in-memory copy of every workspace's objects, a bounded window of recent
//! events and the fan-out to every watcher of that prefix. Lists, watches
//! and `resourceVersion=0` reads are served from it; consistent reads wait
//! until it has caught up with storage (see [`consistent`]).
//!
//! Caches are created on first use of a prefix (so an unused resource costs
//! nothing, and CRD stores built at runtime get one too) and are shared by
//! every `ResourceStore` on the same prefix (core/v1 and events.k8s.io/v1
//! Events; the versions of one CRD). Until a cache has loaded, and for
//! reads it cannot answer (a revision older than its window), callers read
//! storage as before.

mod cache;
mod consistent;
mod fanout;
mod window;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use storage::{KeyValue, Revision, Store};

pub use cache::WatchCache;
pub use fanout::{CacheEvent, Ended};

use crate::keys::ResourcePrefix;
use crate::options::ReadFrom;

/// Every prefix's cache, created lazily.
pub struct WatchCaches {
    store: Arc<dyn Store>,
    caches: Mutex<HashMap<Bytes, Arc<WatchCache>>>,
    /// See [`WatchCaches::trust_watch_delivery`].
    trusted: Arc<AtomicBool>,
    /// See [`WatchCaches::set_enabled`].
    enabled: AtomicBool,
}

/// One cache's figures, for `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheStats {
    /// The resource prefix (`/registry/core/configmaps/`).
    pub prefix: String,
    /// The API group (`""` for core) and resource of the prefix.
    pub group: String,
    pub resource: String,
    pub ready: bool,
    /// Objects cached, across all workspaces.
    pub objects: usize,
    /// Key and value bytes of the cached objects.
    pub bytes: usize,
    /// Events in the recent-event window.
    pub window_events: usize,
    pub watchers: usize,
    /// The revision the cache has applied.
    pub revision: Revision,
    /// How far the cache is behind the store's current revision (the
    /// store's revision also moves with writes to other prefixes, which
    /// a cache hears of only through progress notifications).
    pub lag: Revision,
}

impl WatchCaches {
    pub fn new(store: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(WatchCaches {
            store,
            caches: Mutex::new(HashMap::new()),
            trusted: Arc::new(AtomicBool::new(false)),
            enabled: AtomicBool::new(true),
        })
    }

    /// Turns serving from the caches on or off (on by default); off, every
    /// read and watch goes to storage as it would without a cache (tests of
    /// storage semantics, benchmarks comparing the two).
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Declares that the engine delivers every event to a watcher before
    /// the write is visible and sends honest progress notifications (the
    /// embedded engine; not etcd before 3.4.31/3.5.13). Consistent reads
    /// are then answered from the cache after a drain of its watch;
    /// otherwise only when the cache already holds the quorum revision.
    /// Set before the first request.
    pub fn trust_watch_delivery(&self, trusted: bool) {
        self.trusted.store(trusted, Ordering::Relaxed);
    }

    /// The cache of `prefix`, started on first use.
    pub fn for_prefix(&self, prefix: &ResourcePrefix) -> Arc<WatchCache> {
        let mut caches = self.caches.lock();
        if let Some(c) = caches.get(prefix.as_bytes()) {
            return c.clone();
        }
        let key = Bytes::copy_from_slice(prefix.as_bytes());
        let cache = Arc::new(WatchCache::new(
            key.clone(),
            self.store.clone(),
            self.trusted.clone(),
        ));
        caches.insert(key, cache.clone());
        tokio::spawn(cache.clone().run());
        cache
    }

    /// Figures of every cache started so far (one storage read for the
    /// current revision).
    pub async fn stats(&self) -> Vec<CacheStats> {
        let current = self.store.current_revision().await.unwrap_or(0);
        let caches: Vec<Arc<WatchCache>> = self.caches.lock().values().cloned().collect();
        let mut out: Vec<CacheStats> = caches
            .iter()
            .map(|c| {
                c.note_storage_revision(current);
                let disabled = c.disabled.load(Ordering::Relaxed);
                let s = c.state.read();
                let prefix = String::from_utf8_lossy(&c.prefix).into_owned();
                let mut parts = prefix.trim_end_matches('/').rsplit('/');
                let resource = parts.next().unwrap_or("").to_owned();
                let group = match parts.next().unwrap_or("") {
                    "core" => String::new(),
                    g => g.to_owned(),
                };
                CacheStats {
                    prefix,
                    group,
                    resource,
                    ready: s.ready && !disabled,
                    objects: s.objects.len(),
                    bytes: s.bytes,
                    window_events: s.window.len(),
                    watchers: s.watchers.len(),
                    revision: s.revision,
                    lag: (current - s.revision).max(0),
                }
            })
            .collect();
        out.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        out
    }
}

impl WatchCache {
    /// The revision a read of `from` is served at from this cache, after
    /// waiting for the cache to be fresh enough; `None` means read storage.
    pub async fn read_at(&self, from: ReadFrom) -> Option<Revision> {
        if !self.is_ready() {
            return None;
        }
        let trusted = self.trusted.load(Ordering::Relaxed);
        match from {
            ReadFrom::Any => Some(self.revision()),
            ReadFrom::Exact(x) => Some(x),
            ReadFrom::NotOlderThan(x) => {
                if self.revision() >= x {
                    return Some(self.revision());
                }
                if trusted && self.fence_wait().await && self.revision() >= x {
                    return Some(self.revision());
                }
                None
            }
            ReadFrom::Latest if trusted => self.fence_wait().await.then(|| self.revision()),
            ReadFrom::Latest => {
                let target = self.store().current_revision().await.ok()?;
                self.note_storage_revision(target);
                let rev = self.revision();
                (rev >= target).then_some(rev)
            }
        }
    }

    /// A GET of `key` from this cache, at least as fresh as `from` asks
    /// (the same freshness rules as [`WatchCache::read_at`]): the object
    /// (`None`: absent) and the revision it was read at. `None` means read
    /// storage (not loaded, or not caught up with `from` in time).
    pub async fn get(&self, key: &[u8], from: ReadFrom) -> Option<(Option<KeyValue>, Revision)> {
        let at = self.read_at(from).await?;
        // The current state is served: it is at least `at` (revisions only
        // grow), so it is as fresh as asked.
        let (kv, rev) = self.get_current(key)?;
        (rev >= at).then_some((kv, rev))
    }

    async fn fence_wait(&self) -> bool {
        let ticket = self.fence.ticket();
        self.fence.wait(ticket).await
    }
}

/// Read-only access for the object quota: counting from a cache that runs
/// already, never starting one (a cache holds every object of its prefix).
impl WatchCaches {
    /// The cache of `prefix` if it was started and is ready to answer.
    pub fn ready_cache(&self, prefix: &ResourcePrefix) -> Option<Arc<WatchCache>> {
        if !self.enabled() {
            return None;
        }
        let cache = self.caches.lock().get(prefix.as_bytes()).cloned()?;
        cache.is_ready().then_some(cache)
    }
}

impl WatchCache {
    /// How many objects `[start, end)` holds at the revision the cache has
    /// applied, with that revision; `None` while not ready. Costs a walk of
    /// that range only (one workspace's objects), not of the whole prefix.
    pub fn count_now(&self, start: &[u8], end: &[u8]) -> Option<(usize, Revision)> {
        let state = self.state.read();
        if !state.ready || self.disabled.load(Ordering::Relaxed) {
            return None;
        }
        let n = state
            .objects
            .range::<[u8], _>((
                std::ops::Bound::Included(start),
                std::ops::Bound::Excluded(end),
            ))
            .count();
        Some((n, state.revision))
    }
}
