//! The object-count quota of a workspace (`limits.default_object_quota`,
//! overridden per workspace path by `[limits.workspaces."<path>"]
//! object_quota`): a create past it is 403 `Forbidden`,
//! "exceeded quota: objects in workspace acme: limit 1000, used 1000".
//!
//! Cheap at a million workspaces: a workspace has a counter only after it
//! creates something (and loses it after [`IDLE_AFTER`] without creates).
//! The counter starts from a count of the workspace's objects in every
//! resource prefix, then moves with this replica's creates and deletes. It
//! drifts (other replicas, cascading and garbage-collecting deletes,
//! namespace purges), so it is recounted every [`RECOUNT_AFTER`], and always
//! before a create is refused: a stale count can let a few objects past the
//! limit, but never refuses one wrongly. A create reserves its place first,
//! so concurrent creates at the limit do not all slip through; a PUT or a
//! server-side apply that finds no object is a create too
//! ([`ObjectQuota::reserve_if_absent`]), while updates of existing objects
//! are never refused.
//!
//! A count costs no storage request for most prefixes (keys are laid out
//! resource first, so a workspace's objects are one range per prefix, and
//! on etcd one range each stalled watch delivery when every create went to
//! a fresh workspace): a prefix whose watch cache runs is counted in
//! memory over the workspace's key range (caches are never started for
//! this); a prefix without one is counted in storage only when it holds
//! any object at all, which one `limit 1` probe per prefix learns and
//! [`RECOUNT_AFTER`] keeps (a create through the quota marks its prefix
//! non-empty at once). Before a refusal a cache is used only once it has
//! caught up with storage's current revision.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use registry::cluster::{ClusterId, WorkspacePath};
use registry::keys::ResourcePrefix;
use registry::options::ReadFrom;
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
    /// Per resource prefix without a running cache: whether it held no
    /// object in any workspace when probed, and when (see the module doc).
    probed: DashMap<Bytes, Probe>,
    /// One prober at a time: concurrent first creates share one probe.
    probing: tokio::sync::Mutex<()>,
    epoch: Instant,
}

#[derive(Clone, Copy)]
struct Probe {
    empty: bool,
    at: Instant,
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
            probed: DashMap::new(),
            probing: tokio::sync::Mutex::new(()),
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

