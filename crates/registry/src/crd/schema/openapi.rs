//! A CRD version's schema as published in `/openapi/v3` and `/openapi/v2`.
//!
//! Both add the fields every resource has (`apiVersion`, `kind`,
//! `metadata` as a reference to ObjectMeta) at the root and in embedded
//! resources. v3 spells `x-kubernetes-int-or-string` as upstream does (an
//! `anyOf` of integer and string). v2 cannot express what v3 can, and
//! kubectl's v2 validation chokes on it, so like upstream it drops the
//! junctors (`allOf`, `anyOf`, `oneOf`, `not`), turns `nullable` fields and
//! arrays without items into untyped ones, drops `items`/`properties` under
//! `x-kubernetes-preserve-unknown-fields`, and never requires a nullable
//! field.

use serde_json::{Map, Value, json};

/// Where v3 documents keep ObjectMeta.
pub const OBJECT_META_V3: &str =
    "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
/// Where v2 documents keep ObjectMeta.
pub const OBJECT_META_V2: &str = "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

const API_VERSION_DOC: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values.";
const KIND_DOC: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase.";
const METADATA_DOC: &str = "Standard object's metadata.";

/// The v3 form of a CRD version's `openAPIV3Schema`.
pub fn to_v3(schema: &Value) -> Value {
    let mut out = schema.clone();
    v3_node(&mut out);
    add_resource_fields(&mut out, true);
    out
}

/// The v2 form of a CRD version's `openAPIV3Schema`.
pub fn to_v2(schema: &Value) -> Value {
    let mut out = schema.clone();
    v2_node(&mut out);
    add_resource_fields(&mut out, false);
    out
}

fn children_mut(o: &mut Map<String, Value>, f: &mut dyn FnMut(&mut Value)) {
    if let Some(Value::Object(props)) = o.get_mut("properties") {
        for p in props.values_mut() {
            f(p);
        }
    }
    for k in ["items", "additionalProperties", "not"] {
        if let Some(v @ Value::Object(_)) = o.get_mut(k) {
            f(v);
        }
    }
    for k in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(list)) = o.get_mut(k) {
            for v in list {
                f(v);
            }
        }
    }
}

fn flag(o: &Map<String, Value>, k: &str) -> bool {
    o.get(k).and_then(Value::as_bool) == Some(true)
}

fn v3_node(v: &mut Value) {
    let Value::Object(o) = v else { return };
    if flag(o, "x-kubernetes-int-or-string") && !o.contains_key("anyOf") {
        o.insert(
            "anyOf".into(),
            json!([{"type": "integer"}, {"type": "string"}]),
        );
    }
    let embedded = flag(o, "x-kubernetes-embedded-resource");
    children_mut(o, &mut v3_node);
    if embedded {
        add_resource_fields(v, true);
    }
}

fn v2_node(v: &mut Value) {
    let Value::Object(o) = v else { return };
    for k in ["allOf", "anyOf", "oneOf", "not"] {
        o.remove(k);
    }
    if flag(o, "nullable") {
        // Untyped, and untyped values break kubectl if they carry shape.
        o.remove("type");
        o.remove("nullable");
        o.remove("items");
        o.remove("properties");
    }
    if flag(o, "x-kubernetes-preserve-unknown-fields") {
        o.remove("items");
        o.remove("properties");
    }
    if o.get("type").and_then(Value::as_str) == Some("array") && !o.contains_key("items") {
        o.remove("type");
    }
    let nullable_props: Vec<String> = o
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| {
            p.iter()
                .filter(|(_, s)| s.get("nullable").and_then(Value::as_bool) == Some(true))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    if !nullable_props.is_empty()
        && let Some(Value::Array(req)) = o.get_mut("required")
    {
        req.retain(|r| {
            r.as_str()
                .is_none_or(|r| !nullable_props.iter().any(|n| n == r))
        });
        if req.is_empty() {
            o.remove("required");
        }
    }
    let embedded = flag(o, "x-kubernetes-embedded-resource");
    let has_props = o.contains_key("properties");
    children_mut(o, &mut v2_node);
    if embedded && has_props {
        add_resource_fields(v, false);
    }
}

fn add_resource_fields(v: &mut Value, v3: bool) {
    let Value::Object(o) = v else { return };
    let props = o
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(props) = props else { return };
    props.insert(
        "apiVersion".into(),
        json!({"type": "string", "description": API_VERSION_DOC}),
    );
    props.insert(
        "kind".into(),
        json!({"type": "string", "description": KIND_DOC}),
    );
    let meta = if v3 {
        json!({"allOf": [{"$ref": OBJECT_META_V3}], "description": METADATA_DOC})
    } else {
        json!({"$ref": OBJECT_META_V2, "description": METADATA_DOC})
    };
    // A root `metadata` in the CRD only narrows name/generateName; the
    // published one is ObjectMeta.
    props.insert("metadata".into(), meta);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}}},
            "spec": {"type": "object", "required": ["port", "note"], "properties": {
                "port": {"x-kubernetes-int-or-string": true},
                "note": {"type": "string", "nullable": true},
                "mode": {"type": "string", "oneOf": [{"enum": ["a"]}, {"enum": ["b"]}]},
                "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                        "properties": {"x": {"type": "string"}}},
                "pod": {"type": "object", "x-kubernetes-embedded-resource": true,
                        "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}
            }}
        }})
    }

    #[test]
    fn v3_spells_int_or_string_and_adds_resource_fields() {
        let v3 = to_v3(&schema());
        assert_eq!(
            v3["properties"]["spec"]["properties"]["port"]["anyOf"],
            json!([{"type": "integer"}, {"type": "string"}])
        );
        assert_eq!(
            v3["properties"]["metadata"]["allOf"][0]["$ref"],
            OBJECT_META_V3
        );
        assert_eq!(v3["properties"]["kind"]["type"], "string");
        let pod = &v3["properties"]["spec"]["properties"]["pod"]["properties"];
        assert_eq!(pod["apiVersion"]["type"], "string");
        assert_eq!(
            v3["properties"]["spec"]["properties"]["note"]["nullable"],
            true
        );
    }

    #[test]
    fn v2_drops_what_it_cannot_express() {
        let v2 = to_v2(&schema());
        let spec = &v2["properties"]["spec"];
        assert_eq!(spec["required"], json!(["port"]));
        assert_eq!(spec["properties"]["note"], json!({}));
        assert!(spec["properties"]["mode"].get("oneOf").is_none());
        assert!(spec["properties"]["port"].get("type").is_none());
        assert!(spec["properties"]["raw"].get("properties").is_none());
        assert_eq!(
            spec["properties"]["pod"]["properties"]["metadata"]["$ref"],
            OBJECT_META_V2
        );
        assert_eq!(v2["properties"]["metadata"]["$ref"], OBJECT_META_V2);
    }
}
