//! Deployment rules: generation (including annotation changes), defaults,
//! and the selector/template agreement.

use serde_json::{Map, Value, json};

use crate::builtin::core_rules::default_template;
use crate::resource::{Object, Strategy};
use crate::selector::LabelSelector;
use crate::validation::FieldError;

pub struct DeploymentStrategy;

impl Strategy for DeploymentStrategy {
    fn warnings(&self, obj: &Object, old: Option<&Object>) -> Vec<String> {
        crate::builtin::pod_warnings::template_warnings(obj, old, "spec.template")
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn generation_includes_annotations(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Object) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        spec.entry("replicas").or_insert(1.into());
        spec.entry("revisionHistoryLimit").or_insert(10.into());
        spec.entry("progressDeadlineSeconds").or_insert(600.into());
        let strategy = spec
            .entry("strategy")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(s) = strategy {
            if s.get("type")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                s.insert("type".into(), "RollingUpdate".into());
            }
            if s.get("type").and_then(Value::as_str) == Some("RollingUpdate")
                && !s.contains_key("rollingUpdate")
            {
                s.insert(
                    "rollingUpdate".into(),
                    json!({"maxUnavailable": "25%", "maxSurge": "25%"}),
                );
            }
        }
        default_template(obj, "/spec/template/spec");
    }

    fn validate(&self, obj: &Object) -> Vec<FieldError> {
        validate_selector_matches_template(obj)
    }
}

/// StatefulSets: generation and upstream defaults.
pub struct StatefulSetStrategy;

impl Strategy for StatefulSetStrategy {
    fn warnings(&self, obj: &Object, old: Option<&Object>) -> Vec<String> {
        crate::builtin::pod_warnings::template_warnings(obj, old, "spec.template")
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Object) {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            spec.entry("replicas").or_insert(1.into());
            spec.entry("podManagementPolicy")
                .or_insert("OrderedReady".into());
            spec.entry("revisionHistoryLimit").or_insert(10.into());
            spec.entry("updateStrategy")
                .or_insert(json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
            spec.entry("persistentVolumeClaimRetentionPolicy")
                .or_insert(json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
        }
        default_template(obj, "/spec/template/spec");
    }

    fn validate(&self, obj: &Object) -> Vec<FieldError> {
        crate::builtin::type_rules::validate_workload(obj, "statefulset")
    }

    fn validate_update(&self, new: &Object, old: &Object) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        if statefulset_fixed_spec(new) != statefulset_fixed_spec(old) {
            errs.push(FieldError::forbidden("spec", STATEFULSET_SPEC_FORBIDDEN));
        }
        errs
    }
}

/// Upstream's (v1.31+) message for a StatefulSet update that changes a
/// fixed part of the spec.
const STATEFULSET_SPEC_FORBIDDEN: &str = "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";

/// The StatefulSet spec without the fields an update may change.
fn statefulset_fixed_spec(obj: &Object) -> Map<String, Value> {
    const MUTABLE: [&str; 7] = [
        "replicas",
        "ordinals",
        "template",
        "updateStrategy",
        "revisionHistoryLimit",
        "persistentVolumeClaimRetentionPolicy",
        "minReadySeconds",
    ];
    let mut spec = obj
        .get("spec")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    spec.retain(|k, _| !MUTABLE.contains(&k.as_str()));
    spec
}

/// DaemonSets: generation and upstream defaults.
pub struct DaemonSetStrategy;

impl Strategy for DaemonSetStrategy {
    fn warnings(&self, obj: &Object, old: Option<&Object>) -> Vec<String> {
        crate::builtin::pod_warnings::template_warnings(obj, old, "spec.template")
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Object) {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            spec.entry("revisionHistoryLimit").or_insert(10.into());
            spec.entry("updateStrategy").or_insert(
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
            );
        }
        default_template(obj, "/spec/template/spec");
    }

    fn validate(&self, obj: &Object) -> Vec<FieldError> {
        crate::builtin::type_rules::validate_workload(obj, "daemonset")
    }
}

