//! Type information for server-side apply: how each map and list of a kind
//! merges (structured-merge-diff's schema). Built-in kinds come from the
//! generated [`super::types_table`]; custom resources from their CRD's
//! structural schema; anything else is "deduced" (maps granular, lists
//! atomic).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use super::types_table;

/// An index into a [`Schema`]'s atoms.
pub(crate) type TypeId = usize;

/// Scalars (strings, numbers, bools, int-or-string, quantities, times).
pub(crate) const SCALAR: TypeId = 0;
/// Untyped: a map is granular with untyped values, a list atomic.
pub(crate) const DEDUCED: TypeId = 1;

#[derive(Clone, Debug)]
pub(crate) enum ListKind {
    Atomic,
    /// Elements are scalars, identified by value.
    Set,
    /// Elements are objects identified by these key fields; a key field may
    /// have a default used when the element omits it.
    Map(Vec<(String, Option<Value>)>),
}

#[derive(Clone, Debug)]
pub(crate) enum Atom {
    Scalar,
    Deduced,
    /// A struct (declared `fields`) and/or a map (`elem` for other keys).
    Map {
        fields: HashMap<String, TypeId>,
        elem: Option<TypeId>,
        atomic: bool,
        /// Fields a typed (Go) object always carries: required ones and
        /// non-pointer structs. Built-ins only.
        present: Vec<String>,
    },
    List {
        elem: TypeId,
        kind: ListKind,
    },
}

#[derive(Debug)]
pub(crate) struct Schema {
    atoms: Vec<Atom>,
}

impl Schema {
    fn with_primitives() -> Self {
        Schema {
            atoms: vec![Atom::Scalar, Atom::Deduced],
        }
    }

    pub(crate) fn atom(&self, t: TypeId) -> &Atom {
        self.atoms.get(t).unwrap_or(&Atom::Deduced)
    }

    /// The type of field `name` in map type `t`, and whether it is a declared
    /// struct field. Undeclared fields of a struct without element type are
    /// treated as deduced rather than rejected (upstream fails validation).
    pub(crate) fn field(&self, t: TypeId, name: &str) -> (TypeId, bool) {
        match self.atom(t) {
            Atom::Map { fields, elem, .. } => match fields.get(name) {
                Some(ft) => (*ft, true),
                None => (elem.unwrap_or(DEDUCED), false),
            },
            _ => (DEDUCED, false),
        }
    }

    fn push(&mut self, atom: Atom) -> TypeId {
        self.atoms.push(atom);
        self.atoms.len() - 1
    }
}

/// How the fields of one kind merge under server-side apply; cheap to clone.
#[derive(Clone, Debug)]
pub struct TypeInfo {
    pub(crate) schema: Arc<Schema>,
    pub(crate) root: TypeId,
}

/// A CRD schema that cannot be turned into type information.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schema at {path}: {message}")]
pub struct SchemaError {
    pub path: String,
    pub message: String,
}

struct Builtin {
    schema: Arc<Schema>,
    kinds: HashMap<(String, String), TypeId>,
    object_meta: Option<TypeId>,
}

static BUILTIN: OnceLock<Builtin> = OnceLock::new();

fn builtin() -> &'static Builtin {
    BUILTIN.get_or_init(parse_builtin)
}

// The table is generated and checked by a test, so a malformed line is a
// build-time bug: such a line contributes an empty struct rather than a
// panic at request time.
fn parse_builtin() -> Builtin {
    let mut schema = Schema::with_primitives();
    let lines: Vec<&str> = types_table::TYPES
        .lines()
        .filter(|l| !l.is_empty())
        .collect();
    let base = schema.atoms.len();
    // Reserve definition atoms first so that type expressions can refer to
    // any definition by number.
    for _ in &lines {
        schema.push(Atom::Deduced);
    }
    let mut object_meta = None;
    for (i, line) in lines.iter().enumerate() {
        let mut words = line.split(' ');
        let name = words.next().unwrap_or_default();
        if name == "meta.v1.ObjectMeta" {
            object_meta = Some(base + i);
        }
        let atomic = words.next() == Some("a");
        let mut fields = HashMap::new();
        let mut present = Vec::new();
        for w in words {
            if let Some((field, expr)) = w.split_once('=') {
                let expr = match expr.strip_prefix('+') {
                    Some(e) => {
                        present.push(field.to_string());
                        e
                    }
                    None => expr,
                };
                let t = parse_type_expr(&mut schema, base, expr);
                fields.insert(field.to_string(), t);
            }
        }
        schema.atoms[base + i] = Atom::Map {
            fields,
            elem: None,
            atomic,
            present,
        };
    }
    let mut kinds = HashMap::new();
    for line in types_table::KINDS.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        if let [gv, kind, def] = parts[..]
            && let Ok(n) = def.parse::<usize>()
        {
            kinds.insert((gv.to_string(), kind.to_string()), base + n);
        }
    }
    Builtin {
        schema: Arc::new(schema),
        kinds,
        object_meta,
    }
}

