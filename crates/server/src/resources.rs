//! Handlers of the resource verbs: options from the query (and bodies),
//! one registry call, and the response in the negotiated representation.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use registry::cluster::{ClusterId, ClusterScope};
use registry::options::{
    DeleteOptions, GetOptions, ListOptions, WriteOptions, parse_dry_run, parse_propagation,
};
use registry::resource::ResourceDescriptor;
use registry::schema::FieldValidation;
use registry::store::{PatchKind, ResourceStore, Subresource};
use registry::table::{IncludeObject, table_for_columns, to_table};
use registry::watch::WatchEvent;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::body;
use crate::error::ApiError;
use crate::negotiate::{Endpoint, Output, negotiate};
use crate::request_info::{ResourceRequest, Verb, WorkspaceRef, parse_bool};

/// Query parameters, last value wins; unknown ones are ignored. Carries
/// the authenticated user's name for write options (a new workspace's owner).
pub struct Query(Vec<(String, String)>, Option<String>);

impl Query {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Query(pairs, None)
    }

    pub fn with_user(mut self, user: &str) -> Self {
        self.1 = Some(user.to_owned());
        self
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(pk, _)| pk == k)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, k: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(pk, _)| pk == k)
            .map(|(_, v)| v.as_str())
    }

    fn bool(&self, k: &str) -> Result<Option<bool>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => parse_bool(v).map(Some).ok_or_else(|| {
                ApiError::bad_request(format!("invalid boolean value {v:?} for parameter {k}"))
            }),
        }
    }

    fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        match self.get(k) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid integer value {v:?} for parameter {k}"))
            }),
        }
    }

    fn list_options(&self) -> Result<ListOptions, ApiError> {
        Ok(ListOptions {
            label_selector: self.get("labelSelector").map(str::to_owned),
            field_selector: self.get("fieldSelector").map(str::to_owned),
            limit: self.int("limit")?,
            continue_token: self.get("continue").map(str::to_owned),
            resource_version: self.get("resourceVersion").map(str::to_owned),
            resource_version_match: self
                .get("resourceVersionMatch")
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            send_initial_events: self.bool("sendInitialEvents")?,
            allow_watch_bookmarks: self.bool("allowWatchBookmarks")?.unwrap_or(false),
            timeout_seconds: self
                .int("timeoutSeconds")?
                .filter(|t| *t > 0)
                .map(|t| t as u64),
        })
    }

    fn get_options(&self) -> GetOptions {
        GetOptions {
            resource_version: self.get("resourceVersion").map(str::to_owned),
        }
    }

    fn write_options(&self, headers: &HeaderMap) -> Result<WriteOptions, ApiError> {
        let field_manager = self.get("fieldManager").map(str::to_owned);
        if field_manager.as_ref().is_some_and(|m| m.len() > 128) {
            return Err(registry::ApiError::invalid(
                "",
                "PatchOptions",
                "",
                &[registry::validation::FieldError::invalid(
                    "fieldManager",
                    field_manager.clone().unwrap_or_default(),
                    "must be no more than 128 characters",
                )],
            )
            .into());
        }
        Ok(WriteOptions {
            user: self.1.clone(),
            dry_run: parse_dry_run(self.all("dryRun"))?,
            field_manager,
            force: self.bool("force")?,
            field_validation: FieldValidation::parse(self.get("fieldValidation"))?,
            // Upstream: the User-Agent up to its first '/', at most 128 bytes.
            default_manager: headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|ua| {
                    ua.split('/')
                        .next()
                        .unwrap_or("")
                        .chars()
                        .take(128)
                        .collect()
                }),
            warnings: Default::default(),
        })
    }

    fn delete_options(&self) -> Result<DeleteOptions, ApiError> {
        Ok(DeleteOptions {
            grace_period_seconds: self.int("gracePeriodSeconds")?,
            propagation: self
                .get("propagationPolicy")
                .filter(|p| !p.is_empty())
                .map(parse_propagation)
                .transpose()?,
            orphan_dependents: self.bool("orphanDependents")?,
            precondition_uid: None,
            precondition_resource_version: None,
            dry_run: parse_dry_run(self.all("dryRun"))?,
        })
    }
}

/// A Table of `objects`: upstream columns for built-ins, a CRD's
/// `additionalPrinterColumns` (or Age) for custom resources.
fn table_of(
    descriptor: &ResourceDescriptor,
    objects: &[Value],
    include: IncludeObject,
    list_meta: Value,
) -> Value {
    if descriptor.printer_columns.is_empty() {
        to_table(&descriptor.gvk, objects, include, list_meta)
    } else {
        table_for_columns(&descriptor.printer_columns, objects, include, list_meta)
    }
}

