//! OpenAPI documents of one API set: the `/openapi/v3` root, one OpenAPI 3.0
//! document per served group-version, and the Swagger 2.0 `/openapi/v2`
//! document (JSON and gnostic protobuf).
//!
//! Schemas are upstream's (Kubernetes 1.33 definitions with descriptions and
//! the `x-kubernetes-*` extensions, embedded by
//! `tools/gen_openapi_definitions.py`); paths come from the [`ApiSet`], so
//! exactly what a workspace serves is described. Custom resources bring their
//! own schemas as [`CustomSchema`]s.
//!
//! Documents are built once per distinct API set by [`OpenApiCache`] and
//! shared across workspaces as serialised [`Bytes`]; a request only picks one
//! and asks [`Document::headers`] what to send with it. Nothing here knows
//! HTTP beyond header names and values.

mod definitions;
mod gnostic;
mod routes;
mod v2;
mod v3;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use crate::discovery::ApiSet;
use crate::resource::ResourceDescriptor;

pub use gnostic::{V2_PROTOBUF_ACCEPT, V2_PROTOBUF_CONTENT_TYPE};

/// A group-version-kind as the OpenAPI extensions spell it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gvk {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl Gvk {
    pub fn new(group: &str, version: &str, kind: &str) -> Self {
        Gvk {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
        }
    }

    fn extension(&self) -> Value {
        json!({"group": self.group, "kind": self.kind, "version": self.version})
    }
}

/// The schema of a custom resource's kind: a CRD version's
/// `schema.openAPIV3Schema` in its published forms (v3, and v2 with what
/// Swagger 2.0 cannot say dropped). The documents gain the kind (with
/// `apiVersion`/`kind`/`metadata` filled in as upstream does), its list
/// kind, and PATCH operations without strategic merge patch.
#[derive(Clone, Debug, PartialEq)]
pub struct CustomSchema {
    pub gvk: Gvk,
    /// For `/openapi/v3`.
    pub schema: Value,
    /// For `/openapi/v2`.
    pub schema_v2: Value,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum OpenApiError {
    #[error("embedded OpenAPI definitions: {0}")]
    Definitions(String),
    #[error("serialising an OpenAPI document: {0}")]
    Serialize(String),
}

/// One served document, serialised once.
#[derive(Clone, Debug)]
pub struct Document {
    pub body: Bytes,
    pub content_type: &'static str,
    /// Uppercase hex SHA-512 of `body`, as upstream's `?hash=`.
    pub hash: String,
    /// `"<hash>"`.
    pub etag: String,
}

impl Document {
    fn new(body: Vec<u8>, content_type: &'static str) -> Self {
        let hash = upper_hex(&Sha512::digest(&body));
        Document {
            etag: format!("\"{hash}\""),
            hash,
            body: Bytes::from(body),
            content_type,
        }
    }

    /// The caching headers for this document requested with `?hash=`
    /// `requested` (the `/openapi/v3` root and `/openapi/v2` have none).
    ///
    /// A matching hash makes the answer immutable for a year, as upstream
    /// does. A stale or missing hash gets the current document revalidated on
    /// every use: upstream redirects instead, but its `Location` drops the
    /// `/clusters/<ws>` prefix (kubernetes#117463).
    pub fn headers(
        &self,
        requested: Option<&str>,
        now: DateTime<Utc>,
    ) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("content-type", self.content_type.to_owned()),
            ("etag", self.etag.clone()),
            ("vary", "Accept".to_owned()),
        ];
        if requested.is_some_and(|r| r == self.hash) {
            h.push(("cache-control", "public, immutable".to_owned()));
            let expires = now + chrono::Duration::days(365);
            h.push((
                "expires",
                expires.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
            ));
        } else {
            h.push(("cache-control", "no-cache, private".to_owned()));
        }
        h
    }

    /// Whether an `If-None-Match` value names this document (answer 304).
    pub fn not_modified(&self, if_none_match: &str) -> bool {
        if_none_match
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == self.etag || t == "*")
    }
}

fn upper_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02X}");
    }
    s
}

/// Where the embedded upstream schemas come from
/// (`kubernetes-validate v1.33.0-local`), for start-up logs.
pub fn schema_source() -> Result<&'static str, OpenApiError> {
    definitions::get().map(|d| d.source.as_str())
}

/// `api/v1`, `apis/apps/v1`: the keys of the v3 root.
pub fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// v3 documents by the content of their group-version, shared by every API
/// set serving that group-version the same way (the built-ins, mostly).
type GvDocs = Mutex<HashMap<SetKey, Weak<Document>>>;

