//! Pod subresources beyond status: `binding` (and the `bindings`
//! resource), `eviction` honouring PodDisruptionBudgets, the update-only
//! `ephemeralcontainers`, and the connect subresources (`log`, `exec`,
//! `attach`, `portforward`, `proxy`) plus node and service proxies.
//! `resize` is not served: in 1.32 it exists only behind the alpha
//! InPlacePodVerticalScaling gate, off by default, so a 1.32 cluster
//! neither lists nor routes it.
//!
//! There is no kubelet: connect requests get what a cluster answers for a
//! pod that never got a node (upstream's `pod/strategy.go`): exec, attach
//! and port-forward a 400 `pod X does not have a host assigned`, logs an
//! empty 200, pod proxy a 400 `address not allowed` (no pod IP). A pod bound
//! to a node (or a node or service proxy) would need a kubelet or endpoints
//! that do not exist here: 503 ServiceUnavailable saying so.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::cluster::{ClusterId, ClusterScope};
use crate::metadata::{meta_mut, now_rfc3339};
use crate::options::{DeleteOptions, ListOptions, WriteOptions};
use crate::patch;
use crate::registry::Registry;
use crate::resource::Object;
use crate::selector::LabelSelector;
use crate::status::{ApiError, ApiResult, QualifiedResource, Reason, StatusDetails};
use crate::store::{PatchKind, ResourceStore};
use crate::validation::{FieldError, FieldErrorKind};

/// The subresources that speak to a kubelet (connect verbs).
pub const CONNECT: &[&str] = &["attach", "exec", "log", "portforward", "proxy"];

/// Update-only pod subresources: which part of the pod each may change.
pub const POD_UPDATE_SUBRESOURCES: &[&str] = &["ephemeralcontainers"];

/// Upstream's cap on `status.disruptedPods` (`MaxDisruptedPodSize`).
const MAX_DISRUPTED_PODS: usize = 2000;

/// How often an eviction retries after losing a race with another writer
/// of the pod (upstream: 20 steps of `EvictionsRetry`).
const EVICTION_RETRIES: usize = 20;

fn pods_qr() -> QualifiedResource {
    QualifiedResource::new("", "pods")
}

fn success(code: u16) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code})
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Every container name of a pod (containers, init, ephemeral), in order.
fn container_names(pod: &Object) -> Vec<String> {
    let spec = pod.get("spec");
    ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .filter_map(|l| spec.and_then(|s| s.get(*l)).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// Upstream's `validateContainer`: the named container, or the only one.
fn validate_container(pod: &Object, container: Option<&str>) -> ApiResult<()> {
    let name = crate::metadata::name(pod);
    match container.filter(|c| !c.is_empty()) {
        Some(c) if container_names(pod).iter().any(|n| n == c) => Ok(()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None => {
            let main = pod
                .get("spec")
                .and_then(|s| s.get("containers"))
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            match main {
                1 => Ok(()),
                0 => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}"
                ))),
                _ => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    container_names(pod).join(" ")
                ))),
            }
        }
    }
}

fn no_kubelet(node: &str) -> ApiError {
    ApiError::new(
        Reason::ServiceUnavailable,
        format!(
            "node {node:?} has no kubelet: wsgate stores workloads but runs none, so there is nothing to connect to"
        ),
    )
}

/// What a connect request gets once the pod is known.
#[derive(Debug, PartialEq)]
pub enum ConnectAnswer {
    /// `log` of a pod that has no node: an empty log, as upstream.
    EmptyLog,
}

impl Registry {
    fn builtin_store(&self, group: &str, plural: &str) -> ApiResult<&Arc<ResourceStore>> {
        self.stores()
            .iter()
            .find(|s| s.descriptor.gvk.group == group && s.descriptor.plural() == plural)
            .ok_or_else(ApiError::route_not_found)
    }

