//! [`MeteredStore`]: the [`Store`] the registry talks to, delegating every
//! method to the engine while recording latency and result per operation
//! (`wsgate_storage_operations`, `wsgate_storage_operation_duration_seconds`),
//! and refusing values above `limits.max_object_bytes`.
//!
//! The size limit lives here because this is the one place that sees the
//! bytes actually stored after defaulting, managedFields and patching, for
//! every verb alike; a refusal is [`storage::Error::TooLarge`], which the
//! registry already answers with 413 `RequestEntityTooLarge` (as etcd's own
//! "request is too large" is upstream).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use storage::{
    DeleteRangeResponse, DeleteResponse, Error, GetResponse, KeyValue, Lease, LeaseId,
    RangeRequest, RangeResponse, Result, Revision, Store, WatchRequest, WatchStream,
};

use crate::metrics::Metrics;

/// See the module documentation.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    max_value_bytes: usize,
}

impl std::fmt::Debug for MeteredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredStore")
            .field("max_value_bytes", &self.max_value_bytes)
            .finish_non_exhaustive()
    }
}

/// The `result` label of an error: its kind, never its text.
pub fn error_kind(e: &Error) -> &'static str {
    match e {
        Error::NotFound { .. } => "not_found",
        Error::AlreadyExists { .. } => "already_exists",
        Error::Conflict { .. } => "conflict",
        Error::Compacted { .. } => "compacted",
        Error::FutureRevision { .. } => "future_revision",
        Error::TooLarge { .. } => "too_large",
        Error::LeaseNotFound(_) => "lease_not_found",
        Error::Unavailable { .. } => "unavailable",
        Error::Corrupted(_) => "corrupted",
        Error::InvalidArgument(_) => "invalid_argument",
    }
}

impl MeteredStore {
    /// Wraps `inner`; values above `max_value_bytes` are refused (the
    /// engine's own limit still applies beneath).
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>, max_value_bytes: u64) -> Self {
        MeteredStore {
            inner,
            metrics,
            max_value_bytes: usize::try_from(max_value_bytes).unwrap_or(usize::MAX),
        }
    }

    fn record<T>(&self, op: &'static str, started: Instant, r: &Result<T>) {
        let result = match r {
            Ok(_) => "ok",
            Err(e) => error_kind(e),
        };
        self.metrics.observe_storage(op, result, started.elapsed());
    }

    async fn timed<T>(&self, op: &'static str, f: impl Future<Output = Result<T>>) -> Result<T> {
        let started = Instant::now();
        let r = f.await;
        self.record(op, started, &r);
        r
    }

    fn check_size(&self, op: &'static str, value: &Bytes) -> Result<()> {
        if value.len() > self.max_value_bytes {
            let r = Err(Error::TooLarge {
                size: value.len(),
                limit: self.max_value_bytes,
            });
            self.record::<()>(op, Instant::now(), &r);
            return r;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for MeteredStore {
    async fn get(&self, key: &[u8], revision: Option<Revision>) -> Result<GetResponse> {
        self.timed("get", self.inner.get(key, revision)).await
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        let op = if req.count_only { "count" } else { "range" };
        self.timed(op, self.inner.range(req)).await
    }

    async fn create(&self, key: &[u8], value: Bytes, lease: Option<LeaseId>) -> Result<KeyValue> {
        self.check_size("create", &value)?;
        self.timed("create", self.inner.create(key, value, lease))
            .await
    }

    async fn update(
        &self,
        key: &[u8],
        value: Bytes,
        expected_mod_revision: Revision,
        lease: Option<LeaseId>,
    ) -> Result<KeyValue> {
        self.check_size("update", &value)?;
        self.timed(
            "update",
            self.inner.update(key, value, expected_mod_revision, lease),
        )
        .await
    }

    async fn delete(
        &self,
        key: &[u8],
        expected_mod_revision: Option<Revision>,
    ) -> Result<DeleteResponse> {
        self.timed("delete", self.inner.delete(key, expected_mod_revision))
            .await
    }

    async fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<DeleteRangeResponse> {
        self.timed("delete_range", self.inner.delete_range(start, end))
            .await
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.timed("current_revision", self.inner.current_revision())
            .await
    }

    /// Times opening the watch; the stream itself is the engine's.
    async fn watch(&self, req: WatchRequest) -> Result<WatchStream> {
        self.timed("watch", self.inner.watch(req)).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.timed("compact", self.inner.compact(revision)).await
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.timed("compacted_revision", self.inner.compacted_revision())
            .await
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<Lease> {
        self.timed("lease_grant", self.inner.lease_grant(ttl)).await
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration> {
        self.timed("lease_keep_alive", self.inner.lease_keep_alive(id))
            .await
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<()> {
        self.timed("lease_revoke", self.inner.lease_revoke(id))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn embedded() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = storage::open(&storage::StorageConfig::Embedded(
            storage::EmbeddedConfig::new(dir.path()),
        ))
        .await
        .expect("open embedded store");
        (dir, store)
    }

    #[tokio::test]
    async fn records_operations_and_refuses_large_values() {
        let (_dir, inner) = embedded().await;
        let metrics = Arc::new(Metrics::default());
        let store = MeteredStore::new(inner, metrics.clone(), 16);
        store
            .create(b"/k", Bytes::from_static(b"small"), None)
            .await
            .expect("create");
        let err = store
            .create(b"/k2", Bytes::from(vec![b'x'; 17]), None)
            .await
            .expect_err("too large");
        assert!(matches!(
            err,
            Error::TooLarge {
                size: 17,
                limit: 16
            }
        ));
        assert!(store.get(b"/k2", None).await.expect("get").kv.is_none());
        let err = store
            .create(b"/k", Bytes::from_static(b"again"), None)
            .await
            .expect_err("exists");
        assert_eq!(error_kind(&err), "already_exists");
        store
            .range(RangeRequest::prefix(Bytes::from_static(b"/")).count_only())
            .await
            .expect("count");

        let text = metrics.encode();
        for line in [
            r#"wsgate_storage_operations_total{op="create",result="ok"} 1"#,
            r#"wsgate_storage_operations_total{op="create",result="too_large"} 1"#,
            r#"wsgate_storage_operations_total{op="create",result="already_exists"} 1"#,
            r#"wsgate_storage_operations_total{op="get",result="ok"} 1"#,
            r#"wsgate_storage_operations_total{op="count",result="ok"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(text.contains(r#"wsgate_storage_operation_duration_seconds_count{op="create"} 3"#));
    }
}
