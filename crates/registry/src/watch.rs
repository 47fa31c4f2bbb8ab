//! Kubernetes watch: start points (a revision, the current state as
//! synthetic ADDED events, watch-list with the `k8s.io/initial-events-end`
//! bookmark), selector transitions, bookmarks, and a compacted start
//! reported as an in-stream 410 ERROR event. Served from the prefix's watch
//! cache (shared events, no storage watch of its own) when it covers the
//! start; otherwise from a storage watch of its own.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::{Map, Value, json};
use storage::{EventKind, KeyValue, Revision, WatchRequest, WatchResponse};
use tokio::sync::mpsc;

use crate::cluster::ClusterScope;
use crate::metadata::meta_mut;
use crate::options::{ListOptions, ReadFrom};
use crate::resource::Object;
use crate::status::{self, ApiError, ApiResult};
use crate::store::{Filter, ResourceStore, splice_resource_version};
use crate::watch_cache::{CacheEvent, Ended, WatchCache};

/// Storage-backed watches send bookmarks at most this often.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);
/// Cache-backed watches send a bookmark this often when the revision moved.
const CACHE_BOOKMARK_INTERVAL: Duration = Duration::from_secs(5);
/// Without `timeoutSeconds` a watch lasts 30 to 60 minutes, like kube's.
fn default_watch_timeout() -> Duration {
    use rand::Rng;
    Duration::from_secs(rand::rng().random_range(1800..3600))
}

/// Events buffered per watcher before the producer waits.
const WATCH_BUFFER: usize = 256;

#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent {
    Added(Value),
    Modified(Value),
    Deleted(Value),
    Bookmark(Value),
    /// A failure Status; the stream ends after it.
    Error(Value),
}

impl WatchEvent {
    pub fn type_str(&self) -> &'static str {
        match self {
            WatchEvent::Added(_) => "ADDED",
            WatchEvent::Modified(_) => "MODIFIED",
            WatchEvent::Deleted(_) => "DELETED",
            WatchEvent::Bookmark(_) => "BOOKMARK",
            WatchEvent::Error(_) => "ERROR",
        }
    }

    pub fn object(&self) -> &Value {
        match self {
            WatchEvent::Added(o)
            | WatchEvent::Modified(o)
            | WatchEvent::Deleted(o)
            | WatchEvent::Bookmark(o)
            | WatchEvent::Error(o) => o,
        }
    }

    pub fn object_mut(&mut self) -> &mut Value {
        match self {
            WatchEvent::Added(o)
            | WatchEvent::Modified(o)
            | WatchEvent::Deleted(o)
            | WatchEvent::Bookmark(o)
            | WatchEvent::Error(o) => o,
        }
    }
}

/// The events of one watch; ends at its timeout, or after an ERROR event.
pub type WatchEvents = Pin<Box<dyn Stream<Item = WatchEvent> + Send>>;
/// A watch as JSON lines (`{"type":…,"object":…}\n`), ready to stream.
pub type WatchLines = Pin<Box<dyn Stream<Item = Bytes> + Send>>;

/// The JSON line of one event.
pub fn event_line(ev: &WatchEvent) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": ev.type_str(), "object": ev.object()}))
        .unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// What a cache-backed watch produces before per-store translation.
enum Produced {
    Initial(KeyValue),
    Event(Arc<CacheEvent>),
    Bookmark(Revision, bool),
    Error(Value),
}

/// Where a watch is served from.
enum Source {
    Storage(WatchEvents),
    Cache(Pin<Box<dyn Stream<Item = Produced> + Send>>),
}

/// A cache watcher's position; unregisters when dropped.
struct Feed {
    cache: Arc<WatchCache>,
    collection: Bytes,
    id: u64,
    initial: std::vec::IntoIter<KeyValue>,
    /// The revision of the initial-events-end bookmark still to send.
    initial_end: Option<Revision>,
    replay: VecDeque<Arc<CacheEvent>>,
    rx: mpsc::Receiver<Arc<CacheEvent>>,
    ended: Arc<OnceLock<Ended>>,
    /// Events at or below this revision are not sent.
    after: Revision,
    /// The newest revision sent (event or bookmark).
    last: Revision,
    bookmarks: bool,
    next_bookmark: tokio::time::Instant,
    deadline: tokio::time::Instant,
    done: bool,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.cache.unregister(&self.collection, self.id);
    }
}

