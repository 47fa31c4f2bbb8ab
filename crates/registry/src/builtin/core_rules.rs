//! Rules of core and other built-in types that differ from the default.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::resource::{Object, Strategy};
use crate::validation::{FieldError, NameRule};

fn map_mut<'a>(obj: &'a mut Object, field: &str) -> &'a mut Map<String, Value> {
    let v = obj
        .entry(field)
        .or_insert_with(|| Value::Object(Map::new()));
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

fn default_str(m: &mut Map<String, Value>, key: &str, value: &str) {
    if m.get(key).and_then(Value::as_str).is_none_or(str::is_empty) {
        m.insert(key.into(), value.into());
    }
}

/// Upstream's PodSpec defaults (pods and every pod template).
pub fn default_pod_spec(spec: &mut Map<String, Value>) {
    default_str(spec, "restartPolicy", "Always");
    default_str(spec, "dnsPolicy", "ClusterFirst");
    default_str(spec, "schedulerName", "default-scheduler");
    if !spec.contains_key("terminationGracePeriodSeconds") {
        spec.insert("terminationGracePeriodSeconds".into(), 30.into());
    }
    if !spec.contains_key("securityContext") {
        spec.insert("securityContext".into(), json!({}));
    }
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                default_str(c, "terminationMessagePath", "/dev/termination-log");
                default_str(c, "terminationMessagePolicy", "File");
                let image = c.get("image").and_then(Value::as_str).unwrap_or("");
                let tag_latest = image.ends_with(":latest")
                    || !image.rsplit('/').next().unwrap_or("").contains(':');
                let policy = if tag_latest && !image.contains('@') {
                    "Always"
                } else {
                    "IfNotPresent"
                };
                default_str(c, "imagePullPolicy", policy);
                if !c.contains_key("resources") {
                    c.insert("resources".into(), json!({}));
                }
            }
        }
    }
}

/// Defaults the pod template at `pointer` (e.g. `/spec/template/spec`).
pub fn default_template(obj: &mut Object, pointer: &str) {
    let mut v = Value::Object(std::mem::take(obj));
    if let Some(Value::Object(spec)) = v.pointer_mut(pointer) {
        default_pod_spec(spec);
    }
    if let Value::Object(o) = v {
        *obj = o;
    }
}

/// Pods: phase Pending on create, upstream defaults, field selectors; the
/// DELETE answer is the object.
pub struct PodStrategy;

impl Strategy for PodStrategy {
    fn warnings(&self, obj: &Object, _old: Option<&Object>) -> Vec<String> {
        crate::builtin::pod_warnings::pod_warnings(obj)
    }

    fn delete_returns_object(&self) -> bool {
        true
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ]
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        match field {
            // Selectable even when unset (upstream renders the zero value).
            "spec.hostNetwork" => Some(
                obj.pointer("/spec/hostNetwork")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string(),
            ),
            "status.podIPs" => obj
                .pointer("/status/podIPs/0/ip")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or(Some(String::new())),
            f => Some(crate::selector::field_value(obj, f).unwrap_or_default()),
        }
    }

    fn prepare_for_create(&self, obj: &mut Object) {
        obj.insert(
            "status".into(),
            json!({"phase": "Pending", "qosClass": "BestEffort"}),
        );
    }

    fn default(&self, obj: &mut Object) {
        let spec = map_mut(obj, "spec");
        default_pod_spec(spec);
        // Upstream's ServiceAccount admission: every namespace has `default`.
        default_str(spec, "serviceAccountName", DEFAULT_SERVICE_ACCOUNT);
        default_str(spec, "serviceAccount", DEFAULT_SERVICE_ACCOUNT);
    }

    fn validate(&self, obj: &Object) -> Vec<FieldError> {
        let containers = obj
            .get("spec")
            .and_then(|s| s.get("containers"))
            .and_then(Value::as_array);
        match containers {
            Some(cs) if !cs.is_empty() => cs
                .iter()
                .enumerate()
                .flat_map(|(i, c)| {
                    let mut errs = Vec::new();
                    if c.get("name")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        errs.push(FieldError::required(
                            format!("spec.containers[{i}].name"),
                            "",
                        ));
                    }
                    if c.get("image")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        errs.push(FieldError::required(
                            format!("spec.containers[{i}].image"),
                            "",
                        ));
                    }
                    errs
                })
                .collect(),
            _ => vec![FieldError::required("spec.containers", "")],
        }
    }
}

