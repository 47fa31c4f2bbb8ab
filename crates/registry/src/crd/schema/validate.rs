//! OpenAPI value validation of a custom object against its compiled schema,
//! with Kubernetes' field-error shapes (`spec.replicas: Invalid value:
//! "string": spec.replicas in body must be of type integer: "string"`).

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::structural::{ListType, Node, Type};
use crate::validation::{FieldError, FieldErrorKind, is_dns1123_subdomain};

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The subject of a message: `spec.x in body` (`in body` = relative to
/// the object root, as upstream prints it).
fn in_body(path: &str) -> String {
    if path.is_empty() {
        "in body".to_string()
    } else {
        format!("{path} in body")
    }
}

/// The JSON type of a value as OpenAPI names it; whole numbers are
/// integers (a `1.0` from a JSON encoder is an integer, as in kube-openapi).
pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0) {
                "integer"
            } else {
                "number"
            }
        }
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(t: Type, v: &Value) -> bool {
    match (t, v) {
        (Type::Object, Value::Object(_))
        | (Type::Array, Value::Array(_))
        | (Type::String, Value::String(_))
        | (Type::Boolean, Value::Bool(_))
        | (Type::Number, Value::Number(_)) => true,
        (Type::Integer, Value::Number(_)) => json_type(v) == "integer",
        _ => false,
    }
}

fn type_error(path: &str, want: &str, v: &Value) -> FieldError {
    let got = json_type(v);
    FieldError::invalid(
        path,
        got,
        format!("{} must be of type {want}: {got:?}", in_body(path)),
    )
}

/// Whether an error keeps CEL rules from running (upstream: a value of the
/// wrong type or outside its enum).
pub(crate) fn is_blocking(e: &FieldError) -> bool {
    e.kind == FieldErrorKind::NotSupported || is_type_error(e)
}

fn is_type_error(e: &FieldError) -> bool {
    e.kind == FieldErrorKind::Invalid
        && e.detail.contains(" in body must be of type ")
        && e.value.as_ref().and_then(Value::as_str).is_some_and(|v| {
            matches!(
                v,
                "null" | "boolean" | "integer" | "number" | "string" | "array" | "object"
            )
        })
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        _ => a == b,
    }
}