/// Every document of one API set.
#[derive(Debug)]
pub struct OpenApi {
    v3_root: Document,
    v3: BTreeMap<String, Arc<Document>>,
    info_version: String,
    custom: Vec<CustomSchema>,
    /// JSON and protobuf, built on the first `/openapi/v2` of the set.
    v2: OnceLock<Result<(Document, Document), OpenApiError>>,
}

impl OpenApi {
    /// Builds the v3 documents; `info_version` goes into `info.version`.
    pub fn build(
        api: &ApiSet,
        custom: &[CustomSchema],
        info_version: &str,
    ) -> Result<Self, OpenApiError> {
        Self::build_sharing(api, custom, info_version, &GvDocs::default())
    }

    /// As [`OpenApi::build`], taking the documents of group-versions
    /// already built for another set from `shared` (and adding new ones).
    fn build_sharing(
        api: &ApiSet,
        custom: &[CustomSchema],
        info_version: &str,
        shared: &GvDocs,
    ) -> Result<Self, OpenApiError> {
        let mut catalog: Option<Catalog> = None;
        let mut v3 = BTreeMap::new();
        let mut index = Map::new();
        for g in &api.groups {
            for v in &g.versions {
                let key = gv_key(g, v, custom, info_version);
                let found = shared
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&key)
                    .and_then(Weak::upgrade);
                let doc = match found {
                    Some(d) => d,
                    None => {
                        let catalog = match &mut catalog {
                            Some(c) => c,
                            None => catalog.insert(Catalog::new(api, custom)?),
                        };
                        let routes =
                            routes::group_version_routes(g, &v.version, &v.resources, catalog);
                        let doc = v3::document(&routes, catalog, info_version);
                        let doc = Arc::new(Document::new(to_vec(&doc)?, "application/json"));
                        let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
                        shared.retain(|_, w| w.strong_count() > 0);
                        shared.insert(key, Arc::downgrade(&doc));
                        doc
                    }
                };
                let path = gv_path(&g.name, &v.version);
                index.insert(
                    path.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", doc.hash)}),
                );
                v3.insert(path, doc);
            }
        }
        let v3_root = Document::new(to_vec(&json!({"paths": index}))?, "application/json");
        Ok(OpenApi {
            v3_root,
            v3,
            info_version: info_version.to_owned(),
            custom: custom.to_vec(),
            v2: OnceLock::new(),
        })
    }

    fn build_v2(&self, api: &ApiSet) -> Result<(Document, Document), OpenApiError> {
        let catalog = Catalog::new(api, &self.custom)?;
        let mut all_routes = Vec::new();
        for g in &api.groups {
            for v in &g.versions {
                all_routes.extend(routes::group_version_routes(
                    g,
                    &v.version,
                    &v.resources,
                    &catalog,
                ));
            }
        }
        let v2 = v2::document(&all_routes, &catalog, &self.info_version);
        let protobuf = Document::new(gnostic::encode(&v2), V2_PROTOBUF_CONTENT_TYPE);
        Ok((Document::new(to_vec(&v2)?, "application/json"), protobuf))
    }

    /// `GET /openapi/v3`.
    pub fn v3_root(&self) -> &Document {
        &self.v3_root
    }

    /// `GET /openapi/v3/<gv path>` (`api/v1`, `apis/apps/v1`).
    pub fn v3_document(&self, gv_path: &str) -> Option<&Document> {
        self.v3.get(gv_path).map(AsRef::as_ref)
    }

    pub fn v3_paths(&self) -> impl Iterator<Item = &str> {
        self.v3.keys().map(String::as_str)
    }

    /// `GET /openapi/v2`, as JSON or as gnostic protobuf. `api` is the set
    /// these documents were built for (or one equal to it): the document is
    /// built on first use, as most clients never ask for it.
    pub fn v2(&self, api: &ApiSet, protobuf: bool) -> Result<&Document, OpenApiError> {
        let (json, pb) = self
            .v2
            .get_or_init(|| self.build_v2(api))
            .as_ref()
            .map_err(Clone::clone)?;
        Ok(if protobuf { pb } else { json })
    }

    /// Bytes held by the serialised documents (v2 once built).
    pub fn size(&self) -> usize {
        self.v3_root.body.len()
            + self.v3.values().map(|d| d.body.len()).sum::<usize>()
            + self
                .v2
                .get()
                .and_then(|r| r.as_ref().ok())
                .map_or(0, |(j, p)| j.body.len() + p.body.len())
    }
}

