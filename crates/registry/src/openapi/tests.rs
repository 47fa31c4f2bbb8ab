use std::sync::Arc;
use std::time::Instant;

use prost::Message as _;
use serde_json::{Value, json};

use super::*;
use crate::builtin;
use crate::keys::KeyRoot;

const VERSION: &str = "v1.32.4+test";

fn descriptors() -> Vec<Arc<ResourceDescriptor>> {
    let root = KeyRoot::new("/registry");
    let mut d: Vec<_> = builtin::catalog(&root)
        .into_iter()
        .map(|b| Arc::new(b.descriptor))
        .collect();
    d.push(Arc::new(crate::workspace::descriptor(&root)));
    d
}

fn api_set(d: &[Arc<ResourceDescriptor>]) -> Arc<ApiSet> {
    Arc::new(ApiSet::new(d, builtin::GROUP_ORDER, "127.0.0.1:6443"))
}

fn built() -> OpenApi {
    OpenApi::build(&api_set(&descriptors()), &[], VERSION).expect("build")
}

/// The v2 document of a set built by [`built`].
fn built_v2(o: &OpenApi, protobuf: bool) -> &Document {
    o.v2(&api_set(&descriptors()), protobuf).expect("v2")
}

fn json_of(d: &Document) -> Value {
    serde_json::from_slice(&d.body).expect("document is JSON")
}

fn v3_docs(o: &OpenApi) -> Vec<(String, Value)> {
    o.v3_paths()
        .map(|p| (p.to_owned(), json_of(o.v3_document(p).expect("listed"))))
        .collect()
}

/// Every `$ref` of `v`, keyword-aware.
fn refs_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    ("properties", Value::Object(props)) => {
                        props.values().for_each(|p| refs_in(p, out))
                    }
                    _ => refs_in(x, out),
                }
            }
        }
        Value::Array(xs) => xs.iter().for_each(|x| refs_in(x, out)),
        _ => {}
    }
}

