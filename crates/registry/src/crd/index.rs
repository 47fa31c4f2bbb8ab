//! Cluster id -> that workspace's CRDs, and what they make the workspace
//! serve. Ground truth is the CRD records in storage: the index loads them
//! in pages at start-up, follows them with ONE storage watch over the CRD
//! prefix (every workspace), and CRD writes update it before they return,
//! so discovery, OpenAPI and serving reflect a CRD the moment its create
//! answers.
//!
//! Everything derived is shared by content: a [`Definition`] (and its
//! compiled schemas) per distinct spec, a custom-resource [`ResourceStore`]
//! per (CRD content, version), and an [`ApiBundle`] (the `ApiSet` plus the
//! stores) per distinct set of served CRDs. A workspace only holds a small
//! map of names to shared entries; one without CRDs holds nothing and
//! serves the built-in set.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use kube_core::GroupVersionKind;
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use sha2::{Digest, Sha256};
use storage::{EventKind, KeyValue, RangeRequest, Store};

use super::definition::{Definition, Names};
use super::schema::SchemaCache;
use super::strategy::{CustomStrategy, VersionConversion};
use crate::cluster::ClusterId;
use crate::discovery::ApiSet;
use crate::keys::{KeyRoot, ResourcePrefix};
use crate::metadata::{self, meta_str};
use crate::openapi::{CustomSchema, Gvk};
use crate::prefix_follower::{self, PrefixFollower};
use crate::resource::{ALL_VERBS, Object, ResourceDescriptor};
use crate::store::{ResourceStore, StoreContext};

const LOAD_PAGE: usize = 1_000;

type Hash = [u8; 32];

/// What one API set serves: discovery/OpenAPI model and the custom stores.
pub struct ApiBundle {
    pub api: Arc<ApiSet>,
    /// (group, version, plural) -> store, custom resources only.
    stores: HashMap<(String, String, String), Arc<ResourceStore>>,
}

/// One CRD of one workspace.
#[derive(Clone)]
struct Entry {
    def: Arc<Definition>,
    /// Content identity: spec, accepted names, served.
    hash: Hash,
    /// Shared with the definition when equal to its spec names (the usual case).
    accepted: Arc<Names>,
    /// Established with accepted names: its versions are served.
    served: bool,
    terminating: bool,
    revision: i64,
}

#[derive(Default)]
struct Workspace {
    crds: CrdMap,
    bundle: Option<Arc<ApiBundle>>,
}

/// A workspace's CRDs by name: a sorted vector, as most workspaces have a
/// handful (a map node would cost more than the entries).
#[derive(Clone, Default)]
struct CrdMap(Vec<(String, Entry)>);

impl CrdMap {
    fn get(&self, name: &str) -> Option<&Entry> {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| &self.0[i].1)
    }

    fn insert(&mut self, name: String, e: Entry) {
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(&name)) {
            Ok(i) => self.0[i].1 = e,
            Err(i) => self.0.insert(i, (name, e)),
        }
        self.0.shrink_to_fit();
    }

    fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| n != name);
        self.0.shrink_to_fit();
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.0.iter().map(|(n, e)| (n, e))
    }

    fn values(&self) -> impl Iterator<Item = &Entry> {
        self.0.iter().map(|(_, e)| e)
    }
}

#[derive(Default)]
struct Shared {
    defs: HashMap<Hash, Weak<Definition>>,
    stores: HashMap<(Hash, String), Weak<ResourceStore>>,
    bundles: HashMap<Hash, Weak<ApiBundle>>,
}

pub struct CrdIndex {
    root: KeyRoot,
    prefix: ResourcePrefix,
    ctx: Arc<StoreContext>,
    schemas: Arc<SchemaCache>,
    builtin_descriptors: Vec<Arc<ResourceDescriptor>>,
    builtin: Arc<ApiSet>,
    group_order: &'static [&'static str],
    advertise_address: String,
    workspaces: RwLock<HashMap<ClusterId, Workspace>>,
    /// Serialises index changes (bundle builds happen outside `workspaces`).
    update: Mutex<()>,
    shared: Mutex<Shared>,
    /// The CRD resource's own store (for the cleanup's status writes).
    pub(crate) crd_store: OnceLock<Arc<ResourceStore>>,
    /// CRDs whose cleanup runs now, so a watch event does not start another.
    pub(super) cleaning: dashmap::DashSet<(ClusterId, String)>,
    /// The garbage collector's queue, for the owners a cleanup deletes.
    pub(crate) orphans: OnceLock<Arc<crate::gc::OrphanQueue>>,
}

