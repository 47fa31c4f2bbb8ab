//! Structural schemas of CRD versions: compile once per distinct schema
//! content, then prune, default and validate custom objects.
//!
//! The contract the CRD registry relies on (bodies to be filled in):
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

use std::sync::Arc;

use serde_json::Value;

use crate::resource::Object;
use crate::validation::FieldError;

/// One CRD version's schema, compiled.
#[derive(Debug)]
pub struct CompiledSchema {
    raw: Value,
}

impl CompiledSchema {
    pub fn compile(schema: &Value) -> Result<Self, Vec<FieldError>> {
        Ok(CompiledSchema {
            raw: schema.clone(),
        })
    }

    /// The schema as given (for OpenAPI publication).
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    pub fn prune(&self, _obj: &mut Object) -> Vec<String> {
        Vec::new()
    }

    pub fn apply_defaults(&self, _obj: &mut Object) {}

    pub fn validate(&self, _obj: &Object, _old: Option<&Object>) -> Vec<FieldError> {
        Vec::new()
    }
}

/// Compiled schemas keyed by content; entries live while some CRD uses them.
#[derive(Debug, Default)]
pub struct SchemaCache {}

impl SchemaCache {
    pub fn get_or_compile(&self, schema: &Value) -> Result<Arc<CompiledSchema>, Vec<FieldError>> {
        CompiledSchema::compile(schema).map(Arc::new)
    }
}