fn to_vec(v: &Value) -> Result<Vec<u8>, OpenApiError> {
    serde_json::to_vec(v).map_err(|e| OpenApiError::Serialize(e.to_string()))
}

type SetKey = [u8; 64];

/// Documents per distinct API set, shared by every workspace serving that
/// set. An [`ApiSet`] seen before is found by identity; a new one is hashed
/// (resources, verbs, subresources, custom schemas) and reuses the documents
/// of an equal set if one is alive.
pub struct OpenApiCache {
    info_version: String,
    by_set: Mutex<Vec<(Weak<ApiSet>, Arc<OpenApi>)>>,
    by_key: Mutex<HashMap<SetKey, Weak<OpenApi>>>,
    by_gv: GvDocs,
}

impl OpenApiCache {
    pub fn new(info_version: impl Into<String>) -> Self {
        OpenApiCache {
            info_version: info_version.into(),
            by_set: Mutex::new(Vec::new()),
            by_key: Mutex::new(HashMap::new()),
            by_gv: GvDocs::default(),
        }
    }

    /// The documents of a set of built-ins (and resources without schema).
    pub fn get(&self, api: &Arc<ApiSet>) -> Result<Arc<OpenApi>, OpenApiError> {
        self.get_with(api, Vec::new)
    }

    /// The documents of `api`, whose custom resources have the schemas
    /// `custom` returns. `custom` is called only for a set not seen before,
    /// so a caller that changes a workspace's schemas must hand in a new
    /// `Arc<ApiSet>` (as a CRD change does).
    pub fn get_with(
        &self,
        api: &Arc<ApiSet>,
        custom: impl FnOnce() -> Vec<CustomSchema>,
    ) -> Result<Arc<OpenApi>, OpenApiError> {
        if let Some(found) = self.lock_sets().iter().find_map(|(set, docs)| {
            (set.as_ptr() == Arc::as_ptr(api) && set.strong_count() > 0).then(|| docs.clone())
        }) {
            return Ok(found);
        }
        let custom = custom();
        let key = set_key(api, &custom, &self.info_version);
        let existing = self
            .by_key
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .and_then(Weak::upgrade);
        let docs = match existing {
            Some(d) => d,
            None => {
                // Built outside the locks: a build takes tens of milliseconds.
                let d = Arc::new(OpenApi::build_sharing(
                    api,
                    &custom,
                    &self.info_version,
                    &self.by_gv,
                )?);
                let mut by_key = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
                by_key.retain(|_, w| w.strong_count() > 0);
                by_key.insert(key, Arc::downgrade(&d));
                d
            }
        };
        let mut sets = self.lock_sets();
        sets.retain(|(s, _)| s.strong_count() > 0);
        sets.push((Arc::downgrade(api), docs.clone()));
        Ok(docs)
    }

    fn lock_sets(&self) -> std::sync::MutexGuard<'_, Vec<(Weak<ApiSet>, Arc<OpenApi>)>> {
        self.by_set.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The content identity of an API set: everything the documents depend on.
fn set_key(api: &ApiSet, custom: &[CustomSchema], info_version: &str) -> SetKey {
    let mut h = Sha512::new();
    let mut field = |s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    field(info_version);
    for g in &api.groups {
        for v in &g.versions {
            hash_resources(&mut field, v);
        }
    }
    for c in custom {
        hash_custom(&mut field, c);
    }
    let mut key = [0u8; 64];
    key.copy_from_slice(&h.finalize());
    key
}

/// The content identity of one group-version's v3 document: its resources
/// and the custom schemas of that group-version (a document only refers to
/// its own kinds and upstream's shared definitions).
fn gv_key(
    g: &crate::discovery::Group,
    v: &crate::discovery::GroupVersion,
    custom: &[CustomSchema],
    info_version: &str,
) -> SetKey {
    let mut h = Sha512::new();
    let mut field = |s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    field(info_version);
    field(&g.name);
    field(&v.version);
    hash_resources(&mut field, v);
    for c in custom
        .iter()
        .filter(|c| c.gvk.group == g.name && c.gvk.version == v.version)
    {
        hash_custom(&mut field, c);
    }
    let mut key = [0u8; 64];
    key.copy_from_slice(&h.finalize());
    key
}

fn hash_resources(field: &mut impl FnMut(&str), v: &crate::discovery::GroupVersion) {
    for d in &v.resources {
        field(&d.gvk.group);
        field(&d.gvk.version);
        field(&d.gvk.kind);
        field(d.plural());
        field(if d.namespaced() { "N" } else { "C" });
        field(&d.verbs.join(","));
        for s in &d.subresources {
            field(s.name);
            field(&s.response_kind.group);
            field(&s.response_kind.version);
            field(&s.response_kind.kind);
            field(&s.verbs.join(","));
        }
        field("");
    }
}

fn hash_custom(field: &mut impl FnMut(&str), c: &CustomSchema) {
    field(&c.gvk.group);
    field(&c.gvk.version);
    field(&c.gvk.kind);
    field(&c.schema.to_string());
    field(&c.schema_v2.to_string());
}

/// How refs are spelled in the output.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefStyle {
    /// `#/definitions/X` (Swagger 2.0).
    V2,
    /// `#/components/schemas/X` (OpenAPI 3.0).
    V3,
}

