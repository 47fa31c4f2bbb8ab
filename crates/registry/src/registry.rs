//! The registry of one wsgate process: every resource store, the workspace
//! index, and the cross-resource behaviour no single store owns (namespace
//! lifecycle, owner-reference garbage collection, workspace index updates).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use storage::Store;

use crate::builtin;
use crate::cluster::{ClusterId, WorkspacePath};
use crate::crd::{self, CrdIndex};
use crate::discovery::ApiSet;
use crate::keys::KeyRoot;
use crate::metadata::meta;
use crate::metadata::meta_str;
use crate::options::{DeleteOptions, ListOptions, WriteOptions};
use crate::resource::Object;
use crate::status::{ApiError, ApiResult, QualifiedResource, Reason};
use crate::store::{DeleteOutcome, PatchKind, ResourceStore, StoreContext, Subresource};
use crate::workspace::{self, Deleter, WorkspaceIndex};

#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Top of the key space (`/registry`).
    pub key_root: String,
    /// `host:port` clients reach this server on (discovery's
    /// serverAddressByClientCIDRs, the `kubernetes` Endpoints).
    pub advertise_address: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("loading the workspace index: {0}")]
    LoadWorkspaces(#[source] storage::Error),
    #[error("resuming workspace deletions: {0}")]
    ResumeDeletions(#[source] storage::Error),
    #[error("loading the CRD index: {0}")]
    LoadCrds(#[source] storage::Error),
}

pub struct Registry {
    ctx: Arc<StoreContext>,
    stores: Vec<Arc<ResourceStore>>,
    by_gvr: HashMap<(String, String, String), Arc<ResourceStore>>,
    by_gvk: HashMap<(String, String), Arc<ResourceStore>>,
    api: Arc<ApiSet>,
    /// Each workspace's CRDs and what they serve.
    crds: Arc<CrdIndex>,
    workspaces: Arc<WorkspaceIndex>,
    deleter: Arc<Deleter>,
    /// `scheme://host:port` written into a new Workspace's `status.url`.
    base_url: parking_lot::RwLock<String>,
    /// Whether `/clusters/*` (list/watch across all workspaces) is served.
    wildcard: std::sync::atomic::AtomicBool,
    /// Background garbage collection waiting to scan for dependents.
    orphans: Arc<crate::gc::OrphanQueue>,
}

/// What a DELETE answers with.
#[derive(Debug)]
pub struct DeleteResponse {
    pub body: Value,
    /// The object is still there (finalizers, namespace termination).
    pub pending: bool,
}

impl Registry {
    /// Builds every store, loads the workspace index and starts keeping it
    /// current, and resumes interrupted namespace deletions.
    pub async fn open(
        store: Arc<dyn Store>,
        config: RegistryConfig,
    ) -> Result<Arc<Self>, RegistryError> {
        let root = KeyRoot::new(&config.key_root);
        let workspaces = Arc::new(WorkspaceIndex::new(&root));
        let ctx = Arc::new(StoreContext {
            store: store.clone(),
            workspaces: workspaces.clone(),
            namespaces: root.resource_prefix("", "namespaces"),
            advertise_address: config.advertise_address.clone(),
            implicit_tombstones: root.resource_prefix("wsgate.io", "implicitdeletions"),
            service_allocations: root.resource_prefix("wsgate.io", "serviceallocations"),
            watch_caches: crate::watch_cache::WatchCaches::new(store.clone()),
        });
        let mut stores = Vec::new();
        for b in builtin::catalog(&root) {
            let mut rs = ResourceStore::new(Arc::new(b.descriptor), b.strategy, ctx.clone())
                .with_schema(b.schema);
            if let Some(c) = b.conversion {
                rs = rs.with_conversion(c);
            }
            stores.push(Arc::new(rs));
        }
        let workspace_store = Arc::new(
            ResourceStore::new(
                Arc::new(workspace::descriptor(&root)),
                Arc::new(workspace::WorkspaceStrategy),
                ctx.clone(),
            )
            // The workspace index already holds every workspace in memory.
            .without_watch_cache(),
        );
        stores.push(workspace_store.clone());
        let schemas = Arc::new(crd::schema::SchemaCache::default());
        let crd_store = Arc::new(
            ResourceStore::new(
                Arc::new(crd::descriptor(&root)),
                Arc::new(crd::strategy::CrdStrategy::new(schemas.clone())),
                ctx.clone(),
            )
            .with_schema(crate::schema::round_trip::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>),
        );
        stores.push(crd_store.clone());
        let mut by_gvr = HashMap::new();
        let mut by_gvk = HashMap::new();
        for s in &stores {
            let d = &s.descriptor;
            by_gvr.insert(
                (
                    d.gvk.group.clone(),
                    d.gvk.version.clone(),
                    d.plural().to_owned(),
                ),
                s.clone(),
            );
            by_gvk.insert((d.api_version().to_owned(), d.gvk.kind.clone()), s.clone());
        }
        let descriptors: Vec<_> = stores.iter().map(|s| s.descriptor.clone()).collect();
        let api = Arc::new(ApiSet::new(
            &descriptors,
            builtin::GROUP_ORDER,
            &config.advertise_address,
        ));
        let crds = Arc::new(CrdIndex::new(
            &root,
            ctx.clone(),
            schemas,
            descriptors,
            api.clone(),
            builtin::GROUP_ORDER,
            &config.advertise_address,
        ));
        let _ = crds.crd_store.set(crd_store);
        let loaded = workspaces
            .load(store.as_ref())
            .await
            .map_err(RegistryError::LoadWorkspaces)?;
        tracing::info!(
            workspaces = loaded.workspaces,
            orphans = loaded.orphans,
            pages = loaded.pages,
            elapsed_ms = loaded.elapsed.as_millis() as u64,
            fetch_ms = loaded.fetch.as_millis() as u64,
            "workspace index loaded"
        );
        workspaces.spawn_watch(store.clone(), loaded.revision);
        let crd_stats = crds
            .load(store.as_ref())
            .await
            .map_err(RegistryError::LoadCrds)?;
        tracing::info!(
            crds = crd_stats.crds,
            workspaces = crds.workspaces_with_crds(),
            elapsed_ms = crd_stats.elapsed.as_millis() as u64,
            "CRD index loaded"
        );
        crds.spawn_watch(store.clone(), crd_stats.revision);
        let deleter = Deleter::spawn(
            store.clone(),
            stores
                .iter()
                .map(|s| s.descriptor.prefix.clone())
                .chain([
                    ctx.implicit_tombstones.clone(),
                    ctx.service_allocations.clone(),
                ])
                .collect(),
            workspace_store,
            workspaces.clone(),
            root.workspace_deletions(),
            root.clone(),
        );
        let resumed = deleter
            .resume()
            .await
            .map_err(RegistryError::ResumeDeletions)?;
        if resumed > 0 {
            tracing::info!(workspaces = resumed, "resuming workspace deletions");
        }
        let registry = Arc::new(Registry {
            ctx,
            stores,
            by_gvr,
            by_gvk,
            api,
            crds,
            workspaces,
            deleter,
            base_url: parking_lot::RwLock::new(format!("http://{}", config.advertise_address)),
            wildcard: std::sync::atomic::AtomicBool::new(false),
            orphans: Default::default(),
        });
        registry.orphans.bind(&registry);
        // A CRD's cleanup deletes its objects outside the DELETE path; their
        // dependents are collected like any deleted owner's.
        let _ = registry.crds.orphans.set(registry.orphans.clone());
        registry.clone().resume_namespace_deletions();
        Ok(registry)
    }

    pub fn workspaces(&self) -> &Arc<WorkspaceIndex> {
        &self.workspaces
    }

    pub(crate) fn orphans(&self) -> &crate::gc::OrphanQueue {
        &self.orphans
    }

    /// The cluster of a workspace path; 404 when unknown.
    pub fn resolve(&self, path: &WorkspacePath) -> ApiResult<ClusterId> {
        self.workspaces.resolve(path)
    }

    /// The full record of a workspace path (owner, phase, ...); 404 when
    /// unknown.
    pub fn workspace(&self, path: &WorkspacePath) -> ApiResult<Arc<workspace::WorkspaceRecord>> {
        self.workspaces.get(path)
    }

    /// The deletion worker (its records hold `delete_completed_at`).
    pub fn workspace_deleter(&self) -> &Arc<Deleter> {
        &self.deleter
    }

    /// Sets the `scheme://host:port` new Workspaces advertise in
    /// `status.url` (the server calls this once it knows its TLS setting).
    pub fn set_base_url(&self, url: &str) {
        *self.base_url.write() = url.trim_end_matches('/').to_owned();
    }

    /// Turns the cross-workspace `/clusters/*` list/watch on or off (off by
    /// default; `serve --allow-wildcard`). The authorizer additionally
    /// restricts it to privileged identities (`system:masters`).
    pub fn set_wildcard_allowed(&self, allowed: bool) {
        self.wildcard
            .store(allowed, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn wildcard_allowed(&self) -> bool {
        self.wildcard.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The watch caches (one per resource prefix): configuration and the
    /// figures `/metrics` exports.
    pub fn watch_caches(&self) -> &Arc<crate::watch_cache::WatchCaches> {
        &self.ctx.watch_caches
    }

    fn is_crds(rs: &ResourceStore) -> bool {
        rs.descriptor.gvk.group == crd::GROUP && rs.descriptor.plural() == crd::PLURAL
    }

    /// Takes a written CRD into the index before the write returns (the
    /// watch does the same for other replicas), and starts the cleanup of
    /// one being deleted.
    fn after_crd_write(&self, cluster: &ClusterId, obj: &Object, dry_run: bool) {
        if !dry_run && self.crds.observe(cluster, obj) {
            self.crds
                .clone()
                .spawn_cleanup(cluster.clone(), crate::metadata::name(obj).to_owned());
        }
    }

    /// New custom objects are refused while their CRD is being deleted.
    fn check_crd_not_terminating(&self, rs: &ResourceStore, cluster: &ClusterId) -> ApiResult<()> {
        let d = &rs.descriptor;
        if d.storage_version.is_some()
            && self.crds.is_terminating(cluster, &d.gvk.group, d.plural())
        {
            return Err(ApiError::new(
                Reason::MethodNotAllowed,
                format!(
                    "create not allowed while custom resource definition is terminating: {}.{}",
                    d.plural(),
                    d.gvk.group
                ),
            ));
        }
        Ok(())
    }

    fn is_workspaces(rs: &ResourceStore) -> bool {
        rs.descriptor.gvk.group == workspace::GROUP && rs.descriptor.plural() == workspace::PLURAL
    }

    /// Creates a Workspace in `parent`: a fresh id (never one still in use
    /// or awaiting deletion), the owner, status. A name held by a
    /// terminating workspace is taken over at once (its content is swept
    /// under its old id).
    async fn create_workspace(
        &self,
        rs: &ResourceStore,
        parent: &ClusterId,
        obj: Object,
        opts: &WriteOptions,
    ) -> ApiResult<Object> {
        let qr = QualifiedResource::new(workspace::GROUP, workspace::PLURAL);
        let parent_rec = self
            .workspaces
            .info_by_id(parent)
            .ok_or_else(|| ApiError::not_found(&qr, parent.as_str()))?;
        let name = crate::metadata::name(&obj).to_owned();
        for _ in 0..2 {
            let mut id = ClusterId::generate();
            while !self.workspaces.id_is_free(&id) {
                id = ClusterId::generate();
            }
            let mut o = obj.clone();
            let url = format!(
                "{}/clusters/{}",
                self.base_url.read(),
                parent_rec.path().child(&name)
            );
            workspace::prepare_create(&mut o, &id, opts.user.as_deref(), &url);
            match rs.create(parent, None, o, opts).await {
                Err(e) if e.reason == Reason::AlreadyExists && !name.is_empty() => {
                    let current = rs.get(parent, None, &name).await?;
                    let terminating =
                        meta(&current).is_some_and(|m| m.contains_key("deletionTimestamp"));
                    if !terminating || opts.dry_run {
                        return Err(e);
                    }
                    // The old workspace keeps being deleted from its record.
                    rs.system_delete(parent, None, &name).await?;
                }
                other => return other,
            }
        }
        Err(ApiError::conflict(
            &qr,
            &name,
            "the workspace name is being reused concurrently; try again",
        ))
    }

    /// The API set a workspace serves: built-ins plus its established CRDs
    /// (shared by every workspace with the same CRDs).
    pub fn api_set(&self, cluster: &ClusterId) -> Arc<ApiSet> {
        self.crds.api_set(cluster)
    }

    /// The built-in API set (every workspace without CRDs serves it).
    pub fn builtin_api_set(&self) -> &Arc<ApiSet> {
        &self.api
    }

    /// The CRD index (each workspace's CRDs).
    pub fn crds(&self) -> &Arc<CrdIndex> {
        &self.crds
    }

    /// The store serving `group/version/plural` in `cluster`: a built-in or
    /// one of the workspace's custom resources.
    pub fn resource_in(
        &self,
        cluster: &ClusterId,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<Arc<ResourceStore>> {
        self.by_gvr
            .get(&(group.to_owned(), version.to_owned(), plural.to_owned()))
            .cloned()
            .or_else(|| self.crds.resource(cluster, group, version, plural))
    }

    /// A built-in resource's store (the same in every workspace).
    pub fn resource(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<&Arc<ResourceStore>> {
        self.by_gvr
            .get(&(group.to_owned(), version.to_owned(), plural.to_owned()))
    }

    pub fn resource_for_kind(&self, api_version: &str, kind: &str) -> Option<&Arc<ResourceStore>> {
        self.by_gvk.get(&(api_version.to_owned(), kind.to_owned()))
    }

    pub fn stores(&self) -> &[Arc<ResourceStore>] {
        &self.stores
    }

    /// Storage answers: the readiness check.
    pub async fn ready(&self) -> bool {
        self.ctx.store.current_revision().await.is_ok()
    }

    pub async fn create(
        &self,
        rs: &ResourceStore,
        cluster: &ClusterId,
        namespace: Option<&str>,
        obj: Object,
        opts: &WriteOptions,
    ) -> ApiResult<Object> {
        self.workspaces.check_writable(cluster)?;
        let created = if Self::is_workspaces(rs) {
            self.create_workspace(rs, cluster, obj, opts).await?
        } else if Self::is_crds(rs) {
            let created = crd::strategy::in_workspace(
                self.crds.clone(),
                cluster.clone(),
                rs.create(cluster, namespace, obj, opts),
            )
            .await?;
            self.after_crd_write(cluster, &created, opts.dry_run);
            created
        } else {
            self.check_crd_not_terminating(rs, cluster)?;
            self.create_allocating(rs, cluster, namespace, obj, opts)
                .await?
        };
        self.after_write(rs, cluster, &created, true);
        self.gc_after_write(rs, cluster, &created, opts.dry_run);
        if rs.descriptor.gvk.group.is_empty()
            && rs.descriptor.plural() == "namespaces"
            && !opts.dry_run
        {
            self.create_default_service_account(cluster, crate::metadata::name(&created))
                .await;
        }
        Ok(created)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn update(
        &self,
        rs: &ResourceStore,
        cluster: &ClusterId,
        namespace: Option<&str>,
        name: &str,
        obj: Object,
        sub: Subresource,
        opts: &WriteOptions,
    ) -> ApiResult<(Object, bool)> {
        self.workspaces.check_writable(cluster)?;
        if Self::is_workspaces(rs) {
            // Workspaces are created with POST only (ids are assigned there).
            rs.get(cluster, None, name).await?;
        }
        let (o, created) = if Self::is_crds(rs) {
            let r = crd::strategy::in_workspace(
                self.crds.clone(),
                cluster.clone(),
                rs.update(cluster, namespace, name, obj, sub, opts),
            )
            .await?;
            self.after_crd_write(cluster, &r.0, opts.dry_run);
            r
        } else {
            self.update_allocating(rs, cluster, namespace, name, obj, sub, opts)
                .await?
        };
        self.after_write(rs, cluster, &o, created);
        self.gc_after_write(rs, cluster, &o, opts.dry_run);
        Ok((o, created))
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        rs: &ResourceStore,
        cluster: &ClusterId,
        namespace: Option<&str>,
        name: &str,
        kind: PatchKind,
        patch: &Value,
        sub: Subresource,
        opts: &WriteOptions,
    ) -> ApiResult<(Object, bool)> {
        self.workspaces.check_writable(cluster)?;
        if Self::is_workspaces(rs) {
            rs.get(cluster, None, name).await?;
        }
        let (o, created) = if Self::is_crds(rs) {
            let r = crd::strategy::in_workspace(
                self.crds.clone(),
                cluster.clone(),
                rs.patch(cluster, namespace, name, kind, patch, sub, opts),
            )
            .await?;
            self.after_crd_write(cluster, &r.0, opts.dry_run);
            r
        } else {
            self.patch_allocating(rs, cluster, namespace, name, kind, patch, sub, opts)
                .await?
        };
        self.after_write(rs, cluster, &o, created);
        self.gc_after_write(rs, cluster, &o, opts.dry_run);
        if created
            && rs.descriptor.gvk.group.is_empty()
            && rs.descriptor.plural() == "namespaces"
            && !opts.dry_run
        {
            self.create_default_service_account(cluster, name).await;
        }
        Ok((o, created))
    }

    /// Every namespace gets a `default` ServiceAccount (upstream's
    /// ServiceAccount controller), written right after the namespace.
    async fn create_default_service_account(&self, cluster: &ClusterId, namespace: &str) {
        let Some(sa) = self.resource("", "v1", "serviceaccounts") else {
            return;
        };
        let obj =
            serde_json::json!({"metadata": {"name": builtin::core_rules::DEFAULT_SERVICE_ACCOUNT}});
        let Value::Object(obj) = obj else { return };
        let opts = WriteOptions {
            default_manager: Some("kube-controller-manager".into()),
            ..Default::default()
        };
        match sa.create(cluster, Some(namespace), obj, &opts).await {
            Ok(_) => {}
            Err(e) if e.code() == 409 => {}
            Err(e) => {
                tracing::warn!(error = %e, namespace, "could not create the default ServiceAccount")
            }
        }
    }

    /// Makes a new workspace resolvable before its create returns (the watch
    /// does the same, for other replicas).
    fn after_write(&self, rs: &ResourceStore, cluster: &ClusterId, obj: &Object, created: bool) {
        if Self::is_workspaces(rs)
            && let Some(rev) = meta_str(obj, "resourceVersion").and_then(|r| r.parse().ok())
        {
            let create_rev = if created {
                rev
            } else {
                obj.get("spec")
                    .and_then(|s| s.get("cluster"))
                    .and_then(Value::as_str)
                    .and_then(|id| self.workspaces.by_id_str(id))
                    .map_or(rev, |r| r.revision())
            };
            self.workspaces.observe(cluster, obj, create_rev, rev);
        }
    }

    pub async fn delete(
        self: &Arc<Self>,
        rs: &Arc<ResourceStore>,
        cluster: &ClusterId,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<DeleteResponse> {
        self.workspaces.check_writable(cluster)?;
        if Self::is_workspaces(rs) {
            return self.delete_workspace(rs, cluster, name, opts).await;
        }
        if rs.descriptor.gvk.group.is_empty() && rs.descriptor.plural() == "namespaces" {
            let obj = self.delete_namespace(rs, cluster, name, opts).await?;
            return Ok(DeleteResponse {
                body: Value::Object(obj),
                pending: true,
            });
        }
        let outcome = rs.delete(cluster, namespace, name, opts).await?;
        if let (DeleteOutcome::Deleted(obj), false) = (&outcome, opts.dry_run) {
            self.release_service_of(rs, cluster, obj).await;
        }
        if !opts.dry_run {
            self.after_delete(cluster, &outcome, opts.effective_propagation()?);
            if Self::is_crds(rs) {
                self.after_crd_delete(cluster, &outcome);
            }
        }
        Ok(DeleteResponse {
            body: rs.delete_body(&outcome),
            pending: matches!(outcome, DeleteOutcome::Pending(_)),
        })
    }

    pub async fn delete_collection(
        self: &Arc<Self>,
        rs: &Arc<ResourceStore>,
        cluster: &ClusterId,
        namespace: Option<&str>,
        list_opts: &ListOptions,
        opts: &DeleteOptions,
    ) -> ApiResult<Value> {
        self.workspaces.check_writable(cluster)?;
        if Self::is_workspaces(rs) {
            return Err(ApiError::new(
                Reason::MethodNotAllowed,
                "workspaces are deleted one at a time (each deletion sweeps the workspace's content)",
            ));
        }
        let (body, outcomes) = rs
            .delete_collection(cluster, namespace, list_opts, opts)
            .await?;
        if !opts.dry_run {
            let propagation = opts.effective_propagation()?;
            self.after_delete_many(cluster, &outcomes, propagation);
            if Self::is_crds(rs) {
                for o in &outcomes {
                    self.after_crd_delete(cluster, o);
                }
            }
        }
        Ok(body)
    }
}

impl Registry {
    /// A deleted CRD: a pending one (its cleanup finalizer) starts the
    /// cleanup; one gone at once leaves the index.
    fn after_crd_delete(&self, cluster: &ClusterId, outcome: &DeleteOutcome) {
        match outcome {
            DeleteOutcome::Pending(obj) => self.after_crd_write(cluster, obj, false),
            DeleteOutcome::Deleted(obj) => {
                let rev = meta_str(obj, "resourceVersion")
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(i64::MAX);
                self.crds.forget(cluster, crate::metadata::name(obj), rev);
            }
        }
    }

    pub(crate) fn ctx_store(&self) -> &Arc<dyn Store> {
        &self.ctx.store
    }
}

impl Registry {
    /// DELETE of a Workspace: records the deletion, marks it Terminating and
    /// queues the background sweep of its content; the object stays (with
    /// progress in status) until the content is gone.
    async fn delete_workspace(
        &self,
        rs: &ResourceStore,
        parent: &ClusterId,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<DeleteResponse> {
        let current = rs.get(parent, None, name).await?;
        let m = meta(&current);
        let field = |k: &str| m.and_then(|m| m.get(k)).and_then(Value::as_str);
        if let Some(uid) = &opts.precondition_uid
            && field("uid") != Some(uid.as_str())
        {
            return Err(ApiError::conflict(
                &rs.descriptor.qualified,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    field("uid").unwrap_or("")
                ),
            ));
        }
        if let Some(rv) = &opts.precondition_resource_version
            && field("resourceVersion") != Some(rv.as_str())
        {
            return Err(ApiError::conflict(
                &rs.descriptor.qualified,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    field("resourceVersion").unwrap_or("")
                ),
            ));
        }
        let obj = if opts.dry_run {
            current
        } else {
            let parent_path = self
                .workspaces
                .info_by_id(parent)
                .map(|r| r.path().clone())
                .unwrap_or_else(WorkspacePath::root);
            self.deleter
                .start(parent, &parent_path, name, &current)
                .await?
        };
        Ok(DeleteResponse {
            body: Value::Object(obj),
            pending: true,
        })
    }
}
