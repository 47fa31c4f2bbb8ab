//! Owner-reference garbage collection inside one workspace:
//! - Background: once an owner is gone, dependents whose owners are all gone
//!   are deleted (and their own dependents, in turn).
//! - Foreground: the owner carries `foregroundDeletion` while its dependents
//!   are deleted; the finalizer is removed once none block it.
//! - Orphan: the owner carries `orphan` until its references are stripped
//!   from the dependents.
//!
//! The collector scans the owner's namespace (or the whole workspace for
//! cluster-scoped owners) in the background; it keeps no graph yet. Deleted
//! owners are queued per (workspace, namespace) and one worker drains the
//! queue, so a burst of N deletes costs one scan per namespace, not N.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use serde_json::Value;

use crate::cluster::{ClusterId, ClusterScope};
use crate::metadata::{meta, meta_str};
use crate::options::{DeleteOptions, ListOptions, Propagation};
use crate::registry::Registry;
use crate::resource::Object;
use crate::store::{DeleteOutcome, ResourceStore};

pub const ORPHAN_FINALIZER: &str = "orphan";
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// How long a foreground deletion waits for blocking dependents per round.
const FOREGROUND_POLL: Duration = Duration::from_millis(500);

fn owner_refs(obj: &Object) -> Vec<Value> {
    meta(obj)
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn refers_to_any(obj: &Object, uids: &HashSet<String>) -> bool {
    owner_refs(obj).iter().any(|r| {
        r.get("uid")
            .and_then(Value::as_str)
            .is_some_and(|u| uids.contains(u))
    })
}

/// Uids of gone owners, keyed by workspace and namespace (`None` for
/// cluster-scoped owners).
type GoneOwners = HashMap<(ClusterId, Option<String>), HashSet<String>>;

/// Owners deleted with background propagation whose dependents have not
/// been looked for yet.
#[derive(Default)]
pub(crate) struct OrphanQueue {
    pending: Mutex<GoneOwners>,
    /// A drain task is running; at most one at a time.
    draining: AtomicBool,
}

impl OrphanQueue {
    fn push(&self, cluster: &ClusterId, namespace: Option<String>, uids: HashSet<String>) {
        self.pending
            .lock()
            .entry((cluster.clone(), namespace))
            .or_default()
            .extend(uids);
    }

    fn take(&self) -> GoneOwners {
        std::mem::take(&mut *self.pending.lock())
    }
}

/// Who the collector acts for.
#[derive(Clone)]
struct Owner {
    store: Arc<ResourceStore>,
    namespace: Option<String>,
    name: String,
    uid: String,
}

impl Registry {
    /// Starts whatever collection a delete implies.
    pub(crate) fn after_delete(
        self: &Arc<Self>,
        cluster: &ClusterId,
        outcome: &DeleteOutcome,
        propagation: Propagation,
    ) {
        let (obj, pending) = match outcome {
            DeleteOutcome::Deleted(o) => (o, false),
            DeleteOutcome::Pending(o) => (o, true),
        };
        let Some(store) = self.store_of(cluster, obj) else {
            return;
        };
        let owner = Owner {
            store,
            namespace: meta_str(obj, "namespace").map(str::to_owned),
            name: crate::metadata::name(obj).to_owned(),
            uid: meta_str(obj, "uid").unwrap_or("").to_owned(),
        };
        if owner.uid.is_empty() {
            return;
        }
        let finalizers = crate::metadata::finalizers(obj);
        let this = self.clone();
        let cluster = cluster.clone();
        if !pending {
            this.queue_orphan_scan(&cluster, owner.namespace, HashSet::from([owner.uid]));
        } else if propagation == Propagation::Foreground
            || finalizers.iter().any(|f| f == FOREGROUND_FINALIZER)
        {
            tokio::spawn(async move { this.foreground(&cluster, &owner).await });
        } else if propagation == Propagation::Orphan
            || finalizers.iter().any(|f| f == ORPHAN_FINALIZER)
        {
            tokio::spawn(async move { this.orphan(&cluster, &owner).await });
        }
    }

    fn store_of(&self, cluster: &ClusterId, obj: &Object) -> Option<Arc<ResourceStore>> {
        let api_version = obj.get("apiVersion").and_then(Value::as_str)?;
        let kind = obj.get("kind").and_then(Value::as_str)?;
        self.kind_store(cluster, api_version, kind)
    }

    /// A built-in or one of `cluster`'s custom resources, by kind: owners
    /// and dependents may be either.
    fn kind_store(
        &self,
        cluster: &ClusterId,
        api_version: &str,
        kind: &str,
    ) -> Option<Arc<ResourceStore>> {
        self.resource_for_kind(api_version, kind)
            .cloned()
            .or_else(|| self.crds().resource_for_kind(cluster, api_version, kind))
    }

    /// Starts collection for many deletes at once (deletecollection): one
    /// scan per namespace for the dependents of every deleted owner.
    pub(crate) fn after_delete_many(
        self: &Arc<Self>,
        cluster: &ClusterId,
        outcomes: &[DeleteOutcome],
        propagation: Propagation,
    ) {
        let mut gone: BTreeMap<Option<String>, HashSet<String>> = BTreeMap::new();
        for outcome in outcomes {
            match outcome {
                DeleteOutcome::Deleted(o) => {
                    if let Some(uid) = meta_str(o, "uid") {
                        gone.entry(meta_str(o, "namespace").map(str::to_owned))
                            .or_default()
                            .insert(uid.to_owned());
                    }
                }
                pending @ DeleteOutcome::Pending(_) => {
                    self.after_delete(cluster, pending, propagation)
                }
            }
        }
        for (namespace, uids) in gone {
            self.queue_orphan_scan(cluster, namespace, uids);
        }
    }

    /// Queues a dependents scan for owners that are gone, and starts the
    /// drain task unless one is running.
    fn queue_orphan_scan(
        self: &Arc<Self>,
        cluster: &ClusterId,
        namespace: Option<String>,
        uids: HashSet<String>,
    ) {
        self.orphans().push(cluster, namespace, uids);
        if self.orphans().draining.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move { this.drain_orphan_scans().await });
    }

    async fn drain_orphan_scans(self: Arc<Self>) {
        loop {
            let batch = self.orphans().take();
            if batch.is_empty() {
                self.orphans().draining.store(false, Ordering::Release);
                // A push may have landed between `take` and the store above
                // and seen `draining` still set: pick it up unless another
                // drain task has started meanwhile.
                let queued = !self.orphans().pending.lock().is_empty();
                if queued && !self.orphans().draining.swap(true, Ordering::AcqRel) {
                    continue;
                }
                return;
            }
            for ((cluster, namespace), uids) in batch {
                self.clone()
                    .collect_orphaned_dependents(&cluster, namespace.as_deref(), &uids)
                    .await;
            }
        }
    }

    /// Every object that lists one of `uids` as an owner, in `namespace`
    /// (owners there) or anywhere in the workspace (cluster-scoped owners).
    async fn dependents(
        &self,
        cluster: &ClusterId,
        namespace: Option<&str>,
        uids: &HashSet<String>,
    ) -> Vec<(Arc<ResourceStore>, Object)> {
        let scope = ClusterScope::One(cluster.clone());
        let mut found = Vec::new();
        // Custom resources too: one store per CRD (its versions share a prefix).
        let custom = self.crds().stores_of(cluster);
        for store in self.stores().iter().chain(custom.iter()) {
            // Namespaced owners only own objects in their namespace.
            if namespace.is_some() && !store.descriptor.namespaced() {
                continue;
            }
            let ns = if store.descriptor.namespaced() {
                namespace
            } else {
                None
            };
            match store.list(&scope, ns, &ListOptions::default()).await {
                Ok(list) => {
                    for item in list.items {
                        if let Value::Object(o) = item
                            && refers_to_any(&o, uids)
                        {
                            found.push((store.clone(), o));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, resource = %store.descriptor.qualified, "gc: listing failed")
                }
            }
        }
        found
    }

    /// Is any owner other than the `gone` ones still present with its uid?
    async fn has_live_owner(
        &self,
        cluster: &ClusterId,
        dependent: &Object,
        gone: &HashSet<String>,
    ) -> bool {
        for r in owner_refs(dependent) {
            let uid = r.get("uid").and_then(Value::as_str).unwrap_or("");
            if gone.contains(uid) {
                continue;
            }
            let (Some(av), Some(kind), Some(name)) = (
                r.get("apiVersion").and_then(Value::as_str),
                r.get("kind").and_then(Value::as_str),
                r.get("name").and_then(Value::as_str),
            ) else {
                continue;
            };
            let Some(store) = self.kind_store(cluster, av, kind) else {
                continue;
            };
            let ns = if store.descriptor.namespaced() {
                meta_str(dependent, "namespace")
            } else {
                None
            };
            if let Ok(o) = store.get(cluster, ns, name).await
                && meta_str(&o, "uid") == Some(uid)
            {
                return true;
            }
        }
        false
    }

    async fn collect_orphaned_dependents(
        self: Arc<Self>,
        cluster: &ClusterId,
        namespace: Option<&str>,
        uids: &HashSet<String>,
    ) {
        for (store, dep) in self.dependents(cluster, namespace, uids).await {
            if self.has_live_owner(cluster, &dep, uids).await {
                continue;
            }
            let opts = DeleteOptions {
                propagation: Some(Propagation::Background),
                precondition_uid: meta_str(&dep, "uid").map(str::to_owned),
                ..Default::default()
            };
            let ns = meta_str(&dep, "namespace");
            match self
                .delete(&store, cluster, ns, crate::metadata::name(&dep), &opts)
                .await
            {
                Ok(_) => {}
                Err(e) if e.code() == 404 || e.code() == 409 => {}
                Err(e) => tracing::warn!(error = %e, "gc: deleting a dependent failed"),
            }
        }
    }

    async fn foreground(self: Arc<Self>, cluster: &ClusterId, owner: &Owner) {
        loop {
            let deps = self
                .dependents(
                    cluster,
                    owner.namespace.as_deref(),
                    &HashSet::from([owner.uid.clone()]),
                )
                .await;
            let mut blocking = 0;
            for (store, dep) in &deps {
                let blocks = owner_refs(dep).iter().any(|r| {
                    r.get("uid").and_then(Value::as_str) == Some(owner.uid.as_str())
                        && r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true)
                });
                if blocks {
                    blocking += 1;
                }
                if meta(dep).is_some_and(|m| m.contains_key("deletionTimestamp")) {
                    continue;
                }
                let opts = DeleteOptions {
                    propagation: Some(Propagation::Foreground),
                    ..Default::default()
                };
                let ns = meta_str(dep, "namespace");
                if let Err(e) = self
                    .delete(store, cluster, ns, crate::metadata::name(dep), &opts)
                    .await
                    && e.code() != 404
                {
                    tracing::warn!(error = %e, "gc: foreground delete of a dependent failed");
                }
            }
            if blocking == 0 {
                break;
            }
            tokio::time::sleep(FOREGROUND_POLL).await;
        }
        self.remove_finalizer(cluster, owner, FOREGROUND_FINALIZER)
            .await;
    }

    async fn orphan(self: Arc<Self>, cluster: &ClusterId, owner: &Owner) {
        let uids = HashSet::from([owner.uid.clone()]);
        for (store, dep) in self
            .dependents(cluster, owner.namespace.as_deref(), &uids)
            .await
        {
            let ns = meta_str(&dep, "namespace");
            let uid = owner.uid.clone();
            let result = store
                .system_update(cluster, ns, crate::metadata::name(&dep), |o| {
                    let Some(Value::Array(refs)) =
                        crate::metadata::meta_mut(o).get_mut("ownerReferences")
                    else {
                        return false;
                    };
                    let before = refs.len();
                    refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid.as_str()));
                    let changed = refs.len() != before;
                    if refs.is_empty() {
                        crate::metadata::meta_mut(o).remove("ownerReferences");
                    }
                    changed
                })
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "gc: orphaning a dependent failed");
            }
        }
        self.remove_finalizer(cluster, owner, ORPHAN_FINALIZER)
            .await;
    }

    /// Drops `finalizer` from the owner; the last one deletes it.
    async fn remove_finalizer(
        self: &Arc<Self>,
        cluster: &ClusterId,
        owner: &Owner,
        finalizer: &str,
    ) {
        let ns = owner.namespace.as_deref();
        let uid = owner.uid.clone();
        let updated = owner
            .store
            .system_update(cluster, ns, &owner.name, |o| {
                if meta_str(o, "uid") != Some(uid.as_str()) {
                    return false;
                }
                let Some(Value::Array(f)) = crate::metadata::meta_mut(o).get_mut("finalizers")
                else {
                    return false;
                };
                let before = f.len();
                f.retain(|x| x.as_str() != Some(finalizer));
                f.len() != before
            })
            .await;
        match updated {
            Ok(Some(o))
                if crate::metadata::finalizers(&o).is_empty()
                    && meta(&o).is_some_and(|m| m.contains_key("deletionTimestamp")) =>
            {
                if let Err(e) = owner.store.system_delete(cluster, ns, &owner.name).await {
                    tracing::warn!(error = %e, "gc: removing a finalized owner failed");
                } else {
                    let this = self.clone();
                    let cluster = cluster.clone();
                    let owner = owner.clone();
                    let uids = HashSet::from([owner.uid.clone()]);
                    tokio::spawn(async move {
                        this.collect_orphaned_dependents(
                            &cluster,
                            owner.namespace.as_deref(),
                            &uids,
                        )
                        .await
                    });
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "gc: removing a finalizer failed"),
        }
    }
}
