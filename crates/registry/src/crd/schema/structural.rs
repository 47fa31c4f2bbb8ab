//! The compiled schema tree and the structural-schema rules.
//!
//! A structural schema declares a type at every node (bar the int-or-string
//! and preserve-unknown-fields escapes), and keeps `allOf`/`anyOf`/`oneOf`/
//! `not` for value checks only: they may not add types, defaults or shape of
//! their own. Compilation walks the raw JSON once and returns every problem
//! with a path relative to the schema root (`properties[spec].type`).

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::{Map, Value};

use super::cel::{CelRule, RuleContext};
use super::formats::Format;
use crate::validation::{FieldError, FieldErrorKind};

/// The JSON type a node declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Type {
    Object,
    Array,
    String,
    Integer,
    Number,
    Boolean,
}

impl Type {
    fn parse(s: &str) -> Option<Type> {
        Some(match s {
            "object" => Type::Object,
            "array" => Type::Array,
            "string" => Type::String,
            "integer" => Type::Integer,
            "number" => Type::Number,
            "boolean" => Type::Boolean,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Type::Object => "object",
            Type::Array => "array",
            Type::String => "string",
            Type::Integer => "integer",
            Type::Number => "number",
            Type::Boolean => "boolean",
        }
    }

    pub(crate) fn is_scalar(self) -> bool {
        !matches!(self, Type::Object | Type::Array)
    }
}

/// `x-kubernetes-list-type`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ListType {
    Atomic,
    Set,
    Map(Vec<String>),
}

/// A number bound (`minimum` with `exclusiveMinimum`, ...).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bound {
    pub value: f64,
    pub exclusive: bool,
}

/// One schema node. Structural fields drive pruning, defaulting and SSA;
/// the rest are value validations.
#[derive(Debug, Default)]
pub(crate) struct Node {
    pub ty: Option<Type>,
    pub nullable: bool,
    pub format: Option<Format>,
    pub properties: BTreeMap<String, Node>,
    pub additional: Option<Box<Node>>,
    pub items: Option<Box<Node>>,
    pub preserve_unknown: bool,
    pub embedded: bool,
    pub int_or_string: bool,
    pub list_type: Option<ListType>,
    pub default: Option<Value>,

    pub required: Vec<String>,
    pub enumeration: Vec<Value>,
    pub pattern: Option<(String, Regex)>,
    pub minimum: Option<Bound>,
    pub maximum: Option<Bound>,
    pub multiple_of: Option<f64>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub min_items: Option<u64>,
    pub max_items: Option<u64>,
    pub unique_items: bool,
    pub min_properties: Option<u64>,
    pub max_properties: Option<u64>,
    pub all_of: Vec<Node>,
    pub any_of: Vec<Node>,
    pub one_of: Vec<Node>,
    pub not: Option<Box<Node>>,
    pub rules: Vec<CelRule>,
    /// Whether any node at or below this one has CEL rules (skips walks).
    pub has_rules: bool,
    /// Whether any node at or below this one has a default.
    pub has_defaults: bool,
}

impl Node {
    /// The schema of a field of an object value: a declared property, else
    /// `additionalProperties`.
    pub(crate) fn child(&self, key: &str) -> Option<&Node> {
        self.properties.get(key).or(self.additional.as_deref())
    }
}

/// Keywords a CRD schema may not use at all (upstream forbids them).
const FORBIDDEN: &[&str] = &[
    "$ref",
    "$schema",
    "id",
    "definitions",
    "additionalItems",
    "patternProperties",
    "dependencies",
];

/// Keywords this compiler knows; any other key is an error like upstream's
/// strict decoding of JSONSchemaProps.
const KNOWN: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "default",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "multipleOf",
    "enum",
    "maxProperties",
    "minProperties",
    "required",
    "items",
    "allOf",
    "oneOf",
    "anyOf",
    "not",
    "properties",
    "additionalProperties",
    "externalDocs",
    "example",
    "nullable",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-list-type",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
];