/// Numbers of the loaded index.
#[derive(Debug, Default, Clone, Copy)]
pub struct LoadStats {
    pub crds: usize,
    pub revision: i64,
    pub elapsed: Duration,
}

fn sha(parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(&h.finalize());
    out
}

fn condition_true(obj: &Object, type_: &str) -> bool {
    obj.get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some(type_)
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

impl CrdIndex {
    pub fn new(
        root: &KeyRoot,
        ctx: Arc<StoreContext>,
        schemas: Arc<SchemaCache>,
        builtin_descriptors: Vec<Arc<ResourceDescriptor>>,
        builtin: Arc<ApiSet>,
        group_order: &'static [&'static str],
        advertise_address: &str,
    ) -> Self {
        CrdIndex {
            root: root.clone(),
            prefix: root.resource_prefix(super::GROUP, super::PLURAL),
            ctx,
            schemas,
            builtin_descriptors,
            builtin,
            group_order,
            advertise_address: advertise_address.to_owned(),
            workspaces: RwLock::new(HashMap::new()),
            update: Mutex::new(()),
            shared: Mutex::new(Shared::default()),
            crd_store: OnceLock::new(),
            cleaning: dashmap::DashSet::new(),
            orphans: OnceLock::new(),
        }
    }

    /// The API set `cluster` serves: built-ins plus its established CRDs.
    pub fn api_set(&self, cluster: &ClusterId) -> Arc<ApiSet> {
        self.workspaces
            .read()
            .get(cluster)
            .and_then(|w| w.bundle.as_ref())
            .map_or_else(|| self.builtin.clone(), |b| b.api.clone())
    }

    /// The store of a custom resource served in `cluster`.
    pub fn resource(
        &self,
        cluster: &ClusterId,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<Arc<ResourceStore>> {
        let w = self.workspaces.read();
        let b = w.get(cluster)?.bundle.as_ref()?;
        b.stores
            .get(&(group.to_owned(), version.to_owned(), plural.to_owned()))
            .cloned()
    }

    /// One store per custom resource `cluster` serves (versions share a
    /// prefix, so one of them reaches every object): for sweeps.
    pub fn stores_of(&self, cluster: &ClusterId) -> Vec<Arc<ResourceStore>> {
        let w = self.workspaces.read();
        let Some(b) = w.get(cluster).and_then(|w| w.bundle.as_ref()) else {
            return Vec::new();
        };
        let mut out: Vec<Arc<ResourceStore>> = Vec::new();
        for s in b.stores.values() {
            if !out
                .iter()
                .any(|o| o.descriptor.prefix == s.descriptor.prefix)
            {
                out.push(s.clone());
            }
        }
        out
    }

    /// The store of the custom resource of kind `kind` served as
    /// `api_version` in `cluster` (owner references name kinds).
    pub fn resource_for_kind(
        &self,
        cluster: &ClusterId,
        api_version: &str,
        kind: &str,
    ) -> Option<Arc<ResourceStore>> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let w = self.workspaces.read();
        let b = w.get(cluster)?.bundle.as_ref()?;
        b.stores
            .iter()
            .find(|((g, v, _), s)| g == group && v == version && s.descriptor.gvk.kind == kind)
            .map(|(_, s)| s.clone())
    }

    /// Whether the CRD serving `group`/`plural` in `cluster` is being deleted
    /// (new objects are refused then, as upstream).
    pub fn is_terminating(&self, cluster: &ClusterId, group: &str, plural: &str) -> bool {
        self.workspaces.read().get(cluster).is_some_and(|w| {
            w.crds
                .values()
                .any(|e| e.terminating && e.def.group == group && e.accepted.plural == plural)
        })
    }

    /// Workspaces that have at least one CRD.
    pub fn workspaces_with_crds(&self) -> usize {
        self.workspaces.read().len()
    }

    /// Distinct custom-resource stores alive (shared across workspaces).
    pub fn distinct_stores(&self) -> usize {
        let mut s = self.shared.lock();
        s.stores.retain(|_, w| w.strong_count() > 0);
        s.stores.len()
    }

    /// Distinct API sets with CRDs alive.
    pub fn distinct_api_sets(&self) -> usize {
        let mut s = self.shared.lock();
        s.bundles.retain(|_, w| w.strong_count() > 0);
        s.bundles.len()
    }

    /// Why `names` of CRD `name` cannot be accepted in `cluster`, as
    /// (reason, message): another CRD of the same group or a built-in
    /// already uses one of them.
    pub fn names_conflict(
        &self,
        cluster: &ClusterId,
        name: &str,
        group: &str,
        names: &Names,
    ) -> Option<(String, String)> {
        let mut resource_names: Vec<String> = Vec::new();
        let mut kinds: Vec<String> = Vec::new();
        for d in &self.builtin_descriptors {
            if d.gvk.group == group {
                resource_names.push(d.plural().to_owned());
                resource_names.push(d.singular.clone());
                resource_names.extend(d.short_names.iter().cloned());
                kinds.push(d.gvk.kind.clone());
                kinds.push(d.list_kind.clone());
            }
        }
        if let Some(w) = self.workspaces.read().get(cluster) {
            for (other, e) in w.crds.iter() {
                if other == name || e.def.group != group || !e.served {
                    continue;
                }
                let a = &e.accepted;
                resource_names.push(a.plural.clone());
                resource_names.push(a.singular.clone());
                resource_names.extend(a.short_names.iter().cloned());
                kinds.push(a.kind.clone());
                kinds.push(a.list_kind.clone());
            }
        }
        let used = |n: &str| !n.is_empty() && resource_names.iter().any(|u| u == n);
        let kind_used = |n: &str| !n.is_empty() && kinds.iter().any(|u| u == n);
        let in_use = |n: &str| format!("{n:?} is already in use");
        if used(&names.plural) {
            return Some(("PluralConflict".into(), in_use(&names.plural)));
        }
        if used(&names.singular) {
            return Some(("SingularConflict".into(), in_use(&names.singular)));
        }
        if let Some(s) = names.short_names.iter().find(|s| used(s)) {
            return Some((
                "ShortNamesConflict".into(),
                format!("{s:?} is already in use"),
            ));
        }
        if kind_used(&names.kind) {
            return Some(("KindConflict".into(), in_use(&names.kind)));
        }
        if kind_used(&names.list_kind) {
            return Some(("ListKindConflict".into(), in_use(&names.list_kind)));
        }
        None
    }

    /// The shared definition of a CRD spec.
    fn definition(&self, obj: &Object, spec_hash: Hash) -> Option<Arc<Definition>> {
        if let Some(d) = self
            .shared
            .lock()
            .defs
            .get(&spec_hash)
            .and_then(Weak::upgrade)
        {
            return Some(d);
        }
        match Definition::parse(obj, &self.schemas) {
            Ok(d) => {
                let d = Arc::new(d);
                let mut s = self.shared.lock();
                s.defs.retain(|_, w| w.strong_count() > 0);
                s.defs.insert(spec_hash, Arc::downgrade(&d));
                Some(d)
            }
            Err(errs) => {
                tracing::warn!(
                    crd = metadata::name(obj),
                    errors = errs.len(),
                    "a stored CustomResourceDefinition is invalid; not serving it"
                );
                None
            }
        }
    }

    /// Takes in the current state of one CRD object (from a write of this
    /// process or from the watch). Older states than the one known are
    /// ignored. Returns whether the CRD is terminating (cleanup due).
    pub fn observe(&self, cluster: &ClusterId, obj: &Object) -> bool {
        let name = metadata::name(obj).to_owned();
        let revision = meta_str(obj, "resourceVersion")
            .and_then(|r| r.parse::<i64>().ok())
            .unwrap_or(0);
        let spec_bytes =
            serde_json::to_vec(obj.get("spec").unwrap_or(&Value::Null)).unwrap_or_default();
        let spec_hash = sha(&[&spec_bytes]);
        let Some(def) = self.definition(obj, spec_hash) else {
            return false;
        };
        let accepted = Names::from_value(obj.get("status").and_then(|s| s.get("acceptedNames")));
        let accepted = if accepted == *def.names {
            def.names.clone()
        } else {
            Arc::new(accepted)
        };
        let served = condition_true(obj, "Established")
            && condition_true(obj, "NamesAccepted")
            && !accepted.plural.is_empty()
            && !accepted.kind.is_empty();
        let accepted_bytes = serde_json::to_vec(&accepted.to_value()).unwrap_or_default();
        let hash = sha(&[&spec_hash, &accepted_bytes, &[u8::from(served)]]);
        let terminating =
            crate::metadata::meta(obj).is_some_and(|m| m.contains_key("deletionTimestamp"));
        let entry = Entry {
            def,
            hash,
            accepted,
            served,
            terminating,
            revision,
        };
        let _serial = self.update.lock();
        let mut crds = {
            let w = self.workspaces.read();
            match w.get(cluster) {
                Some(ws) => {
                    if ws.crds.get(&name).is_some_and(|e| e.revision > revision) {
                        return false;
                    }
                    ws.crds.clone()
                }
                None => CrdMap::default(),
            }
        };
        crds.insert(name, entry);
        self.install(cluster, crds);
        terminating
    }

    /// Drops a deleted CRD (unless a newer one of that name is known).
    /// Returns whether it was dropped.
    pub fn forget(&self, cluster: &ClusterId, name: &str, revision: i64) -> bool {
        let _serial = self.update.lock();
        let crds = {
            let w = self.workspaces.read();
            let Some(ws) = w.get(cluster) else {
                return true;
            };
            match ws.crds.get(name) {
                None => return true,
                Some(e) if e.revision > revision => return false,
                Some(_) => {}
            }
            let mut crds = ws.crds.clone();
            crds.remove(name);
            crds
        };
        self.install(cluster, crds);
        true
    }

    /// The entry of one CRD (for the cleanup).
    pub(super) fn entry_store(
        &self,
        cluster: &ClusterId,
        name: &str,
    ) -> Option<Arc<ResourceStore>> {
        let e = self.workspaces.read().get(cluster)?.crds.get(name)?.clone();
        let storage = e.def.storage_version().to_owned();
        Some(self.store_for(&e, &storage))
    }

    /// Sets a workspace's CRDs and its (shared) bundle. Called under `update`.
    fn install(&self, cluster: &ClusterId, crds: CrdMap) {
        if crds.is_empty() {
            self.workspaces.write().remove(cluster);
            return;
        }
        let bundle = self.bundle_for(&crds);
        self.workspaces
            .write()
            .insert(cluster.clone(), Workspace { crds, bundle });
    }

    /// The shared bundle of a set of CRDs; `None` when none is served.
    fn bundle_for(&self, crds: &CrdMap) -> Option<Arc<ApiBundle>> {
        let served: Vec<(&String, &Entry)> = crds.iter().filter(|(_, e)| e.served).collect();
        if served.is_empty() {
            return None;
        }
        let mut h = Sha256::new();
        for (name, e) in &served {
            h.update(name.as_bytes());
            h.update([0]);
            h.update(e.hash);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&h.finalize());
        if let Some(b) = self.shared.lock().bundles.get(&key).and_then(Weak::upgrade) {
            return Some(b);
        }
        let started = Instant::now();
        let mut descriptors = self.builtin_descriptors.clone();
        let mut stores = HashMap::new();
        let mut schemas = Vec::new();
        for (_, e) in &served {
            for v in e.def.versions.iter().filter(|v| v.served) {
                let store = self.store_for(e, &v.name);
                descriptors.push(store.descriptor.clone());
                schemas.push(CustomSchema {
                    gvk: Gvk::new(&e.def.group, &v.name, &e.accepted.kind),
                    schema: v.schema.openapi_v3(),
                    schema_v2: v.schema.openapi_v2(),
                });
                stores.insert(
                    (
                        e.def.group.clone(),
                        v.name.clone(),
                        e.accepted.plural.clone(),
                    ),
                    store,
                );
            }
        }
        let api = Arc::new(
            ApiSet::new(&descriptors, self.group_order, &self.advertise_address)
                .with_custom_schemas(schemas),
        );
        let bundle = Arc::new(ApiBundle { api, stores });
        tracing::debug!(
            crds = served.len(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "built a CRD API set"
        );
        let mut s = self.shared.lock();
        s.bundles.retain(|_, w| w.strong_count() > 0);
        s.bundles.insert(key, Arc::downgrade(&bundle));
        Some(bundle)
    }

    /// The shared store of one version of a CRD's content.
    fn store_for(&self, e: &Entry, version: &str) -> Arc<ResourceStore> {
        let key = (e.hash, version.to_owned());
        if let Some(s) = self.shared.lock().stores.get(&key).and_then(Weak::upgrade) {
            return s;
        }
        let def = &e.def;
        let names = &e.accepted;
        let storage = def.storage_version().to_owned();
        let v = def
            .versions
            .iter()
            .find(|v| v.name == version)
            .or_else(|| def.versions.iter().find(|v| v.storage));
        let mut d = ResourceDescriptor::new(
            &self.root,
            GroupVersionKind::gvk(&def.group, version, &names.kind),
            &names.plural,
            def.scope.clone(),
            names.short_names.iter().map(String::as_str).collect(),
            names.categories.iter().map(String::as_str).collect(),
            ALL_VERBS,
        );
        d.list_kind = names.list_kind.clone();
        d.singular = names.singular.clone();
        d.storage_version = Some(storage.clone());
        let mut strategy = None;
        if let Some(v) = v {
            if v.status {
                d = d.with_subresource("status", crate::builtin::SUB_VERBS);
            }
            if let Some(scale) = &v.scale {
                d = d.with_foreign_subresource(
                    "scale",
                    GroupVersionKind::gvk("autoscaling", "v1", "Scale"),
                    crate::builtin::SUB_VERBS,
                );
                d.scale = scale.clone();
            }
            if v.deprecated {
                // Upstream's default text, or the CRD's own.
                d.deprecation_warning = Some(v.deprecation_warning.clone().unwrap_or_else(|| {
                    format!("{}/{} {} is deprecated", def.group, version, names.kind)
                }));
            }
            d.printer_columns = if v.columns.is_empty() {
                vec![crate::table::ColumnSpec::crd_default_age()]
            } else {
                v.columns.clone()
            };
            strategy = Some((
                Arc::new(CustomStrategy::new(v.schema.clone())),
                v.schema.type_info().clone(),
            ));
        }
        let mut rs = match strategy {
            // Server-side apply merges by the schema's list and map types.
            Some((s, types)) => {
                ResourceStore::new(Arc::new(d), s, self.ctx.clone()).with_types(types)
            }
            None => ResourceStore::new(
                Arc::new(d),
                Arc::new(crate::resource::GenerationStrategy),
                self.ctx.clone(),
            ),
        };
        if version != storage {
            let api_version = |v: &str| format!("{}/{v}", def.group);
            rs = rs.with_conversion(Arc::new(VersionConversion {
                served: api_version(version),
                storage: api_version(&storage),
            }));
        }
        let rs = Arc::new(rs);
        let mut s = self.shared.lock();
        s.stores.retain(|_, w| w.strong_count() > 0);
        s.stores.insert(key, Arc::downgrade(&rs));
        rs
    }

    /// Loads every CRD of every workspace, in pages at one revision.
    pub async fn load(self: &Arc<Self>, store: &dyn Store) -> Result<LoadStats, storage::Error> {
        let started = Instant::now();
        let mut stats = LoadStats::default();
        let mut req = RangeRequest::prefix(self.prefix.as_bytes().to_vec()).limit(LOAD_PAGE);
        let mut revision = None;
        let mut terminating = Vec::new();
        let mut seen = std::collections::HashSet::new();
        loop {
            if let Some(r) = revision {
                req = req.at_revision(r);
            }
            let resp = store.range(req.clone()).await?;
            revision.get_or_insert(resp.revision);
            for kv in &resp.kvs {
                if let Some((cluster, obj)) = self.decode(kv) {
                    stats.crds += 1;
                    seen.insert((cluster.clone(), metadata::name(&obj).to_owned()));
                    if self.observe(&cluster, &obj) {
                        terminating.push((cluster, metadata::name(&obj).to_owned()));
                    }
                }
            }
            match resp.kvs.last() {
                Some(last) if resp.more => req = req.starting_after(&last.key),
                _ => break,
            }
        }
        for (cluster, name) in terminating {
            self.clone().spawn_cleanup(cluster, name);
        }
        // A reload after a lost watch: CRDs deleted meanwhile go, and their
        // objects are swept as the watch would have done.
        let revision = revision.unwrap_or(0);
        let gone: Vec<(ClusterId, String, String, String)> = self
            .workspaces
            .read()
            .iter()
            .flat_map(|(c, w)| {
                w.crds
                    .iter()
                    .filter(|(n, e)| {
                        e.revision <= revision && !seen.contains(&(c.clone(), (*n).clone()))
                    })
                    .map(|(n, e)| {
                        // Objects live under the spec's plural (`<plural>.<group>`).
                        let plural = n.split_once('.').map_or("", |(p, _)| p);
                        (c.clone(), n.clone(), e.def.group.clone(), plural.to_owned())
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        for (cluster, name, group, plural) in gone {
            if self.forget(&cluster, &name, revision) {
                self.sweep(store, &cluster, &group, &plural, &name).await;
            }
        }
        stats.revision = revision;
        stats.elapsed = started.elapsed();
        Ok(stats)
    }

    fn decode(&self, kv: &KeyValue) -> Option<(ClusterId, Object)> {
        let key = self.prefix.parse(&kv.key, false)?;
        let cluster = ClusterId::parse(key.cluster)?;
        let mut obj = crate::store::decode(kv).ok()?;
        metadata::meta_mut(&mut obj)
            .insert("resourceVersion".into(), kv.mod_revision.to_string().into());
        Some((cluster, obj))
    }

    /// Follows the CRD prefix from `from`, reloading after a failed watch.
    pub fn spawn_watch(self: &Arc<Self>, store: Arc<dyn Store>, from: i64) {
        let prefix = self.prefix.as_bytes().to_vec();
        prefix_follower::spawn(self.clone(), prefix, store, from);
    }

    /// Removes a deleted CRD's objects in `cluster`: a CRD deleted through
    /// the API has none left; one removed by a workspace deletion leaves them.
    async fn sweep(
        &self,
        store: &dyn Store,
        cluster: &ClusterId,
        group: &str,
        plural: &str,
        crd: &str,
    ) {
        let p = self.root.resource_prefix(group, plural);
        let (start, end) = p.cluster_range(cluster);
        if let Err(e) = store.delete_range(&start, &end).await {
            tracing::warn!(error = %e, crd, "sweeping the objects of a deleted CRD");
        }
    }

    async fn apply_event(
        self: Arc<Self>,
        kind: EventKind,
        kv: &KeyValue,
        rev: i64,
        store: &dyn Store,
    ) {
        match kind {
            EventKind::Put => {
                if let Some((cluster, obj)) = self.decode(kv)
                    && self.observe(&cluster, &obj)
                {
                    self.clone()
                        .spawn_cleanup(cluster, metadata::name(&obj).to_owned());
                }
            }
            EventKind::Delete => {
                let Some(key) = self.prefix.parse(&kv.key, false) else {
                    return;
                };
                let Some(cluster) = ClusterId::parse(key.cluster) else {
                    return;
                };
                let name = key.name.to_owned();
                // The previous value tells which resource the CRD served.
                let prev = kv_prev_plural(kv);
                if self.forget(&cluster, &name, rev)
                    && let Some((group, plural)) = prev
                {
                    self.sweep(store, &cluster, &group, &plural, &name).await;
                }
            }
        }
    }
}

/// `(group, plural)` from a CRD name `<plural>.<group>` (the name rule).
fn kv_prev_plural(kv: &KeyValue) -> Option<(String, String)> {
    let key = std::str::from_utf8(&kv.key).ok()?;
    let name = key.rsplit('/').next()?;
    let (plural, group) = name.split_once('.')?;
    Some((group.to_owned(), plural.to_owned()))
}

#[async_trait::async_trait]
impl PrefixFollower for CrdIndex {
    const WHAT: &'static str = "CRD";

    async fn apply(this: &Arc<Self>, event: storage::Event, store: &dyn Store) {
        let rev = event.revision();
        this.clone()
            .apply_event(event.kind, &event.kv, rev, store)
            .await;
    }

    async fn reload(this: &Arc<Self>, store: &dyn Store) -> Result<i64, storage::Error> {
        this.load(store).await.map(|stats| stats.revision)
    }
}