fn render(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Validates `value` at `path` against `node`, appending to `errs`.
pub(crate) fn validate(node: &Node, value: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if value.is_null() {
        if node.nullable {
            return;
        }
        if let Some(t) = node.ty {
            errs.push(type_error(path, t.name(), value));
            return;
        }
        if node.int_or_string {
            errs.push(type_error(path, "integer or string", value));
            return;
        }
    }
    if node.int_or_string && !matches!(json_type(value), "integer" | "string") {
        errs.push(type_error(path, "integer or string", value));
        return;
    }
    if let Some(t) = node.ty
        && !type_matches(t, value)
    {
        errs.push(type_error(path, t.name(), value));
        return;
    }
    let before = errs.len();

    if !node.enumeration.is_empty() && !node.enumeration.iter().any(|e| values_equal(e, value)) {
        let supported: Vec<String> = node.enumeration.iter().map(render).collect();
        errs.push(FieldError {
            kind: FieldErrorKind::NotSupported,
            field: path.to_string(),
            value: Some(value.clone()),
            detail: format!("supported values: {}", supported.join(", ")),
        });
    }

    match value {
        Value::String(s) => string_checks(node, s, path, errs),
        Value::Number(n) => number_checks(node, n, path, errs),
        Value::Array(items) => array_checks(node, items, path, errs),
        Value::Object(obj) => object_checks(node, obj, path, errs),
        _ => {}
    }

    validate_junctors(node, value, path, errs);
    let _ = before;
}

// Junctors see the value as it is, at the same path.
fn validate_junctors(node: &Node, value: &Value, path: &str, errs: &mut Vec<FieldError>) {
    for sub in &node.all_of {
        validate(sub, value, path, errs);
    }
    if !node.any_of.is_empty() && !node.any_of.iter().any(|s| passes(s, value, path)) {
        errs.push(FieldError::invalid(
            path,
            value.clone(),
            format!(
                "{} must validate at least one schema (anyOf)",
                in_body(path)
            ),
        ));
    }
    if !node.one_of.is_empty() {
        let n = node
            .one_of
            .iter()
            .filter(|s| passes(s, value, path))
            .count();
        if n != 1 {
            errs.push(FieldError::invalid(
                path,
                value.clone(),
                format!(
                    "{} must validate one and only one schema (oneOf)",
                    in_body(path)
                ),
            ));
        }
    }
    if let Some(not) = &node.not
        && passes(not, value, path)
    {
        errs.push(FieldError::invalid(
            path,
            value.clone(),
            format!("{} must not validate the schema (not)", in_body(path)),
        ));
    }
}

/// Validates a whole object (the root), without copying it into a `Value`.
pub(crate) fn validate_root(node: &Node, obj: &Map<String, Value>, errs: &mut Vec<FieldError>) {
    object_checks(node, obj, "", errs);
    if !node.all_of.is_empty()
        || !node.any_of.is_empty()
        || !node.one_of.is_empty()
        || node.not.is_some()
    {
        // Rare: junctors at the root need the value whole.
        let whole = Value::Object(obj.clone());
        let mut junctors_only = Vec::new();
        validate_junctors(node, &whole, "", &mut junctors_only);
        errs.extend(junctors_only);
    }
}

fn passes(node: &Node, value: &Value, path: &str) -> bool {
    let mut scratch = Vec::new();
    validate(node, value, path, &mut scratch);
    scratch.is_empty()
}

fn string_checks(node: &Node, s: &str, path: &str, errs: &mut Vec<FieldError>) {
    if node.min_length.is_some() || node.max_length.is_some() {
        let len = s.chars().count() as u64;
        if let Some(max) = node.max_length
            && len > max
        {
            errs.push(FieldError {
                kind: FieldErrorKind::TooLong,
                field: path.to_string(),
                value: None,
                detail: format!("may not be more than {max} bytes"),
            });
        }
        if let Some(min) = node.min_length
            && len < min
        {
            errs.push(FieldError::invalid(
                path,
                s,
                format!("{} should be at least {min} chars long", in_body(path)),
            ));
        }
    }
    if let Some((src, re)) = &node.pattern
        && !re.is_match(s)
    {
        errs.push(FieldError::invalid(
            path,
            s,
            format!("{} should match '{src}'", in_body(path)),
        ));
    }
    if let Some(f) = node.format
        && !f.check_str(s)
    {
        errs.push(FieldError::invalid(
            path,
            s,
            format!("{} must be of type {}: {s:?}", in_body(path), f.name()),
        ));
    }
}

fn number_checks(node: &Node, n: &serde_json::Number, path: &str, errs: &mut Vec<FieldError>) {
    let v = n.as_f64().unwrap_or_default();
    let shown = Value::Number(n.clone());
    if let Some(b) = node.minimum {
        let bad = if b.exclusive {
            v <= b.value
        } else {
            v < b.value
        };
        if bad {
            let rel = if b.exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            errs.push(FieldError::invalid(
                path,
                shown.clone(),
                format!("{} should be {rel} {}", in_body(path), fmt_num(b.value)),
            ));
        }
    }
    if let Some(b) = node.maximum {
        let bad = if b.exclusive {
            v >= b.value
        } else {
            v > b.value
        };
        if bad {
            let rel = if b.exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            errs.push(FieldError::invalid(
                path,
                shown.clone(),
                format!("{} should be {rel} {}", in_body(path), fmt_num(b.value)),
            ));
        }
    }
    if let Some(m) = node.multiple_of {
        let ok = match (n.as_i64(), m.fract() == 0.0 && m.abs() < 9.0e15) {
            (Some(i), true) => i % (m as i64) == 0,
            _ => {
                let q = v / m;
                (q - q.round()).abs() <= 1e-9 * q.abs().max(1.0)
            }
        };
        if !ok {
            errs.push(FieldError::invalid(
                path,
                shown.clone(),
                format!("{} should be a multiple of {}", in_body(path), fmt_num(m)),
            ));
        }
    }
    if let Some(f) = node.format
        && !f.check_number(n)
    {
        errs.push(FieldError::invalid(
            path,
            shown,
            format!("{} must be of type {}: {}", in_body(path), f.name(), n),
        ));
    }
}

fn fmt_num(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

fn array_checks(node: &Node, items: &[Value], path: &str, errs: &mut Vec<FieldError>) {
    let len = items.len() as u64;
    if let Some(max) = node.max_items
        && len > max
    {
        errs.push(too_many(path, len, max));
    }
    if let Some(min) = node.min_items
        && len < min
    {
        errs.push(FieldError::invalid(
            path,
            len,
            format!("{} should have at least {min} items", in_body(path)),
        ));
    }
    if node.unique_items {
        for (i, v) in items.iter().enumerate() {
            if items[..i].iter().any(|w| values_equal(v, w)) {
                errs.push(duplicate(&format!("{path}[{i}]"), v.clone()));
            }
        }
    }
    match &node.list_type {
        Some(ListType::Set) => {
            let mut seen = HashSet::new();
            for (i, v) in items.iter().enumerate() {
                if !seen.insert(canonical_key(v)) {
                    errs.push(duplicate(&format!("{path}[{i}]"), v.clone()));
                }
            }
        }
        Some(ListType::Map(keys)) => {
            let mut seen = HashSet::new();
            for (i, v) in items.iter().enumerate() {
                let Value::Object(obj) = v else { continue };
                let item_path = format!("{path}[{i}]");
                let mut key = Map::new();
                let mut complete = true;
                for k in keys {
                    // A key the element omits may take its default.
                    let kv = obj.get(k).cloned().or_else(|| {
                        node.items
                            .as_ref()
                            .and_then(|it| it.properties.get(k))
                            .and_then(|p| p.default.clone())
                    });
                    match kv {
                        Some(kv) if !kv.is_null() => {
                            key.insert(k.clone(), kv);
                        }
                        _ => {
                            errs.push(FieldError::required(join(&item_path, k), ""));
                            complete = false;
                        }
                    }
                }
                if complete && !seen.insert(canonical_key(&Value::Object(key.clone()))) {
                    errs.push(duplicate(&item_path, Value::Object(key)));
                }
            }
        }
        _ => {}
    }
    if let Some(item) = &node.items {
        for (i, v) in items.iter().enumerate() {
            validate(item, v, &format!("{path}[{i}]"), errs);
        }
    }
}

fn too_many(path: &str, len: u64, max: u64) -> FieldError {
    FieldError {
        kind: FieldErrorKind::TooMany,
        field: path.to_string(),
        value: Some(len.into()),
        detail: format!("must have at most {max} items"),
    }
}

fn duplicate(path: &str, v: Value) -> FieldError {
    FieldError {
        kind: FieldErrorKind::Duplicate,
        field: path.to_string(),
        value: Some(v),
        detail: String::new(),
    }
}

// A hashable form of a value where 1 and 1.0 are the same key.
fn canonical_key(v: &Value) -> String {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => format!("n{}", f as i64),
            _ => format!("n{n}"),
        },
        Value::Object(obj) => {
            let mut keys: Vec<&String> = obj.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{k:?}:{}", canonical_key(&obj[k.as_str()])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(canonical_key).collect();
            format!("[{}]", parts.join(","))
        }
        other => other.to_string(),
    }
}