const DEF_PREFIX: &str = "#/definitions/";

/// The schemas of one build: upstream definitions plus custom kinds.
/// Custom schemas are held with `#/definitions/` refs like upstream's.
struct Catalog {
    defs: &'static definitions::Definitions,
    custom: BTreeMap<String, Value>,
    /// The v2 forms of custom kinds whose v2 schema differs from v3.
    custom_v2: HashMap<String, Value>,
    custom_by_gvk: HashMap<Gvk, String>,
}

impl Catalog {
    fn new(api: &ApiSet, custom: &[CustomSchema]) -> Result<Self, OpenApiError> {
        let defs = definitions::get()?;
        let mut c = Catalog {
            defs,
            custom: BTreeMap::new(),
            custom_v2: HashMap::new(),
            custom_by_gvk: HashMap::new(),
        };
        for s in custom {
            c.add_custom(&s.gvk, s.schema.clone());
            if s.schema_v2 != s.schema {
                let name = custom_name(&s.gvk);
                c.custom_v2
                    .insert(name, with_resource_fields(s.schema_v2.clone(), &s.gvk));
            }
        }
        // A served kind with no schema anywhere (wsgate's own Workspace)
        // gets an open object schema, so it is still described and PATCH
        // still advertises fieldValidation.
        for g in &api.groups {
            for v in &g.versions {
                for d in &v.resources {
                    let gvk = descriptor_gvk(d);
                    if !c.custom_by_gvk.contains_key(&gvk) && !defs.by_gvk.contains_key(&gvk) {
                        c.add_custom(
                            &gvk,
                            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
                        );
                    }
                }
            }
        }
        Ok(c)
    }

    /// Adds a custom kind and its list, named as upstream names CRD schemas
    /// (`com.example.stable.v1.CronTab`).
    fn add_custom(&mut self, gvk: &Gvk, schema: Value) {
        let name = custom_name(gvk);
        let list_name = format!("{name}List");
        let meta = routes::META;
        let obj = with_resource_fields(schema, gvk);
        let list_gvk = Gvk::new(&gvk.group, &gvk.version, &format!("{}List", gvk.kind));
        let list = json!({
            "description": format!("{}List is a list of {}", gvk.kind, gvk.kind),
            "properties": {
                "apiVersion": {"description": API_VERSION_DESC, "type": "string"},
                "items": {"description": format!("List of {}. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md", gvk.kind.to_ascii_lowercase()), "items": {"$ref": format!("{DEF_PREFIX}{name}")}, "type": "array"},
                "kind": {"description": KIND_DESC, "type": "string"},
                "metadata": {"$ref": format!("{DEF_PREFIX}{meta}.ListMeta"), "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"},
            },
            "required": ["items"],
            "type": "object",
            "x-kubernetes-group-version-kind": [list_gvk.extension()],
        });
        self.custom.insert(name.clone(), obj);
        self.custom.insert(list_name.clone(), list);
        self.custom_by_gvk.insert(gvk.clone(), name);
        self.custom_by_gvk.insert(list_gvk, list_name);
    }

    fn lookup(&self, name: &str) -> Option<&Value> {
        self.custom.get(name).or_else(|| self.defs.defs.get(name))
    }

    fn is_custom(&self, name: &str) -> bool {
        self.custom.contains_key(name)
    }

    /// `roots` and everything they reference, in name order.
    fn closure(&self, roots: impl IntoIterator<Item = String>) -> Vec<String> {
        definitions::closure(roots, &|n| self.lookup(n))
            .into_iter()
            .filter(|n| self.lookup(n).is_some())
            .collect()
    }