impl Feed {
    async fn next(&mut self) -> Option<Produced> {
        if self.done {
            return None;
        }
        if let Some(kv) = self.initial.next() {
            return Some(Produced::Initial(kv));
        }
        if let Some(rev) = self.initial_end.take() {
            return Some(Produced::Bookmark(rev.max(1), true));
        }
        while let Some(ev) = self.replay.pop_front() {
            if ev.revision() > self.after {
                self.last = self.last.max(ev.revision());
                return Some(Produced::Event(ev));
            }
        }
        loop {
            tokio::select! {
                biased;
                ev = self.rx.recv() => match ev {
                    Some(ev) => {
                        if ev.revision() <= self.after {
                            continue;
                        }
                        self.last = self.last.max(ev.revision());
                        return Some(Produced::Event(ev));
                    }
                    None => {
                        self.done = true;
                        let from = self.last.max(self.after);
                        return match self.ended.get() {
                            Some(Ended::TooSlow) => Some(Produced::Error(
                                ApiError::expired("watch channel full, client too slow; relist")
                                    .to_status(),
                            )),
                            Some(Ended::Expired { compacted }) => Some(Produced::Error(
                                status::watch_expired(from, *compacted).to_status(),
                            )),
                            None => None,
                        };
                    }
                },
                () = tokio::time::sleep_until(self.deadline) => {
                    self.done = true;
                    // A last bookmark lets the client resume from here.
                    return (self.bookmarks && self.last > 0)
                        .then_some(Produced::Bookmark(self.last, false));
                }
                () = tokio::time::sleep_until(self.next_bookmark), if self.bookmarks => {
                    self.next_bookmark = tokio::time::Instant::now() + CACHE_BOOKMARK_INTERVAL;
                    // Every event up to the cache revision read here was
                    // queued before it was published: with the queue empty,
                    // all of them were sent.
                    let rev = self.cache.revision();
                    if self.rx.is_empty() && rev > self.last {
                        self.last = rev;
                        return Some(Produced::Bookmark(rev, false));
                    }
                }
            }
        }
    }
}

impl ResourceStore {
    fn bookmark(&self, revision: i64, initial_end: bool) -> Value {
        let mut metadata = Map::new();
        metadata.insert("resourceVersion".into(), revision.to_string().into());
        metadata.insert("creationTimestamp".into(), Value::Null);
        if initial_end {
            metadata.insert(
                "annotations".into(),
                json!({"k8s.io/initial-events-end": "true"}),
            );
        }
        json!({
            "kind": self.descriptor.gvk.kind,
            "apiVersion": self.descriptor.api_version(),
            "metadata": metadata,
        })
    }

