//! Defaulting: a property's `default` fills it when absent (or null without
//! `nullable`), then defaulting continues inside, so defaults nest. Used on
//! objects from requests and from storage alike.

use serde_json::{Map, Value};

use super::structural::Node;

fn non_nullable_null(v: &Value, node: &Node) -> bool {
    v.is_null() && !node.nullable
}

pub(crate) fn apply(node: &Node, v: &mut Value) {
    match v {
        Value::Object(obj) => apply_object(node, obj),
        Value::Array(items) => {
            let Some(item) = node.items.as_deref() else {
                return;
            };
            for x in items.iter_mut() {
                if let Some(d) = &item.default
                    && non_nullable_null(x, item)
                {
                    *x = d.clone();
                }
                if item.has_defaults {
                    apply(item, x);
                }
            }
        }
        _ => {}
    }
}

pub(crate) fn apply_object(node: &Node, obj: &mut Map<String, Value>) {
    if node.has_defaults {
        for (k, p) in &node.properties {
            let Some(d) = &p.default else { continue };
            match obj.get(k) {
                Some(x) if !non_nullable_null(x, p) => {}
                _ => {
                    obj.insert(k.clone(), d.clone());
                }
            }
        }
        if let Some(ap) = node.additional.as_deref()
            && let Some(d) = &ap.default
        {
            for (k, x) in obj.iter_mut() {
                if !node.properties.contains_key(k) && non_nullable_null(x, ap) {
                    *x = d.clone();
                }
            }
        }
    }
    for (k, x) in obj.iter_mut() {
        if let Some(child) = node.child(k)
            && child.has_defaults
        {
            apply(child, x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::structural::Compiler;
    use super::*;
    use serde_json::json;

    fn defaulted(schema: Value, mut obj: Value) -> Value {
        let mut c = Compiler::new();
        let node = c.root(&schema);
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        apply(&node, &mut obj);
        obj
    }

    #[test]
    fn defaults_fill_absent_and_non_nullable_null_fields() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "default": {},
        "properties": {
            "replicas": {"type": "integer", "default": 1},
            "mode": {"type": "string", "nullable": true, "default": "auto"},
            "strategy": {"type": "object", "default": {"type": "Rolling"},
                         "properties": {"type": {"type": "string"}, "max": {"type": "integer", "default": 25}}},
            "ports": {"type": "array", "items": {"type": "object",
                      "properties": {"protocol": {"type": "string", "default": "TCP"}, "port": {"type": "integer"}}}},
            "limits": {"type": "object", "additionalProperties": {"type": "string", "default": "1"}}
        }}}});
        assert_eq!(
            defaulted(schema.clone(), json!({})),
            json!({"spec": {"replicas": 1, "mode": "auto", "strategy": {"type": "Rolling", "max": 25}}})
        );
        assert_eq!(
            defaulted(
                schema,
                json!({"spec": {"replicas": null, "mode": null, "strategy": {"type": "Recreate"},
                                              "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}],
                                              "limits": {"cpu": null, "mem": "2"}}})
            ),
            json!({"spec": {"replicas": 1, "mode": null, "strategy": {"type": "Recreate", "max": 25},
                            "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
                            "limits": {"cpu": "1", "mem": "2"}}})
        );
    }
}