/// Secrets: `stringData` folded into `data`, type defaulted, `type` selectable.
pub struct SecretStrategy;

impl SecretStrategy {
    fn fold_string_data(obj: &mut Object) {
        if let Some(Value::Object(sd)) = obj.remove("stringData") {
            let data = map_mut(obj, "data");
            for (k, v) in sd {
                if let Some(s) = v.as_str() {
                    data.insert(
                        k,
                        base64::engine::general_purpose::STANDARD.encode(s).into(),
                    );
                }
            }
        }
    }
}

impl Strategy for SecretStrategy {
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["type"]
    }

    fn prepare_for_create(&self, obj: &mut Object) {
        Self::fold_string_data(obj);
    }

    fn prepare_for_update(&self, new: &mut Object, _old: &Object) {
        Self::fold_string_data(new);
    }

    fn default(&self, obj: &mut Object) {
        if obj
            .get("type")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            obj.insert("type".into(), "Opaque".into());
        }
    }

    fn validate(&self, obj: &Object) -> Vec<FieldError> {
        let mut errs =
            crate::builtin::type_rules::validate_data_keys(obj, ["data", "stringData"], true);
        if let Some(data) = obj.get("data").and_then(Value::as_object) {
            for (k, v) in data {
                let ok = v
                    .as_str()
                    .is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
                if !ok {
                    errs.push(FieldError::invalid(
                        format!("data[{k}]"),
                        "<secret contents redacted>",
                        "must be base64-encoded",
                    ));
                }
            }
        }
        errs
    }

    fn validate_update(&self, new: &Object, old: &Object) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        if new.get("type") != old.get("type") {
            errs.push(FieldError::invalid(
                "type",
                new.get("type").cloned().unwrap_or(Value::Null),
                "field is immutable",
            ));
        }
        if old.get("immutable").and_then(Value::as_bool) == Some(true)
            && new.get("data") != old.get("data")
        {
            errs.push(FieldError::forbidden(
                "data",
                "field is immutable when `immutable` is set",
            ));
        }
        errs
    }
}

/// ServiceAccounts. Every namespace has a `default` one: created with the
/// namespace, and implicit in the namespaces every workspace starts with.
pub struct ServiceAccountStrategy;

/// The ServiceAccount every namespace has.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

impl Strategy for ServiceAccountStrategy {
    fn delete_returns_object(&self) -> bool {
        true
    }

    fn implicit_objects(
        &self,
        ctx: &crate::resource::ImplicitContext<'_>,
        namespace: Option<&str>,
    ) -> Vec<Object> {
        let implicit = crate::builtin::namespace::IMPLICIT;
        let namespaces: Vec<&str> = match namespace {
            Some(ns) if implicit.contains(&ns) => vec![ns],
            Some(_) => Vec::new(),
            None => implicit.to_vec(),
        };
        namespaces
            .into_iter()
            .filter_map(|ns| {
                let v = json!({
                    "kind": "ServiceAccount",
                    "apiVersion": "v1",
                    "metadata": {
                        "name": DEFAULT_SERVICE_ACCOUNT,
                        "namespace": ns,
                        "uid": crate::builtin::namespace::implicit_uid(ctx.cluster, &format!("ServiceAccount/{ns}"), DEFAULT_SERVICE_ACCOUNT),
                        "resourceVersion": ctx.revision.to_string(),
                        "creationTimestamp": ctx.created,
                    },
                });
                match v {
                    Value::Object(o) => Some(o),
                    _ => None,
                }
            })
            .collect()
    }
}