    /// [`Self::reserve`] for a PUT or an apply that would create `name`:
    /// `None` when the object exists (an update takes no place, and a full
    /// workspace must still accept updates). Existence is read like a GET
    /// with `resourceVersion=0` (the watch cache when it runs): an object
    /// created meanwhile only gives the place back when the write turns out
    /// to be an update; one deleted meanwhile is counted afterwards
    /// ([`Self::created_unreserved`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn reserve_if_absent(
        &self,
        registry: &Registry,
        ws: &WorkspaceRef,
        rs: &ResourceStore,
        cluster: &ClusterId,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Reservation>, ApiError> {
        let WorkspaceRef::Path(path) = ws else {
            return Ok(None);
        };
        if self.limits.object_quota(path) == 0 {
            return Ok(None);
        }
        match rs.get_from(cluster, namespace, name, ReadFrom::Any).await {
            Ok(_) => Ok(None),
            Err(e) if e.code() == 404 => self
                .reserve(registry, rs, path, cluster, name)
                .await
                .map(Some),
            Err(e) => Err(e),
        }
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
        self.note_written(&rs.descriptor.prefix);
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
                self.recount(registry, rs, cluster, &counter, &mut counted, false)
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
                self.recount(registry, rs, cluster, &counter, &mut counted, true)
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

    /// A create in `prefix` is under way: the prefix is not empty, and a
    /// probe that started before now must not say it is.
    fn note_written(&self, prefix: &ResourcePrefix) {
        let written = Probe {
            empty: false,
            at: Instant::now(),
        };
        match self.probed.get_mut(prefix.as_bytes()) {
            Some(mut p) => *p = written,
            None => {
                self.probed
                    .insert(Bytes::copy_from_slice(prefix.as_bytes()), written);
            }
        }
    }

    /// Counts the objects of `cluster` in every resource prefix: the
    /// built-ins, workspaces, every custom resource the workspace serves
    /// (from the in-memory CRD index, no walk of the workspace), and `rs`.
    /// Runs only when a counter starts, every [`RECOUNT_AFTER`], and before
    /// a refusal (`exact`: caches only once caught up with storage).
    async fn recount(
        &self,
        registry: &Registry,
        rs: &ResourceStore,
        cluster: &ClusterId,
        counter: &Counter,
        counted: &mut Option<Instant>,
        exact: bool,
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
        let failed = |e: storage::Error| {
            tracing::warn!(error = %e, cluster = %cluster, "counting a workspace's objects failed");
            registry::status::interpret_list_error(e, &qr)
        };

        // In memory from the caches that run; the rest from storage.
        let caches = registry.watch_caches();
        let mut total: i64 = 0;
        let mut uncached = Vec::new();
        let mut current = None;
        for p in &prefixes {
            let (start, end) = p.cluster_range(cluster);
            let Some(cache) = caches.ready_cache(p) else {
                uncached.push(p);
                continue;
            };
            if exact {
                let target = match current {
                    Some(r) => r,
                    None => *current.insert(self.store.current_revision().await.map_err(failed)?),
                };
                if cache
                    .read_at(ReadFrom::NotOlderThan(target))
                    .await
                    .is_none()
                {
                    uncached.push(p);
                    continue;
                }
            }
            match cache.count_now(&start, &end) {
                Some((n, _)) => total += i64::try_from(n).unwrap_or(i64::MAX),
                None => uncached.push(p),
            }
        }
        let occupied = self.occupied(&uncached).await.map_err(failed)?;
        let counts = futures::future::try_join_all(occupied.iter().map(|p| {
            let (start, end) = p.cluster_range(cluster);
            let req = RangeRequest {
                start: start.into(),
                end: end.into(),
                ..RangeRequest::prefix(Bytes::new())
            }
            .count_only();
            self.store.range(req)
        }))
        .await
        .map_err(failed)?;
        total += counts.iter().map(|r| r.count).sum::<i64>();
        counter.used.store(total, Ordering::Release);
        *counted = Some(Instant::now());
        Ok(())
    }

    /// The prefixes of `candidates` that may hold objects: those not
    /// probed empty within [`RECOUNT_AFTER`]. Probes the unknown ones (one
    /// `limit 1` range each over the whole prefix), one caller at a time.
    async fn occupied<'a>(
        &self,
        candidates: &[&'a ResourcePrefix],
    ) -> storage::Result<Vec<&'a ResourcePrefix>> {
        let known = |p: &ResourcePrefix| {
            self.probed
                .get(p.as_bytes())
                .filter(|e| e.at.elapsed() < RECOUNT_AFTER)
                .map(|e| e.empty)
        };
        if candidates.iter().any(|p| known(p).is_none()) {
            let _one = self.probing.lock().await;
            let unknown: Vec<&ResourcePrefix> = candidates
                .iter()
                .copied()
                .filter(|p| known(p).is_none())
                .collect();
            let probes = futures::future::try_join_all(unknown.iter().map(|p| {
                let at = Instant::now();
                let req = RangeRequest::prefix(Bytes::copy_from_slice(p.as_bytes()))
                    .keys_only()
                    .limit(1);
                async move { self.store.range(req).await.map(|r| (r.kvs.is_empty(), at)) }
            }))
            .await?;
            for (p, (empty, at)) in unknown.iter().zip(probes) {
                // A create noted after the probe started knows better.
                self.probed
                    .entry(Bytes::copy_from_slice(p.as_bytes()))
                    .and_modify(|e| {
                        if e.at < at {
                            *e = Probe { empty, at };
                        }
                    })
                    .or_insert(Probe { empty, at });
            }
        }
        // A prefix probed meanwhile as empty but written since is occupied.
        Ok(candidates
            .iter()
            .copied()
            .filter(|p| known(p) != Some(true))
            .collect())
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

    /// The storage count the quota's shortcuts must equal: one count-only
    /// range per registered prefix over the workspace's key range.
    async fn storage_count(store: &Arc<dyn Store>, registry: &Registry, c: &ClusterId) -> i64 {
        let mut total = 0;
        for s in registry.stores() {
            let (start, end) = s.descriptor.prefix.cluster_range(c);
            let req = RangeRequest {
                start: start.into(),
                end: end.into(),
                ..RangeRequest::prefix(Bytes::new())
            }
            .count_only();
            total += store.range(req).await.expect("count").count;
        }
        total
    }

    #[tokio::test]
    async fn counts_from_running_caches_and_probed_prefixes_without_starting_caches() {
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
        let roles = registry
            .resource("rbac.authorization.k8s.io", "v1", "clusterroles")
            .expect("clusterroles")
            .clone();
        let cms = registry
            .resource("", "v1", "configmaps")
            .expect("configmaps")
            .clone();
        let (root, cluster) = (WorkspacePath::root(), ClusterId::root());
        let opts = WriteOptions::default();
        for name in ["r1", "r2", "r3"] {
            registry
                .create(&roles, &cluster, None, role(name), &opts)
                .await
                .expect("create role");
        }
        let cm = |name: &str| match json!({"metadata": {"name": name}}) {
            serde_json::Value::Object(m) => m,
            _ => unreachable!("a JSON object literal"),
        };
        for name in ["c1", "c2"] {
            registry
                .create(&cms, &cluster, Some("default"), cm(name), &opts)
                .await
                .expect("create configmap");
        }
        // Another workspace's objects, in the cached prefix and outside it,
        // must not count.
        let wss = registry
            .resource("tenancy.wsgate.io", "v1alpha1", "workspaces")
            .expect("workspaces")
            .clone();
        let created = registry
            .create(&wss, &cluster, None, cm("other"), &opts)
            .await
            .expect("workspace");
        let other = created["spec"]["cluster"]
            .as_str()
            .and_then(ClusterId::parse)
            .expect("the new workspace's id");
        for name in ["o1", "o2", "o3"] {
            registry
                .create(&cms, &other, Some("default"), cm(name), &opts)
                .await
                .expect("create configmap elsewhere");
            registry
                .create(&roles, &other, None, role(name), &opts)
                .await
                .expect("create role elsewhere");
        }
        // Start the configmaps cache only (a list does), and wait for it.
        for _ in 0..250 {
            let _ = cms
                .list(
                    &registry::cluster::ClusterScope::All,
                    None,
                    &registry::options::ListOptions::default(),
                )
                .await;
            if registry
                .watch_caches()
                .ready_cache(&cms.descriptor.prefix)
                .is_some()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            registry
                .watch_caches()
                .ready_cache(&cms.descriptor.prefix)
                .is_some(),
            "configmaps cache never got ready"
        );
        let caches_before = registry.watch_caches().stats().await.len();

        let want = storage_count(&store, &registry, &cluster).await;
        assert!(want >= 5, "the workspace holds what was created: {want}");
        let quota = ObjectQuota::new(store.clone(), limits(1_000_000), None);
        drop(quota.reserve(&registry, &roles, &root, &cluster, "x").await);
        let used = |q: &ObjectQuota| {
            q.counters
                .get(&cluster)
                .expect("a counter")
                .used
                .load(Ordering::Acquire)
        };
        assert_eq!(used(&quota), want, "cache + probed storage count");
        // Prefixes were probed; the clusterroles one holds objects.
        assert_eq!(
            quota
                .probed
                .get(roles.descriptor.prefix.as_bytes())
                .map(|p| p.empty),
            Some(false)
        );
        assert!(quota.probed.iter().any(|p| p.empty), "some prefix is empty");
        assert_eq!(
            registry.watch_caches().stats().await.len(),
            caches_before,
            "counting started no cache"
        );

        // The exact count before a refusal agrees too: full at `want`.
        let tight = ObjectQuota::new(
            store.clone(),
            limits(u64::try_from(want).expect("count")),
            None,
        );
        let err = tight
            .reserve(&registry, &cms, &root, &cluster, "c3")
            .await
            .err()
            .expect("full");
        assert!(
            err.message.ends_with(&format!("used {want}")),
            "{}",
            err.message
        );

        // A create in a prefix probed empty marks it occupied at once, so
        // a later count of another workspace's counter sees it.
        let secrets = registry
            .resource("", "v1", "secrets")
            .expect("secrets")
            .clone();
        assert_eq!(
            quota
                .probed
                .get(secrets.descriptor.prefix.as_bytes())
                .map(|p| p.empty),
            Some(true)
        );
        let r = quota
            .reserve(&registry, &secrets, &root, &cluster, "s")
            .await
            .expect("room");
        registry
            .create(&secrets, &cluster, Some("default"), cm("s"), &opts)
            .await
            .expect("create secret");
        r.created();
        let fresh = ObjectQuota::new(store.clone(), limits(1_000_000), None);
        fresh.probed.insert(
            Bytes::copy_from_slice(secrets.descriptor.prefix.as_bytes()),
            Probe {
                empty: true,
                at: Instant::now(),
            },
        );
        fresh.note_written(&secrets.descriptor.prefix);
        drop(fresh.reserve(&registry, &roles, &root, &cluster, "y").await);
        assert_eq!(used(&fresh), want + 1);
    }
}
