//! CustomResourceDefinitions: per-workspace APIs that users bring.
//!
//! `schema` compiles a CRD version's `openAPIV3Schema` into a
//! [`schema::CompiledSchema`] (structural validation, pruning, defaulting,
//! CEL rules), shared by content across workspaces through
//! [`schema::SchemaCache`].

pub mod schema;
