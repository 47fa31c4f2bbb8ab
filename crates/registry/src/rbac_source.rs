//! Where RBAC evaluation gets its input: the Roles, ClusterRoles,
//! RoleBindings and ClusterRoleBindings stored in one workspace
//! ([`RbacSource::objects`]), and a per-workspace revision
//! ([`RbacSource::revision`]) that moves whenever one of them changes, to
//! key a [`PolicyCache`](crate::rbac::PolicyCache).
//!
//! The revision comes from one storage watch over the four RBAC
//! ResourcePrefixes (every workspace at once): an event in workspace `c` at
//! storage revision `r` raises `c`'s revision to `r`. Workspaces never seen
//! have the *base* revision: the revision the watch started at. When the
//! watch fails it restarts from the current revision and raises the base,
//! so every cached policy is rebuilt (nothing missed during the gap can
//! survive). Writes through this process call [`RbacSource::observe`] with
//! their own revision, so a binding is effective for the next request even
//! before the watch delivers its event.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use futures::StreamExt;
use serde_json::Value;
use storage::{WatchRequest, WatchResponse};

use crate::cluster::{ClusterId, ClusterScope};
use crate::options::ListOptions;
use crate::rbac::RbacObjects;
use crate::registry::Registry;
use crate::status::{ApiError, ApiResult};
use crate::store::ResourceStore;

pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
/// The four RBAC resources, in [`RbacObjects`] field order.
pub const RBAC_RESOURCES: [&str; 4] = [
    "roles",
    "clusterroles",
    "rolebindings",
    "clusterrolebindings",
];

/// RBAC objects and their revision, per workspace.
pub struct RbacSource {
    registry: Arc<Registry>,
    stores: Vec<Arc<ResourceStore>>,
    base: AtomicI64,
    revisions: DashMap<ClusterId, i64>,
}

impl RbacSource {
    /// Reads the current revision and starts the watch (needs a tokio runtime).
    pub async fn start(registry: Arc<Registry>) -> ApiResult<Arc<Self>> {
        let mut stores = Vec::new();
        for r in RBAC_RESOURCES {
            let rs = registry
                .resource(RBAC_GROUP, "v1", r)
                .ok_or_else(|| ApiError::internal(format!("the {r} store is missing")))?;
            stores.push(rs.clone());
        }
        let start = registry
            .ctx_store()
            .current_revision()
            .await
            .map_err(|e| ApiError::internal(format!("reading the storage revision: {e}")))?;
        let this = Arc::new(RbacSource {
            registry,
            stores,
            base: AtomicI64::new(start),
            revisions: DashMap::new(),
        });
        this.clone().spawn_watch(start);
        Ok(this)
    }

    /// The revision a policy for `cluster` must have been built at.
    pub fn revision(&self, cluster: &ClusterId) -> u64 {
        let base = self.base.load(Ordering::Acquire);
        let own = self.revisions.get(cluster).map_or(0, |r| *r);
        u64::try_from(base.max(own)).unwrap_or(0)
    }

    /// A write to an RBAC object of `cluster` at `revision` (this process's
    /// own writes, so they take effect before the watch reports them).
    pub fn observe(&self, cluster: &ClusterId, revision: i64) {
        let mut e = self.revisions.entry(cluster.clone()).or_insert(revision);
        if *e < revision {
            *e = revision;
        }
    }

    /// Forgets a deleted workspace.
    pub fn forget(&self, cluster: &ClusterId) {
        self.revisions.remove(cluster);
    }

    /// The current storage revision (for [`Self::observe`] after a write
    /// whose response carries none, such as a delete).
    pub async fn current_revision(&self) -> Option<i64> {
        self.registry.ctx_store().current_revision().await.ok()
    }

    /// Every RBAC object stored in `cluster`, decoded; undecodable objects
    /// are skipped and logged.
    pub async fn objects(&self, cluster: &ClusterId) -> ApiResult<RbacObjects> {
        let scope = ClusterScope::One(cluster.clone());
        let mut lists: Vec<Vec<Value>> = Vec::with_capacity(4);
        for rs in &self.stores {
            let list = rs.list(&scope, None, &ListOptions::default()).await?;
            lists.push(list.items);
        }
        let empty = Vec::new();
        let get = |i: usize| lists.get(i).unwrap_or(&empty);
        let (objects, skipped) = RbacObjects::from_values(get(0), get(1), get(2), get(3));
        if skipped > 0 {
            tracing::warn!(cluster = %cluster, skipped, "RBAC objects that do not decode were ignored");
        }
        Ok(objects)
    }

    fn note(&self, key: &[u8], revision: i64) {
        for rs in &self.stores {
            if let Some(k) = rs.descriptor.prefix.parse(key, rs.descriptor.namespaced())
                && let Some(cluster) = ClusterId::parse(k.cluster)
            {
                self.observe(&cluster, revision);
                return;
            }
        }
    }

    fn spawn_watch(self: Arc<Self>, start: i64) {
        tokio::spawn(async move {
            let mut from = start;
            loop {
                let mut streams = Vec::new();
                for rs in &self.stores {
                    let req = WatchRequest::prefix(rs.descriptor.prefix.as_bytes().to_vec())
                        .from_revision(from + 1);
                    match self.registry.ctx_store().watch(req).await {
                        Ok(s) => streams.push(s),
                        Err(e) => {
                            tracing::warn!(error = %e, "RBAC watch could not start");
                            break;
                        }
                    }
                }
                if streams.len() == self.stores.len() {
                    let mut merged = futures::stream::select_all(streams);
                    while let Some(item) = merged.next().await {
                        match item {
                            Ok(WatchResponse::Events(evs)) => {
                                for ev in evs {
                                    self.note(&ev.kv.key, ev.revision());
                                }
                            }
                            Ok(WatchResponse::Progress { .. }) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "RBAC watch failed; restarting");
                                break;
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                // Whatever happened in the gap: rebuild every policy.
                if let Ok(now) = self.registry.ctx_store().current_revision().await {
                    from = now;
                    self.base.fetch_max(now, Ordering::AcqRel);
                }
            }
        });
    }
}