    /// A schema as it goes into a document.
    fn emit(&self, name: &str, style: RefStyle) -> Option<Value> {
        let s = match style {
            RefStyle::V2 => self.custom_v2.get(name).or_else(|| self.lookup(name))?,
            RefStyle::V3 => self.lookup(name)?,
        };
        Some(rewrite(
            s,
            style,
            style == RefStyle::V2 && self.is_custom(name),
        ))
    }

    fn kind_schema(&self, gvk: &Gvk) -> Option<&String> {
        self.custom_by_gvk
            .get(gvk)
            .or_else(|| self.defs.by_gvk.get(gvk))
    }
}

/// Upstream's name of a CRD kind's schema (`com.example.stable.v1.CronTab`).
fn custom_name(gvk: &Gvk) -> String {
    let mut parts: Vec<&str> = gvk.group.split('.').filter(|p| !p.is_empty()).collect();
    parts.reverse();
    parts.push(&gvk.version);
    format!("{}.{}", parts.join("."), gvk.kind)
}

/// A kind's schema with `apiVersion`, `kind` and `metadata` and its
/// group-version-kind extension, as upstream publishes CRD kinds.
fn with_resource_fields(schema: Value, gvk: &Gvk) -> Value {
    let meta = routes::META;
    let mut obj = match schema {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    obj.entry("type").or_insert_with(|| "object".into());
    if let Value::Object(props) = obj
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()))
    {
        props.insert(
            "apiVersion".into(),
            json!({"description": API_VERSION_DESC, "type": "string"}),
        );
        props.insert(
            "kind".into(),
            json!({"description": KIND_DESC, "type": "string"}),
        );
        props.insert(
            "metadata".into(),
            json!({"$ref": format!("{DEF_PREFIX}{meta}.ObjectMeta"), "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}),
        );
    }
    obj.insert(
        "x-kubernetes-group-version-kind".into(),
        json!([gvk.extension()]),
    );
    Value::Object(obj)
}

fn descriptor_gvk(d: &ResourceDescriptor) -> Gvk {
    Gvk::new(&d.gvk.group, &d.gvk.version, &d.gvk.kind)
}

impl routes::SchemaNames for Catalog {
    fn resource(&self, d: &ResourceDescriptor) -> routes::Schemas {
        let gvk = descriptor_gvk(d);
        let list_gvk = Gvk::new(&gvk.group, &gvk.version, &format!("{}List", gvk.kind));
        let custom = self.custom_by_gvk.contains_key(&gvk);
        let object = self.kind_schema(&gvk).cloned().unwrap_or_default();
        let list = self
            .kind_schema(&list_gvk)
            .cloned()
            .unwrap_or_else(|| object.clone());
        routes::Schemas {
            object,
            list,
            strategic: !custom,
            protobuf: !custom,
        }
    }

    fn kind(&self, gvk: &Gvk) -> Option<String> {
        self.kind_schema(gvk).cloned()
    }
}

/// Copies `schema`, respelling refs for `style`; `v2_sanitize` drops what
/// Swagger 2.0 cannot say (CRD schemas are OpenAPI 3.0), as upstream does
/// when publishing CRDs in v2.
fn rewrite(schema: &Value, style: RefStyle, v2_sanitize: bool) -> Value {
    let Value::Object(m) = schema else {
        return schema.clone();
    };
    let mut out = Map::with_capacity(m.len());
    for (k, v) in m {
        let v = match k.as_str() {
            "$ref" => match (v, style) {
                (Value::String(r), RefStyle::V3) => {
                    Value::String(match r.strip_prefix(DEF_PREFIX) {
                        Some(n) => format!("#/components/schemas/{n}"),
                        None => r.clone(),
                    })
                }
                _ => v.clone(),
            },
            "nullable" | "anyOf" | "oneOf" | "allOf" | "not" | "x-kubernetes-validations"
                if v2_sanitize =>
            {
                continue;
            }
            "properties" => match v {
                Value::Object(props) => Value::Object(
                    props
                        .iter()
                        .map(|(p, s)| (p.clone(), rewrite(s, style, v2_sanitize)))
                        .collect(),
                ),
                _ => v.clone(),
            },
            "items" | "additionalProperties" | "not" if v.is_object() => {
                rewrite(v, style, v2_sanitize)
            }
            "allOf" | "anyOf" | "oneOf" => match v {
                Value::Array(xs) => {
                    Value::Array(xs.iter().map(|x| rewrite(x, style, v2_sanitize)).collect())
                }
                _ => v.clone(),
            },
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    Value::Object(out)
}

const API_VERSION_DESC: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DESC: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