fn parse_type_expr(schema: &mut Schema, base: TypeId, expr: &str) -> TypeId {
    if expr == "s" {
        return SCALAR;
    }
    if expr == "d" {
        return DEDUCED;
    }
    if let Ok(n) = expr.parse::<usize>() {
        return base + n;
    }
    if let Some(rest) = expr.strip_prefix('!') {
        // An atomic use of a struct definition: a copy with the flag set.
        let t = parse_type_expr(schema, base, rest);
        let atom = match schema.atom(t).clone() {
            Atom::Map {
                fields,
                elem,
                present,
                ..
            } => Atom::Map {
                fields,
                elem,
                atomic: true,
                present,
            },
            other => other,
        };
        return schema.push(atom);
    }
    if let Some(rest) = expr.strip_prefix('{') {
        let (atomic, rest) = match rest.strip_prefix('!') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let elem = parse_type_expr(schema, base, rest);
        return schema.push(Atom::Map {
            fields: HashMap::new(),
            elem: Some(elem),
            atomic,
            present: Vec::new(),
        });
    }
    if let Some(rest) = expr.strip_prefix("[=") {
        let elem = parse_type_expr(schema, base, rest);
        return schema.push(Atom::List {
            elem,
            kind: ListKind::Set,
        });
    }
    if let Some(rest) = expr.strip_prefix('[') {
        if let Some((keys, elem)) = rest.split_once(';') {
            let keys = keys
                .split(',')
                .map(|k| match k.split_once('=') {
                    Some((k, d)) => (k.to_string(), Some(Value::String(d.to_string()))),
                    None => (k.to_string(), None),
                })
                .collect();
            let elem = parse_type_expr(schema, base, elem);
            return schema.push(Atom::List {
                elem,
                kind: ListKind::Map(keys),
            });
        }
        let elem = parse_type_expr(schema, base, rest);
        return schema.push(Atom::List {
            elem,
            kind: ListKind::Atomic,
        });
    }
    DEDUCED
}

impl TypeInfo {
    /// Type information of a built-in kind (`apps/v1`, `Deployment`), or
    /// deduced type information for any kind the table does not know.
    pub fn for_kind(api_version: &str, kind: &str) -> TypeInfo {
        let b = builtin();
        match b.kinds.get(&(api_version.to_string(), kind.to_string())) {
            Some(root) => TypeInfo {
                schema: b.schema.clone(),
                root: *root,
            },
            None => TypeInfo::deduced(),
        }
    }

    /// Whether [`TypeInfo::for_kind`] knows this kind.
    pub fn is_builtin(api_version: &str, kind: &str) -> bool {
        builtin()
            .kinds
            .contains_key(&(api_version.to_string(), kind.to_string()))
    }

    /// No schema: every map granular, every list atomic.
    pub fn deduced() -> TypeInfo {
        static DEDUCED_SCHEMA: OnceLock<Arc<Schema>> = OnceLock::new();
        TypeInfo {
            schema: DEDUCED_SCHEMA
                .get_or_init(|| Arc::new(Schema::with_primitives()))
                .clone(),
            root: DEDUCED,
        }
    }

