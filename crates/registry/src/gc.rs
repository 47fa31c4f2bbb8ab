//! Owner-reference garbage collection inside one workspace:
//! - Background: once an owner is gone, dependents whose owners are all gone
//!   are deleted (and their own dependents, in turn).
//! - Foreground: the owner carries `foregroundDeletion` while its dependents
//!   are deleted; the finalizer is removed once none block it.
//! - Orphan: the owner carries `orphan` until its references are stripped
//!   from the dependents.
//!
//! - Absent owners: a dependent none of whose owners exists with the
//!   referenced uid is deleted (background). Every write carrying
//!   ownerReferences queues a check of that object; the check looks each
//!   owner up live and never deletes when an owner's kind cannot be resolved
//!   or a lookup fails.
//!
//! The collector scans the owner's namespace (or the whole workspace for
//! cluster-scoped owners) in the background; it keeps no graph yet. Every
//! way an object leaves storage (DELETE, deletecollection, the update that
//! drops a deleting object's last finalizer, foreground/orphan completion,
//! a CRD's cleanup of its objects) queues its uid; gone owners are queued per (workspace, namespace) and one
//! worker drains the queue, so a burst of N deletes costs one scan per
//! namespace, not N. Dependent checks share that worker, coalesced per
//! object and bounded.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
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

/// Most dependent checks waiting at once; beyond it new ones are dropped
/// (logged) rather than letting a write burst grow memory without bound.
const MAX_PENDING_CHECKS: usize = 10_000;

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

/// A written object whose owners are to be verified: workspace, apiVersion,
/// kind, namespace, name.
type CheckKey = (ClusterId, String, String, Option<String>, String);

#[derive(Default)]
struct Pending {
    /// Owners gone whose dependents have not been looked for yet.
    gone: GoneOwners,
    /// Objects with ownerReferences to verify -> the uid written (the latest
    /// write of a name wins).
    checks: HashMap<CheckKey, String>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.gone.is_empty() && self.checks.is_empty()
    }
}

/// The collector's work queue and its single drain task.
#[derive(Default)]
pub(crate) struct OrphanQueue {
    pending: Mutex<Pending>,
    /// A drain task is running; at most one at a time.
    draining: AtomicBool,
    /// The registry the drain task works for (set once it is built; weak so
    /// the registry is not kept alive by itself).
    registry: OnceLock<Weak<Registry>>,
}

impl OrphanQueue {
    pub(crate) fn bind(&self, registry: &Arc<Registry>) {
        let _ = self.registry.set(Arc::downgrade(registry));
    }

    fn push(&self, cluster: &ClusterId, namespace: Option<String>, uids: HashSet<String>) {
        self.pending
            .lock()
            .gone
            .entry((cluster.clone(), namespace))
            .or_default()
            .extend(uids);
    }

    /// Queues a check; false when the queue is full.
    fn push_check(&self, key: CheckKey, uid: String) -> bool {
        let mut p = self.pending.lock();
        if p.checks.len() >= MAX_PENDING_CHECKS && !p.checks.contains_key(&key) {
            return false;
        }
        p.checks.insert(key, uid);
        true
    }

    /// Queues a dependents scan for owners that are gone and starts the
    /// drain task unless one is running. Also for deletes made outside the
    /// registry's DELETE path (a CRD's cleanup of its objects).
    pub(crate) fn queue_gone(
        &self,
        cluster: &ClusterId,
        namespace: Option<String>,
        uids: HashSet<String>,
    ) {
        if uids.is_empty() {
            return;
        }
        self.push(cluster, namespace, uids);
        self.start_drain();
    }

