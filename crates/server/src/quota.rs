//! The object-count quota of a workspace (`limits.default_object_quota`,
//! overridden per workspace path by `[limits.workspaces."<path>"]
//! object_quota`): a create past it is 403 `Forbidden`,
//! "exceeded quota: objects in workspace acme: limit 1000, used 1000".
//!
//! Cheap at a million workspaces: a workspace has a counter only after it
//! creates something (and loses it after [`IDLE_AFTER`] without creates).
//! The counter starts from an exact count (one count-only range per
//! resource prefix, the workspace's key range only), then moves with this
//! replica's creates and deletes. It drifts (other replicas, cascading and
//! garbage-collecting deletes, namespace purges), so it is recounted every
//! [`RECOUNT_AFTER`], and always before a create is refused: a stale count
//! can let a few objects past the limit, but never refuses one wrongly.
//! A create reserves its place first, so concurrent creates at the limit do
//! not all slip through.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use registry::cluster::{ClusterId, WorkspacePath};
use registry::status::QualifiedResource;
use registry::store::ResourceStore;
use registry::{ApiError, Registry};
use storage::{RangeRequest, Store};

use crate::config::LimitsSection;
use crate::metrics::{Metrics, RejectReason};
use crate::request_info::WorkspaceRef;

/// A counter older than this is recounted at the next create.
pub const RECOUNT_AFTER: Duration = Duration::from_secs(60);
/// A counter without creates for this long is dropped.
pub const IDLE_AFTER: Duration = Duration::from_secs(600);

/// See the module documentation.
pub struct ObjectQuota {
    store: Arc<dyn Store>,
    limits: Arc<LimitsSection>,
    metrics: Option<Arc<Metrics>>,
    counters: DashMap<ClusterId, Arc<Counter>>,
    epoch: Instant,
}

impl std::fmt::Debug for ObjectQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectQuota")
            .field("counters", &self.counters.len())
            .finish_non_exhaustive()
    }
}

struct Counter {
    /// Objects stored, as last counted plus this replica's changes since.
    used: AtomicI64,
    /// Creates admitted but not finished yet.
    pending: AtomicI64,
    /// When the last exact count finished (`None`: never); held while counting.
    counted: tokio::sync::Mutex<Option<Instant>>,
    /// Seconds since [`ObjectQuota::epoch`] of the last create.
    last_used: AtomicU64,
}

/// A place reserved for one create; call [`Reservation::created`] when the
/// object was stored, else dropping it gives the place back.
#[must_use]
pub struct Reservation(Option<Arc<Counter>>);

