//! Workspaces, minimally: the `Workspace` resource (stored in its parent
//! workspace like any object; creating one is that ONE write) and the
//! in-memory path -> cluster id index, loaded at start-up and kept current
//! by a storage watch.
//!
//! Not yet here (the workspace lifecycle issue): Terminating and background
//! deletion of a workspace's content across every ResourcePrefix — deleting
//! a Workspace now only removes its record, leaving its objects behind.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use futures::StreamExt;
use kube_core::GroupVersionKind;
use kube_core::discovery::Scope;
use serde_json::{Value, json};
use storage::{EventKind, KeyValue, RangeRequest, Store, WatchRequest, WatchResponse};

use crate::cluster::{ClusterId, WorkspacePath};
use crate::keys::{KeyRoot, ResourcePrefix};
use crate::metadata::{meta_str, now_rfc3339};
use crate::resource::{ALL_VERBS, Object, ResourceDescriptor, Strategy};
use crate::status::{ApiError, ApiResult, QualifiedResource};
use crate::validation::{FieldError, NameRule};

pub const GROUP: &str = "tenancy.wsgate.io";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "Workspace";
pub const PLURAL: &str = "workspaces";

pub fn descriptor(root: &KeyRoot) -> ResourceDescriptor {
    ResourceDescriptor::new(
        root,
        GroupVersionKind::gvk(GROUP, VERSION, KIND),
        PLURAL,
        Scope::Cluster,
        vec!["ws"],
        vec![],
        ALL_VERBS,
    )
    .with_subresource("status", crate::builtin::SUB_VERBS)
}

/// Assigns the cluster id on create and keeps it immutable.
pub struct WorkspaceStrategy;

impl Strategy for WorkspaceStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }

    fn prepare_for_create(&self, obj: &mut Object) {
        let spec = obj.entry("spec").or_insert_with(|| json!({}));
        if !spec.is_object() {
            *spec = json!({});
        }
        if let Value::Object(s) = spec {
            s.insert("cluster".into(), ClusterId::generate().as_str().into());
        }
        obj.insert("status".into(), json!({"phase": "Ready"}));
    }

    fn prepare_for_update(&self, new: &mut Object, old: &Object) {
        let cluster = old.get("spec").and_then(|s| s.get("cluster")).cloned();
        let spec = new.entry("spec").or_insert_with(|| json!({}));
        if let (Value::Object(s), Some(c)) = (spec, cluster) {
            s.insert("cluster".into(), c);
        }
    }

    fn validate(&self, obj: &Object) -> Vec<FieldError> {
        if crate::metadata::name(obj) == WorkspacePath::ROOT {
            return vec![FieldError::invalid(
                "metadata.name",
                WorkspacePath::ROOT,
                "is reserved",
            )];
        }
        Vec::new()
    }
}

/// One known workspace.
#[derive(Clone, Debug)]
pub struct WorkspaceInfo {
    pub id: ClusterId,
    pub path: WorkspacePath,
    /// Creation time (RFC 3339) and revision of its record.
    pub created: String,
    pub revision: i64,
}

/// path -> id and id -> path, for every workspace.
pub struct WorkspaceIndex {
    by_path: DashMap<WorkspacePath, Arc<WorkspaceInfo>>,
    by_id: DashMap<ClusterId, Arc<WorkspaceInfo>>,
    prefix: ResourcePrefix,
}

impl WorkspaceIndex {
    pub fn new(root: &KeyRoot) -> Self {
        let idx = WorkspaceIndex {
            by_path: DashMap::new(),
            by_id: DashMap::new(),
            prefix: root.resource_prefix(GROUP, PLURAL),
        };
        let info = Arc::new(WorkspaceInfo {
            id: ClusterId::root(),
            path: WorkspacePath::root(),
            created: now_rfc3339(),
            revision: 1,
        });
        idx.by_path.insert(info.path.clone(), info.clone());
        idx.by_id.insert(info.id.clone(), info);
        idx
    }

    /// The cluster id of `path`, or 404 for unknown workspaces (never an
    /// implicit create).
    pub fn resolve(&self, path: &WorkspacePath) -> ApiResult<ClusterId> {
        self.by_path.get(path).map(|i| i.id.clone()).ok_or_else(|| {
            ApiError::not_found(&QualifiedResource::new(GROUP, PLURAL), path.as_str())
        })
    }