/// A response object in the negotiated representation.
struct Render<'a> {
    output: Output,
    descriptor: &'a ResourceDescriptor,
    include: IncludeObject,
}

fn partial_metadata(version: &str, obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}

impl Render<'_> {
    fn object(&self, obj: Value) -> Value {
        match self.output {
            Output::Table(_) if obj.get("kind").and_then(Value::as_str) != Some("Status") => {
                table_of(
                    self.descriptor,
                    std::slice::from_ref(&obj),
                    self.include,
                    json!({}),
                )
            }
            Output::PartialMetadata(v)
                if obj.get("kind").and_then(Value::as_str) != Some("Status") =>
            {
                partial_metadata(v, &obj)
            }
            _ => obj,
        }
    }

    fn list(&self, mut list: Value) -> Value {
        match self.output {
            Output::Table(_) => {
                let meta = list.get("metadata").cloned().unwrap_or(json!({}));
                let items = match list.get_mut("items").map(Value::take) {
                    Some(Value::Array(items)) => items,
                    _ => Vec::new(),
                };
                table_of(self.descriptor, &items, self.include, meta)
            }
            Output::PartialMetadata(v) => {
                let items: Vec<Value> = list
                    .get("items")
                    .and_then(Value::as_array)
                    .map(|items| items.iter().map(|o| partial_metadata(v, o)).collect())
                    .unwrap_or_default();
                json!({
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": format!("meta.k8s.io/{v}"),
                    "metadata": list.get("metadata").cloned().unwrap_or(json!({})),
                    "items": items,
                })
            }
            _ => list,
        }
    }

    fn respond(&self, code: StatusCode, body: &Value, list: bool) -> Response {
        let is_status = body.get("kind").and_then(Value::as_str) == Some("Status");
        let (ct, bytes) = match self.output {
            Output::Yaml => match serde_saphyr::to_string(body) {
                Ok(s) => (self.output.content_type(list), Bytes::from(s)),
                Err(_) => (
                    "application/json".to_owned(),
                    Bytes::from(serde_json::to_vec(body).unwrap_or_default()),
                ),
            },
            _ if is_status => (
                "application/json".to_owned(),
                Bytes::from(serde_json::to_vec(body).unwrap_or_default()),
            ),
            out => (
                out.content_type(list),
                Bytes::from(serde_json::to_vec(body).unwrap_or_default()),
            ),
        };
        crate::discovery::bytes_response(code, &ct, bytes)
    }
}

fn sub_kind(sub: Option<&str>) -> Subresource {
    match sub {
        Some("scale") => Subresource::Scale,
        Some("status" | "approval") => Subresource::Status,
        _ => Subresource::Main,
    }
}

/// Counts an object a PUT or an apply created: its reservation when it
/// took one, else (the object was deleted between the check and the
/// write, or the quota is off) the counter directly.
fn counted_create(
    app: &AppState,
    cluster: &ClusterId,
    reserved: Option<crate::quota::Reservation>,
) {
    match reserved {
        Some(r) => r.created(),
        None => app.quota.created_unreserved(cluster),
    }
}

fn as_object(v: Value) -> Result<Map<String, Value>, ApiError> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::bad_request(
            "the request body must be a JSON object",
        )),
    }
}