/// Where a node sits, for the rules that depend on it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Root,
    /// Under the root's `metadata`, or an embedded resource's.
    Metadata,
    Field,
    /// Inside `allOf`/`anyOf`/`oneOf`/`not`: value validation only.
    Junctor,
    /// A junctor under `x-kubernetes-int-or-string`, where upstream allows
    /// `anyOf: [{type: integer}, {type: string}]`.
    JunctorIntOrString,
}

pub(crate) struct Compiler {
    pub errors: Vec<FieldError>,
}

fn invalid(path: &str, value: impl Into<Value>, detail: impl Into<String>) -> FieldError {
    FieldError::invalid(path, value, detail)
}

fn forbidden(path: &str, detail: impl Into<String>) -> FieldError {
    FieldError::forbidden(path, detail)
}

fn required(path: &str, detail: impl Into<String>) -> FieldError {
    FieldError::required(path, detail)
}

fn not_supported(path: &str, value: &str, supported: &[&str]) -> FieldError {
    let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    FieldError {
        kind: FieldErrorKind::NotSupported,
        field: path.to_string(),
        value: Some(Value::String(value.to_string())),
        detail: format!("supported values: {}", list.join(", ")),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn u64_of(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Option<u64> {
    let v = obj.get(key)?;
    match v.as_u64() {
        Some(n) => Some(n),
        None => {
            errs.push(invalid(
                &join(path, key),
                v.clone(),
                "must be a non-negative integer",
            ));
            None
        }
    }
}

fn f64_of(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Option<f64> {
    let v = obj.get(key)?;
    match v.as_f64() {
        Some(n) => Some(n),
        None => {
            errs.push(invalid(&join(path, key), v.clone(), "must be a number"));
            None
        }
    }
}

fn bool_of(obj: &Map<String, Value>, key: &str, path: &str, errs: &mut Vec<FieldError>) -> bool {
    match obj.get(key) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            errs.push(invalid(&join(path, key), v.clone(), "must be a boolean"));
            false
        }
    }
}

impl Compiler {
    pub(crate) fn new() -> Self {
        Compiler { errors: Vec::new() }
    }

    /// Compiles the root of a CRD version schema.
    pub(crate) fn root(&mut self, schema: &Value) -> Node {
        let node = self.node(schema, "", Place::Root, RuleContext::root());
        if node.ty != Some(Type::Object) {
            self.errors.push(invalid(
                "type",
                node.ty.map_or("", Type::name),
                "must be object at the root",
            ));
        }
        if node.default.is_some() {
            self.errors
                .push(forbidden("default", "must not be set at the root"));
        }
        node
    }

    fn node(&mut self, schema: &Value, path: &str, place: Place, ctx: RuleContext) -> Node {
        let Value::Object(obj) = schema else {
            self.errors.push(invalid(
                path,
                schema.clone(),
                "must be a JSON schema object",
            ));
            return Node::default();
        };
        let errs = &mut self.errors;
        for key in obj.keys() {
            if FORBIDDEN.contains(&key.as_str()) {
                errs.push(forbidden(
                    &join(path, key),
                    format!("{key} is not supported"),
                ));
            } else if !KNOWN.contains(&key.as_str()) {
                errs.push(forbidden(&join(path, key), "unknown schema keyword"));
            }
        }
        let junctor = matches!(place, Place::Junctor | Place::JunctorIntOrString);
        let mut n = Node::default();

        match obj.get("type") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(Value::String(s)) => match Type::parse(s) {
                Some(t) => n.ty = Some(t),
                None => errs.push(not_supported(
                    &join(path, "type"),
                    s,
                    &["array", "boolean", "integer", "number", "object", "string"],
                )),
            },
            Some(v) => errs.push(invalid(&join(path, "type"), v.clone(), "must be a string")),
        }
        n.nullable = bool_of(obj, "nullable", path, errs);
        n.int_or_string = bool_of(obj, "x-kubernetes-int-or-string", path, errs);
        n.embedded = bool_of(obj, "x-kubernetes-embedded-resource", path, errs);
        match obj.get("x-kubernetes-preserve-unknown-fields") {
            None | Some(Value::Null) => {}
            Some(Value::Bool(true)) => n.preserve_unknown = true,
            Some(v) => errs.push(invalid(
                &join(path, "x-kubernetes-preserve-unknown-fields"),
                v.clone(),
                "must be true or undefined",
            )),
        }

        if junctor {
            // Value validation may not add structure: upstream's
            // validateNestedValueValidation.
            for (k, what) in [
                ("type", "must be empty to be structural"),
                ("nullable", "must be false to be structural"),
                ("default", "must be undefined to be structural"),
                (
                    "x-kubernetes-preserve-unknown-fields",
                    "must be false to be structural",
                ),
                (
                    "x-kubernetes-embedded-resource",
                    "must be false to be structural",
                ),
                (
                    "x-kubernetes-int-or-string",
                    "must be false to be structural",
                ),
                ("additionalProperties", "must be undefined to be structural"),
                (
                    "x-kubernetes-list-type",
                    "must be undefined to be structural",
                ),
                (
                    "x-kubernetes-map-type",
                    "must be undefined to be structural",
                ),
                (
                    "x-kubernetes-list-map-keys",
                    "must be undefined to be structural",
                ),
                ("x-kubernetes-validations", "must be empty to be structural"),
            ] {
                let int_or_string_type = k == "type"
                    && place == Place::JunctorIntOrString
                    && matches!(n.ty, Some(Type::Integer | Type::String));
                if !int_or_string_type
                    && obj
                        .get(k)
                        .is_some_and(|v| !v.is_null() && *v != Value::Bool(false))
                {
                    errs.push(forbidden(&join(path, k), what));
                }
            }
        } else {
            if n.ty.is_none() && !n.int_or_string && !n.preserve_unknown {
                errs.push(required(
                    &join(path, "type"),
                    "must not be empty for specified object fields",
                ));
            }
            if n.int_or_string && n.ty.is_some() {
                errs.push(invalid(
                    &join(path, "type"),
                    n.ty.map_or("", Type::name),
                    "must be empty if x-kubernetes-int-or-string is true",
                ));
            }
            if n.embedded {
                if n.ty != Some(Type::Object) {
                    errs.push(required(
                        &join(path, "type"),
                        "must be object if x-kubernetes-embedded-resource is true",
                    ));
                }
                let has_props = obj
                    .get("properties")
                    .and_then(Value::as_object)
                    .is_some_and(|p| !p.is_empty());
                if !has_props && !n.preserve_unknown {
                    errs.push(required(
                        &join(path, "properties"),
                        "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
                    ));
                }
            }
        }

        if let Some(f) = obj.get("format") {
            match f.as_str() {
                Some(s) => n.format = Format::parse(s),
                None => errs.push(invalid(
                    &join(path, "format"),
                    f.clone(),
                    "must be a string",
                )),
            }
        }

        // Object shape.
        if let Some(p) = obj.get("properties") {
            match p {
                Value::Object(props) => {
                    for (name, ps) in props {
                        let child_path = join(path, &format!("properties[{name}]"));
                        let child_place = match place {
                            Place::Junctor | Place::JunctorIntOrString => Place::Junctor,
                            Place::Root if name == "metadata" => Place::Metadata,
                            _ if n.embedded && name == "metadata" => Place::Metadata,
                            _ => Place::Field,
                        };
                        let child = self.node(ps, &child_path, child_place, ctx.field());
                        n.properties.insert(name.clone(), child);
                    }
                }
                other => self.errors.push(invalid(
                    &join(path, "properties"),
                    other.clone(),
                    "must be an object",
                )),
            }
        }
        let errs = &mut self.errors;
        match obj.get("additionalProperties") {
            None | Some(Value::Null) => {}
            Some(Value::Bool(true)) => {
                // Same as a schema that allows anything.
                if !junctor {
                    n.additional = Some(Box::new(Node {
                        preserve_unknown: true,
                        ..Node::default()
                    }));
                }
            }
            Some(Value::Bool(false)) => errs.push(forbidden(
                &join(path, "additionalProperties"),
                "additionalProperties cannot be set to false",
            )),
            Some(ap @ Value::Object(_)) => {
                let place = if junctor {
                    Place::Junctor
                } else {
                    Place::Field
                };
                let child = self.node(ap, &join(path, "additionalProperties"), place, ctx.field());
                n.additional = Some(Box::new(child));
            }
            Some(v) => errs.push(invalid(
                &join(path, "additionalProperties"),
                v.clone(),
                "must be a boolean or a schema",
            )),
        }
        let errs = &mut self.errors;
        if n.additional.is_some() && !n.properties.is_empty() {
            errs.push(forbidden(
                &join(path, "additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        if !junctor && n.ty.is_some_and(Type::is_scalar) {
            if !n.properties.is_empty() {
                errs.push(forbidden(
                    &join(path, "properties"),
                    "must be empty for non-object types",
                ));
            }
            if obj.contains_key("items") {
                errs.push(forbidden(
                    &join(path, "items"),
                    "must be empty for non-array types",
                ));
            }
        }

        // Arrays.
        let list_ctx = match obj.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("map") => ctx.correlated_item(),
            _ => ctx.uncorrelated_item(),
        };
        match obj.get("items") {
            None | Some(Value::Null) => {
                if n.ty == Some(Type::Array) && !junctor {
                    errs.push(required(&join(path, "items"), "must be specified"));
                }
            }
            Some(Value::Array(_)) => errs.push(forbidden(
                &join(path, "items"),
                "items must be a schema object and not an array",
            )),
            Some(items) => {
                let place = if junctor {
                    Place::Junctor
                } else {
                    Place::Field
                };
                let child = self.node(items, &join(path, "items"), place, list_ctx);
                n.items = Some(Box::new(child));
            }
        }

        n.list_type = self.list_type(obj, &n, path);
        let errs = &mut self.errors;
        match obj.get("x-kubernetes-map-type") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == "granular" || s == "atomic" => {
                if n.ty != Some(Type::Object) {
                    errs.push(invalid(
                        &join(path, "type"),
                        n.ty.map_or("", Type::name),
                        "must be object if x-kubernetes-map-type is specified",
                    ));
                }
            }
            Some(v) => errs.push(not_supported(
                &join(path, "x-kubernetes-map-type"),
                v.as_str().unwrap_or_default(),
                &["atomic", "granular"],
            )),
        }

        // Value validations.
        if let Some(r) = obj.get("required") {
            match r.as_array() {
                Some(list) => {
                    for name in list {
                        match name.as_str() {
                            Some(s) => n.required.push(s.to_string()),
                            None => errs.push(invalid(
                                &join(path, "required"),
                                name.clone(),
                                "must be a string",
                            )),
                        }
                    }
                }
                None => errs.push(invalid(
                    &join(path, "required"),
                    r.clone(),
                    "must be a list",
                )),
            }
        }
        if let Some(e) = obj.get("enum") {
            match e.as_array() {
                Some(list) => n.enumeration = list.clone(),
                None => errs.push(invalid(&join(path, "enum"), e.clone(), "must be a list")),
            }
        }
        if let Some(p) = obj.get("pattern") {
            match p.as_str().map(|s| (s, Regex::new(s))) {
                Some((s, Ok(re))) => n.pattern = Some((s.to_string(), re)),
                Some((s, Err(e))) => errs.push(invalid(
                    &join(path, "pattern"),
                    s,
                    format!("must be a valid regular expression, but isn't: {e}"),
                )),
                None => errs.push(invalid(
                    &join(path, "pattern"),
                    p.clone(),
                    "must be a string",
                )),
            }
        }
        n.minimum = f64_of(obj, "minimum", path, errs).map(|value| Bound {
            value,
            exclusive: obj.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true),
        });
        n.maximum = f64_of(obj, "maximum", path, errs).map(|value| Bound {
            value,
            exclusive: obj.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true),
        });
        n.multiple_of = f64_of(obj, "multipleOf", path, errs);
        if n.multiple_of.is_some_and(|m| m <= 0.0) {
            errs.push(invalid(
                &join(path, "multipleOf"),
                obj.get("multipleOf").cloned().unwrap_or_default(),
                "must be greater than zero",
            ));
            n.multiple_of = None;
        }
        n.min_length = u64_of(obj, "minLength", path, errs);
        n.max_length = u64_of(obj, "maxLength", path, errs);
        n.min_items = u64_of(obj, "minItems", path, errs);
        n.max_items = u64_of(obj, "maxItems", path, errs);
        n.min_properties = u64_of(obj, "minProperties", path, errs);
        n.max_properties = u64_of(obj, "maxProperties", path, errs);
        n.unique_items = bool_of(obj, "uniqueItems", path, errs);
        if n.unique_items {
            errs.push(forbidden(
                &join(path, "uniqueItems"),
                "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
            ));
        }

        let junctor_place = if n.int_or_string || place == Place::JunctorIntOrString {
            Place::JunctorIntOrString
        } else {
            Place::Junctor
        };
        for key in ["allOf", "anyOf", "oneOf"] {
            let Some(v) = obj.get(key) else { continue };
            let Some(list) = v.as_array() else {
                self.errors
                    .push(invalid(&join(path, key), v.clone(), "must be a list"));
                continue;
            };
            let compiled: Vec<Node> = list
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    self.node(s, &format!("{}[{i}]", join(path, key)), junctor_place, ctx)
                })
                .collect();
            match key {
                "allOf" => n.all_of = compiled,
                "anyOf" => n.any_of = compiled,
                _ => n.one_of = compiled,
            }
        }
        if let Some(s) = obj.get("not") {
            n.not = Some(Box::new(self.node(
                s,
                &join(path, "not"),
                junctor_place,
                ctx,
            )));
        }

        if place == Place::Metadata {
            self.check_metadata(&n, obj, path);
        }

        // CEL rules, compiled against this node's place in the tree.
        if let Some(v) = obj.get("x-kubernetes-validations") {
            n.rules = super::cel::compile_rules(
                v,
                &n,
                ctx,
                &join(path, "x-kubernetes-validations"),
                &mut self.errors,
            );
        }

        if let Some(d) = obj.get("default") {
            if junctor {
                // Reported above.
            } else if place == Place::Metadata {
                self.errors.push(forbidden(
                    &join(path, "default"),
                    "must not be set inside metadata",
                ));
            } else {
                n.default = Some(d.clone());
            }
        }

        n.has_rules = !n.rules.is_empty()
            || n.properties.values().any(|c| c.has_rules)
            || n.additional.as_ref().is_some_and(|c| c.has_rules)
            || n.items.as_ref().is_some_and(|c| c.has_rules);
        n.has_defaults = n
            .properties
            .values()
            .any(|c| c.default.is_some() || c.has_defaults)
            || n.additional
                .as_ref()
                .is_some_and(|c| c.default.is_some() || c.has_defaults)
            || n.items
                .as_ref()
                .is_some_and(|c| c.default.is_some() || c.has_defaults);
        n
    }

    fn list_type(&mut self, obj: &Map<String, Value>, n: &Node, path: &str) -> Option<ListType> {
        let errs = &mut self.errors;
        let lt_path = join(path, "x-kubernetes-list-type");
        let keys = obj.get("x-kubernetes-list-map-keys");
        let lt = match obj.get("x-kubernetes-list-type") {
            None | Some(Value::Null) => {
                if keys.is_some_and(|k| !k.is_null()) {
                    errs.push(required(
                        &lt_path,
                        "must be map if x-kubernetes-list-map-keys is non-empty",
                    ));
                }
                return None;
            }
            Some(Value::String(s)) => s.as_str(),
            Some(v) => {
                errs.push(invalid(&lt_path, v.clone(), "must be a string"));
                return None;
            }
        };
        if n.ty != Some(Type::Array) {
            errs.push(invalid(
                &join(path, "type"),
                n.ty.map_or("", Type::name),
                "must be array if x-kubernetes-list-type is specified",
            ));
            return None;
        }
        let item = n.items.as_deref();
        match lt {
            "atomic" => Some(ListType::Atomic),
            "set" => {
                if let Some(item) = item
                    && item.ty.is_some_and(|t| !t.is_scalar())
                    && !item.int_or_string
                {
                    errs.push(invalid(
                        &join(path, "items.type"),
                        item.ty.map_or("", Type::name),
                        "must be a scalar type if x-kubernetes-list-type is set",
                    ));
                }
                Some(ListType::Set)
            }
            "map" => {
                let names: Vec<String> = keys
                    .and_then(Value::as_array)
                    .map(|ks| {
                        ks.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                let keys_path = join(path, "x-kubernetes-list-map-keys");
                if names.is_empty() {
                    errs.push(required(
                        &keys_path,
                        "must not be empty if x-kubernetes-list-type is map",
                    ));
                }
                match item {
                    Some(item) if item.ty == Some(Type::Object) => {
                        for k in &names {
                            match item.properties.get(k) {
                                None => errs.push(invalid(
                                    &keys_path,
                                    names.join(","),
                                    format!("entries must all be names of item properties: {k}"),
                                )),
                                Some(p) if p.ty.is_some_and(|t| !t.is_scalar()) => {
                                    errs.push(invalid(
                                        &join(path, &format!("items.properties[{k}].type")),
                                        p.ty.map_or("", Type::name),
                                        "must be a scalar type if parent array's x-kubernetes-list-type is map",
                                    ))
                                }
                                Some(_) => {}
                            }
                        }
                    }
                    _ => errs.push(invalid(
                        &join(path, "items.type"),
                        item.and_then(|i| i.ty).map_or("", Type::name),
                        "must be object if parent array's x-kubernetes-list-type is map",
                    )),
                }
                Some(ListType::Map(names))
            }
            other => {
                errs.push(not_supported(&lt_path, other, &["atomic", "map", "set"]));
                None
            }
        }
    }

    // The root's (or an embedded resource's) `metadata` may only restrict
    // name and generateName, as strings.
    fn check_metadata(&mut self, n: &Node, obj: &Map<String, Value>, path: &str) {
        let errs = &mut self.errors;
        if n.ty.is_some_and(|t| t != Type::Object) {
            errs.push(invalid(
                &join(path, "type"),
                n.ty.map_or("", Type::name),
                "must be object",
            ));
        }
        for (name, p) in &n.properties {
            if name != "name" && name != "generateName" {
                errs.push(forbidden(
                    path,
                    "must not specify anything other than name and generateName, but metadata is implicitly specified",
                ));
                break;
            }
            if p.ty != Some(Type::String) {
                errs.push(invalid(
                    &join(path, &format!("properties[{name}].type")),
                    p.ty.map_or("", Type::name),
                    "must be string",
                ));
            }
        }
        for k in obj.keys() {
            if !matches!(k.as_str(), "type" | "properties" | "description") {
                errs.push(forbidden(
                    &join(path, k),
                    "must not be specified: metadata is implicitly specified",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(schema: Value) -> Vec<String> {
        let mut c = Compiler::new();
        c.root(&schema);
        c.errors.iter().map(ToString::to_string).collect()
    }

    fn has(errs: &[String], needle: &str) -> bool {
        errs.iter().any(|e| e.contains(needle))
    }

    #[test]
    fn a_plain_structural_schema_compiles() {
        let errs = errors(json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {
                    "replicas": {"type": "integer", "minimum": 0, "default": 1},
                    "port": {"x-kubernetes-int-or-string": true,
                             "anyOf": [{"type": "integer"}, {"type": "string"}]},
                    "free": {"x-kubernetes-preserve-unknown-fields": true},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "ports": {"type": "array", "x-kubernetes-list-type": "map",
                              "x-kubernetes-list-map-keys": ["name"],
                              "items": {"type": "object", "required": ["name"],
                                        "properties": {"name": {"type": "string"}}}}
                }},
                "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}}}
            }
        }));
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn missing_types_are_reported_with_their_path() {
        let errs = errors(json!({"type": "object", "properties": {
            "spec": {"properties": {"a": {"type": "string"}}}}}));
        assert_eq!(
            errs,
            vec![
                "properties[spec].type: Required value: must not be empty for specified object fields"
            ]
        );
        assert!(has(
            &errors(json!({"properties": {}})),
            "type: Invalid value: \"\": must be object at the root"
        ));
    }

    #[test]
    fn structure_inside_junctors_is_forbidden() {
        let errs = errors(json!({"type": "object", "properties": {"a": {
            "type": "string",
            "anyOf": [{"type": "string"}, {"default": "x", "pattern": "^a"}]}}}));
        assert!(
            has(&errs, "properties[a].anyOf[0].type: Forbidden"),
            "{errs:?}"
        );
        assert!(
            has(&errs, "properties[a].anyOf[1].default: Forbidden"),
            "{errs:?}"
        );
    }

    #[test]
    fn shape_rules() {
        let errs = errors(json!({"type": "object", "properties": {
            "both": {"type": "object", "properties": {"a": {"type": "string"}},
                     "additionalProperties": {"type": "string"}},
            "closed": {"type": "object", "additionalProperties": false},
            "arr": {"type": "array"},
            "unique": {"type": "array", "uniqueItems": true, "items": {"type": "string"}},
            "ref": {"$ref": "#/definitions/x"},
            "keep": {"type": "object", "x-kubernetes-preserve-unknown-fields": false},
            "emb": {"type": "object", "x-kubernetes-embedded-resource": true},
            "ios": {"type": "string", "x-kubernetes-int-or-string": true},
            "re": {"type": "string", "pattern": "(unclosed"}
        }}));
        for needle in [
            "properties[both].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive",
            "properties[closed].additionalProperties: Forbidden: additionalProperties cannot be set to false",
            "properties[arr].items: Required value",
            "properties[unique].uniqueItems: Forbidden",
            "properties[ref].$ref: Forbidden",
            "properties[keep].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined",
            "properties[emb].properties: Required value",
            "properties[ios].type: Invalid value: \"string\": must be empty if x-kubernetes-int-or-string is true",
            "properties[re].pattern: Invalid value",
        ] {
            assert!(has(&errs, needle), "missing {needle:?} in {errs:#?}");
        }
    }

    #[test]
    fn root_metadata_may_only_restrict_names() {
        let errs = errors(json!({"type": "object", "properties": {"metadata": {
            "type": "object", "properties": {"labels": {"type": "object"}}}}}));
        assert!(
            has(
                &errs,
                "properties[metadata]: Forbidden: must not specify anything other than name and generateName"
            ),
            "{errs:?}"
        );
        // Deeper `metadata` fields are ordinary fields.
        let errs = errors(
            json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"metadata": {"type": "object", "properties": {"x": {"type": "string"}}}}}}}),
        );
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn list_types_check_their_items() {
        let errs = errors(json!({"type": "object", "properties": {
            "m": {"type": "array", "x-kubernetes-list-type": "map",
                  "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
            "k": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["nope"],
                  "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
            "s": {"type": "array", "x-kubernetes-list-type": "set",
                  "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
            "o": {"type": "string", "x-kubernetes-list-type": "atomic"},
            "x": {"type": "array", "x-kubernetes-list-type": "bag", "items": {"type": "string"}}
        }}));
        for needle in [
            "properties[m].x-kubernetes-list-map-keys: Required value",
            "properties[k].x-kubernetes-list-map-keys: Invalid value: \"nope\": entries must all be names of item properties",
            "properties[s].items.type: Invalid value: \"object\"",
            "properties[o].type: Invalid value: \"string\": must be array",
            "properties[x].x-kubernetes-list-type: Unsupported value: \"bag\"",
        ] {
            assert!(has(&errs, needle), "missing {needle:?} in {errs:#?}");
        }
    }
}
