//! Namespaces: the finalizer, phase and name label every namespace carries,
//! and the four namespaces every workspace has from its first moment.
//! Deletion (Terminating, purge, finalize) lives in [`crate::namespaces`].

use serde_json::{Value, json};

use crate::resource::{ImplicitContext, Object, Strategy};
use crate::validation::NameRule;

/// Namespaces that exist in every workspace without being written.
pub const IMPLICIT: &[&str] = &["default", "kube-node-lease", "kube-public", "kube-system"];
/// Namespaces that may not be deleted.
pub const IMMORTAL: &[&str] = &["default", "kube-public", "kube-system"];
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";
pub const KUBERNETES_FINALIZER: &str = "kubernetes";

/// A stable uid for an implicit object, so it does not change between reads
/// (and stays the same once the object is first written).
pub fn implicit_uid(cluster: &str, kind: &str, name: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut bytes = [0u8; 16];
    for (i, half) in bytes.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (i, cluster, kind, name).hash(&mut h);
        half.copy_from_slice(&h.finish().to_be_bytes());
    }
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

pub struct NamespaceStrategy;

fn ensure_shape(obj: &mut Object) {
    let name = crate::metadata::name(obj).to_owned();
    let m = crate::metadata::meta_mut(obj);
    let labels = m.entry("labels").or_insert_with(|| json!({}));
    if !labels.is_object() {
        *labels = json!({});
    }
    if let Value::Object(l) = labels {
        l.insert(NAME_LABEL.into(), name.into());
    }
}

impl Strategy for NamespaceStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }

    fn delete_returns_object(&self) -> bool {
        true
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.phase"]
    }

    fn prepare_for_create(&self, obj: &mut Object) {
        obj.insert("spec".into(), json!({"finalizers": [KUBERNETES_FINALIZER]}));
        obj.insert("status".into(), json!({"phase": "Active"}));
    }

    fn prepare_for_update(&self, new: &mut Object, old: &Object) {
        // spec.finalizers change only through /finalize.
        match old.get("spec") {
            Some(s) => new.insert("spec".into(), s.clone()),
            None => new.remove("spec"),
        };
    }

    fn default(&self, obj: &mut Object) {
        ensure_shape(obj);
    }

    fn implicit_objects(&self, ctx: &ImplicitContext<'_>, _namespace: Option<&str>) -> Vec<Object> {
        IMPLICIT
            .iter()
            .map(|name| {
                let v = json!({
                    "kind": "Namespace",
                    "apiVersion": "v1",
                    "metadata": {
                        "name": name,
                        "uid": implicit_uid(ctx.cluster, "Namespace", name),
                        "resourceVersion": ctx.revision.to_string(),
                        "creationTimestamp": ctx.created,
                        "labels": {NAME_LABEL: name},
                    },
                    "spec": {"finalizers": [KUBERNETES_FINALIZER]},
                    "status": {"phase": "Active"},
                });
                match v {
                    Value::Object(o) => o,
                    _ => unreachable!("json! object"),
                }
            })
            .collect()
    }
}