fn object_checks(node: &Node, obj: &Map<String, Value>, path: &str, errs: &mut Vec<FieldError>) {
    for r in &node.required {
        if !obj.contains_key(r) {
            errs.push(FieldError::required(join(path, r), ""));
        }
    }
    let len = obj.len() as u64;
    if let Some(max) = node.max_properties
        && len > max
    {
        errs.push(too_many(path, len, max));
    }
    if let Some(min) = node.min_properties
        && len < min
    {
        errs.push(FieldError::invalid(
            path,
            len,
            format!("{} should have at least {min} properties", in_body(path)),
        ));
    }
    if node.embedded {
        embedded_checks(obj, path, errs);
    }
    for (k, v) in obj {
        let child_path = join(path, k);
        if let Some(p) = node.properties.get(k) {
            validate(p, v, &child_path, errs);
        } else if let Some(ap) = &node.additional {
            validate(ap, v, &child_path, errs);
        }
    }
}

// An embedded resource is a whole object: apiVersion and kind are required
// and metadata has ObjectMeta's shape.
fn embedded_checks(obj: &Map<String, Value>, path: &str, errs: &mut Vec<FieldError>) {
    for k in ["apiVersion", "kind"] {
        match obj.get(k) {
            None | Some(Value::Null) => {
                errs.push(FieldError::required(join(path, k), "must not be empty"))
            }
            Some(Value::String(s)) if s.is_empty() => {
                errs.push(FieldError::required(join(path, k), "must not be empty"))
            }
            Some(Value::String(_)) => {}
            Some(v) => errs.push(type_error(&join(path, k), "string", v)),
        }
    }
    match obj.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(meta)) => {
            let mpath = join(path, "metadata");
            for k in ["name", "generateName", "namespace"] {
                match meta.get(k) {
                    None | Some(Value::Null) => {}
                    Some(Value::String(s)) => {
                        let s = if k == "generateName" {
                            s.trim_end_matches('-')
                        } else {
                            s
                        };
                        if !s.is_empty() && !is_dns1123_subdomain(s) {
                            errs.push(FieldError::invalid(
                                join(&mpath, k),
                                s,
                                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                            ));
                        }
                    }
                    Some(v) => errs.push(type_error(&join(&mpath, k), "string", v)),
                }
            }
            for k in ["labels", "annotations"] {
                if let Some(v) = meta.get(k)
                    && !v.is_null()
                {
                    let ok = v
                        .as_object()
                        .is_some_and(|m| m.values().all(Value::is_string));
                    if !ok {
                        errs.push(type_error(&join(&mpath, k), "object", v));
                    }
                }
            }
        }
        Some(v) => errs.push(type_error(&join(path, "metadata"), "object", v)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::structural::Compiler;
    use super::*;
    use serde_json::json;

    fn check(schema: Value, obj: Value) -> Vec<String> {
        let mut c = Compiler::new();
        let node = c.root(&schema);
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        let mut errs = Vec::new();
        validate(&node, &obj, "", &mut errs);
        errs.iter().map(ToString::to_string).collect()
    }

    fn spec(props: Value) -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": props}}})
    }

    #[test]
    fn types_use_upstream_messages() {
        let errs = check(
            spec(json!({"replicas": {"type": "integer"}})),
            json!({"spec": {"replicas": "3"}}),
        );
        assert_eq!(
            errs,
            vec![
                "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""
            ]
        );
        assert!(
            check(
                spec(json!({"r": {"type": "integer"}})),
                json!({"spec": {"r": 3.0}})
            )
            .is_empty()
        );
        let errs = check(
            spec(json!({"r": {"type": "integer"}})),
            json!({"spec": {"r": 3.5}}),
        );
        assert!(
            errs[0].contains("must be of type integer: \"number\""),
            "{errs:?}"
        );
        let errs = check(
            spec(json!({"s": {"type": "string"}})),
            json!({"spec": {"s": null}}),
        );
        assert!(
            errs[0].contains("must be of type string: \"null\""),
            "{errs:?}"
        );
        assert!(
            check(
                spec(json!({"s": {"type": "string", "nullable": true}})),
                json!({"spec": {"s": null}})
            )
            .is_empty()
        );
    }

    #[test]
    fn bounds_enums_and_patterns() {
        let schema = spec(json!({
            "n": {"type": "integer", "minimum": 1, "maximum": 10, "exclusiveMaximum": true, "multipleOf": 3},
            "s": {"type": "string", "minLength": 2, "maxLength": 3, "pattern": "^[a-z]+$"},
            "e": {"type": "string", "enum": ["a", "b"]},
            "l": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "integer"}},
            "m": {"type": "object", "maxProperties": 1, "additionalProperties": {"type": "string"}},
            "r": {"type": "object", "required": ["x"], "properties": {"x": {"type": "string"}}}
        }));
        assert!(check(schema.clone(), json!({"spec": {"n": 9, "s": "ab", "e": "a", "l": [1], "m": {"a": "b"}, "r": {"x": ""}}})).is_empty());
        let errs = check(
            schema.clone(),
            json!({"spec": {"n": 10, "s": "ABCD", "e": "c", "l": [], "m": {"a": "1", "b": "2"}, "r": {}}}),
        );
        for needle in [
            "spec.n: Invalid value: 10: spec.n in body should be less than 10",
            "spec.n: Invalid value: 10: spec.n in body should be a multiple of 3",
            "spec.s: Too long: may not be more than 3 bytes",
            "spec.s: Invalid value: \"ABCD\": spec.s in body should match '^[a-z]+$'",
            "spec.e: Unsupported value: \"c\": supported values: \"a\", \"b\"",
            "spec.l: Invalid value: 0: spec.l in body should have at least 1 items",
            "spec.m: Too many: 2: must have at most 1 items",
            "spec.r.x: Required value",
        ] {
            assert!(
                errs.iter().any(|e| e == needle || e.starts_with(needle)),
                "missing {needle:?} in {errs:#?}"
            );
        }
        // Lengths count characters, not bytes.
        assert!(
            check(schema, json!({"spec": {"s": "éé"}}))
                .iter()
                .all(|e| !e.contains("Too long"))
        );
    }

    #[test]
    fn formats_and_int_or_string() {
        let schema = spec(json!({
            "t": {"type": "string", "format": "date-time"},
            "i": {"type": "integer", "format": "int32"},
            "p": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "u": {"type": "string", "format": "my-format"}
        }));
        assert!(
            check(
                schema.clone(),
                json!({"spec": {"t": "2024-01-01T00:00:00Z", "i": 5, "p": "80%", "u": "x"}})
            )
            .is_empty()
        );
        assert!(check(schema.clone(), json!({"spec": {"p": 80}})).is_empty());
        let errs = check(
            schema,
            json!({"spec": {"t": "yesterday", "i": 4294967296_i64, "p": true}}),
        );
        for needle in [
            "spec.t: Invalid value: \"yesterday\": spec.t in body must be of type date-time: \"yesterday\"",
            "spec.i: Invalid value: 4294967296: spec.i in body must be of type int32",
            "spec.p: Invalid value: \"boolean\": spec.p in body must be of type integer or string",
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(needle)),
                "missing {needle:?} in {errs:#?}"
            );
        }
    }

    #[test]
    fn list_types_reject_duplicates_and_missing_keys() {
        let schema = spec(json!({
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "ports": {"type": "array", "x-kubernetes-list-type": "map",
                      "x-kubernetes-list-map-keys": ["port", "protocol"],
                      "items": {"type": "object", "properties": {
                          "port": {"type": "integer"},
                          "protocol": {"type": "string", "default": "TCP"}}}}
        }));
        let errs = check(
            schema,
            json!({"spec": {
                "tags": ["a", "b", "a"],
                "ports": [{"port": 80}, {"port": 80, "protocol": "TCP"}, {"protocol": "UDP"}, {"port": 80, "protocol": "UDP"}]
            }}),
        );
        assert_eq!(
            errs,
            vec![
                "spec.ports[1]: Duplicate value: {\"port\":80,\"protocol\":\"TCP\"}",
                "spec.ports[2].port: Required value",
                "spec.tags[2]: Duplicate value: \"a\"",
            ]
        );
    }

    #[test]
    fn junctors() {
        let schema = spec(json!({
            "one": {"type": "string", "oneOf": [{"pattern": "^a"}, {"pattern": "b$"}]},
            "not": {"type": "string", "not": {"enum": ["x"]}},
            "all": {"type": "object", "properties": {"a": {"type": "string"}},
                    "allOf": [{"required": ["a"]}]}
        }));
        assert!(
            check(
                schema.clone(),
                json!({"spec": {"one": "ax", "not": "y", "all": {"a": ""}}})
            )
            .is_empty()
        );
        let errs = check(
            schema,
            json!({"spec": {"one": "ab", "not": "x", "all": {}}}),
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("must validate one and only one schema (oneOf)")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("must not validate the schema (not)")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e == "spec.all.a: Required value"),
            "{errs:?}"
        );
    }

    #[test]
    fn embedded_resources() {
        let schema = spec(
            json!({"template": {"type": "object", "x-kubernetes-embedded-resource": true,
            "x-kubernetes-preserve-unknown-fields": true}}),
        );
        assert!(check(schema.clone(), json!({"spec": {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}}}})).is_empty());
        let errs = check(
            schema,
            json!({"spec": {"template": {"metadata": {"name": "Not_Valid"}}}}),
        );
        assert!(
            errs.contains(
                &"spec.template.apiVersion: Required value: must not be empty".to_string()
            ),
            "{errs:?}"
        );
        assert!(
            errs.contains(&"spec.template.kind: Required value: must not be empty".to_string()),
            "{errs:?}"
        );
        assert!(errs.iter().any(|e| e.starts_with("spec.template.metadata.name: Invalid value: \"Not_Valid\"")), "{errs:?}");
    }
}
