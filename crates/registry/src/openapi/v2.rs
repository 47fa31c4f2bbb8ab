//! The workspace's Swagger 2.0 document (`/openapi/v2`), in upstream's shape.

use serde_json::{Map, Value, json};

use super::routes::{Body, In, META, Operation, Param, Route};
use super::v3::{PATCH_TYPES, STRATEGIC, referenced};
use super::{Catalog, DEF_PREFIX, RefStyle};

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
    let mut definitions = Map::new();
    for name in catalog.closure(roots) {
        if let Some(s) = catalog.emit(&name, RefStyle::V2) {
            definitions.insert(name, s);
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": info_version},
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": {"BearerToken": {"description": "Bearer Token authentication", "in": "header", "name": "authorization", "type": "apiKey"}},
        "security": [{"BearerToken": []}],
    })
}

fn def_ref(name: &str) -> Value {
    json!({"$ref": format!("{DEF_PREFIX}{name}")})
}

fn parameter(p: &Param) -> Value {
    let mut m = Map::new();
    m.insert("uniqueItems".into(), true.into());
    m.insert("type".into(), p.ty.into());
    if !p.description.is_empty() {
        m.insert("description".into(), p.description.clone().into());
    }
    m.insert("name".into(), p.name.into());
    m.insert(
        "in".into(),
        (if p.location == In::Path {
            "path"
        } else {
            "query"
        })
        .into(),
    );
    if p.location == In::Path {
        m.insert("required".into(), true.into());
    }
    Value::Object(m)
}

fn operation(op: &Operation) -> Value {
    let mut m = Map::new();
    m.insert("description".into(), op.description.clone().into());
    let consumes: Vec<&str> = match &op.body {
        Some(Body::Patch { strategic }) => PATCH_TYPES
            .iter()
            .copied()
            .chain(strategic.then_some(STRATEGIC))
            .collect(),
        _ => vec!["*/*"],
    };
    m.insert("consumes".into(), json!(consumes));
    let mut produces = vec!["application/json", "application/yaml"];
    if op.protobuf {
        produces.push("application/vnd.kubernetes.protobuf");
    }
    if op.watch {
        produces.push("application/json;stream=watch");
        if op.protobuf {
            produces.push("application/vnd.kubernetes.protobuf;stream=watch");
        }
    }
    m.insert("produces".into(), json!(produces));
    m.insert("schemes".into(), json!(["https"]));
    m.insert("tags".into(), json!([op.tag]));
    m.insert("operationId".into(), op.operation_id.clone().into());
    let mut params = Vec::new();
    if let Some(body) = &op.body {
        let schema = match body {
            Body::Object(s) => def_ref(s),
            Body::Patch { .. } => def_ref(&format!("{META}.Patch")),
            Body::DeleteOptions => def_ref(&format!("{META}.DeleteOptions")),
        };
        let mut b = Map::new();
        b.insert("name".into(), "body".into());
        b.insert("in".into(), "body".into());
        if !matches!(body, Body::DeleteOptions) {
            b.insert("required".into(), true.into());
        }
        b.insert("schema".into(), schema);
        params.push(Value::Object(b));
    }
    params.extend(op.query.iter().map(parameter));
    if !params.is_empty() {
        m.insert("parameters".into(), Value::Array(params));
    }
    let mut responses = Map::new();
    for (code, desc) in op.responses {
        responses.insert(
            (*code).into(),
            json!({"description": desc, "schema": def_ref(&op.response_schema)}),
        );
    }
    responses.insert("401".into(), json!({"description": "Unauthorized"}));
    m.insert("responses".into(), Value::Object(responses));
    m.insert("x-kubernetes-action".into(), op.action.into());
    m.insert("x-kubernetes-group-version-kind".into(), op.gvk.extension());
    Value::Object(m)
}