impl Reservation {
    /// The create succeeded (and was not a dry run).
    pub fn created(mut self) {
        if let Some(c) = self.0.take() {
            c.pending.fetch_sub(1, Ordering::AcqRel);
            c.used.fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl ObjectQuota {
    pub fn new(
        store: Arc<dyn Store>,
        limits: Arc<LimitsSection>,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        ObjectQuota {
            store,
            limits,
            metrics,
            counters: DashMap::new(),
            epoch: Instant::now(),
        }
    }

    /// Workspaces with a counter.
    pub fn tracked(&self) -> usize {
        self.counters.len()
    }

    fn now_secs(&self) -> u64 {
        self.epoch.elapsed().as_secs()
    }

    /// [`Self::reserve`] for a create request: the workspace from the
    /// request path, the name (or generateName) from the object.
    pub async fn reserve_create(
        &self,
        registry: &Registry,
        ws: &WorkspaceRef,
        rs: &ResourceStore,
        cluster: &ClusterId,
        obj: &registry::resource::Object,
    ) -> Result<Reservation, ApiError> {
        let WorkspaceRef::Path(path) = ws else {
            // Creates across all workspaces are refused before this.
            return Ok(Reservation(None));
        };
        let meta = obj.get("metadata");
        let name = meta
            .and_then(|m| m.get("name"))
            .or_else(|| meta.and_then(|m| m.get("generateName")))
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        self.reserve(registry, rs, path, cluster, name).await
    }

    /// Reserves a place for one object of `rs` named `name` in `cluster`
    /// (workspace `path`), or refuses with 403 when the workspace is full.
    pub async fn reserve(
        &self,
        registry: &Registry,
        rs: &ResourceStore,
        path: &WorkspacePath,
        cluster: &ClusterId,
        name: &str,
    ) -> Result<Reservation, ApiError> {
        let limit = self.limits.object_quota(path);
        if limit == 0 {
            return Ok(Reservation(None));
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let counter = self
            .counters
            .entry(cluster.clone())
            .or_insert_with(|| {
                Arc::new(Counter {
                    used: AtomicI64::new(0),
                    pending: AtomicI64::new(0),
                    counted: tokio::sync::Mutex::new(None),
                    last_used: AtomicU64::new(0),
                })
            })
            .clone();
        counter.last_used.store(self.now_secs(), Ordering::Relaxed);
        {
            let mut counted = counter.counted.lock().await;
            if counted.is_none_or(|at| at.elapsed() >= RECOUNT_AFTER) {
                self.recount(registry, rs, cluster, &counter, &mut counted)
                    .await?;
            }
        }
        counter.pending.fetch_add(1, Ordering::AcqRel);
        let reservation = Reservation(Some(counter.clone()));
        if Self::fits(&counter, limit) {
            return Ok(reservation);
        }
        // Full by the counter: make sure with an exact count, unless one
        // finished after this request arrived (many refusals, one count).
        let arrived = Instant::now();
        {
            let mut counted = counter.counted.lock().await;
            if counted.is_none_or(|at| at < arrived) {
                self.recount(registry, rs, cluster, &counter, &mut counted)
                    .await?;
            }
        }
        if Self::fits(&counter, limit) {
            return Ok(reservation);
        }
        drop(reservation);
        if let Some(m) = &self.metrics {
            m.rejected(RejectReason::ObjectQuota);
        }
        let used = counter.used.load(Ordering::Acquire).clamp(0, limit);
        let qr = QualifiedResource::new(&rs.descriptor.gvk.group, rs.descriptor.plural());
        Err(ApiError::forbidden(
            &qr,
            name,
            &format!("exceeded quota: objects in workspace {path}: limit {limit}, used {used}"),
        ))
    }

    /// Whether the stored objects plus the pending creates (this one
    /// included) stay within `limit`.
    fn fits(counter: &Counter, limit: i64) -> bool {
        counter.used.load(Ordering::Acquire) + counter.pending.load(Ordering::Acquire) <= limit
    }

    /// An object was deleted (or found gone) in `cluster` on this replica.
    pub fn deleted(&self, cluster: &ClusterId, n: i64) {
        if let Some(c) = self.counters.get(cluster) {
            // Never below zero: the recount would fix it, but a negative
            // count would admit more than the limit until then.
            let _ = c
                .used
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                    Some((u - n).max(0))
                });
        }
    }

    /// An object was created without a reservation (an update or apply
    /// that created it).
    pub fn created_unreserved(&self, cluster: &ClusterId) {
        if let Some(c) = self.counters.get(cluster) {
            c.used.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Drops counters of workspaces that created nothing for [`IDLE_AFTER`].
    pub fn forget_idle(&self) {
        let now = self.now_secs();
        let idle = IDLE_AFTER.as_secs();
        self.counters.retain(|_, c| {
            c.pending.load(Ordering::Acquire) > 0
                || now.saturating_sub(c.last_used.load(Ordering::Relaxed)) < idle
        });
    }

    /// Runs [`Self::forget_idle`] every minute for as long as the quota lives.
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(q) = weak.upgrade() else { return };
                q.forget_idle();
            }
        });
    }

