//! Kubernetes watch over a storage watch: start points (a revision, the
//! current state as synthetic ADDED events, watch-list with the
//! `k8s.io/initial-events-end` bookmark), selector transitions, bookmarks,
//! and a compacted start reported as an in-stream 410 ERROR event.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Map, Value, json};
use storage::{EventKind, WatchRequest, WatchResponse};
use tokio::sync::mpsc;

use crate::cluster::ClusterScope;
use crate::metadata::meta_mut;
use crate::options::{ListOptions, ReadFrom};
use crate::resource::Object;
use crate::status::{self, ApiResult};
use crate::store::{Filter, ResourceStore};

/// Bookmarks are sent at most this often (upstream: about once a minute).
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);
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

/// The events of one watch; ends when the storage watch ends or fails.
pub type WatchEvents = tokio_stream::wrappers::ReceiverStream<WatchEvent>;

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
        self: &std::sync::Arc<Self>,
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
        Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
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