pub async fn handle(
    app: &AppState,
    ws: WorkspaceRef,
    req: ResourceRequest,
    headers: &HeaderMap,
    query: Query,
    body: Body,
) -> Result<Response, ApiError> {
    let scope = match &ws {
        WorkspaceRef::Path(p) => ClusterScope::One(app.registry.resolve(p)?),
        WorkspaceRef::All if app.registry.wildcard_allowed() => ClusterScope::All,
        WorkspaceRef::All => {
            return Err(registry::ApiError::forbidden(
                &registry::status::QualifiedResource::new(&req.group, &req.resource),
                "",
                "requests across all workspaces (/clusters/*) are disabled on this server (serve --allow-wildcard)",
            )
            .into());
        }
    };
    let api_cluster = scope.cluster().cloned().unwrap_or_else(ClusterId::root);
    let api = app.registry.api_set(&api_cluster);
    let desc = api
        .resource(&req.group, &req.version, &req.resource)
        .ok_or_else(ApiError::not_found)?
        .clone();
    let rs: Arc<ResourceStore> = app
        .registry
        .resource_in(&api_cluster, &req.group, &req.version, &req.resource)
        .ok_or_else(ApiError::not_found)?;
    let verb = req.verb;
    // Scope checks: namespaced resources need a namespace except for
    // all-namespaces list and watch; cluster-scoped ones take none.
    let namespace = req.namespace.as_deref();
    if desc.namespaced() {
        let needs_ns = req.name.is_some() || !matches!(verb, Verb::List | Verb::Watch);
        if needs_ns && namespace.is_none() {
            return Err(ApiError::not_found());
        }
    } else if namespace.is_some() {
        return Err(ApiError::not_found());
    }
    if let Some(sub) = req.subresource.as_deref() {
        let Some(s) = desc.subresources.iter().find(|s| s.name == sub) else {
            return Err(ApiError::not_found());
        };
        if !s.verbs.contains(&verb.as_str()) {
            return Err(ApiError::method_not_allowed());
        }
    } else if !desc.serves(verb.as_str()) {
        return Err(ApiError::method_not_allowed());
    }
    let cluster = match (&scope, verb) {
        (ClusterScope::One(c), _) => c.clone(),
        (ClusterScope::All, Verb::List | Verb::Watch) => ClusterId::root(),
        (ClusterScope::All, _) => {
            return Err(ApiError::bad_request(
                "requests across all workspaces support only list and watch",
            ));
        }
    };
    let endpoint = match verb {
        Verb::List | Verb::DeleteCollection => Endpoint::Collection,
        Verb::Watch => Endpoint::Watch,
        _ => Endpoint::Object,
    };
    let output = negotiate(headers, endpoint)?;
    let include = IncludeObject::parse(query.get("includeObject"))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let render = Render {
        output,
        descriptor: &desc,
        include,
    };
    let name = req.name.as_deref().unwrap_or("");
    let sub = req.subresource.as_deref();
    if crate::subresources::handles(&req) {
        let result = subresource_call(
            app, &cluster, namespace, &req, headers, &query, body, &render,
        )
        .await;
        return with_deprecation(&desc, result);
    }
    let result = match verb {
        Verb::Get if output == Output::Json && sub.is_none() => {
            let from = query.get_options().read_from()?;
            let bytes = rs.get_json(&cluster, namespace, name, from).await?;
            Ok(crate::discovery::bytes_response(
                StatusCode::OK,
                "application/json",
                bytes,
            ))
        }
        Verb::Get => {
            let from = query.get_options().read_from()?;
            let obj = rs.get_from(&cluster, namespace, name, from).await?;
            let obj = if sub == Some("scale") {
                rs.scale_of(&obj)?
            } else {
                obj
            };
            Ok(render.respond(StatusCode::OK, &render.object(Value::Object(obj)), false))
        }
        Verb::List if output == Output::Json => {
            // The fast path: stored objects spliced in, not re-encoded.
            let opts = query.list_options()?;
            let bytes = rs.list_json(&scope, namespace, &opts).await?;
            Ok(crate::discovery::bytes_response(
                StatusCode::OK,
                "application/json",
                bytes,
            ))
        }
        Verb::List => {
            let opts = query.list_options()?;
            let result = rs.list(&scope, namespace, &opts).await?;
            Ok(render.respond(StatusCode::OK, &render.list(rs.list_object(result)), true))
        }
        Verb::Watch => {
            let mut opts = query.list_options()?;
            if let Some(n) = req.name.as_deref() {
                let by_name = format!("metadata.name={n}");
                opts.field_selector =
                    Some(match opts.field_selector.take().filter(|s| !s.is_empty()) {
                        Some(f) => format!("{f},{by_name}"),
                        None => by_name,
                    });
            }
            // The registry ends the stream at timeoutSeconds (after a
            // last bookmark when asked for).
            watch_response(rs, &scope, namespace, &opts, output, include).await
        }
        Verb::Create => {
            let bytes = body::read(headers, body).await?;
            let mut obj = as_object(body::decode_object(headers, &bytes)?)?;
            let wopts = query.write_options(headers)?;
            let mut warnings = duplicate_fields(&bytes, wopts.field_validation)?;
            warnings.extend(rs.check_fields(&mut obj, wopts.field_validation)?);
            let reserved = app
                .quota
                .reserve_create(&app.registry, &ws, &rs, &cluster, &obj)
                .await?;
            let created = app
                .registry
                .create(&rs, &cluster, namespace, obj, &wopts)
                .await?;
            if !wopts.dry_run {
                reserved.created();
            }
            warnings.extend(wopts.warnings.take());
            Ok(with_warnings(
                render.respond(
                    StatusCode::CREATED,
                    &render.object(Value::Object(created)),
                    false,
                ),
                &warnings,
            ))
        }
        Verb::Update => {
            let bytes = body::read(headers, body).await?;
            let mut obj = as_object(body::decode_object(headers, &bytes)?)?;
            let wopts = query.write_options(headers)?;
            if sub == Some("finalize") {
                let o = app
                    .registry
                    .finalize_namespace(&cluster, name, &obj)
                    .await?;
                return Ok(render.respond(StatusCode::OK, &render.object(Value::Object(o)), false));
            }
            let mut warnings = duplicate_fields(&bytes, wopts.field_validation)?;
            if sub != Some("scale") {
                warnings.extend(rs.check_fields(&mut obj, wopts.field_validation)?);
            }
            // A PUT that finds no object creates it (where the type allows):
            // that create takes a quota place like a POST.
            let reserved = if sub.is_none() && rs.descriptor.allow_create_on_update {
                app.quota
                    .reserve_if_absent(&app.registry, &ws, &rs, &cluster, namespace, name)
                    .await?
            } else {
                None
            };
            let (o, created) = app
                .registry
                .update(&rs, &cluster, namespace, name, obj, sub_kind(sub), &wopts)
                .await?;
            if created && !wopts.dry_run {
                counted_create(app, &cluster, reserved);
            }
            let o = if sub == Some("scale") {
                rs.scale_of(&o)?
            } else {
                o
            };
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            warnings.extend(wopts.warnings.take());
            Ok(with_warnings(
                render.respond(code, &render.object(Value::Object(o)), false),
                &warnings,
            ))
        }
        Verb::Patch => {
            let bytes = body::read(headers, body).await?;
            let (kind, patch) = body::decode_patch(headers, &bytes)?;
            let wopts = query.write_options(headers)?;
            // An apply that finds no object creates it: a quota place, as
            // for a POST (kubectl apply --server-side and helm create so).
            let reserved = if sub.is_none() && kind == PatchKind::Apply {
                app.quota
                    .reserve_if_absent(&app.registry, &ws, &rs, &cluster, namespace, name)
                    .await?
            } else {
                None
            };
            let (o, created) = app
                .registry
                .patch(
                    &rs,
                    &cluster,
                    namespace,
                    name,
                    kind,
                    &patch,
                    sub_kind(sub),
                    &wopts,
                )
                .await?;
            if created && !wopts.dry_run {
                counted_create(app, &cluster, reserved);
            }
            let o = if sub == Some("scale") {
                rs.scale_of(&o)?
            } else {
                o
            };
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(with_warnings(
                render.respond(code, &render.object(Value::Object(o)), false),
                &wopts.warnings.take(),
            ))
        }
        Verb::Delete => {
            let mut dopts = query.delete_options()?;
            let bytes = body::read(headers, body).await?;
            if !bytes.iter().all(u8::is_ascii_whitespace) {
                dopts.merge_body(&body::decode_object(headers, &bytes)?)?;
            }
            let resp = app
                .registry
                .delete(&rs, &cluster, namespace, name, &dopts)
                .await?;
            if !resp.pending && !dopts.dry_run {
                app.quota.deleted(&cluster, 1);
            }
            let code = if resp.pending && dopts.orphan_dependents == Some(false) {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            Ok(render.respond(code, &render.object(resp.body), false))
        }
        Verb::DeleteCollection => {
            let mut dopts = query.delete_options()?;
            let bytes = body::read(headers, body).await?;
            if !bytes.iter().all(u8::is_ascii_whitespace) {
                dopts.merge_body(&body::decode_object(headers, &bytes)?)?;
            }
            let lopts = query.list_options()?;
            let list = app
                .registry
                .delete_collection(&rs, &cluster, namespace, &lopts, &dopts)
                .await?;
            Ok(render.respond(StatusCode::OK, &render.list(list), true))
        }
    };
    with_deprecation(&desc, result)
}

/// A deprecated version (a CRD's, or a built-in upstream deprecates such as
/// `v1 ComponentStatus`) warns on every answer, as upstream.
fn with_deprecation(
    desc: &ResourceDescriptor,
    result: Result<Response, ApiError>,
) -> Result<Response, ApiError> {
    match &desc.deprecation_warning {
        Some(w) => result.map(|r| with_warnings(r, std::slice::from_ref(w))),
        None => result,
    }
}

/// Pod binding/eviction/connect subresources, `bindings` and
/// `componentstatuses` (see `subresources.rs`).
#[allow(clippy::too_many_arguments)]
async fn subresource_call(
    app: &AppState,
    cluster: &ClusterId,
    namespace: Option<&str>,
    req: &ResourceRequest,
    headers: &HeaderMap,
    query: &Query,
    body: Body,
    render: &Render<'_>,
) -> Result<Response, ApiError> {
    use crate::subresources::{Call, Input, Reply};
    let connect = matches!(req.subresource.as_deref(), Some(s) if registry::builtin::pods::CONNECT.contains(&s));
    let input = match req.verb {
        // Connect bodies (exec streams, proxied requests) are not ours to read.
        _ if connect => Input::None,
        Verb::Create | Verb::Update => {
            let bytes = body::read(headers, body).await?;
            Input::Object(body::decode_object(headers, &bytes)?)
        }
        Verb::Patch => {
            let bytes = body::read(headers, body).await?;
            let (kind, patch) = body::decode_patch(headers, &bytes)?;
            Input::Patch(kind, patch)
        }
        _ => Input::None,
    };
    let wopts = if connect {
        WriteOptions::default()
    } else {
        query.write_options(headers)?
    };
    let reply = crate::subresources::handle(Call {
        app,
        cluster,
        namespace,
        req,
        container: query.get("container"),
        wopts,
        input,
    })
    .await?;
    Ok(match reply {
        Reply::Status(code, v) => render.respond(code, &v, false),
        Reply::Object(code, v) => render.respond(code, &render.object(v), false),
        Reply::List(v) => render.respond(StatusCode::OK, &render.list(v), true),
        Reply::EmptyText => {
            crate::discovery::bytes_response(StatusCode::OK, "text/plain", Bytes::new())
        }
    })
}

async fn watch_response(
    rs: Arc<ResourceStore>,
    scope: &ClusterScope,
    namespace: Option<&str>,
    opts: &ListOptions,
    output: Output,
    include: IncludeObject,
) -> Result<Response, ApiError> {
    if output == Output::Json {
        // Lines encoded once per event and shared by the cache's watchers.
        let lines = rs.watch_lines(scope, namespace, opts).await?;
        return Ok(watch_body(lines.map(Ok::<Bytes, Infallible>), output));
    }
    let events = rs.watch(scope, namespace, opts).await?;
    let descriptor = rs.descriptor.clone();
    let lines = events.map(move |mut ev: WatchEvent| {
        let is_error = matches!(ev, WatchEvent::Error(_));
        let is_bookmark = matches!(ev, WatchEvent::Bookmark(_));
        if !is_error {
            let converted = match output {
                Output::Table(_) if !is_bookmark => Some(table_of(
                    &descriptor,
                    std::slice::from_ref(ev.object()),
                    include,
                    json!({}),
                )),
                Output::PartialMetadata(v) => Some(partial_metadata(v, ev.object())),
                _ => None,
            };
            if let Some(c) = converted {
                *ev.object_mut() = c;
            }
        }
        let mut line = serde_json::to_vec(&json!({"type": ev.type_str(), "object": ev.object()}))
            .unwrap_or_default();
        line.push(b'\n');
        Ok::<Bytes, Infallible>(Bytes::from(line))
    });
    Ok(watch_body(lines, output))
}

/// The chunked response of a watch.
fn watch_body(
    lines: impl futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
    output: Output,
) -> Response {
    let mut resp = (StatusCode::OK, Body::from_stream(lines)).into_response();
    let ct = match output {
        Output::Yaml => "application/json".to_owned(),
        o => o.content_type(false),
    };
    if let Ok(v) = HeaderValue::from_str(&ct) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    resp
}

/// Repeated keys in a JSON body, as field validation treats them: Strict
/// refuses the request (400), Warn returns the warnings, Ignore skips the
/// check.
fn duplicate_fields(bytes: &[u8], mode: FieldValidation) -> Result<Vec<String>, ApiError> {
    if mode == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let found = crate::duplicate_fields::find(bytes);
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let messages = crate::duplicate_fields::messages(&found);
    if mode == FieldValidation::Strict {
        return Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            messages.join(", ")
        )));
    }
    Ok(messages)
}

/// Adds `Warning: 299 - "<text>"` headers.
fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}