    pub fn info_by_id(&self, id: &ClusterId) -> Option<Arc<WorkspaceInfo>> {
        self.by_id.get(id).map(|i| i.clone())
    }

    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }

    /// Records a Workspace object stored in `parent`.
    pub fn observe(&self, parent: &ClusterId, obj: &Object, create_revision: i64) {
        let Some(parent_info) = self.info_by_id(parent) else {
            tracing::warn!(%parent, "workspace record under an unknown parent; ignored");
            return;
        };
        let name = crate::metadata::name(obj);
        let Some(id) = obj
            .get("spec")
            .and_then(|s| s.get("cluster"))
            .and_then(Value::as_str)
            .and_then(ClusterId::parse)
        else {
            tracing::warn!(
                name,
                "workspace record without a valid spec.cluster; ignored"
            );
            return;
        };
        let path = parent_info.path.child(name);
        let info = Arc::new(WorkspaceInfo {
            id: id.clone(),
            path: path.clone(),
            created: meta_str(obj, "creationTimestamp").unwrap_or("").to_owned(),
            revision: create_revision,
        });
        if let Some(old) = self.by_path.insert(path, info.clone())
            && old.id != id
        {
            self.by_id.remove(&old.id);
        }
        self.by_id.insert(id, info);
    }

    fn forget(&self, parent: &ClusterId, name: &str) {
        let Some(parent_info) = self.info_by_id(parent) else {
            return;
        };
        let path = parent_info.path.child(name);
        if let Some((_, info)) = self.by_path.remove(&path) {
            self.by_id.remove(&info.id);
        }
    }

    fn apply_kv(&self, kv: &KeyValue) {
        let Some(k) = self.prefix.parse(&kv.key, false) else {
            return;
        };
        let Some(parent) = ClusterId::parse(k.cluster) else {
            return;
        };
        match serde_json::from_slice::<Object>(&kv.value) {
            Ok(obj) => self.observe(&parent, &obj, kv.create_revision),
            Err(e) => tracing::warn!(error = %e, "undecodable workspace record"),
        }
    }

    fn apply_delete(&self, kv: &KeyValue) {
        let Some(k) = self.prefix.parse(&kv.key, false) else {
            return;
        };
        let Some(parent) = ClusterId::parse(k.cluster) else {
            return;
        };
        self.forget(&parent, k.name);
    }

    /// Loads every workspace; returns the revision of the snapshot.
    pub async fn load(&self, store: &dyn Store) -> Result<i64, storage::Error> {
        let resp = store
            .range(RangeRequest::prefix(self.prefix.as_bytes().to_vec()))
            .await?;
        let mut kvs = resp.kvs;
        // Parents are always created before their children.
        kvs.sort_by_key(|kv| kv.create_revision);
        for kv in &kvs {
            self.apply_kv(kv);
        }
        Ok(resp.revision)
    }

    /// Keeps the index current from a storage watch, reloading after a
    /// compaction or an engine failure.
    pub fn spawn_watch(self: &Arc<Self>, store: Arc<dyn Store>, mut from: i64) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let req =
                    WatchRequest::prefix(this.prefix.as_bytes().to_vec()).from_revision(from + 1);
                match store.watch(req).await {
                    Ok(mut stream) => {
                        while let Some(item) = stream.next().await {
                            match item {
                                Ok(WatchResponse::Events(evs)) => {
                                    for ev in evs {
                                        from = from.max(ev.revision());
                                        match ev.kind {
                                            EventKind::Put => this.apply_kv(&ev.kv),
                                            EventKind::Delete => this.apply_delete(&ev.kv),
                                        }
                                    }
                                }
                                Ok(WatchResponse::Progress { revision }) => {
                                    from = from.max(revision)
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "workspace watch failed; reloading");
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "workspace watch could not start"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                match this.load(store.as_ref()).await {
                    Ok(rev) => from = rev,
                    Err(e) => tracing::warn!(error = %e, "workspace reload failed"),
                }
            }
        });
    }
}