    /// Starts a watch. Validation errors and unreachable storage fail the
    /// call; a compacted start revision is reported in the stream.
    pub async fn watch(
        self: &Arc<Self>,
        scope: &ClusterScope,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<WatchEvents> {
        let filter = Arc::new(self.filter(opts, scope, namespace)?);
        match self.watch_source(scope, namespace, opts).await? {
            Source::Storage(events) => Ok(events),
            Source::Cache(produced) => {
                let this = self.clone();
                Ok(Box::pin(produced.filter_map(move |p| {
                    let ev = this.produced_event(p, &filter);
                    async move { ev }
                })))
            }
        }
    }

    /// [`ResourceStore::watch`] as JSON lines. Watchers that see objects as
    /// stored (no conversion, selectors or annotation) share each event's
    /// line, encoded once for all of them.
    pub async fn watch_lines(
        self: &Arc<Self>,
        scope: &ClusterScope,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<WatchLines> {
        let filter = Arc::new(self.filter(opts, scope, namespace)?);
        let plain = filter.is_empty() && self.serves_stored_bytes(&filter);
        match self.watch_source(scope, namespace, opts).await? {
            Source::Storage(events) => Ok(Box::pin(events.map(|ev| event_line(&ev)))),
            Source::Cache(produced) => {
                let this = self.clone();
                Ok(Box::pin(produced.filter_map(move |p| {
                    let line = match p {
                        Produced::Event(ev) if plain => ev.plain_line().or_else(|| {
                            this.produced_event(Produced::Event(ev), &filter)
                                .map(|e| event_line(&e))
                        }),
                        Produced::Initial(kv) if plain => {
                            match splice_resource_version(&kv.value, kv.mod_revision) {
                                Some(obj) => {
                                    let mut line = Vec::with_capacity(obj.len() + 32);
                                    line.extend_from_slice(b"{\"type\":\"ADDED\",\"object\":");
                                    line.extend_from_slice(&obj);
                                    line.extend_from_slice(b"}\n");
                                    Some(Bytes::from(line))
                                }
                                None => this
                                    .produced_event(Produced::Initial(kv), &filter)
                                    .map(|e| event_line(&e)),
                            }
                        }
                        p => this.produced_event(p, &filter).map(|e| event_line(&e)),
                    };
                    async move { line }
                })))
            }
        }
    }

    /// One cache product as this resource's event (`None`: filtered out).
    fn produced_event(&self, p: Produced, filter: &Filter) -> Option<WatchEvent> {
        match p {
            Produced::Initial(kv) => {
                let result = (|| -> ApiResult<Option<WatchEvent>> {
                    let Some(parsed) = self
                        .descriptor
                        .prefix
                        .parse(&kv.key, self.descriptor.namespaced())
                    else {
                        return Ok(None);
                    };
                    let mut obj = self.read(&kv)?;
                    if filter.wildcard
                        && !self.context().workspaces.annotate(&mut obj, parsed.cluster)
                    {
                        return Ok(None);
                    }
                    Ok(self
                        .matches_filter(filter, &obj)
                        .then_some(WatchEvent::Added(Value::Object(obj))))
                })();
                result.unwrap_or_else(|e| Some(WatchEvent::Error(e.to_status())))
            }
            Produced::Event(ev) => self
                .translate(&ev.event, filter)
                .unwrap_or_else(|e| Some(WatchEvent::Error(e.to_status()))),
            Produced::Bookmark(rev, end) => Some(WatchEvent::Bookmark(self.bookmark(rev, end))),
            Produced::Error(v) => Some(WatchEvent::Error(v)),
        }
    }

    /// The watch cache when it covers the start, else a storage watch.
    async fn watch_source(
        self: &Arc<Self>,
        scope: &ClusterScope,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<Source> {
        let from = opts.watch_read_from()?;
        // Validates the selectors before anything starts.
        self.filter(opts, scope, namespace)?;
        let send_initial = opts.send_initial_events == Some(true);
        if let Some(cache) = self.watch_cache() {
            let collection = Bytes::from(self.descriptor.prefix.collection(scope, namespace));
            let registered = match from {
                ReadFrom::Exact(x) | ReadFrom::NotOlderThan(x) if !send_initial => {
                    cache.register(collection.clone(), Some(x))
                }
                _ => match cache.read_at(from).await {
                    Some(_) => cache.register(collection.clone(), None),
                    None => None,
                },
            };
            if let Some(reg) = registered {
                let timeout = opts
                    .timeout_seconds
                    .filter(|t| *t > 0)
                    .map(Duration::from_secs)
                    .unwrap_or_else(default_watch_timeout);
                let now = tokio::time::Instant::now();
                let snapshot = reg.initial_revision();
                let feed = Feed {
                    cache: cache.clone(),
                    collection,
                    id: reg.receiver.id,
                    initial: reg.initial.into_iter(),
                    initial_end: snapshot.filter(|_| send_initial),
                    replay: reg.replay,
                    rx: reg.receiver.rx,
                    ended: reg.receiver.ended,
                    after: reg.revision,
                    last: reg.revision,
                    bookmarks: opts.allow_watch_bookmarks,
                    next_bookmark: now + CACHE_BOOKMARK_INTERVAL,
                    deadline: now + timeout,
                    done: false,
                };
                let stream = futures::stream::unfold(feed, |mut f| async move {
                    let p = f.next().await?;
                    Some((p, f))
                });
                return Ok(Source::Cache(Box::pin(stream)));
            }
        }
        self.watch_storage(scope, namespace, opts)
            .await
            .map(Source::Storage)
    }

    /// A watch with a storage watch of its own (the cache does not cover
    /// its start).
    async fn watch_storage(
        self: &Arc<Self>,
        scope: &ClusterScope,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<WatchEvents> {
        let from = opts.watch_read_from()?;
        let filter = self.filter(opts, scope, namespace)?;
        let send_initial = opts.send_initial_events == Some(true);
        // Where live events start, and what is replayed first.
        let (initial, start_after, requested) = match from {
            ReadFrom::Exact(x) | ReadFrom::NotOlderThan(x) if !send_initial => (None, x, x),
            _ => {
                let list_opts = ListOptions {
                    label_selector: opts.label_selector.clone(),
                    field_selector: opts.field_selector.clone(),
                    resource_version: match from {
                        ReadFrom::NotOlderThan(x) => Some(x.to_string()),
                        _ => None,
                    },
                    resource_version_match: match from {
                        ReadFrom::NotOlderThan(_) => Some("NotOlderThan".into()),
                        _ => None,
                    },
                    ..Default::default()
                };
                let listed = self.list(scope, namespace, &list_opts).await?;
                let rv = listed.resource_version;
                (Some(listed.items), rv, rv)
            }
        };
        let collection = self.descriptor.prefix.collection(scope, namespace);
        let req = WatchRequest::prefix(collection).from_revision(start_after + 1);
        let req = if opts.allow_watch_bookmarks {
            req.with_progress_notify()
        } else {
            req
        };
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let this = self.clone();
        let bookmarks = opts.allow_watch_bookmarks;
        let timeout = opts
            .timeout_seconds
            .filter(|t| *t > 0)
            .map(Duration::from_secs)
            .unwrap_or_else(default_watch_timeout);
        let deadline = tokio::time::Instant::now() + timeout;
        tokio::spawn(async move {
            this.run_watch(
                tx,
                req,
                initial,
                send_initial,
                start_after,
                requested,
                filter,
                bookmarks,
                deadline,
            )
            .await;
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_watch(
        &self,
        tx: mpsc::Sender<WatchEvent>,
        req: WatchRequest,
        initial: Option<Vec<Value>>,
        send_initial: bool,
        snapshot: i64,
        requested: i64,
        filter: Filter,
        bookmarks: bool,
        deadline: tokio::time::Instant,
    ) {
        if let Some(items) = initial {
            for item in items {
                if tx.send(WatchEvent::Added(item)).await.is_err() {
                    return;
                }
            }
            if send_initial
                && tx
                    .send(WatchEvent::Bookmark(self.bookmark(snapshot.max(1), true)))
                    .await
                    .is_err()
            {
                return;
            }
        }
        let store = self.context().store.clone();
        let mut stream = match store.watch(req).await {
            Ok(s) => s,
            Err(e) => {
                let _ = tx
                    .send(WatchEvent::Error(self.watch_error(e, requested)))
                    .await;
                return;
            }
        };
        let mut last_bookmark = Instant::now();
        let mut last_revision = snapshot;
        loop {
            let next = tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep_until(deadline) => {
                    // A last bookmark lets the client resume from here
                    // instead of replaying; then the stream ends cleanly.
                    if bookmarks && last_revision > 0 {
                        let _ = tx.send(WatchEvent::Bookmark(self.bookmark(last_revision, false))).await;
                    }
                    return;
                }
                n = stream.next() => n,
            };
            match next {
                None => return,
                Some(Err(e)) => {
                    let _ = tx
                        .send(WatchEvent::Error(self.watch_error(e, requested)))
                        .await;
                    return;
                }
                Some(Ok(WatchResponse::Progress { revision })) => {
                    if bookmarks
                        && revision > 0
                        && revision >= last_revision
                        && last_bookmark.elapsed() >= BOOKMARK_INTERVAL
                    {
                        last_bookmark = Instant::now();
                        last_revision = revision;
                        if tx
                            .send(WatchEvent::Bookmark(self.bookmark(revision, false)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
                Some(Ok(WatchResponse::Events(events))) => {
                    for ev in events {
                        last_revision = last_revision.max(ev.revision());
                        match self.translate(&ev, &filter) {
                            Ok(Some(we)) => {
                                if tx.send(we).await.is_err() {
                                    return;
                                }
                            }
                            Ok(None) => {}
                            Err(e) => {
                                let _ = tx.send(WatchEvent::Error(e.to_status())).await;
                                return;
                            }
                        }
                    }
                }
            }
        }
    }

    fn watch_error(&self, e: storage::Error, requested: i64) -> Value {
        match e {
            storage::Error::Compacted { compact_revision } => {
                status::watch_expired(requested, compact_revision).to_status()
            }
            e => status::interpret_list_error(e, &self.descriptor.qualified).to_status(),
        }
    }

    fn matches_filter(&self, filter: &Filter, obj: &Object) -> bool {
        // Reuse the list predicate (labels, fields, wildcard namespace).
        self.matches(filter, obj)
    }

    /// One storage event as a Kubernetes event, or `None` when the selectors
    /// hide it (or the key is not an object of this resource).
    fn translate(&self, ev: &storage::Event, filter: &Filter) -> ApiResult<Option<WatchEvent>> {
        let Some(parsed) = self
            .descriptor
            .prefix
            .parse(&ev.kv.key, self.descriptor.namespaced())
        else {
            return Ok(None);
        };
        let cluster = parsed.cluster;
        // Wildcard watches: annotate with the workspace; skip deleted ones.
        let read = |kv: &storage::KeyValue| -> ApiResult<Option<Object>> {
            let mut o = self.read(kv)?;
            if filter.wildcard && !self.context().workspaces.annotate(&mut o, cluster) {
                return Ok(None);
            }
            Ok(Some(o))
        };
        let rev = ev.revision();
        match ev.kind {
            EventKind::Put => {
                let Some(new) = read(&ev.kv)? else {
                    return Ok(None);
                };
                let new_match = self.matches_filter(filter, &new);
                let Some(prev) = &ev.prev_kv else {
                    return Ok(new_match.then_some(WatchEvent::Added(Value::Object(new))));
                };
                if filter.is_empty() {
                    return Ok(Some(WatchEvent::Modified(Value::Object(new))));
                }
                let Some(mut old) = read(prev)? else {
                    return Ok(None);
                };
                let old_match = self.matches_filter(filter, &old);
                Ok(match (old_match, new_match) {
                    (true, true) => Some(WatchEvent::Modified(Value::Object(new))),
                    (false, true) => Some(WatchEvent::Added(Value::Object(new))),
                    (true, false) => {
                        meta_mut(&mut old).insert("resourceVersion".into(), rev.to_string().into());
                        Some(WatchEvent::Deleted(Value::Object(old)))
                    }
                    (false, false) => None,
                })
            }
            EventKind::Delete => {
                let Some(prev) = &ev.prev_kv else {
                    return Ok(None);
                };
                let Some(mut old) = read(prev)? else {
                    return Ok(None);
                };
                if !self.matches_filter(filter, &old) {
                    return Ok(None);
                }
                meta_mut(&mut old).insert("resourceVersion".into(), rev.to_string().into());
                Ok(Some(WatchEvent::Deleted(Value::Object(old))))
            }
        }
    }
}
