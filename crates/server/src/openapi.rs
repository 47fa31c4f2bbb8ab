//! OpenAPI v3, minimally: the root index and one document per served
//! group-version whose operations carry `x-kubernetes-action` and
//! `x-kubernetes-group-version-kind`, and whose PATCH and write operations
//! take `fieldValidation` — which is what makes kubectl (and helm) delegate
//! field validation to the server. Schemas are placeholders carrying the GVK
//! extension; full k8s-openapi schemas (and `/openapi/v2`) are still to do,
//! so strategic merge patch is not advertised: kubectl then builds
//! client-side apply patches from its compiled-in types.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use bytes::Bytes;
use registry::discovery::ApiSet;
use registry::resource::ResourceDescriptor;
use serde_json::{Map, Value, json};

pub struct OpenApi {
    pub root: Bytes,
    /// `api/v1`, `apis/apps/v1` -> document.
    pub documents: HashMap<String, Bytes>,
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Upstream's schema name: `io.k8s.api.<pkg>.<version>.<Kind>`.
fn schema_name(d: &ResourceDescriptor) -> String {
    let g = d.gvk.group.as_str();
    let pkg = match g {
        "" => "core".to_owned(),
        "apiregistration.k8s.io" => {
            return format!(
                "io.k8s.kube-aggregator.pkg.apis.apiregistration.{}.{}",
                d.gvk.version, d.gvk.kind
            );
        }
        "apiextensions.k8s.io" => {
            return format!(
                "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{}.{}",
                d.gvk.version, d.gvk.kind
            );
        }
        "flowcontrol.apiserver.k8s.io" => "flowcontrol".to_owned(),
        g => g.split('.').next().unwrap_or(g).to_owned(),
    };
    format!("io.k8s.api.{pkg}.{}.{}", d.gvk.version, d.gvk.kind)
}

fn op(
    action: &str,
    d: &ResourceDescriptor,
    id: &str,
    params: Vec<Value>,
    body: Option<Value>,
) -> Value {
    let schema = json!({"$ref": format!("#/components/schemas/{}", schema_name(d))});
    let mut o = Map::new();
    o.insert("operationId".into(), id.into());
    o.insert("x-kubernetes-action".into(), action.into());
    o.insert(
        "x-kubernetes-group-version-kind".into(),
        json!({"group": d.gvk.group, "version": d.gvk.version, "kind": d.gvk.kind}),
    );
    if !params.is_empty() {
        o.insert("parameters".into(), Value::Array(params));
    }
    if let Some(b) = body {
        o.insert("requestBody".into(), b);
    }
    o.insert(
        "responses".into(),
        json!({"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}}),
    );
    Value::Object(o)
}

fn document(group: &str, version: &str, resources: &[std::sync::Arc<ResourceDescriptor>]) -> Value {
    // Parameters are inline: kubectl's verifier reads `name` directly.
    let fv = json!({"name": "fieldValidation", "in": "query", "description": "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields.", "schema": {"type": "string", "uniqueItems": true}});
    let dry =
        json!({"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    let fm = json!({"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for d in resources {
        let base = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let collection = if d.namespaced() {
            format!("{base}/namespaces/{{namespace}}/{}", d.plural())
        } else {
            format!("{base}/{}", d.plural())
        };
        let kind = &d.gvk.kind;
        let obj_schema = json!({"$ref": format!("#/components/schemas/{}", schema_name(d))});
        let body = json!({"content": {"application/json": {"schema": obj_schema}, "application/yaml": {"schema": obj_schema}}, "required": true});
        let patch_body = json!({"content": {
            "application/json-patch+json": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
            "application/merge-patch+json": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
            "application/apply-patch+yaml": {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
        }, "required": true});
        paths.insert(
            collection.clone(),
            json!({
                "get": op("list", d, &format!("list{kind}"), vec![], None),
                "post": op("post", d, &format!("create{kind}"), vec![dry.clone(), fm.clone(), fv.clone()], Some(body.clone())),
            }),
        );
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({
                "get": op("get", d, &format!("read{kind}"), vec![], None),
                "put": op("put", d, &format!("replace{kind}"), vec![dry.clone(), fm.clone(), fv.clone()], Some(body.clone())),
                "patch": op("patch", d, &format!("patch{kind}"), vec![dry.clone(), fm.clone(), fv.clone()], Some(patch_body)),
                "delete": op("delete", d, &format!("delete{kind}"), vec![dry.clone()], None),
            }),
        );
        schemas.insert(
            schema_name(d),
            json!({
                "type": "object",
                "x-kubernetes-group-version-kind": [{"group": d.gvk.group, "version": d.gvk.version, "kind": kind}],
            }),
        );
    }
    schemas.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch".into(),
        json!({"type": "object"}),
    );
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::discovery::GIT_VERSION},
        "paths": paths,
        "components": {
            "schemas": schemas,
        },
    })
}

impl OpenApi {
    pub fn new(api: &ApiSet) -> Self {
        let mut documents = HashMap::new();
        let mut index = Map::new();
        for g in &api.groups {
            for v in &g.versions {
                let path = gv_path(&g.name, &v.version);
                let doc = Bytes::from(
                    serde_json::to_vec(&document(&g.name, &v.version, &v.resources))
                        .unwrap_or_default(),
                );
                let mut h = std::collections::hash_map::DefaultHasher::new();
                doc.hash(&mut h);
                let hash = format!("{:016X}", h.finish());
                index.insert(
                    path.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
                );
                documents.insert(path, doc);
            }
        }
        let root = Bytes::from(serde_json::to_vec(&json!({"paths": index})).unwrap_or_default());
        OpenApi { root, documents }
    }
}
