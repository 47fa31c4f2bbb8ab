//! Deployment rules: generation (including annotation changes), defaults,
//! and the selector/template agreement.

use serde_json::{Map, Value, json};

use crate::resource::{Object, Strategy};
use crate::selector::LabelSelector;
use crate::validation::FieldError;

pub struct DeploymentStrategy;

impl Strategy for DeploymentStrategy {
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
    }

    fn validate(&self, obj: &Object) -> Vec<FieldError> {
        validate_selector_matches_template(obj)
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