    /// `POST pods/<name>/binding` and `POST bindings`: sets `spec.nodeName`
    /// once (409 when already bound) and marks the pod scheduled.
    pub async fn bind_pod(
        &self,
        cluster: &ClusterId,
        namespace: &str,
        path_name: Option<&str>,
        binding: &Value,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        self.workspaces().check_writable(cluster)?;
        let name = str_at(binding, "/metadata/name");
        if let Some(p) = path_name
            && p != name
        {
            return Err(ApiError::bad_request(
                "name in URL does not match name in Binding object",
            ));
        }
        let mut errs = Vec::new();
        let kind = str_at(binding, "/target/kind");
        if !kind.is_empty() && kind != "Node" {
            errs.push(FieldError {
                kind: FieldErrorKind::NotSupported,
                field: "target.kind".into(),
                value: Some(kind.into()),
                detail: "supported values: \"Node\", \"<empty>\"".into(),
            });
        }
        let node = str_at(binding, "/target/name");
        if node.is_empty() {
            errs.push(FieldError::required("target.name", ""));
        }
        if name.is_empty() {
            errs.push(FieldError::required(
                "metadata.name",
                "name or generateName is required",
            ));
        }
        if !errs.is_empty() {
            return Err(ApiError::invalid("", "Binding", name, &errs));
        }
        let pods = self.builtin_store("", "pods")?;
        pods.get(cluster, Some(namespace), name).await?;
        if opts.dry_run {
            return Ok(success(201));
        }
        let binding_qr = QualifiedResource::new("", "pods/binding");
        let annotations = binding
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .cloned();
        let mut refusal: Option<String> = None;
        pods.system_update(cluster, Some(namespace), name, |pod| {
            if crate::metadata::meta(pod).is_some_and(|m| m.contains_key("deletionTimestamp")) {
                refusal = Some(format!(
                    "pod {name} is being deleted, cannot be assigned to a host"
                ));
                return false;
            }
            let bound = pod
                .get("spec")
                .and_then(|s| s.get("nodeName"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if !bound.is_empty() {
                refusal = Some(format!("pod {name} is already assigned to node {bound:?}"));
                return false;
            }
            refusal = None;
            if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
                spec.insert("nodeName".into(), node.into());
            }
            if let Some(a) = &annotations {
                let m = meta_mut(pod);
                let target = m.entry("annotations").or_insert_with(|| json!({}));
                if let Value::Object(t) = target {
                    for (k, v) in a {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
            set_pod_scheduled(pod);
            true
        })
        .await?
        .ok_or_else(|| ApiError::not_found(&pods_qr(), name))?;
        if let Some(why) = refusal {
            return Err(ApiError::conflict(&binding_qr, name, &why));
        }
        Ok(success(201))
    }

    /// `POST pods/<name>/eviction` (upstream's `EvictionREST.Create`):
    /// deletes the pod unless its PodDisruptionBudget forbids it (429),
    /// decrementing the budget's `status.disruptionsAllowed` as the
    /// disruption controller would see it. `dry_run` (the query's `dryRun`,
    /// or `deleteOptions.dryRun` in the body) runs every check and answers
    /// as a real eviction would, writing nothing. Returns the HTTP code and
    /// the `Status` body: upstream answers a pod matched by several budgets
    /// with a failure `Status` object of code 500 rather than an error.
    pub async fn evict_pod(
        self: &Arc<Self>,
        cluster: &ClusterId,
        namespace: &str,
        name: &str,
        eviction: &Value,
        dry_run: bool,
    ) -> ApiResult<(u16, Value)> {
        self.workspaces().check_writable(cluster)?;
        if str_at(eviction, "/metadata/name") != name {
            return Err(ApiError::bad_request(
                "name in URL does not match name in Eviction object",
            ));
        }
        let mut dopts = DeleteOptions::default();
        if let Some(d) = eviction.get("deleteOptions").filter(|d| !d.is_null()) {
            dopts.merge_body(d)?;
        }
        // Upstream copies the request's dryRun into the eviction's options
        // when the body has none; both can only say `All`.
        dopts.dry_run |= dry_run;
        let pods = self.builtin_store("", "pods")?.clone();
        let caller_pinned = dopts
            .precondition_resource_version
            .as_deref()
            .is_some_and(|rv| !rv.is_empty());

        // Pods that are not running (or already going) are deleted without
        // asking any budget; a conflict with a concurrent change retries
        // unless the caller pinned a resourceVersion.
        let mut pod = None;
        let mut last_conflict = None;
        for _ in 0..EVICTION_RETRIES {
            let current = pods.get(cluster, Some(namespace), name).await?;
            if !can_ignore_pdb(&current) {
                pod = Some(current);
                break;
            }
            let mut opts = dopts.clone();
            if should_enforce_resource_version(&current) && !caller_pinned {
                opts.precondition_resource_version =
                    crate::metadata::meta_str(&current, "resourceVersion").map(str::to_owned);
            }
            match self
                .mark_and_delete_pod(&pods, cluster, namespace, name, opts)
                .await
            {
                Err(e) if e.reason == Reason::Conflict && !caller_pinned => {
                    last_conflict = Some(e);
                }
                Err(e) => return Err(e),
                Ok(()) => return Ok((201, success(201))),
            }
        }
        // Out of retries: the last conflict, as upstream's retry.OnError.
        let Some(pod) = pod else {
            return Err(last_conflict.unwrap_or_else(|| ApiError::modified(&pods_qr(), name)));
        };

        let mut pinned = false;
        let mut budget_name = String::new();
        let matching = self.matching_budgets(cluster, namespace, &pod).await?;
        match matching.as_slice() {
            [] => {}
            [pdb] => {
                budget_name = crate::metadata::name(pdb).to_owned();
                if !pod_ready(&pod) && unready_pod_evictable(pdb) {
                    // An unready pod counts towards no budget: delete it
                    // without a decrement, pinned to the pod we judged so
                    // that it did not turn ready meanwhile.
                    pinned = true;
                } else {
                    self.check_and_decrement_pdb(
                        cluster,
                        namespace,
                        &pod,
                        &budget_name,
                        dopts.dry_run,
                    )
                    .await?;
                }
            }
            _ => {
                return Ok((
                    500,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Failure", "code": 500,
                        "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."}),
                ));
            }
        }
        let mut opts = dopts.clone();
        if pinned {
            opts.precondition_resource_version =
                crate::metadata::meta_str(&pod, "resourceVersion").map(str::to_owned);
        }
        match self
            .mark_and_delete_pod(&pods, cluster, namespace, name, opts)
            .await
        {
            Err(e) if e.reason == Reason::Conflict && pinned && !caller_pinned => {
                Err(budget_being_processed(&budget_name))
            }
            Err(e) => Err(e),
            Ok(()) => Ok((201, success(201))),
        }
    }

    /// The budgets of the pod's namespace whose selector matches it (a
    /// null selector matches nothing, an empty one every pod; one that does
    /// not parse matches nothing), as upstream's `getPodDisruptionBudgets`.
    async fn matching_budgets(
        &self,
        cluster: &ClusterId,
        namespace: &str,
        pod: &Object,
    ) -> ApiResult<Vec<Object>> {
        let pdbs = self.builtin_store("policy", "poddisruptionbudgets")?;
        let list = pdbs
            .list(
                &ClusterScope::One(cluster.clone()),
                Some(namespace),
                &ListOptions::default(),
            )
            .await?;
        let labels = crate::metadata::meta(pod)
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object);
        Ok(list
            .items
            .into_iter()
            .filter_map(|pdb| match pdb {
                Value::Object(o) => Some(o),
                _ => None,
            })
            .filter(|pdb| {
                let selector = pdb
                    .get("spec")
                    .and_then(|s| s.get("selector"))
                    .unwrap_or(&Value::Null);
                LabelSelector::from_json(selector).is_ok_and(|s| s.matches(labels))
            })
            .collect())
    }

    /// Upstream's `addConditionAndDeletePod`: a real eviction first marks the
    /// pod with `DisruptionTarget=True` (PodDisruptionConditions is GA in
    /// 1.32), so a pod that lingers (finalizers) says why it is going, then
    /// deletes it with the caller's options. A dry run only deletes in dry-run.
    async fn mark_and_delete_pod(
        self: &Arc<Self>,
        pods: &Arc<ResourceStore>,
        cluster: &ClusterId,
        namespace: &str,
        name: &str,
        mut opts: DeleteOptions,
    ) -> ApiResult<()> {
        if !opts.dry_run {
            let mut refusal = None;
            let marked = pods
                .system_update(cluster, Some(namespace), name, |pod| {
                    refusal = precondition_failure(pod, &opts, name);
                    refusal.is_none() && set_disruption_target(pod)
                })
                .await?
                .ok_or_else(|| ApiError::not_found(&pods_qr(), name))?;
            if let Some(e) = refusal {
                return Err(e);
            }
            // The mark is ours: a pinned resourceVersion moves with it.
            if opts
                .precondition_resource_version
                .as_deref()
                .is_some_and(|rv| !rv.is_empty())
            {
                opts.precondition_resource_version =
                    crate::metadata::meta_str(&marked, "resourceVersion").map(str::to_owned);
            }
        }
        self.delete(pods, cluster, Some(namespace), name, &opts)
            .await?;
        Ok(())
    }

    /// Upstream's `checkAndDecrement`, retried on conflicts against the
    /// freshest budget; a dry run checks and writes nothing.
    async fn check_and_decrement_pdb(
        &self,
        cluster: &ClusterId,
        namespace: &str,
        pod: &Object,
        pdb_name: &str,
        dry_run: bool,
    ) -> ApiResult<()> {
        let pdbs = self.builtin_store("policy", "poddisruptionbudgets")?;
        let pod_name = crate::metadata::name(pod).to_owned();
        let mut refusal: Option<ApiError> = None;
        let now = now_rfc3339();
        let result = pdbs
            .system_update(cluster, Some(namespace), pdb_name, |obj| {
                refusal = pdb_refusal(obj);
                if refusal.is_some() || dry_run {
                    return false;
                }
                decrement_budget(obj, &pod_name, &now);
                true
            })
            .await?;
        if let Some(e) = refusal {
            return Err(e);
        }
        if result.is_none() {
            return Err(ApiError::not_found(
                &QualifiedResource::new("policy", "poddisruptionbudgets"),
                pdb_name,
            ));
        }
        Ok(())
    }

    /// Connect subresources of pods: the answer a cluster gives without a
    /// kubelet (see the module docs).
    pub async fn pod_connect(
        &self,
        cluster: &ClusterId,
        namespace: &str,
        name: &str,
        sub: &str,
        container: Option<&str>,
    ) -> ApiResult<ConnectAnswer> {
        let pods = self.builtin_store("", "pods")?;
        let pod = pods.get(cluster, Some(namespace), name).await?;
        if sub == "proxy" {
            // Upstream proxies to the pod IP; no pod ever gets one here.
            let ip = pod
                .get("status")
                .and_then(|s| s.get("podIP"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if ip.is_empty() {
                return Err(ApiError::bad_request("address not allowed"));
            }
            return Err(ApiError::new(
                Reason::ServiceUnavailable,
                format!(
                    "pod {name} has no running container to proxy to: wsgate runs no workloads"
                ),
            ));
        }
        if sub != "portforward" {
            validate_container(&pod, container)?;
        }
        let node = pod
            .get("spec")
            .and_then(|s| s.get("nodeName"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if node.is_empty() {
            if sub == "log" {
                return Ok(ConnectAnswer::EmptyLog);
            }
            return Err(ApiError::bad_request(format!(
                "pod {name} does not have a host assigned"
            )));
        }
        // Upstream looks the node up for its kubelet's address first.
        self.builtin_store("", "nodes")?
            .get(cluster, None, node)
            .await?;
        Err(no_kubelet(node))
    }

    /// `nodes/<n>/proxy`: the node must exist; there is no kubelet behind it.
    pub async fn node_proxy(&self, cluster: &ClusterId, name: &str) -> ApiResult<()> {
        self.builtin_store("", "nodes")?
            .get(cluster, None, name)
            .await?;
        Err(no_kubelet(name))
    }

    /// `services/<n>/proxy`: upstream picks a ready endpoint; nothing runs,
    /// so there is none.
    pub async fn service_proxy(
        &self,
        cluster: &ClusterId,
        namespace: &str,
        name: &str,
    ) -> ApiResult<()> {
        // `name` may carry `scheme:name:port`.
        let mut parts = name.split(':').collect::<Vec<_>>();
        let svc = match parts.len() {
            1 => parts[0],
            2 => parts[0],
            3 => parts.remove(1),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "invalid service request {name:?}"
                )));
            }
        };
        self.builtin_store("", "services")?
            .get(cluster, Some(namespace), svc)
            .await?;
        Err(ApiError::new(
            Reason::ServiceUnavailable,
            format!("no endpoints available for service {svc:?}"),
        ))
    }

    /// PUT or PATCH of `pods/<n>/ephemeralcontainers`: only
    /// `spec.ephemeralContainers` is taken from the request; the rest of the
    /// pod is kept.
    #[allow(clippy::too_many_arguments)]
    pub async fn update_pod_part(
        &self,
        cluster: &ClusterId,
        namespace: &str,
        name: &str,
        sub: &str,
        body: PodPartBody<'_>,
        opts: &WriteOptions,
    ) -> ApiResult<Object> {
        self.workspaces().check_writable(cluster)?;
        let pods = self.builtin_store("", "pods")?;
        let current = pods.get(cluster, Some(namespace), name).await?;
        let requested = match body {
            PodPartBody::Replace(obj) => {
                let rv = crate::metadata::meta_str(obj, "resourceVersion").unwrap_or("");
                let cur_rv = crate::metadata::meta_str(&current, "resourceVersion").unwrap_or("");
                if !rv.is_empty() && rv != cur_rv {
                    return Err(ApiError::modified(&pods_qr(), name));
                }
                obj.clone()
            }
            PodPartBody::Patch(kind, p) => {
                let doc = Value::Object(current.clone());
                let patched = match kind {
                    PatchKind::Json => patch::json_patch(&doc, p),
                    PatchKind::Merge => Ok(patch::merge_patch(&doc, p)),
                    PatchKind::Strategic | PatchKind::Apply => {
                        patch::strategic_merge_patch(&doc, p, &pods.descriptor.gvk)
                    }
                }
                .map_err(|e| ApiError::new(Reason::Invalid, e.to_string()))?;
                match patched {
                    Value::Object(o) => o,
                    _ => return Err(ApiError::bad_request("the patched pod is not an object")),
                }
            }
        };
        let errs = match sub {
            "ephemeralcontainers" => validate_ephemeral_update(&requested, &current),
            _ => Vec::new(),
        };
        if !errs.is_empty() {
            return Err(ApiError::invalid("", "Pod", name, &errs));
        }
        if opts.dry_run {
            let mut preview = current.clone();
            copy_part(sub, &requested, &mut preview);
            return Ok(preview);
        }
        let updated = pods
            .system_update(cluster, Some(namespace), name, |pod| {
                let before = pod.clone();
                copy_part(sub, &requested, pod);
                *pod != before
            })
            .await?
            .ok_or_else(|| ApiError::not_found(&pods_qr(), name))?;
        Ok(updated)
    }
}

/// The request body of a pod-part update.
pub enum PodPartBody<'a> {
    Replace(&'a Object),
    Patch(PatchKind, &'a Value),
}

fn copy_part(sub: &str, from: &Object, to: &mut Object) {
    let from_spec = from.get("spec").and_then(Value::as_object);
    let Some(to_spec) = to.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if sub == "ephemeralcontainers" {
        match from_spec.and_then(|s| s.get("ephemeralContainers")) {
            Some(v) if !v.is_null() => {
                to_spec.insert("ephemeralContainers".into(), v.clone());
            }
            _ => {
                to_spec.remove("ephemeralContainers");
            }
        }
    }
}

/// Ephemeral containers may be added, never changed or removed.
fn validate_ephemeral_update(new: &Object, old: &Object) -> Vec<FieldError> {
    let list = |o: &Object| -> Vec<Value> {
        o.get("spec")
            .and_then(|s| s.get("ephemeralContainers"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (new_list, old_list) = (list(new), list(old));
    let mut errs = Vec::new();
    for (i, c) in new_list.iter().enumerate() {
        let n = str_at(c, "/name");
        if n.is_empty() {
            errs.push(FieldError::required(
                format!("spec.ephemeralContainers[{i}].name"),
                "",
            ));
        }
        if str_at(c, "/image").is_empty() {
            errs.push(FieldError::required(
                format!("spec.ephemeralContainers[{i}].image"),
                "",
            ));
        }
    }
    for o in &old_list {
        let n = str_at(o, "/name");
        match new_list.iter().find(|c| str_at(c, "/name") == n) {
            Some(c) if c == o => {}
            _ => errs.push(FieldError::forbidden(
                "spec.ephemeralContainers",
                format!("existing ephemeral containers {n:?} may not be changed"),
            )),
        }
    }
    errs
}

/// Upstream's `canIgnorePDB`: pods not running are evicted freely.
fn can_ignore_pdb(pod: &Object) -> bool {
    is_deleting(pod) || matches!(pod_phase(pod), "Succeeded" | "Failed" | "Pending" | "")
}

/// Upstream's `shouldEnforceResourceVersion`: a budget-free eviction of a
/// pod that may still turn ready is pinned to the pod it judged.
fn should_enforce_resource_version(pod: &Object) -> bool {
    !is_deleting(pod) && !matches!(pod_phase(pod), "Succeeded" | "Failed")
}

fn is_deleting(pod: &Object) -> bool {
    crate::metadata::meta(pod).is_some_and(|m| m.contains_key("deletionTimestamp"))
}

fn pod_phase(pod: &Object) -> &str {
    pod.get("status")
        .and_then(|s| s.get("phase"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn conditions(obj: &Object) -> impl Iterator<Item = &Value> {
    obj.get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// `podutil.IsPodReady`: a `Ready` condition with status `True`.
fn pod_ready(pod: &Object) -> bool {
    conditions(pod).any(|c| str_at(c, "/type") == "Ready" && str_at(c, "/status") == "True")
}

/// Whether a budget lets a pod that is not ready go without a decrement:
/// always under `unhealthyPodEvictionPolicy: AlwaysAllow`; under the
/// default `IfHealthyBudget` only while the application is healthy
/// (`currentHealthy >= desiredHealthy > 0`).
fn unready_pod_evictable(pdb: &Object) -> bool {
    let policy = pdb
        .get("spec")
        .and_then(|s| s.get("unhealthyPodEvictionPolicy"))
        .and_then(Value::as_str);
    if policy == Some("AlwaysAllow") {
        return true;
    }
    let int = |k: &str| {
        pdb.get("status")
            .and_then(|s| s.get(k))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let desired = int("desiredHealthy");
    int("currentHealthy") >= desired && desired > 0
}

/// The delete preconditions checked against the pod about to be marked
/// (upstream checks them on the latest pod before adding the condition).
fn precondition_failure(pod: &Object, opts: &DeleteOptions, name: &str) -> Option<ApiError> {
    let qr = QualifiedResource::new("", "Pod");
    if let Some(pre) = opts.precondition_uid.as_deref().filter(|u| !u.is_empty()) {
        let uid = crate::metadata::meta_str(pod, "uid").unwrap_or("");
        if pre != uid {
            return Some(ApiError::conflict(
                &qr,
                name,
                &format!(
                    "the UID in the precondition ({pre}) does not match the UID in record ({uid}). The object might have been deleted and then recreated"
                ),
            ));
        }
    }
    if let Some(pre) = opts
        .precondition_resource_version
        .as_deref()
        .filter(|r| !r.is_empty())
    {
        let rv = crate::metadata::meta_str(pod, "resourceVersion").unwrap_or("");
        if pre != rv {
            return Some(ApiError::conflict(
                &qr,
                name,
                &format!(
                    "the ResourceVersion in the precondition ({pre}) does not match the ResourceVersion in record ({rv}). The object might have been modified"
                ),
            ));
        }
    }
    None
}

/// Sets `DisruptionTarget=True` (reason `EvictionByEvictionAPI`) like
/// upstream's `UpdatePodCondition`; false when it was already so.
fn set_disruption_target(pod: &mut Object) -> bool {
    let wanted = |c: &Value| {
        str_at(c, "/status") == "True"
            && str_at(c, "/reason") == "EvictionByEvictionAPI"
            && str_at(c, "/message") == "Eviction API: evicting"
    };
    let now = now_rfc3339();
    let status = pod.entry("status").or_insert_with(|| json!({}));
    let Some(st) = status.as_object_mut() else {
        return false;
    };
    let conds = st.entry("conditions").or_insert_with(|| json!([]));
    let Some(list) = conds.as_array_mut() else {
        return false;
    };
    let cond = |transition: Value| {
        json!({"type": "DisruptionTarget", "status": "True", "lastProbeTime": null,
            "lastTransitionTime": transition, "reason": "EvictionByEvictionAPI",
            "message": "Eviction API: evicting"})
    };
    match list
        .iter_mut()
        .find(|c| str_at(c, "/type") == "DisruptionTarget")
    {
        Some(c) if wanted(c) => false,
        Some(c) => {
            // The transition time moves only when the status does.
            let transition = if str_at(c, "/status") == "True" {
                c.get("lastTransitionTime").cloned().unwrap_or(Value::Null)
            } else {
                now.into()
            };
            *c = cond(transition);
            true
        }
        None => {
            list.push(cond(now.into()));
            true
        }
    }
}

/// One disruption taken from the budget: `disruptionsAllowed` decremented,
/// the pod recorded in `disruptedPods`, and `DisruptionAllowed=False`
/// (`InsufficientPods`) once none is left (upstream's
/// `UpdateDisruptionAllowedCondition`).
fn decrement_budget(pdb: &mut Object, pod_name: &str, now: &str) {
    let status = pdb.entry("status").or_insert_with(|| json!({}));
    let Some(st) = status.as_object_mut() else {
        return;
    };
    let allowed = st
        .get("disruptionsAllowed")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        - 1;
    st.insert("disruptionsAllowed".into(), allowed.into());
    if allowed == 0 {
        let observed = st.get("observedGeneration").cloned().unwrap_or(json!(0));
        let conds = st.entry("conditions").or_insert_with(|| json!([]));
        if let Value::Array(list) = conds {
            let cond = |transition: Value| {
                json!({"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods",
                    "message": "", "observedGeneration": observed, "lastTransitionTime": transition})
            };
            match list
                .iter_mut()
                .find(|c| str_at(c, "/type") == "DisruptionAllowed")
            {
                Some(c) => {
                    let transition = if str_at(c, "/status") == "False" {
                        c.get("lastTransitionTime").cloned().unwrap_or(Value::Null)
                    } else {
                        now.into()
                    };
                    *c = cond(transition);
                }
                None => list.push(cond(now.into())),
            }
        }
    }
    let disrupted = st.entry("disruptedPods").or_insert_with(|| json!({}));
    if let Value::Object(d) = disrupted {
        d.insert(pod_name.to_owned(), now.into());
    }
}

/// 429 while the disruption controller has not caught up with a budget
/// (upstream's `createTooManyRequestsError`, Retry-After 10 s).
fn budget_being_processed(name: &str) -> ApiError {
    too_many_requests(
        format!("The disruption budget {name} is still being processed by the server."),
        Some(10),
    )
}

fn too_many_requests(cause: String, retry_after: Option<u64>) -> ApiError {
    ApiError::new(
        Reason::TooManyRequests,
        "Cannot evict pod as it would violate the pod's disruption budget.",
    )
    .with_details(StatusDetails {
        causes: vec![json!({"reason": "DisruptionBudget", "message": cause})],
        retry_after_seconds: retry_after,
        ..Default::default()
    })
}

/// Why a budget forbids one more disruption (upstream's checkAndDecrement).
fn pdb_refusal(pdb: &Object) -> Option<ApiError> {
    let name = crate::metadata::name(pdb);
    let status = pdb.get("status");
    let int = |k: &str| status.and_then(|s| s.get(k)).and_then(Value::as_i64);
    let generation = crate::metadata::meta(pdb)
        .and_then(|m| m.get("generation"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if int("observedGeneration").unwrap_or(0) < generation {
        return Some(budget_being_processed(name));
    }
    let allowed = int("disruptionsAllowed").unwrap_or(0);
    let qr = QualifiedResource::new("policy", "poddisruptionbudget");
    if allowed < 0 {
        return Some(ApiError::forbidden(
            &qr,
            name,
            "pdb disruptions allowed is negative",
        ));
    }
    let disrupted = status
        .and_then(|s| s.get("disruptedPods"))
        .and_then(Value::as_object)
        .map_or(0, |d| d.len());
    if disrupted > MAX_DISRUPTED_PODS {
        return Some(ApiError::forbidden(
            &qr,
            name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        // Upstream's retry-after of 0 is omitted from the Status.
        return Some(too_many_requests(
            format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                int("desiredHealthy").unwrap_or(0),
                int("currentHealthy").unwrap_or(0)
            ),
            None,
        ));
    }
    None
}

/// Adds or updates the `PodScheduled=True` condition.
fn set_pod_scheduled(pod: &mut Object) {
    let now = now_rfc3339();
    let status = pod.entry("status").or_insert_with(|| json!({}));
    let Some(st) = status.as_object_mut() else {
        return;
    };
    let conds = st.entry("conditions").or_insert_with(|| json!([]));
    let Some(list) = conds.as_array_mut() else {
        return;
    };
    let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
    match list
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"))
    {
        Some(c) => *c = cond,
        None => list.push(cond),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Object {
        match v {
            Value::Object(o) => o,
            _ => Object::new(),
        }
    }

    #[test]
    fn container_choice_follows_upstream() {
        let one = obj(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}}));
        assert!(validate_container(&one, None).is_ok());
        let e = validate_container(&one, Some("b")).unwrap_err();
        assert_eq!(e.message, "container b is not valid for pod p");
        let two = obj(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
        );
        let e = validate_container(&two, None).unwrap_err();
        assert_eq!(
            e.message,
            "a container name must be specified for pod p, choose one of: [a b]"
        );
    }

    #[test]
    fn budget_refusals() {
        let zero = obj(json!({"metadata": {"name": "b", "generation": 1},
            "status": {"observedGeneration": 1, "disruptionsAllowed": 0, "desiredHealthy": 2, "currentHealthy": 2}}));
        let e = pdb_refusal(&zero).unwrap();
        assert_eq!(e.code(), 429);
        assert_eq!(
            e.message,
            "Cannot evict pod as it would violate the pod's disruption budget."
        );
        let stale = obj(json!({"metadata": {"name": "b", "generation": 2},
            "status": {"observedGeneration": 1, "disruptionsAllowed": 3}}));
        assert_eq!(pdb_refusal(&stale).map(|e| e.code()), Some(429));
        let ok = obj(json!({"metadata": {"name": "b", "generation": 1},
            "status": {"observedGeneration": 1, "disruptionsAllowed": 1}}));
        assert!(pdb_refusal(&ok).is_none());
        let pending = obj(json!({"status": {"phase": "Pending"}}));
        assert!(can_ignore_pdb(&pending));
        let running = obj(json!({"status": {"phase": "Running"}}));
        assert!(!can_ignore_pdb(&running));
    }

    #[test]
    fn unready_pods_and_the_budget_policy() {
        let exhausted = |policy: Option<&str>| {
            let mut pdb = obj(json!({"metadata": {"name": "b"},
                "status": {"currentHealthy": 1, "desiredHealthy": 2, "disruptionsAllowed": 0}}));
            if let Some(p) = policy {
                pdb.insert("spec".into(), json!({"unhealthyPodEvictionPolicy": p}));
            }
            pdb
        };
        assert!(unready_pod_evictable(&exhausted(Some("AlwaysAllow"))));
        assert!(!unready_pod_evictable(&exhausted(Some("IfHealthyBudget"))));
        assert!(!unready_pod_evictable(&exhausted(None)));
        let healthy = obj(json!({"status": {"currentHealthy": 2, "desiredHealthy": 2}}));
        assert!(unready_pod_evictable(&healthy));
        let ready = obj(json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}));
        assert!(pod_ready(&ready));
        assert!(!pod_ready(&obj(json!({"status": {"phase": "Running"}}))));
    }

    #[test]
    fn the_last_disruption_marks_the_budget() {
        let mut pdb = obj(json!({"status": {"observedGeneration": 3, "disruptionsAllowed": 2}}));
        decrement_budget(&mut pdb, "p1", "2026-01-01T00:00:00Z");
        assert_eq!(pdb["status"]["disruptionsAllowed"], 1);
        assert!(pdb["status"].get("conditions").is_none());
        decrement_budget(&mut pdb, "p2", "2026-01-01T00:00:01Z");
        assert_eq!(pdb["status"]["disruptionsAllowed"], 0);
        let c = &pdb["status"]["conditions"][0];
        assert_eq!(
            (
                c["type"].as_str(),
                c["status"].as_str(),
                c["reason"].as_str()
            ),
            (
                Some("DisruptionAllowed"),
                Some("False"),
                Some("InsufficientPods")
            )
        );
        assert_eq!(c["observedGeneration"], 3);
        assert_eq!(
            pdb["status"]["disruptedPods"].as_object().map(|d| d.len()),
            Some(2)
        );
        let mut pod = obj(json!({"status": {"phase": "Running"}}));
        assert!(set_disruption_target(&mut pod));
        assert!(!set_disruption_target(&mut pod), "already marked");
    }

    #[test]
    fn ephemeral_containers_cannot_change() {
        let old =
            obj(json!({"spec": {"ephemeralContainers": [{"name": "d", "image": "busybox"}]}}));
        let added = obj(json!({"spec": {"ephemeralContainers": [
            {"name": "d", "image": "busybox"}, {"name": "e", "image": "busybox"}]}}));
        assert!(validate_ephemeral_update(&added, &old).is_empty());
        let removed = obj(json!({"spec": {}}));
        assert_eq!(validate_ephemeral_update(&removed, &old).len(), 1);
        let mut pod = obj(json!({"spec": {"containers": [{"name": "a", "image": "x"}]}}));
        copy_part("ephemeralcontainers", &added, &mut pod);
        assert_eq!(
            pod.pointer_compat("/spec/ephemeralContainers/1/name"),
            Some("e")
        );
    }

    trait PointerCompat {
        fn pointer_compat(&self, p: &str) -> Option<&str>;
    }
    impl PointerCompat for Object {
        fn pointer_compat(&self, p: &str) -> Option<&str> {
            let mut parts = p.trim_start_matches('/').splitn(2, '/');
            let first = parts.next()?;
            let rest = parts.next().unwrap_or("");
            self.get(first)?
                .pointer(&format!("/{rest}"))
                .and_then(Value::as_str)
        }
    }
}