    /// Queues the objects that have left storage as gone owners, grouped
    /// per namespace (one dependents scan each).
    pub(crate) fn queue_deleted<'a>(
        &self,
        cluster: &ClusterId,
        objects: impl IntoIterator<Item = &'a Object>,
    ) {
        let mut gone: BTreeMap<Option<String>, HashSet<String>> = BTreeMap::new();
        for o in objects {
            if let Some(uid) = meta_str(o, "uid").filter(|u| !u.is_empty()) {
                gone.entry(meta_str(o, "namespace").map(str::to_owned))
                    .or_default()
                    .insert(uid.to_owned());
            }
        }
        for (namespace, uids) in gone {
            self.queue_gone(cluster, namespace, uids);
        }
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock())
    }

    /// Starts the drain task unless one is running.
    fn start_drain(&self) {
        if self.draining.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(registry) = self.registry.get().and_then(Weak::upgrade) else {
            self.draining.store(false, Ordering::Release);
            return;
        };
        tokio::spawn(async move { registry.drain_orphan_scans().await });
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
            this.orphans()
                .queue_gone(&cluster, owner.namespace, HashSet::from([owner.uid]));
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
        let mut deleted = Vec::new();
        for outcome in outcomes {
            match outcome {
                DeleteOutcome::Deleted(o) => deleted.push(o),
                pending @ DeleteOutcome::Pending(_) => {
                    self.after_delete(cluster, pending, propagation)
                }
            }
        }
        self.orphans().queue_deleted(cluster, deleted);
    }

    /// No collection is queued or running (background work started by
    /// deletes and owned writes so far is done): lets tests and probes wait
    /// for the collector without guessing a delay.
    pub fn gc_idle(&self) -> bool {
        !self.orphans().draining.load(Ordering::Acquire) && self.orphans().pending.lock().is_empty()
    }

    /// Collection an object's removal implies once it has left storage by a
    /// path other than DELETE (its last finalizer dropped, a namespace
    /// finalized): its dependents are collected in the background, as
    /// upstream does once neither `orphan` nor `foregroundDeletion` remain.
    pub(crate) fn after_removed(&self, cluster: &ClusterId, obj: &Object) {
        self.orphans().queue_deleted(cluster, [obj]);
    }

    /// What a successful create/update/patch implies for collection: the
    /// write that removed a deleting object collects its dependents; a
    /// written object with ownerReferences gets its owners verified. Only
    /// queues work: nothing is looked up on the request path.
    pub(crate) fn gc_after_write(
        &self,
        rs: &ResourceStore,
        cluster: &ClusterId,
        obj: &Object,
        dry_run: bool,
    ) {
        if dry_run {
            return;
        }
        if rs.removed_by_write(obj) {
            self.after_removed(cluster, obj);
            return;
        }
        let has_owners = meta(obj)
            .and_then(|m| m.get("ownerReferences"))
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if !has_owners {
            return;
        }
        let (Some(av), Some(kind), Some(uid)) = (
            obj.get("apiVersion").and_then(Value::as_str),
            obj.get("kind").and_then(Value::as_str),
            meta_str(obj, "uid"),
        ) else {
            return;
        };
        let key = (
            cluster.clone(),
            av.to_owned(),
            kind.to_owned(),
            meta_str(obj, "namespace").map(str::to_owned),
            crate::metadata::name(obj).to_owned(),
        );
        if !self.orphans().push_check(key, uid.to_owned()) {
            tracing::warn!(
                kind,
                name = crate::metadata::name(obj),
                "gc: check queue full; owners of this object are not verified"
            );
            return;
        }
        self.orphans().start_drain();
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
            for ((cluster, namespace), uids) in batch.gone {
                self.clone()
                    .collect_orphaned_dependents(&cluster, namespace.as_deref(), &uids)
                    .await;
            }
            for ((cluster, av, kind, namespace, name), uid) in batch.checks {
                self.check_dependent(&cluster, &av, &kind, namespace.as_deref(), &name, &uid)
                    .await;
            }
        }
    }

    /// Deletes the object if none of its owners exists with the referenced
    /// uid (upstream's dangling-reference rule).
    async fn check_dependent(
        self: &Arc<Self>,
        cluster: &ClusterId,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        uid: &str,
    ) {
        let Some(store) = self.kind_store(cluster, api_version, kind) else {
            return;
        };
        // The current object: its references may have changed since.
        let Ok(dep) = store.get(cluster, namespace, name).await else {
            return;
        };
        if meta_str(&dep, "uid") != Some(uid)
            || meta(&dep).is_some_and(|m| m.contains_key("deletionTimestamp"))
        {
            return;
        }
        if self.all_owners_absent(cluster, &dep, &HashSet::new()).await {
            tracing::debug!(
                kind,
                name,
                "gc: collecting a dependent whose owners are absent"
            );
            self.delete_dependent(&store, cluster, &dep).await;
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

    /// Has every owner of `dependent` been verified absent (the `gone` ones,
    /// or no object of that kind and name with the referenced uid)? False
    /// without owners, when an owner's kind cannot be resolved, or when a
    /// lookup fails: the dependent is then left alone, as upstream does.
    async fn all_owners_absent(
        &self,
        cluster: &ClusterId,
        dependent: &Object,
        gone: &HashSet<String>,
    ) -> bool {
        let refs = owner_refs(dependent);
        if refs.is_empty() {
            return false;
        }
        for r in refs {
            let uid = r.get("uid").and_then(Value::as_str).unwrap_or("");
            if uid.is_empty() {
                return false;
            }
            if gone.contains(uid) {
                continue;
            }
            let (Some(av), Some(kind), Some(name)) = (
                r.get("apiVersion").and_then(Value::as_str),
                r.get("kind").and_then(Value::as_str),
                r.get("name").and_then(Value::as_str),
            ) else {
                return false;
            };
            let Some(store) = self.kind_store(cluster, av, kind) else {
                return false;
            };
            let ns = if store.descriptor.namespaced() {
                match meta_str(dependent, "namespace") {
                    Some(ns) => Some(ns),
                    // A cluster-scoped dependent cannot name a namespaced
                    // owner; leave it rather than guess.
                    None => return false,
                }
            } else {
                None
            };
            match store.get(cluster, ns, name).await {
                Ok(o) if meta_str(&o, "uid") == Some(uid) => return false,
                Ok(_) => {}
                Err(e) if e.code() == 404 => {}
                Err(e) => {
                    tracing::warn!(error = %e, kind, name, "gc: owner lookup failed");
                    return false;
                }
            }
        }
        true
    }

    /// Deletes a dependent (background), only if it is still the object
    /// that was examined.
    async fn delete_dependent(
        self: &Arc<Self>,
        store: &Arc<ResourceStore>,
        cluster: &ClusterId,
        dep: &Object,
    ) {
        let opts = DeleteOptions {
            propagation: Some(Propagation::Background),
            precondition_uid: meta_str(dep, "uid").map(str::to_owned),
            ..Default::default()
        };
        let ns = meta_str(dep, "namespace");
        match self
            .delete(store, cluster, ns, crate::metadata::name(dep), &opts)
            .await
        {
            Ok(_) => {}
            Err(e) if e.code() == 404 || e.code() == 409 => {}
            Err(e) => tracing::warn!(error = %e, "gc: deleting a dependent failed"),
        }
    }

    async fn collect_orphaned_dependents(
        self: Arc<Self>,
        cluster: &ClusterId,
        namespace: Option<&str>,
        uids: &HashSet<String>,
    ) {
        for (store, dep) in self.dependents(cluster, namespace, uids).await {
            if self.all_owners_absent(cluster, &dep, uids).await {
                self.delete_dependent(&store, cluster, &dep).await;
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
                    self.orphans().queue_gone(
                        cluster,
                        owner.namespace.clone(),
                        HashSet::from([owner.uid.clone()]),
                    );
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "gc: removing a finalizer failed"),
        }
    }
}
