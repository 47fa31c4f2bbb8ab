//! The etcd engine: a real etcd cluster (v3.4 or newer) through `etcd-client`.
//!
//! Each [`Store`] call is one etcd request, or one transaction for guarded
//! writes, so the engine adds no state of its own to etcd: any other etcd
//! client (kube-apiserver, etcdctl) sees plain keys.
//!
//! Modules, one concept each:
//! - `connection`: endpoints, TLS, credentials, timeouts.
//! - `failure` and `retry`: how a failed call is classified and when it may
//!   be sent again (reads always, writes only when provably not applied).
//! - `kv`: reads and guarded writes.
//! - `compaction`: compacting, and learning the compacted revision, which
//!   etcd 3.4 does not report directly.
//! - `watch`: a watch that survives restarts and leader changes.
//! - `lease`: leases.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{KvClient, LeaseClient, WatchClient};

use crate::{
    DeleteRangeResponse, DeleteResponse, EtcdConfig, GetResponse, KeyValue, Lease, LeaseId,
    RangeRequest, RangeResponse, Result, Revision, Store, WatchRequest, WatchStream,
};

mod compaction;
mod connection;
mod failure;
mod kv;
mod lease;
mod retry;
mod watch;

use compaction::CompactionTracker;
use retry::RetryPolicy;

/// The etcd engine. Cheap to share: clone the `Arc` it is usually held in.
pub struct EtcdStore {
    inner: Arc<Inner>,
}

/// What every operation needs; shared with background watch tasks.
struct Inner {
    kv: KvClient,
    watch: WatchClient,
    lease: LeaseClient,
    retry: RetryPolicy,
    compaction: CompactionTracker,
    /// How long a watch keeps reconnecting before it reports
    /// [`crate::Error::Unavailable`] and ends.
    watch_reconnect_budget: Duration,
}

/// Large ranges and values: etcd itself allows responses up to 2 GiB.
const MAX_MESSAGE_BYTES: usize = i32::MAX as usize;

impl EtcdStore {
    /// Connects and checks that etcd answers a quorum read within the dial
    /// timeout; fails with [`crate::Error::Unavailable`] if it does not, so a
    /// server that cannot reach its storage says so at start-up.
    pub async fn connect(config: &EtcdConfig) -> Result<Self> {
        let client = connection::connect(config).await?;
        let inner = Inner {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            watch: client
                .watch_client()
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            lease: client.lease_client(),
            retry: RetryPolicy::new(config.request_timeout),
            compaction: CompactionTracker::default(),
            watch_reconnect_budget: (config.request_timeout * 6).max(Duration::from_secs(30)),
        };
        let store = EtcdStore {
            inner: Arc::new(inner),
        };
        let probe = RetryPolicy::until(config.dial_timeout.max(Duration::from_millis(100)));
        store.inner.current_revision_with(&probe).await?;
        Ok(store)
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &[u8], revision: Option<Revision>) -> Result<GetResponse> {
        self.inner.get(key, revision).await
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        self.inner.range(req).await
    }

    async fn create(&self, key: &[u8], value: Bytes, lease: Option<LeaseId>) -> Result<KeyValue> {
        self.inner.create(key, value, lease).await
    }

    async fn update(
        &self,
        key: &[u8],
        value: Bytes,
        expected_mod_revision: Revision,
        lease: Option<LeaseId>,
    ) -> Result<KeyValue> {
        self.inner
            .update(key, value, expected_mod_revision, lease)
            .await
    }

    async fn delete(
        &self,
        key: &[u8],
        expected_mod_revision: Option<Revision>,
    ) -> Result<DeleteResponse> {
        self.inner.delete(key, expected_mod_revision).await
    }

    async fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<DeleteRangeResponse> {
        self.inner.delete_range(start, end).await
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }

    async fn watch(&self, req: WatchRequest) -> Result<WatchStream> {
        watch::start(self.inner.clone(), req).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.inner.compacted_revision().await
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<Lease> {
        self.inner.lease_grant(ttl).await
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration> {
        self.inner.lease_keep_alive(id).await
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<()> {
        self.inner.lease_revoke(id).await
    }
}
