//! Namespace deletion: DELETE marks the namespace Terminating and returns
//! it; a background task deletes its content (honouring finalizers), then
//! removes the `kubernetes` spec finalizer; the namespace goes once no spec
//! finalizer (others are cleared through `/finalize`) and no metadata
//! finalizer remains. Interrupted deletions resume at start-up.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use storage::RangeRequest;

use crate::builtin::namespace::{IMMORTAL, IMPLICIT, KUBERNETES_FINALIZER};
use crate::cluster::{ClusterId, ClusterScope};
use crate::metadata::{meta, meta_mut, now_rfc3339};
use crate::options::{DeleteOptions, ListOptions, Propagation};
use crate::registry::Registry;
use crate::resource::Object;
use crate::status::{ApiError, ApiResult};
use crate::store::{DeleteOutcome, ResourceStore};

/// Records that the implicit namespace `name` was deleted in `cluster`.
async fn remember_deleted_implicit(
    rs: &ResourceStore,
    cluster: &ClusterId,
    name: &str,
) -> ApiResult<()> {
    let ctx = rs.context();
    let key = ctx.implicit_tombstones.object_key(cluster, None, name);
    match ctx
        .store
        .create(&key, bytes::Bytes::from_static(b"{}"), None)
        .await
    {
        Ok(_) | Err(storage::Error::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(crate::status::interpret_create_error(
            e,
            &rs.descriptor.qualified,
            name,
        )),
    }
}

/// Pause between purge rounds while finalizers hold objects back.
const PURGE_RETRY: Duration = Duration::from_secs(1);

const STILL_TERMINATING: &str = "The system is ensuring all content is removed from this namespace.  Upon completion, this namespace will automatically be purged by the system.";

fn terminating(obj: &Object) -> bool {
    meta(obj).is_some_and(|m| m.contains_key("deletionTimestamp"))
}

impl Registry {
    fn namespaces_store(&self) -> Option<&Arc<ResourceStore>> {
        self.resource("", "v1", "namespaces")
    }

    pub(crate) async fn delete_namespace(
        self: &Arc<Self>,
        rs: &Arc<ResourceStore>,
        cluster: &ClusterId,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Object> {
        if IMMORTAL.contains(&name) {
            return Err(ApiError::forbidden(
                &rs.descriptor.qualified,
                name,
                "this namespace may not be deleted",
            ));
        }
        let current = rs.get(cluster, None, name).await?;
        if terminating(&current) {
            return Err(ApiError::conflict(
                &rs.descriptor.qualified,
                name,
                STILL_TERMINATING,
            ));
        }
        if let Some(pre) = opts.precondition_uid.as_deref().filter(|u| !u.is_empty()) {
            let uid = crate::metadata::meta_str(&current, "uid").unwrap_or("");
            if pre != uid {
                return Err(ApiError::conflict(
                    &rs.descriptor.qualified,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {pre}, UID in object meta: {uid}"
                    ),
                ));
            }
        }
        if opts.dry_run {
            return Ok(current);
        }
        let marked = rs
            .system_update(cluster, None, name, |o| {
                if terminating(o) {
                    return false;
                }
                let m = meta_mut(o);
                m.insert("deletionTimestamp".into(), now_rfc3339().into());
                m.insert("deletionGracePeriodSeconds".into(), 0.into());
                o.insert("status".into(), json!({"phase": "Terminating"}));
                true
            })
            .await?
            .ok_or_else(|| ApiError::not_found(&rs.descriptor.qualified, name))?;
        if IMPLICIT.contains(&name) {
            // Now stored (Terminating); once purged it must not come back
            // as the implicit one.
            remember_deleted_implicit(rs, cluster, name).await?;
        }
        let this = self.clone();
        let cluster = cluster.clone();
        let ns = name.to_owned();
        tokio::spawn(async move { this.purge_namespace(cluster, ns).await });
        Ok(marked)
    }

    /// Deletes a terminating namespace's content, then the namespace.
    async fn purge_namespace(self: Arc<Self>, cluster: ClusterId, namespace: String) {
        let scope = ClusterScope::One(cluster.clone());
        let opts = DeleteOptions {
            propagation: Some(Propagation::Background),
            ..Default::default()
        };
        loop {
            let mut progress = PurgeProgress::default();
            // Built-ins and the workspace's custom resources.
            let custom = self.crds().stores_of(&cluster);
            for store in self
                .stores()
                .iter()
                .chain(custom.iter())
                .filter(|s| s.descriptor.namespaced())
            {
                let list = match store
                    .list(&scope, Some(&namespace), &ListOptions::default())
                    .await
                {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, %namespace, "namespace purge: list failed");
                        progress.failures.push(e.message);
                        continue;
                    }
                };
                for item in list.items {
                    let Value::Object(obj) = item else { continue };
                    let name = crate::metadata::name(&obj).to_owned();
                    // Objects of a namespace are deleted with it: no per-object
                    // collection is started.
                    match store.delete(&cluster, Some(&namespace), &name, &opts).await {
                        Ok(DeleteOutcome::Pending(o)) => {
                            progress.remaining(&store.descriptor.qualified.to_string(), &o)
                        }
                        Ok(DeleteOutcome::Deleted(o)) => {
                            self.release_service_of(store, &cluster, &o).await
                        }
                        Err(e) if e.code() == 404 => {}
                        Err(e) => {
                            tracing::warn!(error = %e, %namespace, name, "namespace purge: delete failed");
                            progress.failures.push(e.message);
                        }
                    }
                }
            }
            if progress.is_done() {
                break;
            }
            if let Some(ns_store) = self.namespaces_store() {
                let conditions = progress.conditions();
                let result = ns_store
                    .system_update(&cluster, None, &namespace, |o| {
                        set_conditions(o, &conditions)
                    })
                    .await;
                if let Err(e) = result {
                    tracing::warn!(error = %e, %namespace, "namespace purge: conditions not recorded");
                }
            }
            tokio::time::sleep(PURGE_RETRY).await;
        }
        let Some(ns_store) = self.namespaces_store() else {
            return;
        };
        let finalized = ns_store
            .system_update(&cluster, None, &namespace, |o| {
                let Some(Value::Array(f)) = o.get_mut("spec").and_then(|s| s.get_mut("finalizers"))
                else {
                    return false;
                };
                let before = f.len();
                f.retain(|x| x.as_str() != Some(KUBERNETES_FINALIZER));
                f.len() != before
            })
            .await;
        match finalized {
            // Other spec finalizers (set through /finalize) keep it
            // Terminating until /finalize clears them.
            Ok(Some(o))
                if crate::metadata::finalizers(&o).is_empty()
                    && !crate::store::has_spec_finalizers(&o) =>
            {
                match ns_store.system_delete(&cluster, None, &namespace).await {
                    Ok(()) => self.after_removed(&cluster, &o),
                    Err(e) => {
                        tracing::warn!(error = %e, %namespace, "namespace purge: final delete failed")
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, %namespace, "namespace purge: finalize failed"),
        }
    }

    /// PUT `namespaces/<n>/finalize`: replaces `spec.finalizers`; a
    /// terminating namespace with none left is removed.
    pub async fn finalize_namespace(
        &self,
        cluster: &ClusterId,
        name: &str,
        body: &Object,
    ) -> ApiResult<Object> {
        let Some(rs) = self.namespaces_store() else {
            return Err(ApiError::route_not_found());
        };
        let finalizers = body
            .get("spec")
            .and_then(|s| s.get("finalizers"))
            .cloned()
            .unwrap_or(json!([]));
        let updated = rs
            .system_update(cluster, None, name, |o| {
                let spec = o.entry("spec").or_insert_with(|| json!({}));
                if spec.get("finalizers") == Some(&finalizers) {
                    return false;
                }
                if let Value::Object(s) = spec {
                    s.insert("finalizers".into(), finalizers.clone());
                }
                true
            })
            .await?
            .ok_or_else(|| ApiError::not_found(&rs.descriptor.qualified, name))?;
        if rs.removed_by_write(&updated) {
            rs.system_delete(cluster, None, name).await?;
            self.after_removed(cluster, &updated);
        }
        Ok(updated)
    }

    /// Restarts purges that a previous process left unfinished.
    pub(crate) fn resume_namespace_deletions(self: Arc<Self>) {
        tokio::spawn(async move {
            let Some(rs) = self.namespaces_store().cloned() else {
                return;
            };
            let prefix = rs.descriptor.prefix.as_bytes().to_vec();
            let resp = match self.ctx_store().range(RangeRequest::prefix(prefix)).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "could not scan for terminating namespaces");
                    return;
                }
            };
            for kv in resp.kvs {
                let Some(k) = rs.descriptor.prefix.parse(&kv.key, false) else {
                    continue;
                };
                let Some(cluster) = ClusterId::parse(k.cluster) else {
                    continue;
                };
                let name = k.name.to_owned();
                let Ok(obj) = crate::store::decode(&kv) else {
                    continue;
                };
                if terminating(&obj) {
                    tracing::info!(%cluster, namespace = name, "resuming namespace deletion");
                    let this = self.clone();
                    tokio::spawn(async move { this.purge_namespace(cluster, name).await });
                }
            }
        });
    }
}