    /// Counts the objects of `cluster` in every resource prefix: the
    /// built-ins, workspaces, every custom resource the workspace serves
    /// (from the in-memory CRD index, no walk of the workspace), and `rs`.
    /// Runs only when a counter starts, every [`RECOUNT_AFTER`], and before
    /// a refusal, so a create pays one count-only range per kind rarely.
    async fn recount(
        &self,
        registry: &Registry,
        rs: &ResourceStore,
        cluster: &ClusterId,
        counter: &Counter,
        counted: &mut Option<Instant>,
    ) -> Result<(), ApiError> {
        let mut prefixes: Vec<_> = registry
            .stores()
            .iter()
            .map(|s| s.descriptor.prefix.clone())
            .collect();
        let custom = registry.crds().stores_of(cluster);
        for p in custom
            .iter()
            .map(|s| &s.descriptor.prefix)
            .chain([&rs.descriptor.prefix])
        {
            if !prefixes.contains(p) {
                prefixes.push(p.clone());
            }
        }
        let qr = QualifiedResource::new(&rs.descriptor.gvk.group, rs.descriptor.plural());
        let counts = futures::future::try_join_all(prefixes.iter().map(|p| {
            let (start, end) = p.cluster_range(cluster);
            let req = RangeRequest {
                start: start.into(),
                end: end.into(),
                ..RangeRequest::prefix(bytes::Bytes::new())
            }
            .count_only();
            self.store.range(req)
        }))
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, cluster = %cluster, "counting a workspace's objects failed");
            registry::status::interpret_list_error(e, &qr)
        })?;
        let total: i64 = counts.iter().map(|r| r.count).sum();
        counter.used.store(total, Ordering::Release);
        *counted = Some(Instant::now());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use registry::RegistryConfig;
    use registry::options::{DeleteOptions, WriteOptions};
    use serde_json::json;

    use super::*;

    fn limits(quota: u64) -> Arc<LimitsSection> {
        Arc::new(LimitsSection {
            default_object_quota: quota,
            ..LimitsSection::default()
        })
    }

    fn role(name: &str) -> registry::resource::Object {
        match json!({"metadata": {"name": name}, "rules": []}) {
            serde_json::Value::Object(m) => m,
            _ => unreachable!("a JSON object literal"),
        }
    }

    #[tokio::test]
    async fn refuses_at_the_limit_and_recounts_a_stale_counter() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = storage::open(&storage::StorageConfig::Embedded(
            storage::EmbeddedConfig::new(dir.path()),
        ))
        .await
        .expect("store");
        let registry = Registry::open(
            store.clone(),
            RegistryConfig {
                key_root: "/q".into(),
                advertise_address: "127.0.0.1:1".into(),
            },
        )
        .await
        .expect("registry");
        let rs = registry
            .resource("rbac.authorization.k8s.io", "v1", "clusterroles")
            .expect("clusterroles")
            .clone();
        let (root, cluster) = (WorkspacePath::root(), ClusterId::root());

        // What the workspace holds already (bootstrap objects).
        let probe = ObjectQuota::new(store.clone(), limits(1_000_000), None);
        drop(probe.reserve(&registry, &rs, &root, &cluster, "x").await);
        let baseline = probe
            .counters
            .get(&cluster)
            .expect("a counter")
            .used
            .load(Ordering::Acquire);

        let limit = u64::try_from(baseline).expect("count") + 2;
        let quota = ObjectQuota::new(store.clone(), limits(limit), None);
        let opts = WriteOptions::default();
        for name in ["a", "b"] {
            let r = quota
                .reserve(&registry, &rs, &root, &cluster, name)
                .await
                .expect("room left");
            registry
                .create(&rs, &cluster, None, role(name), &opts)
                .await
                .expect("create");
            r.created();
        }
        let err = quota
            .reserve(&registry, &rs, &root, &cluster, "c")
            .await
            .err()
            .expect("full");
        assert_eq!(err.code(), 403);
        assert!(
            err.message.ends_with(&format!(
                "exceeded quota: objects in workspace root: limit {limit}, used {limit}"
            )),
            "{}",
            err.message
        );
        assert_eq!(quota.tracked(), 1);

        // A delete the counter never heard of (another replica, garbage
        // collection): the exact recount before refusing finds the room.
        registry
            .delete(&rs, &cluster, None, "a", &DeleteOptions::default())
            .await
            .expect("delete");
        let r = quota
            .reserve(&registry, &rs, &root, &cluster, "c")
            .await
            .expect("recounted: room again");
        // A reservation not turned into an object gives its place back.
        drop(r);
        let r = quota
            .reserve(&registry, &rs, &root, &cluster, "c")
            .await
            .expect("still room");
        registry
            .create(&rs, &cluster, None, role("c"), &opts)
            .await
            .expect("create");
        r.created();
        assert!(
            quota
                .reserve(&registry, &rs, &root, &cluster, "d")
                .await
                .is_err()
        );
        // Told about a delete, it admits without a recount.
        quota.deleted(&cluster, 1);
        assert!(
            quota
                .reserve(&registry, &rs, &root, &cluster, "d")
                .await
                .is_ok()
        );

        // Unlimited workspaces get no counter at all.
        let off = ObjectQuota::new(store, limits(0), None);
        drop(off.reserve(&registry, &rs, &root, &cluster, "e").await);
        assert_eq!(off.tracked(), 0);
    }
}