/// CronJobs: generation and upstream defaults.
pub struct CronJobStrategy;

impl Strategy for CronJobStrategy {
    fn warnings(&self, obj: &Object, old: Option<&Object>) -> Vec<String> {
        crate::builtin::pod_warnings::template_warnings(obj, old, "spec.jobTemplate.spec.template")
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Object) {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            spec.entry("concurrencyPolicy").or_insert("Allow".into());
            spec.entry("suspend").or_insert(false.into());
            spec.entry("successfulJobsHistoryLimit").or_insert(3.into());
            spec.entry("failedJobsHistoryLimit").or_insert(1.into());
            if let Some(job) = spec
                .get_mut("jobTemplate")
                .and_then(|t| t.get_mut("spec"))
                .and_then(Value::as_object_mut)
            {
                crate::builtin::core_rules::default_job_spec(job);
            }
        }
        default_template(obj, "/spec/jobTemplate/spec/template/spec");
    }

    fn validate(&self, obj: &Object) -> Vec<FieldError> {
        crate::builtin::type_rules::validate_cronjob(obj)
    }
}

/// `spec.selector` is required and must select `spec.template`'s labels.
pub fn validate_selector_matches_template(obj: &Object) -> Vec<FieldError> {
    let spec = obj.get("spec");
    let Some(selector) = spec
        .and_then(|s| s.get("selector"))
        .filter(|s| !s.is_null())
    else {
        return vec![FieldError::required("spec.selector", "")];
    };
    let parsed = match LabelSelector::from_json(selector) {
        Ok(p) => p,
        Err(e) => {
            return vec![FieldError::invalid(
                "spec.selector",
                selector.clone(),
                e.to_string(),
            )];
        }
    };
    if parsed.is_empty() {
        return vec![FieldError::invalid(
            "spec.selector",
            selector.clone(),
            "empty selector is invalid for deployment",
        )];
    }
    let labels = spec
        .and_then(|s| s.pointer("/template/metadata/labels"))
        .and_then(Value::as_object);
    if !parsed.matches(labels) {
        return vec![FieldError::invalid(
            "spec.template.metadata.labels",
            labels.cloned().map(Value::Object).unwrap_or(Value::Null),
            "`selector` does not match template `labels`",
        )];
    }
    Vec::new()
}

#[cfg(test)]
mod statefulset_update_tests {
    use super::*;

    fn sts(spec: Value) -> Object {
        let Value::Object(o) = json!({"metadata": {"name": "db"}, "spec": spec}) else {
            return Object::new();
        };
        o
    }

    #[test]
    fn only_the_mutable_spec_fields_may_change() {
        let old = sts(
            json!({"replicas": 1, "serviceName": "db", "minReadySeconds": 0,
            "revisionHistoryLimit": 10, "volumeClaimTemplates": [{"metadata": {"name": "data"}}]}),
        );
        let mutable = sts(
            json!({"replicas": 3, "serviceName": "db", "minReadySeconds": 5,
            "revisionHistoryLimit": 2, "ordinals": {"start": 1},
            "updateStrategy": {"type": "OnDelete"},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete"},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}}]}),
        );
        let forbidden = |new: &Object| {
            StatefulSetStrategy
                .validate_update(new, &old)
                .iter()
                .any(|e| e.field == "spec" && e.detail == STATEFULSET_SPEC_FORBIDDEN)
        };
        assert!(!forbidden(&mutable));
        let renamed = sts(
            json!({"replicas": 1, "serviceName": "other", "minReadySeconds": 0,
            "revisionHistoryLimit": 10, "volumeClaimTemplates": [{"metadata": {"name": "data"}}]}),
        );
        assert!(forbidden(&renamed));
        let claims = sts(
            json!({"replicas": 1, "serviceName": "db", "minReadySeconds": 0,
            "revisionHistoryLimit": 10, "volumeClaimTemplates": [{"metadata": {"name": "logs"}}]}),
        );
        assert!(forbidden(&claims));
    }
}
