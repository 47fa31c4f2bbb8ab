//! Pruning: fields a structural schema does not declare are dropped, unless
//! a node says `x-kubernetes-preserve-unknown-fields`. `apiVersion`, `kind`
//! and `metadata` stay at the root and in embedded resources, and their
//! `metadata` keeps only ObjectMeta's fields.

use serde_json::{Map, Value};

use super::structural::Node;

/// The fields of ObjectMeta (what survives in `metadata`).
const OBJECT_META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Prunes a whole object (the root is a resource like an embedded one).
pub(crate) fn prune_root(node: &Node, obj: &mut Map<String, Value>, pruned: &mut Vec<String>) {
    prune_object(node, obj, "", true, pruned);
}

fn prune_object(
    node: &Node,
    obj: &mut Map<String, Value>,
    path: &str,
    resource: bool,
    pruned: &mut Vec<String>,
) {
    let mut drop = Vec::new();
    for (k, v) in obj.iter_mut() {
        if resource {
            match k.as_str() {
                "apiVersion" | "kind" => continue,
                "metadata" => {
                    if let Value::Object(meta) = v {
                        let mpath = join(path, "metadata");
                        meta.retain(|mk, _| {
                            let keep = OBJECT_META.contains(&mk.as_str());
                            if !keep {
                                pruned.push(join(&mpath, mk));
                            }
                            keep
                        });
                    }
                    continue;
                }
                _ => {}
            }
        }
        match node.child(k) {
            Some(child) => prune_value(child, v, &join(path, k), pruned),
            None if node.preserve_unknown => {}
            None => drop.push(k.clone()),
        }
    }
    for k in drop {
        obj.remove(&k);
        pruned.push(join(path, &k));
    }
}

fn prune_value(node: &Node, v: &mut Value, path: &str, pruned: &mut Vec<String>) {
    match v {
        Value::Object(obj) => prune_object(node, obj, path, node.embedded, pruned),
        Value::Array(items) => {
            if let Some(item) = node.items.as_deref() {
                for (i, x) in items.iter_mut().enumerate() {
                    prune_value(item, x, &format!("{path}[{i}]"), pruned);
                }
            }
        }
        _ => {}
    }
}

/// Whether `v` has fields `node` would prune (for checking defaults).
pub(crate) fn unknown_fields(node: &Node, v: &Value, path: &str) -> Vec<String> {
    let mut copy = v.clone();
    let mut pruned = Vec::new();
    prune_value(node, &mut copy, path, &mut pruned);
    pruned
}

#[cfg(test)]
mod tests {
    use super::super::structural::Compiler;
    use super::*;
    use serde_json::json;

    fn prune(schema: Value, mut obj: Value) -> (Value, Vec<String>) {
        let mut c = Compiler::new();
        let node = c.root(&schema);
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        let mut pruned = Vec::new();
        if let Value::Object(m) = &mut obj {
            prune_root(&node, m, &mut pruned);
        }
        (obj, pruned)
    }

    #[test]
    fn unknown_fields_go_and_are_reported() {
        let schema = json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "a": {"type": "string"},
            "list": {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "integer"}}}},
            "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"y": {"type": "string"}}}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                     "properties": {"typed": {"type": "object", "properties": {"z": {"type": "string"}}}}},
            "pod": {"type": "object", "x-kubernetes-embedded-resource": true,
                    "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}
        }}}});
        let (out, pruned) = prune(
            schema,
            json!({
                "apiVersion": "example.com/v1", "kind": "Widget",
                "metadata": {"name": "w", "labels": {"a": "b"}, "bogus": 1},
                "spec": {
                    "a": "x", "b": "gone",
                    "list": [{"x": 1, "q": 2}],
                    "map": {"k": {"y": "1", "w": 2}},
                    "free": {"anything": {"goes": true}, "typed": {"z": "1", "nope": 1}},
                    "pod": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "junk": 1},
                            "spec": {"containers": []}, "extra": 1}
                },
                "status": {"x": 1}
            }),
        );
        assert_eq!(
            out,
            json!({
                "apiVersion": "example.com/v1", "kind": "Widget",
                "metadata": {"name": "w", "labels": {"a": "b"}},
                "spec": {
                    "a": "x",
                    "list": [{"x": 1}],
                    "map": {"k": {"y": "1"}},
                    "free": {"anything": {"goes": true}, "typed": {"z": "1"}},
                    "pod": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                            "spec": {"containers": []}}
                }
            })
        );
        let mut pruned = pruned;
        pruned.sort();
        assert_eq!(
            pruned,
            vec![
                "metadata.bogus",
                "spec.b",
                "spec.free.typed.nope",
                "spec.list[0].q",
                "spec.map.k.w",
                "spec.pod.extra",
                "spec.pod.metadata.junk",
                "status",
            ]
        );
    }

    #[test]
    fn root_preserve_unknown_keeps_everything() {
        let (out, pruned) = prune(
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            json!({"spec": {"a": 1}, "metadata": {"name": "x"}}),
        );
        assert_eq!(out, json!({"spec": {"a": 1}, "metadata": {"name": "x"}}));
        assert!(pruned.is_empty());
    }
}
