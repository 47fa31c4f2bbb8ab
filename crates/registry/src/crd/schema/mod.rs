//! Structural schemas of CRD versions: compile once per distinct schema
//! content, then prune, default and validate custom objects.
//!
//! The contract the CRD registry relies on:
//! - [`CompiledSchema::compile`] rejects a non-structural schema or a CEL
//!   rule that does not compile, with field errors whose paths are relative
//!   to the schema root (the caller prefixes
//!   `spec.versions[i].schema.openAPIV3Schema`).
//! - [`CompiledSchema::prune`] removes fields the schema does not know
//!   (honouring `x-kubernetes-preserve-unknown-fields` and
//!   `x-kubernetes-embedded-resource`) and returns their dotted paths, so
//!   `fieldValidation=Strict|Warn` can report them.
//! - [`CompiledSchema::apply_defaults`] fills `default`s.
//! - [`CompiledSchema::validate`] checks types, formats, bounds, enums,
//!   list types/map keys and CEL rules (`old` is the stored object on
//!   update, for transition rules).
//! - [`SchemaCache::get_or_compile`] returns the same `Arc` for the same
//!   schema content, so a CRD installed in many workspaces is compiled once.
//!
//! Modules: `structural` (the compiled tree and the structural rules),
//! `validate` + `formats` (OpenAPI value validation), `prune`, `defaults`,
//! `cel` (`x-kubernetes-validations`), `cache` (sharing by content),
//! `openapi` (publication as OpenAPI v3 and v2).

mod cache;
mod cel;
mod defaults;
mod formats;
pub mod openapi;
mod prune;
mod structural;
mod validate;

use serde_json::Value;

pub use cache::{ContentHash, SchemaCache, content_hash};

use crate::fieldmanager::TypeInfo;
use crate::resource::Object;
use crate::validation::FieldError;
use structural::{Compiler, Node};

/// One CRD version's schema, compiled.
pub struct CompiledSchema {
    raw: Value,
    root: Node,
    types: TypeInfo,
    hash: ContentHash,
    /// The stack CEL evaluation must have left (see `cel::EVAL_RED_ZONE`).
    red_zone: usize,
}

impl std::fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledSchema")
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

impl CompiledSchema {
    pub fn compile(schema: &Value) -> Result<Self, Vec<FieldError>> {
        Self::compile_with_hash(schema, content_hash(schema))
    }