/// What one purge round left behind.
#[derive(Default)]
struct PurgeProgress {
    /// Resource (`configmaps`, `deployments.apps`) -> objects remaining.
    resources: std::collections::BTreeMap<String, usize>,
    /// Finalizer -> objects carrying it.
    finalizers: std::collections::BTreeMap<String, usize>,
    failures: Vec<String>,
}

impl PurgeProgress {
    fn remaining(&mut self, resource: &str, obj: &Object) {
        *self.resources.entry(resource.to_owned()).or_default() += 1;
        for f in crate::metadata::finalizers(obj) {
            *self.finalizers.entry(f).or_default() += 1;
        }
    }

    fn is_done(&self) -> bool {
        self.resources.is_empty() && self.failures.is_empty()
    }

    /// Upstream's namespace deletion conditions, in upstream's order.
    fn conditions(&self) -> Vec<(&'static str, bool, &'static str, String)> {
        let content_failure = if self.failures.is_empty() {
            (
                false,
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization".to_owned(),
            )
        } else {
            (
                true,
                "ContentDeletionFailed",
                format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    self.failures.len(),
                    self.failures.join(", ")
                ),
            )
        };
        let remaining = if self.resources.is_empty() {
            (
                false,
                "ContentRemoved",
                "All content successfully removed".to_owned(),
            )
        } else {
            let parts: Vec<String> = self
                .resources
                .iter()
                .map(|(r, n)| format!("{r} has {n} resource instances"))
                .collect();
            (
                true,
                "SomeResourcesRemain",
                format!("Some resources are remaining: {}", parts.join(", ")),
            )
        };
        let finalizers = if self.finalizers.is_empty() {
            (
                false,
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished".to_owned(),
            )
        } else {
            let parts: Vec<String> = self
                .finalizers
                .iter()
                .map(|(f, n)| format!("{f} in {n} resource instances"))
                .collect();
            (
                true,
                "SomeFinalizersRemain",
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    parts.join(", ")
                ),
            )
        };
        vec![
            (
                "NamespaceDeletionDiscoveryFailure",
                false,
                "ResourcesDiscovered",
                "All resources successfully discovered".to_owned(),
            ),
            (
                "NamespaceDeletionGroupVersionParsingFailure",
                false,
                "ParsedGroupVersions",
                "All legacy kube types successfully parsed".to_owned(),
            ),
            (
                "NamespaceDeletionContentFailure",
                content_failure.0,
                content_failure.1,
                content_failure.2,
            ),
            (
                "NamespaceContentRemaining",
                remaining.0,
                remaining.1,
                remaining.2,
            ),
            (
                "NamespaceFinalizersRemaining",
                finalizers.0,
                finalizers.1,
                finalizers.2,
            ),
        ]
    }
}

/// Writes the conditions into `status.conditions`; keeps a condition's
/// lastTransitionTime while its status is unchanged. Returns whether
/// anything changed.
fn set_conditions(
    ns: &mut Object,
    conditions: &[(&'static str, bool, &'static str, String)],
) -> bool {
    let old: Vec<Value> = ns
        .get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let now = now_rfc3339();
    let new: Vec<Value> = conditions
        .iter()
        .map(|(ty, status, reason, message)| {
            let status = if *status { "True" } else { "False" };
            let previous = old.iter().find(|c| c.get("type").and_then(Value::as_str) == Some(ty));
            let since = previous
                .filter(|c| c.get("status").and_then(Value::as_str) == Some(status))
                .and_then(|c| c.get("lastTransitionTime").cloned())
                .unwrap_or_else(|| Value::String(now.clone()));
            json!({"type": ty, "status": status, "lastTransitionTime": since, "reason": reason, "message": message})
        })
        .collect();
    if new == old {
        return false;
    }
    let status = ns.entry("status").or_insert_with(|| json!({}));
    if let Value::Object(st) = status {
        st.insert("conditions".into(), Value::Array(new));
    }
    true
}
