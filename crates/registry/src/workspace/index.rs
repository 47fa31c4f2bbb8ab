//! The in-memory path -> logical cluster index of one replica: loaded in
//! pages at start-up, kept current by one storage watch on the Workspace
//! ResourcePrefix (so replicas on one etcd agree within a watch round trip),
//! and updated in-line by this replica's own writes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::{DashMap, DashSet};
use foldhash::fast::RandomState;
use serde_json::Value;
use storage::{EventKind, KeyValue, RangeRequest, Store};

use super::record::{Phase, StoredWorkspace, WorkspaceRecord, parse_time};
use super::{CLUSTER_ANNOTATION, GROUP, KCP_CLUSTER_ANNOTATION, PATH_ANNOTATION, PLURAL};
use crate::cluster::{ClusterId, WorkspacePath};
use crate::keys::{KeyRoot, ResourcePrefix};
use crate::prefix_follower::{self, PrefixFollower};
use crate::resource::Object;
use crate::status::{ApiError, ApiResult, QualifiedResource};

/// Records read per page while loading. Large: a limited range still
/// counts every key after the page (etcd semantics), so the load's cost
/// grows with (records / page) x records.
const LOAD_PAGE: usize = 50_000;
/// Pages at least this large are decoded on several threads.
const PARALLEL_FROM: usize = 2_048;

/// What a load did.
#[derive(Clone, Debug, Default)]
pub struct LoadStats {
    pub workspaces: usize,
    /// Records whose parent no longer exists (their deletion is pending).
    pub orphans: usize,
    pub pages: usize,
    pub elapsed: Duration,
    /// Of `elapsed`, the time spent waiting for storage pages.
    pub fetch: Duration,
    pub revision: i64,
}

/// A decoded Workspace record not yet placed (its parent may come later).
struct Pending {
    parent: ClusterId,
    name: String,
    id: ClusterId,
    owner: Option<Arc<str>>,
    phase: Phase,
    created_at: i64,
    deleted_at: Option<i64>,
    revision: i64,
    mod_revision: i64,
}

/// path -> record and id -> record, for every workspace.
pub struct WorkspaceIndex {
    by_path: DashMap<WorkspacePath, Arc<WorkspaceRecord>, RandomState>,
    by_id: DashMap<ClusterId, Arc<WorkspaceRecord>, RandomState>,
    /// Children of non-root workspaces (root's are every top-level one and
    /// are never needed), to forget a subtree when its top goes away.
    children: DashMap<ClusterId, Vec<ClusterId>>,
    /// Owner names are few and shared by many workspaces.
    owners: DashSet<Arc<str>>,
    /// Ids whose content is still being deleted: never handed out again.
    deleting: DashSet<ClusterId>,
    prefix: ResourcePrefix,
}

impl WorkspaceIndex {
    pub fn new(root: &KeyRoot) -> Self {
        let idx = WorkspaceIndex {
            by_path: DashMap::with_hasher(RandomState::default()),
            by_id: DashMap::with_hasher(RandomState::default()),
            children: DashMap::new(),
            owners: DashSet::new(),
            deleting: DashSet::new(),
            prefix: root.resource_prefix(GROUP, PLURAL),
        };
        let rec = Arc::new(WorkspaceRecord::root());
        idx.by_path.insert(rec.path.clone(), rec.clone());
        idx.by_id.insert(rec.id.clone(), rec);
        idx
    }

    fn qr() -> QualifiedResource {
        QualifiedResource::new(GROUP, PLURAL)
    }

    /// The record of `path`, or 404 for unknown workspaces (never an
    /// implicit create).
    pub fn get(&self, path: &WorkspacePath) -> ApiResult<Arc<WorkspaceRecord>> {
        self.by_path
            .get(path)
            .map(|r| r.clone())
            .ok_or_else(|| ApiError::not_found(&Self::qr(), path.as_str()))
    }

    /// The cluster id of `path`; 404 for unknown workspaces.
    pub fn resolve(&self, path: &WorkspacePath) -> ApiResult<ClusterId> {
        self.get(path).map(|r| r.id.clone())
    }

    pub fn info_by_id(&self, id: &ClusterId) -> Option<Arc<WorkspaceRecord>> {
        self.by_id.get(id).map(|i| i.clone())
    }