pub struct ReturnsObjectStrategy;
impl Strategy for ReturnsObjectStrategy {
    fn delete_returns_object(&self) -> bool {
        true
    }
}

pub struct NodeStrategy;
impl Strategy for NodeStrategy {
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["spec.unschedulable"]
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        match field {
            "spec.unschedulable" => Some(
                obj.pointer("/spec/unschedulable")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string(),
            ),
            f => crate::selector::field_value(obj, f),
        }
    }
}

/// How long events live, as kube-apiserver's default `--event-ttl`.
pub const EVENT_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// core/v1 Events: the `involvedObject.*` selectors `kubectl describe` uses,
/// and a one-hour TTL.
pub struct CoreEventStrategy;
impl Strategy for CoreEventStrategy {
    fn ttl(&self) -> Option<std::time::Duration> {
        Some(EVENT_TTL)
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ]
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        match field {
            "source" => Some(
                obj.pointer("/source/component")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            ),
            f => Some(crate::selector::field_value(obj, f).unwrap_or_default()),
        }
    }
}

/// PodTemplates: upstream's pod-template warnings under `template`.
pub struct PodTemplateStrategy;
impl Strategy for PodTemplateStrategy {
    fn warnings(&self, obj: &Object, old: Option<&Object>) -> Vec<String> {
        crate::builtin::pod_warnings::template_warnings(obj, old, "template")
    }
}

/// ReplicaSets and ReplicationControllers: generation and `status.replicas`.
pub struct ReplicaCountStrategy;
impl Strategy for ReplicaCountStrategy {
    fn warnings(&self, obj: &Object, old: Option<&Object>) -> Vec<String> {
        crate::builtin::pod_warnings::template_warnings(obj, old, "spec.template")
    }

    fn default(&self, obj: &mut Object) {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            spec.entry("replicas").or_insert(1.into());
        }
        default_template(obj, "/spec/template/spec");
    }

    fn validate(&self, obj: &Object) -> Vec<FieldError> {
        let kind = match obj.get("kind").and_then(Value::as_str) {
            Some("ReplicationController") => "replicationcontroller",
            _ => "replicaset",
        };
        crate::builtin::type_rules::validate_workload(obj, kind)
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        match field {
            "status.replicas" => Some(
                obj.pointer("/status/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
                    .to_string(),
            ),
            f => crate::selector::field_value(obj, f),
        }
    }
}

pub struct JobStrategy;
impl Strategy for JobStrategy {
    fn warnings(&self, obj: &Object, old: Option<&Object>) -> Vec<String> {
        crate::builtin::pod_warnings::template_warnings(obj, old, "spec.template")
    }

    fn default(&self, obj: &mut Object) {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            default_job_spec(spec);
        }
        default_template(obj, "/spec/template/spec");
    }

    fn validate(&self, obj: &Object) -> Vec<FieldError> {
        crate::builtin::type_rules::validate_job_spec(obj, "/spec", "spec")
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.successful"]
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        match field {
            "status.successful" => Some(
                obj.pointer("/status/succeeded")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
                    .to_string(),
            ),
            f => crate::selector::field_value(obj, f),
        }
    }
}

/// RBAC objects are named like `system:controller:x`: path segments.
pub struct RbacStrategy;
impl Strategy for RbacStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
}

/// events.k8s.io/v1 Events: stored with core Events, with the same TTL.
pub struct EventsV1Strategy;
impl Strategy for EventsV1Strategy {
    fn ttl(&self) -> Option<std::time::Duration> {
        Some(EVENT_TTL)
    }
}

/// Upstream's JobSpec defaults (jobs and CronJob job templates).
pub fn default_job_spec(spec: &mut Map<String, Value>) {
    spec.entry("completions").or_insert(1.into());
    spec.entry("parallelism").or_insert(1.into());
    spec.entry("backoffLimit").or_insert(6.into());
    spec.entry("completionMode").or_insert("NonIndexed".into());
    spec.entry("suspend").or_insert(false.into());
    spec.entry("podReplacementPolicy")
        .or_insert("TerminatingOrFailed".into());
}
