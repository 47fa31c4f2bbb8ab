//! The registry of one wsgate process: every resource store, the workspace
//! index, and the cross-resource behaviour no single store owns (namespace
//! lifecycle, owner-reference garbage collection, workspace index updates).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use storage::Store;

use crate::builtin;
use crate::cluster::{ClusterId, WorkspacePath};
use crate::discovery::ApiSet;
use crate::keys::KeyRoot;
use crate::metadata::meta_str;
use crate::options::{DeleteOptions, ListOptions, WriteOptions};
use crate::resource::Object;
use crate::status::ApiResult;
use crate::store::{DeleteOutcome, PatchKind, ResourceStore, StoreContext, Subresource};
use crate::workspace::{self, WorkspaceIndex};

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
}

pub struct Registry {
    ctx: Arc<StoreContext>,
    stores: Vec<Arc<ResourceStore>>,
    by_gvr: HashMap<(String, String, String), Arc<ResourceStore>>,
    by_gvk: HashMap<(String, String), Arc<ResourceStore>>,
    api: Arc<ApiSet>,
    workspaces: Arc<WorkspaceIndex>,
    /// Background garbage collection waiting to scan for dependents.
    orphans: crate::gc::OrphanQueue,
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
        stores.push(Arc::new(ResourceStore::new(
            Arc::new(workspace::descriptor(&root)),
            Arc::new(workspace::WorkspaceStrategy),
            ctx.clone(),
        )));
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
        let rev = workspaces
            .load(store.as_ref())
            .await
            .map_err(RegistryError::LoadWorkspaces)?;
        workspaces.spawn_watch(store.clone(), rev);
        let registry = Arc::new(Registry {
            ctx,
            stores,
            by_gvr,
            by_gvk,
            api,
            workspaces,
            orphans: Default::default(),
        });
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

    /// The API set a workspace serves (built-ins for now; per-workspace CRDs
    /// extend it in the CRD issue).
    pub fn api_set(&self, _cluster: &ClusterId) -> &Arc<ApiSet> {
        &self.api
    }

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
        let created = rs.create(cluster, namespace, obj, opts).await?;
        self.after_write(rs, cluster, &created);
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
        let (o, created) = rs.update(cluster, namespace, name, obj, sub, opts).await?;
        self.after_write(rs, cluster, &o);
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
        let (o, created) = rs
            .patch(cluster, namespace, name, kind, patch, sub, opts)
            .await?;
        self.after_write(rs, cluster, &o);
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
    fn after_write(&self, rs: &ResourceStore, cluster: &ClusterId, obj: &Object) {
        if rs.descriptor.gvk.group == workspace::GROUP
            && rs.descriptor.plural() == workspace::PLURAL
            && let Some(rev) = meta_str(obj, "resourceVersion").and_then(|r| r.parse().ok())
        {
            self.workspaces.observe(cluster, obj, rev);
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
        if rs.descriptor.gvk.group.is_empty() && rs.descriptor.plural() == "namespaces" {
            let obj = self.delete_namespace(rs, cluster, name, opts).await?;
            return Ok(DeleteResponse {
                body: Value::Object(obj),
                pending: true,
            });
        }
        let outcome = rs.delete(cluster, namespace, name, opts).await?;
        if !opts.dry_run {
            self.after_delete(cluster, &outcome, opts.effective_propagation()?);
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
        let (body, outcomes) = rs
            .delete_collection(cluster, namespace, list_opts, opts)
            .await?;
        if !opts.dry_run {
            let propagation = opts.effective_propagation()?;
            self.after_delete_many(cluster, &outcomes, propagation);
        }
        Ok(body)
    }
}

impl Registry {
    pub(crate) fn ctx_store(&self) -> &Arc<dyn Store> {
        &self.ctx.store
    }
}