    /// Type information of a custom resource from its version's
    /// `openAPIV3Schema` (a structural schema), honouring
    /// `x-kubernetes-list-type`, `x-kubernetes-list-map-keys`,
    /// `x-kubernetes-map-type` and `x-kubernetes-preserve-unknown-fields`.
    /// `metadata` is always ObjectMeta, as for built-ins.
    pub fn from_crd_schema(open_api_v3_schema: &Value) -> Result<TypeInfo, SchemaError> {
        let mut schema = Schema::with_primitives();
        let root = convert_schema(&mut schema, open_api_v3_schema, "")?;
        let meta = import_object_meta(&mut schema);
        if let (Some(meta), Atom::Map { fields, .. }) = (meta, &mut schema.atoms[root]) {
            fields.insert("metadata".into(), meta);
        }
        Ok(TypeInfo {
            schema: Arc::new(schema),
            root,
        })
    }
}

// Copies ObjectMeta's type (and what it reaches) from the built-in table
// into a CRD's schema.
fn import_object_meta(schema: &mut Schema) -> Option<TypeId> {
    let b = builtin();
    let meta = b.object_meta?;
    let mut map = HashMap::new();
    Some(import(&b.schema, meta, schema, &mut map))
}

fn import(from: &Schema, t: TypeId, to: &mut Schema, map: &mut HashMap<TypeId, TypeId>) -> TypeId {
    if t == SCALAR || t == DEDUCED {
        return t;
    }
    if let Some(n) = map.get(&t) {
        return *n;
    }
    let id = to.push(Atom::Deduced);
    map.insert(t, id);
    let atom = match from.atom(t).clone() {
        Atom::Map {
            fields,
            elem,
            atomic,
            present,
        } => Atom::Map {
            fields: fields
                .into_iter()
                .map(|(k, v)| (k, import(from, v, to, map)))
                .collect(),
            elem: elem.map(|e| import(from, e, to, map)),
            atomic,
            present,
        },
        Atom::List { elem, kind } => Atom::List {
            elem: import(from, elem, to, map),
            kind,
        },
        other => other,
    };
    to.atoms[id] = atom;
    id
}

fn schema_error(path: &str, message: impl Into<String>) -> SchemaError {
    SchemaError {
        path: if path.is_empty() {
            ".".into()
        } else {
            path.into()
        },
        message: message.into(),
    }
}

