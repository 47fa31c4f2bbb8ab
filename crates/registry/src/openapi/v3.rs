//! One group-version's OpenAPI 3.0 document, in upstream's shape.

use serde_json::{Map, Value, json};

use super::routes::{Body, In, META, Operation, Param, Route};
use super::{Catalog, RefStyle};

/// The patch media types every PATCH accepts; built-ins add strategic merge.
pub(super) const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
];
pub(super) const STRATEGIC: &str = "application/strategic-merge-patch+json";

pub(super) fn document(routes: &[Route], catalog: &Catalog, info_version: &str) -> Value {
    let mut paths = Map::new();
    let mut roots = Vec::new();
    for r in routes {
        let mut item = Map::new();
        for op in &r.operations {
            roots.extend(referenced(op));
            item.insert(op.method.key().into(), operation(op));
        }
        item.insert(
            "parameters".into(),
            Value::Array(r.params.iter().map(parameter).collect()),
        );
        paths.insert(r.path.clone(), Value::Object(item));
    }
    let mut schemas = Map::new();
    for name in catalog.closure(roots) {
        if let Some(s) = catalog.emit(&name, RefStyle::V3) {
            schemas.insert(name, s);
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": info_version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"BearerToken": {"description": "Bearer Token authentication", "in": "header", "name": "authorization", "type": "apiKey"}},
        },
        "security": [{"BearerToken": []}],
    })
}

/// The schema names an operation refers to.
pub(super) fn referenced(op: &Operation) -> Vec<String> {
    let mut v = vec![op.response_schema.clone()];
    match &op.body {
        Some(Body::Object(s)) => v.push(s.clone()),
        Some(Body::Patch { .. }) => v.push(format!("{META}.Patch")),
        Some(Body::DeleteOptions) => v.push(format!("{META}.DeleteOptions")),
        None => {}
    }
    v
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn parameter(p: &Param) -> Value {
    let mut m = Map::new();
    if !p.description.is_empty() {
        m.insert("description".into(), p.description.clone().into());
    }
    m.insert(
        "in".into(),
        (if p.location == In::Path {
            "path"
        } else {
            "query"
        })
        .into(),
    );
    m.insert("name".into(), p.name.into());
    if p.location == In::Path {
        m.insert("required".into(), true.into());
    }
    m.insert("schema".into(), json!({"type": p.ty, "uniqueItems": true}));
    Value::Object(m)
}

fn media_types(op: &Operation) -> Vec<&'static str> {
    let mut v = vec!["application/json"];
    if op.watch {
        v.push("application/json;stream=watch");
    }
    if op.protobuf {
        v.push("application/vnd.kubernetes.protobuf");
        if op.watch {
            v.push("application/vnd.kubernetes.protobuf;stream=watch");
        }
    }
    v.push("application/yaml");
    v
}

fn operation(op: &Operation) -> Value {
    let mut m = Map::new();
    m.insert("description".into(), op.description.clone().into());
    m.insert("operationId".into(), op.operation_id.clone().into());
    if !op.query.is_empty() {
        // Inline, not `$ref`s: kubectl's fieldValidation check reads each
        // parameter's own name.
        m.insert(
            "parameters".into(),
            Value::Array(op.query.iter().map(parameter).collect()),
        );
    }
    if let Some(body) = &op.body {
        let content: Map<String, Value> = match body {
            Body::Object(s) => [("*/*".to_owned(), json!({"schema": schema_ref(s)}))]
                .into_iter()
                .collect(),
            Body::Patch { strategic } => PATCH_TYPES
                .iter()
                .chain(strategic.then_some(&STRATEGIC))
                .map(|t| {
                    (
                        (*t).to_owned(),
                        json!({"schema": schema_ref(&format!("{META}.Patch"))}),
                    )
                })
                .collect(),
            Body::DeleteOptions => [(
                "*/*".to_owned(),
                json!({"schema": schema_ref(&format!("{META}.DeleteOptions"))}),
            )]
            .into_iter()
            .collect(),
        };
        let mut rb = Map::new();
        rb.insert("content".into(), Value::Object(content));
        if !matches!(body, Body::DeleteOptions) {
            rb.insert("required".into(), true.into());
        }
        m.insert("requestBody".into(), Value::Object(rb));
    }
    let content: Map<String, Value> = media_types(op)
        .into_iter()
        .map(|t| {
            (
                t.to_owned(),
                json!({"schema": schema_ref(&op.response_schema)}),
            )
        })
        .collect();
    let mut responses = Map::new();
    for (code, desc) in op.responses {
        responses.insert(
            (*code).into(),
            json!({"content": content, "description": desc}),
        );
    }
    responses.insert("401".into(), json!({"description": "Unauthorized"}));
    m.insert("responses".into(), Value::Object(responses));
    m.insert("tags".into(), json!([op.tag]));
    m.insert("x-kubernetes-action".into(), op.action.into());
    m.insert("x-kubernetes-group-version-kind".into(), op.gvk.extension());
    Value::Object(m)
}