#[test]
fn definitions_load_with_upstream_shapes() {
    let d = definitions::get().expect("definitions");
    assert!(d.defs.len() > 700, "{}", d.defs.len());
    assert!(d.source.contains("v1.33"), "{}", d.source);
    let cm = &d.defs["io.k8s.api.core.v1.ConfigMap"];
    assert_eq!(
        cm["description"],
        "ConfigMap holds configuration data for pods to consume."
    );
    assert_eq!(
        cm["x-kubernetes-group-version-kind"],
        json!([{"group": "", "kind": "ConfigMap", "version": "v1"}])
    );
    assert_eq!(cm["properties"]["apiVersion"]["type"], "string");
    assert!(cm["properties"]["apiVersion"].get("enum").is_none());
    let ports = &d.defs["io.k8s.api.core.v1.Container"]["properties"]["ports"];
    assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
    assert_eq!(ports["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(ports["x-kubernetes-list-type"], "map");
    assert_eq!(
        ports["x-kubernetes-list-map-keys"],
        json!(["containerPort", "protocol"])
    );
    assert_eq!(
        d.defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"],
        "int-or-string"
    );
    assert!(
        d.defs["io.k8s.apimachinery.pkg.api.resource.Quantity"]["description"]
            .as_str()
            .is_some_and(|s| s.starts_with("Quantity is a fixed-point"))
    );
    let replicas = &d.defs["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["replicas"];
    assert_eq!(replicas["type"], "integer");
    assert_eq!(replicas["format"], "int32");
    assert!(
        replicas["description"]
            .as_str()
            .is_some_and(|s| s.starts_with("Number of desired pods"))
    );
    assert!(
        d.defs["io.k8s.api.core.v1.SeccompProfile"]
            .get("x-kubernetes-unions")
            .is_some()
    );
    assert_eq!(
        d.by_gvk[&Gvk::new("apps", "v1", "Deployment")],
        "io.k8s.api.apps.v1.Deployment"
    );
}

#[test]
fn v3_root_lists_every_served_group_version_prefix_free() {
    let o = built();
    let root = json_of(o.v3_root());
    let paths = root["paths"].as_object().expect("paths");
    for p in [
        "api/v1",
        "apis/apps/v1",
        "apis/batch/v1",
        "apis/tenancy.wsgate.io/v1alpha1",
    ] {
        assert!(paths.contains_key(p), "{p} missing from {:?}", paths.keys());
    }
    for (k, v) in paths {
        assert!(!k.starts_with('/'), "{k}");
        let url = v["serverRelativeURL"].as_str().expect("url");
        let doc = o.v3_document(k).expect("document for root entry");
        assert_eq!(url, format!("/openapi/v3/{k}?hash={}", doc.hash));
        assert_eq!(doc.hash.len(), 128);
        assert!(
            doc.hash
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
    }
}

#[test]
fn every_patch_has_field_validation_gvk_and_patch_types() {
    let o = built();
    let mut patches = 0;
    for (gv, doc) in v3_docs(&o) {
        let builtin = !gv.contains("wsgate.io");
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("item") {
                if method == "parameters" {
                    continue;
                }
                assert!(op["operationId"].is_string(), "{path} {method}");
                assert!(op["x-kubernetes-action"].is_string(), "{path} {method}");
                let gvk = &op["x-kubernetes-group-version-kind"];
                assert!(
                    gvk["kind"].is_string() && gvk["version"].is_string(),
                    "{path}"
                );
                if method != "patch" {
                    continue;
                }
                patches += 1;
                let params = op["parameters"].as_array().expect("params");
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"),
                    "{path}: no inline fieldValidation"
                );
                let content = op["requestBody"]["content"].as_object().expect("content");
                for t in [
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/apply-patch+yaml",
                ] {
                    assert!(content.contains_key(t), "{path}: {t}");
                }
                assert_eq!(
                    content.contains_key("application/strategic-merge-patch+json"),
                    builtin,
                    "{path}"
                );
            }
        }
    }
    assert!(patches > 70, "{patches} PATCH operations");
}

#[test]
fn upstream_paths_and_actions() {
    let o = built();
    let apps = json_of(o.v3_document("apis/apps/v1").expect("apps"));
    let p = &apps["paths"];
    let dep = &p["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
    assert_eq!(
        dep["patch"]["operationId"],
        "patchAppsV1NamespacedDeployment"
    );
    assert_eq!(dep["get"]["x-kubernetes-action"], "get");
    assert_eq!(dep["delete"]["x-kubernetes-action"], "delete");
    assert_eq!(dep["put"]["x-kubernetes-action"], "put");
    let coll = &p["/apis/apps/v1/namespaces/{namespace}/deployments"];
    assert_eq!(coll["get"]["x-kubernetes-action"], "list");
    assert_eq!(coll["post"]["x-kubernetes-action"], "post");
    assert_eq!(coll["delete"]["x-kubernetes-action"], "deletecollection");
    assert_eq!(
        p["/apis/apps/v1/deployments"]["get"]["operationId"],
        "listAppsV1DeploymentForAllNamespaces"
    );
    assert_eq!(
        p["/apis/apps/v1/watch/namespaces/{namespace}/deployments"]["get"]["x-kubernetes-action"],
        "watchlist"
    );
    assert_eq!(
        p["/apis/apps/v1/watch/namespaces/{namespace}/deployments/{name}"]["get"]["x-kubernetes-action"],
        "watch"
    );
    let scale = &p["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
    assert_eq!(
        scale["patch"]["x-kubernetes-group-version-kind"],
        json!({"group": "autoscaling", "kind": "Scale", "version": "v1"})
    );
    let status = &p["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"];
    assert_eq!(
        status["put"]["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "kind": "Deployment", "version": "v1"})
    );
    let schemas = &apps["components"]["schemas"];
    assert_eq!(
        schemas["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    assert!(schemas["io.k8s.api.autoscaling.v1.Scale"].is_object());
    assert!(schemas["io.k8s.api.core.v1.PodSpec"].is_object());

    let core = json_of(o.v3_document("api/v1").expect("core"));
    let ns = &core["paths"]["/api/v1/namespaces/{name}"];
    assert_eq!(ns["patch"]["operationId"], "patchCoreV1Namespace");
    assert_eq!(
        core["paths"]["/api/v1/namespaces/{name}/finalize"]["put"]["operationId"],
        "replaceCoreV1NamespaceFinalize"
    );
    let cm = &core["components"]["schemas"]["io.k8s.api.core.v1.ConfigMap"];
    assert_eq!(
        cm["properties"]["metadata"]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
}

#[test]
fn every_ref_resolves() {
    let o = built();
    for (gv, doc) in v3_docs(&o) {
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let mut refs = Vec::new();
        refs_in(&doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{gv}: foreign ref {r}"));
            assert!(schemas.contains_key(name), "{gv}: {r} unresolved");
        }
    }
    let v2 = json_of(built_v2(&o, false));
    let defs = v2["definitions"].as_object().expect("definitions");
    let mut refs = Vec::new();
    refs_in(&v2, &mut refs);
    for r in refs {
        let name = r
            .strip_prefix("#/definitions/")
            .unwrap_or_else(|| panic!("v2: foreign ref {r}"));
        assert!(defs.contains_key(name), "v2: {r} unresolved");
    }
}

#[test]
fn hashes_are_stable_and_follow_the_set() {
    let d = descriptors();
    let a = OpenApi::build(&api_set(&d), &[], VERSION).expect("a");
    let b = OpenApi::build(&api_set(&d), &[], VERSION).expect("b");
    assert_eq!(a.v3_root().body, b.v3_root().body);
    let set = api_set(&d);
    assert_eq!(
        a.v2(&set, true).expect("a v2").body,
        b.v2(&set, true).expect("b v2").body
    );

    // Without ConfigMaps only api/v1 changes.
    let fewer: Vec<_> = d
        .iter()
        .filter(|r| r.gvk.kind != "ConfigMap")
        .cloned()
        .collect();
    let fewer_set = api_set(&fewer);
    let c = OpenApi::build(&fewer_set, &[], VERSION).expect("c");
    assert_ne!(
        a.v3_document("api/v1").map(|x| &x.hash),
        c.v3_document("api/v1").map(|x| &x.hash)
    );
    assert_eq!(
        a.v3_document("apis/apps/v1").map(|x| &x.hash),
        c.v3_document("apis/apps/v1").map(|x| &x.hash)
    );
    assert_ne!(a.v3_root().hash, c.v3_root().hash);
    assert_ne!(
        a.v2(&set, false).expect("a v2").hash,
        c.v2(&fewer_set, false).expect("c v2").hash
    );
}

fn crontab() -> (Arc<ResourceDescriptor>, CustomSchema) {
    use kube_core::GroupVersionKind;
    use kube_core::discovery::Scope;
    let root = KeyRoot::new("/registry");
    let gvk = GroupVersionKind::gvk("stable.example.com", "v1", "CronTab");
    let d = ResourceDescriptor::new(
        &root,
        gvk,
        "crontabs",
        Scope::Namespaced,
        vec!["ct"],
        vec![],
        crate::resource::ALL_VERBS,
    )
    .with_subresource("status", builtin::SUB_VERBS);
    let schema = json!({
        "type": "object",
        "properties": {
            "spec": {"type": "object", "description": "The cron spec.", "properties": {
                "cronSpec": {"type": "string"},
                "replicas": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            }},
        },
    });
    (
        Arc::new(d),
        CustomSchema {
            gvk: Gvk::new("stable.example.com", "v1", "CronTab"),
            schema_v2: schema.clone(),
            schema,
        },
    )
}

#[test]
fn custom_resources_get_their_schema_and_no_strategic_merge() {
    let mut d = descriptors();
    let (ct, schema) = crontab();
    d.push(ct);
    let set = api_set(&d);
    let o = OpenApi::build(&set, &[schema], VERSION).expect("build");
    let doc = json_of(o.v3_document("apis/stable.example.com/v1").expect("CRD GV"));
    let s = &doc["components"]["schemas"]["com.example.stable.v1.CronTab"];
    assert_eq!(
        s["x-kubernetes-group-version-kind"],
        json!([{"group": "stable.example.com", "kind": "CronTab", "version": "v1"}])
    );
    assert_eq!(s["properties"]["spec"]["description"], "The cron spec.");
    assert_eq!(
        s["properties"]["metadata"]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert!(s["properties"]["spec"]["properties"]["replicas"]["anyOf"].is_array());
    assert!(doc["components"]["schemas"]["com.example.stable.v1.CronTabList"].is_object());
    let patch = &doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]
        ["patch"];
    let content = patch["requestBody"]["content"]
        .as_object()
        .expect("content");
    assert!(!content.contains_key("application/strategic-merge-patch+json"));
    assert!(content.contains_key("application/apply-patch+yaml"));
    // Swagger 2.0 cannot say anyOf; upstream drops it there too.
    let v2 = json_of(o.v2(&set, false).expect("v2"));
    let s2 = &v2["definitions"]["com.example.stable.v1.CronTab"];
    assert!(
        s2["properties"]["spec"]["properties"]["replicas"]
            .get("anyOf")
            .is_none()
    );
    assert_eq!(
        s2["properties"]["spec"]["properties"]["replicas"]["x-kubernetes-int-or-string"],
        true
    );
    // The workspace root entry for the CRD GV.
    assert!(json_of(o.v3_root())["paths"]["apis/stable.example.com/v1"].is_object());
}

#[test]
fn v2_protobuf_round_trips() {
    let o = built();
    let json = json_of(built_v2(&o, false));
    let doc = gnostic::Document::decode(built_v2(&o, true).body.clone()).expect("decodes");
    assert_eq!(doc.swagger, "2.0");
    assert_eq!(doc.info.as_ref().map(|i| i.version.as_str()), Some(VERSION));
    let defs = doc.definitions.expect("definitions").additional_properties;
    let jdefs = json["definitions"].as_object().expect("definitions");
    assert_eq!(defs.len(), jdefs.len());
    for d in &defs {
        let back = gnostic::schema_to_json(d.value.as_ref().expect("schema"));
        assert_eq!(&back, &jdefs[&d.name], "{}", d.name);
    }
    let paths = doc.paths.expect("paths").path;
    assert_eq!(
        paths.len(),
        json["paths"].as_object().map_or(0, |p| p.len())
    );
    let dep = paths
        .iter()
        .find(|p| p.name == "/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
        .and_then(|p| p.value.as_ref())
        .expect("deployment path");
    let patch = dep.patch.as_ref().expect("patch");
    assert_eq!(patch.operation_id, "patchAppsV1NamespacedDeployment");
    assert!(
        patch
            .consumes
            .contains(&"application/strategic-merge-patch+json".to_owned())
    );
    let gvk = patch
        .vendor_extension
        .iter()
        .find(|e| e.name == "x-kubernetes-group-version-kind")
        .and_then(|e| e.value.as_ref())
        .expect("gvk extension");
    let gvk: Value = serde_json::from_str(&gvk.yaml).expect("yaml is JSON");
    assert_eq!(
        gvk,
        json!({"group": "apps", "kind": "Deployment", "version": "v1"})
    );
    let has_field_validation = patch.parameters.iter().any(|p| {
        matches!(
            &p.oneof,
            Some(gnostic::parameters_item::Oneof::Parameter(gnostic::Parameter {
                oneof: Some(gnostic::parameter::Oneof::NonBodyParameter(gnostic::NonBodyParameter {
                    oneof: Some(gnostic::non_body_parameter::Oneof::QueryParameterSubSchema(q)),
                })),
            })) if q.name == "fieldValidation"
        )
    });
    assert!(has_field_validation);
}

#[test]
fn cache_shares_documents_between_equal_sets() {
    let cache = OpenApiCache::new(VERSION);
    let d = descriptors();
    let a = api_set(&d);
    let b = api_set(&d);
    let t = Instant::now();
    let da = cache.get(&a).expect("a");
    let first = t.elapsed();
    let t = Instant::now();
    let da2 = cache.get(&a).expect("a again");
    let by_identity = t.elapsed();
    let db = cache.get(&b).expect("b");
    assert!(Arc::ptr_eq(&da, &da2));
    assert!(Arc::ptr_eq(&da, &db), "equal sets share one build");
    let (ct, schema) = crontab();
    let mut more = d.clone();
    more.push(ct);
    let c = api_set(&more);
    let dc = cache.get_with(&c, || vec![schema]).expect("c");
    assert!(!Arc::ptr_eq(&da, &dc));
    eprintln!(
        "built-in set: first build {first:?} (incl. decoding the definitions once), lookup {by_identity:?}, {} documents, {} bytes serialised",
        da.v3.len() + 3,
        da.size()
    );
}

/// Resident set size in bytes (Linux), for the memory figures.
fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[test]
fn build_time_and_size() {
    let before = rss();
    let t = Instant::now();
    definitions::get().expect("definitions");
    let decode = t.elapsed();
    let decoded = rss();
    let set = api_set(&descriptors());
    let t = Instant::now();
    let o = OpenApi::build(&set, &[], VERSION).expect("build");
    o.v2(&set, false).expect("v2");
    let took = t.elapsed();
    let after = rss();
    let mib = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.1} MiB", (b as f64 - a as f64) / 1048576.0),
        _ => "?".into(),
    };
    eprintln!(
        "decode definitions {decode:?} (+{} RSS); build {took:?} (+{} RSS): v3 {} GVs, {} bytes in all (v2 JSON {}, v2 protobuf {})",
        mib(before, decoded),
        mib(decoded, after),
        o.v3.len(),
        o.size(),
        o.v2(&set, false).expect("v2").body.len(),
        o.v2(&set, true).expect("v2").body.len()
    );
    assert!(o.size() < 32 << 20);
}

#[test]
fn headers_follow_the_requested_hash() {
    let o = built();
    let doc = o.v3_document("api/v1").expect("core");
    let now = chrono::DateTime::parse_from_rfc3339("2025-01-02T03:04:05Z")
        .expect("time")
        .with_timezone(&Utc);
    let find =
        |h: &[(&str, String)], k: &str| h.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    let h = doc.headers(Some(&doc.hash), now);
    assert_eq!(
        find(&h, "cache-control").as_deref(),
        Some("public, immutable")
    );
    assert_eq!(
        find(&h, "expires").as_deref(),
        Some("Fri, 02 Jan 2026 03:04:05 GMT")
    );
    assert_eq!(find(&h, "etag"), Some(format!("\"{}\"", doc.hash)));
    assert_eq!(find(&h, "vary").as_deref(), Some("Accept"));
    for stale in [Some("ABC"), None] {
        let h = doc.headers(stale, now);
        assert_eq!(
            find(&h, "cache-control").as_deref(),
            Some("no-cache, private")
        );
        assert!(find(&h, "expires").is_none());
        assert!(find(&h, "etag").is_some());
    }
    assert!(doc.not_modified(&doc.etag));
    assert!(!doc.not_modified("\"ABC\""));
}

#[test]
fn sets_share_the_documents_of_equal_group_versions() {
    let cache = OpenApiCache::new(VERSION);
    let plain = api_set(&descriptors());
    let mut d = descriptors();
    let (ct, schema) = crontab();
    d.push(ct);
    let with_crd = Arc::new(
        ApiSet::new(&d, builtin::GROUP_ORDER, "127.0.0.1:6443").with_custom_schemas(vec![schema]),
    );
    let a = cache.get(&plain).expect("plain");
    let b = cache
        .get_with(&with_crd, || with_crd.custom_schemas.clone())
        .expect("with the CRD");
    // Built-in group-versions are one document for both sets; the CRD's
    // group-version and the roots are the second set's own.
    assert!(Arc::ptr_eq(&a.v3["api/v1"], &b.v3["api/v1"]));
    assert!(Arc::ptr_eq(&a.v3["apis/apps/v1"], &b.v3["apis/apps/v1"]));
    assert!(b.v3.contains_key("apis/stable.example.com/v1"));
    assert_ne!(a.v3_root().hash, b.v3_root().hash);
    // v2 is built on first use, per set.
    assert!(a.v2.get().is_none());
    let v2 = json_of(b.v2(&with_crd, false).expect("v2"));
    assert!(v2["definitions"]["com.example.stable.v1.CronTab"].is_object());
    assert!(v2["definitions"]["io.k8s.api.core.v1.ConfigMap"].is_object());
}