// Mirrors kube-openapi's schemaconv for structural schemas.
fn convert_schema(schema: &mut Schema, s: &Value, path: &str) -> Result<TypeId, SchemaError> {
    let Value::Object(obj) = s else {
        return Err(schema_error(path, "schema must be an object"));
    };
    let ext_str = |k: &str| obj.get(k).and_then(Value::as_str);
    let ext_bool = |k: &str| obj.get(k).and_then(Value::as_bool).unwrap_or(false);
    if ext_bool("x-kubernetes-int-or-string") {
        return Ok(SCALAR);
    }
    match obj.get("type").and_then(Value::as_str) {
        Some("array") => {
            let elem = match obj.get("items") {
                Some(items) => convert_schema(schema, items, &format!("{path}[]"))?,
                None => DEDUCED,
            };
            let kind = match ext_str("x-kubernetes-list-type") {
                Some("set") => ListKind::Set,
                Some("map") => {
                    let keys = obj
                        .get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|ks| {
                            ks.iter()
                                .filter_map(Value::as_str)
                                .map(|k| {
                                    let default = obj
                                        .get("items")
                                        .and_then(|i| i.get("properties"))
                                        .and_then(|p| p.get(k))
                                        .and_then(|p| p.get("default"))
                                        .cloned();
                                    (k.to_string(), default)
                                })
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default();
                    if keys.is_empty() {
                        return Err(schema_error(
                            path,
                            "x-kubernetes-list-type map requires x-kubernetes-list-map-keys",
                        ));
                    }
                    ListKind::Map(keys)
                }
                Some("atomic") | None => ListKind::Atomic,
                Some(other) => {
                    return Err(schema_error(
                        path,
                        format!("unknown x-kubernetes-list-type {other:?}"),
                    ));
                }
            };
            Ok(schema.push(Atom::List { elem, kind }))
        }
        Some("object") => {
            let mut fields = HashMap::new();
            if let Some(Value::Object(props)) = obj.get("properties") {
                for (name, p) in props {
                    let t = convert_schema(schema, p, &format!("{path}.{name}"))?;
                    fields.insert(name.clone(), t);
                }
            }
            let elem = match obj.get("additionalProperties") {
                Some(ap @ Value::Object(_)) => {
                    Some(convert_schema(schema, ap, &format!("{path}.*"))?)
                }
                Some(Value::Bool(true)) => Some(DEDUCED),
                _ if ext_bool("x-kubernetes-preserve-unknown-fields") => Some(DEDUCED),
                _ if fields.is_empty() && !ext_bool("x-kubernetes-embedded-resource") => {
                    Some(DEDUCED)
                }
                _ => None,
            };
            let atomic = ext_str("x-kubernetes-map-type") == Some("atomic");
            if ext_bool("x-kubernetes-embedded-resource")
                && let Some(meta) = import_object_meta(schema)
            {
                fields.entry("metadata".into()).or_insert(meta);
            }
            Ok(schema.push(Atom::Map {
                fields,
                elem,
                atomic,
                present: Vec::new(),
            }))
        }
        Some(_) => Ok(SCALAR),
        None => Ok(DEDUCED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list_kind(t: &TypeInfo, path: &[&str]) -> String {
        let mut cur = t.root;
        for p in path {
            cur = match t.schema.atom(cur) {
                Atom::List { elem, .. } if *p == "[]" => *elem,
                _ => t.schema.field(cur, p).0,
            };
        }
        format!("{:?}", t.schema.atom(cur))
    }

    #[test]
    fn builtin_table_has_upstream_markers() {
        let d = TypeInfo::for_kind("apps/v1", "Deployment");
        let containers = list_kind(&d, &["spec", "template", "spec", "containers"]);
        assert!(
            containers.contains("Map([(\"name\", None)])"),
            "{containers}"
        );
        let ports = list_kind(
            &d,
            &["spec", "template", "spec", "containers", "[]", "ports"],
        );
        assert!(
            ports.contains("\"protocol\", Some(String(\"TCP\"))"),
            "{ports}"
        );
        let finalizers = list_kind(&d, &["metadata", "finalizers"]);
        assert!(finalizers.contains("Set"), "{finalizers}");
        let selector = list_kind(&d, &["spec", "selector"]);
        assert!(selector.contains("atomic: true"), "{selector}");
        let labels = list_kind(&d, &["metadata", "labels"]);
        assert!(labels.contains("atomic: false"), "{labels}");
        let node_selector = list_kind(&d, &["spec", "template", "spec", "nodeSelector"]);
        assert!(node_selector.contains("atomic: true"), "{node_selector}");
        assert!(TypeInfo::is_builtin("v1", "ConfigMap"));
        assert!(TypeInfo::is_builtin(
            "autoscaling/v2",
            "HorizontalPodAutoscaler"
        ));
        assert!(!TypeInfo::is_builtin("example.com/v1", "Widget"));
        // Every KINDS line resolved.
        assert_eq!(builtin().kinds.len(), types_table::KINDS.lines().count());
    }

    #[test]
    fn crd_schema_markers() {
        let t = TypeInfo::from_crd_schema(&json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "items": {"type": "array", "x-kubernetes-list-type": "map",
                                  "x-kubernetes-list-map-keys": ["id"],
                                  "items": {"type": "object", "properties": {"id": {"type": "string"}}}},
                        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                        "args": {"type": "array", "items": {"type": "string"}},
                        "sel": {"type": "object", "x-kubernetes-map-type": "atomic",
                                "additionalProperties": {"type": "string"}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    }
                }
            }
        }))
        .unwrap();
        assert!(list_kind(&t, &["spec", "items"]).contains("Map([(\"id\", None)])"));
        assert!(list_kind(&t, &["spec", "tags"]).contains("Set"));
        assert!(list_kind(&t, &["spec", "args"]).contains("Atomic"));
        assert!(list_kind(&t, &["spec", "sel"]).contains("atomic: true"));
        assert!(list_kind(&t, &["metadata", "finalizers"]).contains("Set"));
        assert!(
            TypeInfo::from_crd_schema(&json!({"type": "object", "properties": {
            "l": {"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object"}}}}))
            .is_err()
        );
    }
}