    pub fn by_id_str(&self, id: &str) -> Option<Arc<WorkspaceRecord>> {
        self.by_id.get(id).map(|i| i.clone())
    }

    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }

    /// Refuses writes into a workspace that is terminating (or nested in
    /// one) or no longer known, with a Forbidden Status naming the reason.
    pub fn check_writable(&self, id: &ClusterId) -> ApiResult<()> {
        let mut cur = match self.info_by_id(id) {
            Some(r) => r,
            None => {
                return Err(ApiError::forbidden(
                    &Self::qr(),
                    "",
                    "unable to create or change content: the workspace no longer exists",
                ));
            }
        };
        let target = cur.path.clone();
        loop {
            if cur.is_terminating() {
                let why = if cur.path == target {
                    format!(
                        "unable to create or change content in workspace {target} because it is being terminated"
                    )
                } else {
                    format!(
                        "unable to create or change content in workspace {target} because its parent workspace {} is being terminated",
                        cur.path
                    )
                };
                let mut e = ApiError::forbidden(&Self::qr(), target.as_str(), &why);
                if let Some(d) = e.details.as_mut() {
                    d.causes.push(serde_json::json!({
                        "reason": "WorkspaceTerminating",
                        "message": format!("workspace {} is being terminated", cur.path),
                    }));
                }
                return Err(e);
            }
            match cur.parent.as_ref().and_then(|p| self.info_by_id(p)) {
                Some(p) => cur = p,
                None => return Ok(()),
            }
        }
    }

    /// Adds `tenancy.wsgate.io/path`, `tenancy.wsgate.io/cluster` and
    /// `kcp.io/cluster` (the path, see [`KCP_CLUSTER_ANNOTATION`]) to an
    /// object read by a wildcard request from the key segment `cluster`.
    /// `false` when the cluster is no longer a known workspace (its content
    /// is awaiting deletion): such objects are not returned.
    pub fn annotate(&self, obj: &mut Object, cluster: &str) -> bool {
        let Some(rec) = self.by_id_str(cluster) else {
            return false;
        };
        let meta = crate::metadata::meta_mut(obj);
        let ann = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if !ann.is_object() {
            *ann = Value::Object(Default::default());
        }
        if let Value::Object(a) = ann {
            a.insert(PATH_ANNOTATION.into(), rec.path.as_str().into());
            a.insert(CLUSTER_ANNOTATION.into(), rec.id.as_str().into());
            a.insert(KCP_CLUSTER_ANNOTATION.into(), rec.path.as_str().into());
        }
        true
    }

    /// Whether `id` is free for a new workspace.
    pub fn id_is_free(&self, id: &ClusterId) -> bool {
        !self.by_id.contains_key(id) && !self.deleting.contains(id)
    }

    pub(crate) fn mark_deleting(&self, id: &ClusterId) {
        self.deleting.insert(id.clone());
    }

    pub(crate) fn deletion_done(&self, id: &ClusterId) {
        self.deleting.remove(id);
    }

    /// Ids whose deletion is pending.
    pub fn pending_deletions(&self) -> usize {
        self.deleting.len()
    }

    fn intern_owner(&self, owner: Option<&str>) -> Option<Arc<str>> {
        let o = owner.filter(|o| !o.is_empty())?;
        if let Some(a) = self.owners.get(o) {
            return Some(a.clone());
        }
        let a: Arc<str> = Arc::from(o);
        self.owners.insert(a.clone());
        Some(a)
    }

    fn decode(&self, parent: ClusterId, kv: &KeyValue, name: &str) -> Option<Pending> {
        let stored: StoredWorkspace<'_> = match serde_json::from_slice(&kv.value) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable workspace record; ignored");
                return None;
            }
        };
        let Some(id) = stored.spec.cluster.as_deref().and_then(ClusterId::parse) else {
            tracing::warn!(
                name,
                "workspace record without a valid spec.cluster; ignored"
            );
            return None;
        };
        Some(Pending {
            parent,
            name: name.to_owned(),
            id,
            owner: self.intern_owner(stored.spec.owner.as_deref()),
            phase: stored.phase(),
            created_at: stored
                .metadata
                .creation_timestamp
                .as_deref()
                .and_then(parse_time)
                .unwrap_or(0),
            deleted_at: stored
                .metadata
                .deletion_timestamp
                .as_deref()
                .and_then(parse_time),
            revision: kv.create_revision,
            mod_revision: kv.mod_revision,
        })
    }

    /// Places a decoded record; `false` when its parent is unknown.
    fn place(&self, p: &Pending) -> bool {
        let Some(parent) = self.info_by_id(&p.parent) else {
            return false;
        };
        let path = parent.path.child(&p.name);
        if let Some(old) = self.by_path.get(&path).map(|o| o.clone()) {
            if old.id == p.id {
                if p.mod_revision < old.mod_revision {
                    return true; // a stale event
                }
            } else if p.revision < old.revision {
                return true; // an older object under a reused name
            } else {
                self.forget_subtree(&old);
            }
        }
        let rec = Arc::new(WorkspaceRecord {
            id: p.id.clone(),
            path: path.clone(),
            // The parent record's own id: one shared allocation for all
            // its children, not one per child.
            parent: Some(parent.id.clone()),
            owner: p.owner.clone(),
            phase: p.phase,
            created_at: p.created_at,
            deleted_at: p.deleted_at,
            revision: p.revision,
            mod_revision: p.mod_revision,
        });
        let is_new = self.by_id.insert(p.id.clone(), rec.clone()).is_none();
        self.by_path.insert(path, rec);
        if is_new && !p.parent.as_str().eq(ClusterId::root().as_str()) {
            self.children
                .entry(p.parent.clone())
                .or_default()
                .push(p.id.clone());
        }
        true
    }

    /// Records a Workspace object this replica just wrote in `parent`.
    pub fn observe(
        &self,
        parent: &ClusterId,
        obj: &Object,
        create_revision: i64,
        mod_revision: i64,
    ) {
        let str_at = |a: &str, b: &str| obj.get(a).and_then(|v| v.get(b)).and_then(Value::as_str);
        let name = crate::metadata::name(obj);
        let Some(id) = str_at("spec", "cluster").and_then(ClusterId::parse) else {
            tracing::warn!(
                name,
                "workspace record without a valid spec.cluster; ignored"
            );
            return;
        };
        let terminating = str_at("status", "phase") == Some(Phase::Terminating.as_str())
            || str_at("metadata", "deletionTimestamp").is_some();
        let p = Pending {
            parent: parent.clone(),
            name: name.to_owned(),
            id,
            owner: self.intern_owner(str_at("spec", "owner")),
            phase: if terminating {
                Phase::Terminating
            } else {
                Phase::Ready
            },
            created_at: str_at("metadata", "creationTimestamp")
                .and_then(parse_time)
                .unwrap_or(0),
            deleted_at: str_at("metadata", "deletionTimestamp").and_then(parse_time),
            revision: create_revision,
            mod_revision,
        };
        if !self.place(&p) {
            tracing::warn!(%parent, name, "workspace record under an unknown parent; ignored");
        }
    }

    /// Removes a workspace and everything nested in it from the index.
    fn forget_subtree(&self, rec: &WorkspaceRecord) {
        let mut stack = vec![rec.id.clone()];
        while let Some(id) = stack.pop() {
            if let Some((_, r)) = self.by_id.remove(&id) {
                self.by_path.remove_if(&r.path, |_, cur| cur.id == id);
                if let Some(parent) = &r.parent
                    && let Some(mut siblings) = self.children.get_mut(parent)
                {
                    siblings.retain(|c| *c != id);
                }
            }
            if let Some((_, kids)) = self.children.remove(&id) {
                stack.extend(kids);
            }
        }
        self.children.remove_if(
            &rec.parent.clone().unwrap_or_else(ClusterId::root),
            |_, v| v.is_empty(),
        );
    }

    /// The id of the key segment `cluster`: the known record's (shared)
    /// id, else a new one if it is well-formed.
    fn parent_id(&self, cluster: &str) -> Option<ClusterId> {
        match self.by_id.get(cluster) {
            Some(r) => Some(r.id.clone()),
            None => ClusterId::parse(cluster),
        }
    }

    fn apply_kv(&self, kv: &KeyValue) {
        let Some(k) = self.prefix.parse(&kv.key, false) else {
            return;
        };
        let Some(parent) = self.parent_id(k.cluster) else {
            return;
        };
        if let Some(p) = self.decode(parent, kv, k.name) {
            self.place(&p);
        }
    }

    fn apply_delete(&self, kv: &KeyValue, revision: i64) {
        let Some(k) = self.prefix.parse(&kv.key, false) else {
            return;
        };
        let Some(parent) = self.info_by_id_str(k.cluster) else {
            return;
        };
        let path = parent.path.child(k.name);
        // Only a record older than the delete: a replacement under the
        // same name may already be observed.
        let current = self.by_path.get(&path).map(|r| r.clone());
        if let Some(rec) = current
            && rec.revision < revision
        {
            self.forget_subtree(&rec);
        }
    }

    fn info_by_id_str(&self, id: &str) -> Option<Arc<WorkspaceRecord>> {
        self.by_id.get(id).map(|r| r.clone())
    }

    /// Decodes and places records; returns those whose parent is unknown.
    /// `seen` collects the ids of a reload.
    fn load_chunk(&self, kvs: &[KeyValue], seen: Option<&DashSet<ClusterId>>) -> Vec<Pending> {
        let mut waiting = Vec::new();
        for kv in kvs {
            let Some(k) = self.prefix.parse(&kv.key, false) else {
                continue;
            };
            let Some(parent) = self.parent_id(k.cluster) else {
                continue;
            };
            if let Some(p) = self.decode(parent, kv, k.name) {
                if let Some(seen) = seen {
                    seen.insert(p.id.clone());
                }
                if !self.place(&p) {
                    waiting.push(p);
                }
            }
        }
        waiting
    }

    /// [`Self::load`] after the watch was lost: also forgets workspaces
    /// whose records disappeared meanwhile (the watch would have said so).
    pub async fn reload(&self, store: &dyn Store) -> Result<LoadStats, storage::Error> {
        let seen = DashSet::new();
        let stats = self.load_inner(store, Some(&seen)).await?;
        let gone: Vec<Arc<WorkspaceRecord>> = self
            .by_id
            .iter()
            // Created after the snapshot: the restarted watch covers it.
            .filter(|r| r.parent.is_some() && r.revision <= stats.revision && !seen.contains(&r.id))
            .map(|r| r.clone())
            .collect();
        for rec in gone {
            self.forget_subtree(&rec);
        }
        Ok(stats)
    }

    /// Loads every workspace in pages of [`LOAD_PAGE`] at one revision.
    /// Records whose parent is not loaded yet wait until it is.
    pub async fn load(&self, store: &dyn Store) -> Result<LoadStats, storage::Error> {
        self.load_inner(store, None).await
    }

    async fn load_inner(
        &self,
        store: &dyn Store,
        seen: Option<&DashSet<ClusterId>>,
    ) -> Result<LoadStats, storage::Error> {
        let started = Instant::now();
        let mut stats = LoadStats::default();
        let mut req = RangeRequest::prefix(self.prefix.as_bytes().to_vec()).limit(LOAD_PAGE);
        let mut revision = None;
        let mut waiting: Vec<Pending> = Vec::new();
        loop {
            if let Some(r) = revision {
                req = req.at_revision(r);
            }
            let t = Instant::now();
            let resp = store.range(req.clone()).await?;
            stats.fetch += t.elapsed();
            stats.pages += 1;
            revision.get_or_insert(resp.revision);
            // Large pages are decoded and placed on every core (the maps are
            // concurrent; records of one page have distinct paths).
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
            if threads > 1 && resp.kvs.len() >= PARALLEL_FROM {
                let chunk = resp.kvs.len().div_ceil(threads);
                std::thread::scope(|scope| {
                    let handles: Vec<_> = resp
                        .kvs
                        .chunks(chunk)
                        .map(|c| scope.spawn(|| self.load_chunk(c, seen)))
                        .collect();
                    for h in handles {
                        match h.join() {
                            Ok(w) => waiting.extend(w),
                            Err(_) => tracing::error!("a workspace index loader thread panicked"),
                        }
                    }
                });
            } else {
                waiting.extend(self.load_chunk(&resp.kvs, seen));
            }
            match resp.kvs.last() {
                Some(last) if resp.more => req = req.starting_after(&last.key),
                _ => break,
            }
        }
        // Nested records whose parent sorted after them.
        loop {
            let before = waiting.len();
            waiting.retain(|p| !self.place(p));
            if waiting.len() == before {
                break;
            }
        }
        stats.orphans = waiting.len();
        stats.workspaces = self.len();
        stats.revision = revision.unwrap_or(0);
        stats.elapsed = started.elapsed();
        Ok(stats)
    }

    /// Keeps the index current from a storage watch, reloading after a
    /// compaction or an engine failure.
    pub fn spawn_watch(self: &Arc<Self>, store: Arc<dyn Store>, from: i64) {
        let prefix = self.prefix.as_bytes().to_vec();
        prefix_follower::spawn(self.clone(), prefix, store, from);
    }
}

#[async_trait::async_trait]
impl PrefixFollower for WorkspaceIndex {
    const WHAT: &'static str = "workspace";

    async fn apply(this: &Arc<Self>, event: storage::Event, _store: &dyn Store) {
        match event.kind {
            EventKind::Put => this.apply_kv(&event.kv),
            EventKind::Delete => this.apply_delete(&event.kv, event.revision()),
        }
    }

    async fn reload(this: &Arc<Self>, store: &dyn Store) -> Result<i64, storage::Error> {
        this.reload(store).await.map(|stats| stats.revision)
    }
}