    pub(crate) fn compile_with_hash(
        schema: &Value,
        hash: ContentHash,
    ) -> Result<Self, Vec<FieldError>> {
        let mut c = Compiler::new();
        let root = c.root(schema);
        let mut errs = c.errors;
        if errs.is_empty() {
            check_defaults(&root, "", &mut errs);
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        let types = TypeInfo::from_crd_schema(schema).map_err(|e| {
            vec![FieldError::invalid(
                e.path.trim_start_matches('.').to_string(),
                Value::Null,
                e.message,
            )]
        })?;
        let red_zone = if deepest_rule(&root) <= cel::SHALLOW_TREE {
            cel::SHALLOW_RED_ZONE
        } else {
            cel::EVAL_RED_ZONE
        };
        Ok(CompiledSchema {
            raw: schema.clone(),
            root,
            types,
            hash,
            red_zone,
        })
    }

    /// The schema as given (for OpenAPI publication).
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// The content hash the [`SchemaCache`] keys this schema by.
    pub fn content_hash(&self) -> &ContentHash {
        &self.hash
    }

    /// How server-side apply merges objects of this schema (list and map
    /// types, map keys), built once with the schema.
    pub fn type_info(&self) -> &TypeInfo {
        &self.types
    }

    /// Drops fields the schema does not declare; returns their paths
    /// (`spec.foo`, `spec.items[0].bar`, `metadata.bogus`).
    pub fn prune(&self, obj: &mut Object) -> Vec<String> {
        let mut pruned = Vec::new();
        prune::prune_root(&self.root, obj, &mut pruned);
        pruned
    }

    /// Fills `default`s (from a request or from storage alike).
    pub fn apply_defaults(&self, obj: &mut Object) {
        defaults::apply_object(&self.root, obj);
    }

    /// OpenAPI value validation, then CEL rules (with `old` on update).
    pub fn validate(&self, obj: &Object, old: Option<&Object>) -> Vec<FieldError> {
        let mut errs = Vec::new();
        validate::validate_root(&self.root, obj, &mut errs);
        // Like upstream, rules do not run on an object with the wrong types:
        // they would only fail with confusing evaluation errors.
        if errs.iter().any(validate::is_blocking) {
            if self.root.has_rules {
                errs.push(FieldError::invalid(
                    "",
                    Value::Null,
                    "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
                ));
            }
            return errs;
        }
        if self.root.has_rules {
            // The interpreter recurses; give it a stack of known size.
            stacker::maybe_grow(self.red_zone, cel::EVAL_STACK, || {
                let mut ev = cel::Evaluation::new(&mut errs);
                cel::evaluate_root(&self.root, obj, old, &mut ev);
            });
        }
        errs
    }

    /// The schema as published in `/openapi/v3` (see [`openapi`]).
    pub fn openapi_v3(&self) -> Value {
        openapi::to_v3(&self.raw)
    }

    /// The schema as published in `/openapi/v2` (see [`openapi`]).
    pub fn openapi_v2(&self) -> Value {
        openapi::to_v2(&self.raw)
    }
}

// The deepest expression tree among the schema's CEL rules.
fn deepest_rule(node: &Node) -> usize {
    let here = node.rules.iter().map(|r| r.tree_depth).max().unwrap_or(0);
    let below = node
        .properties
        .values()
        .chain(node.additional.as_deref())
        .chain(node.items.as_deref())
        .map(deepest_rule)
        .max()
        .unwrap_or(0);
    here.max(below)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

// A default must validate against its own schema and contain no field
// that pruning would drop (upstream checks both when the CRD is written).
fn check_defaults(node: &Node, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(d) = &node.default {
        let at = join(path, "default");
        let mut found = Vec::new();
        validate::validate(node, d, "", &mut found);
        for mut e in found {
            e.field = if e.field.is_empty() {
                at.clone()
            } else {
                join(&at, &e.field)
            };
            errs.push(e);
        }
        let unknown = prune::unknown_fields(node, d, "");
        if !unknown.is_empty() {
            errs.push(FieldError::invalid(
                &at,
                d.clone(),
                format!("must not have unknown fields: {}", unknown.join(", ")),
            ));
        }
    }
    for (k, p) in &node.properties {
        check_defaults(p, &join(path, &format!("properties[{k}]")), errs);
    }
    if let Some(ap) = &node.additional {
        check_defaults(ap, &join(path, "additionalProperties"), errs);
    }
    if let Some(items) = &node.items {
        check_defaults(items, &join(path, "items"), errs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Object {
        match v {
            Value::Object(m) => m,
            _ => Object::new(),
        }
    }

    #[test]
    fn defaults_are_checked_when_compiling() {
        let errs = CompiledSchema::compile(&json!({"type": "object", "properties": {
            "a": {"type": "integer", "default": "one"},
            "b": {"type": "object", "properties": {"x": {"type": "string"}}, "default": {"x": "1", "y": 2}}
        }}))
        .unwrap_err();
        let errs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(
            errs.iter()
                .any(|e| e.starts_with("properties[a].default: Invalid value: \"string\"")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.contains("properties[b].default")
                && e.contains("must not have unknown fields: y")),
            "{errs:?}"
        );
    }

    #[test]
    fn prune_default_validate_round() {
        let s = CompiledSchema::compile(&json!({"type": "object", "properties": {"spec": {
            "type": "object", "required": ["size"],
            "x-kubernetes-validations": [{"rule": "self.size <= self.limit", "message": "size over limit"}],
            "properties": {"size": {"type": "integer"}, "limit": {"type": "integer", "default": 10}}}}}))
        .unwrap();
        let mut o = obj(
            json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"},
                               "spec": {"size": 12, "junk": true}}),
        );
        assert_eq!(s.prune(&mut o), vec!["spec.junk"]);
        s.apply_defaults(&mut o);
        assert_eq!(o["spec"], json!({"size": 12, "limit": 10}));
        let errs: Vec<String> = s
            .validate(&o, None)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errs,
            vec!["spec: Invalid value: \"object\": size over limit"]
        );
        let errs: Vec<String> = s
            .validate(&obj(json!({"spec": {}})), None)
            .iter()
            .map(ToString::to_string)
            .collect();
        // Missing fields do not block rules (upstream neither); wrong types do.
        assert_eq!(
            errs,
            vec![
                "spec.size: Required value",
                "spec: Invalid value: \"object\": rule evaluation failed: No such key: size",
            ]
        );
        let errs: Vec<String> = s
            .validate(&obj(json!({"spec": {"size": "big", "limit": 1}})), None)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errs,
            vec![
                "spec.size: Invalid value: \"string\": spec.size in body must be of type integer: \"string\"",
                ": Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
            ]
        );
    }
}
