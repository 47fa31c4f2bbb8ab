//! The wsgate server: HTTP routing, content negotiation, handlers.
//!
//! One fallback handler receives every request: [`RequestInfo`] parses the
//! path once; the [`gate`] authenticates the bearer token, picks and checks
//! the workspace (scope first, then resolution); fair admission takes a
//! seat (or answers 429); the request is authorized with the workspace's
//! RBAC (after admission, as in upstream's filter chain); watch limits
//! apply; then the target's handler answers. Every error is an [`error::ApiError`], the only
//! writer of `Status` bodies. [`serve::serve`] builds all of it.

pub mod audit;
pub mod auth;
pub mod bench;
pub mod config;
pub mod fairness;
mod listener;
pub mod metrics;
pub mod protobuf;
pub mod quota;
pub mod request_id;
pub mod serve;
pub mod storage_metrics;
pub mod tls;

mod auth_api;
mod authz;
mod body;
mod discovery;
mod duplicate_fields;
pub mod error;
mod gate;
mod impersonation;
mod negotiate;
mod openapi;
pub mod request_info;
mod resources;
mod subresources;
mod watch_limits;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use chrono::Utc;
use dashmap::DashMap;
use futures::StreamExt;
use registry::cluster::ClusterId;
use registry::{Registry, WorkspacePath};
use serde_json::Value;

use crate::audit::{AuditLog, AuditRecord, AuditUser, ObjectRef};
use crate::auth::{Authenticator, ServiceAccountRef, User};
use crate::authz::Authorizer;
use crate::config::LimitsSection;
use crate::error::ApiError;
use crate::fairness::{FairAdmission, is_long_running};
use crate::metrics::{Metrics, RejectReason, RequestLabels};
use crate::request_id::RequestId;
use crate::request_info::{RequestInfo, ResourceRequest, Target, Verb, WorkspaceRef, form_pairs};

pub use crate::serve::{ServeError, ServeOptions, serve};

/// Authentication and authorization of a server.
pub struct Security {
    pub auth: Arc<Authenticator>,
    pub authz: Arc<Authorizer>,
    /// `--insecure-http`: token-less requests are the local superuser.
    pub insecure: bool,
    pub service_account_max_seconds: i64,
}

/// Metrics, audit, admission and limits of a server.
pub struct Operations {
    pub metrics: Arc<Metrics>,
    pub audit: AuditLog,
    pub fairness: Arc<FairAdmission>,
    pub limits: Arc<LimitsSection>,
    /// Object-count quota per workspace, checked at create.
    pub quota: Arc<quota::ObjectQuota>,
    /// Turns true when shutdown starts: watches end, readiness fails.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// How long a ServiceAccount lookup for a bound token is trusted.
const SA_CHECK_TTL: Duration = Duration::from_secs(5);

/// Service accounts seen alive recently: (cluster, namespace, name) -> (uid, checked at).
type ServiceAccountCache = DashMap<(ClusterId, String, String), (String, Instant)>;

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    registry: Arc<Registry>,
    openapi: Arc<openapi::OpenApi>,
    auth: Arc<Authenticator>,
    authz: Arc<Authorizer>,
    insecure: bool,
    sa_max_seconds: i64,
    metrics: Arc<Metrics>,
    audit: AuditLog,
    fairness: Arc<FairAdmission>,
    limits: Arc<LimitsSection>,
    quota: Arc<quota::ObjectQuota>,
    stopping: tokio::sync::watch::Receiver<bool>,
    watches: Arc<watch_limits::WatchLimits>,
    /// (cluster, namespace, name) -> (uid, checked at) of ServiceAccounts
    /// behind bound tokens.
    service_accounts: Arc<ServiceAccountCache>,
}

impl AppState {
    pub fn new(registry: Arc<Registry>, security: Security, ops: Operations) -> Self {
        let api = registry.builtin_api_set().clone();
        AppState {
            openapi: Arc::new(openapi::OpenApi::new(&api)),
            registry,
            auth: security.auth,
            authz: security.authz,
            insecure: security.insecure,
            sa_max_seconds: security.service_account_max_seconds,
            metrics: ops.metrics,
            audit: ops.audit,
            fairness: ops.fairness,
            limits: ops.limits,
            quota: ops.quota,
            stopping: ops.stopping,
            watches: Arc::new(watch_limits::WatchLimits::default()),
            service_accounts: Arc::new(DashMap::new()),
        }
    }

    fn stopping(&self) -> bool {
        *self.stopping.borrow()
    }
}

/// The router serving the whole API.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_endpoint))
        .fallback(handle)
        // One Arc per request instead of a clone of every field (a dozen
        // Arcs and a watch receiver: 5% of a GET's server time in a profile).
        .with_state(Arc::new(state))
}

/// What the handler learned about a request, for metrics labels, the log
/// line and the audit event (recorded on success and error paths alike).
#[derive(Default)]
struct Seen {
    labels: RequestLabels,
    user: Option<User>,
    /// Who the request ran as, when it impersonated someone (audit's
    /// `impersonatedUser`).
    impersonated: Option<User>,
    object_ref: Option<ObjectRef>,
    /// Health and version probes are not audited.
    quiet: bool,
    /// A write's body, kept when the audit log may want it.
    request_body: Option<Bytes>,
}

/// Responses larger than this are not copied into the audit log.
const AUDIT_RESPONSE_MAX: u64 = 4 << 20;

fn labels_of(info: &RequestInfo) -> (RequestLabels, Option<ObjectRef>) {
    match &info.target {
        Target::Resource(r) => (
            RequestLabels {
                verb: r.verb.as_str(),
                group: r.group.clone(),
                resource: match &r.subresource {
                    Some(s) => format!("{}/{s}", r.resource),
                    None => r.resource.clone(),
                },
                workspace: None,
                user: None,
            },
            Some(ObjectRef {
                resource: r.resource.clone(),
                namespace: r.namespace.clone(),
                name: r.name.clone(),
                api_group: r.group.clone(),
                api_version: r.version.clone(),
                subresource: r.subresource.clone(),
            }),
        ),
        _ => (
            RequestLabels {
                verb: "get",
                ..RequestLabels::default()
            },
            None,
        ),
    }
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    State(app): State<Arc<AppState>>,
    request_id: Option<axum::Extension<RequestId>>,
    peer: Option<axum::Extension<tls::Peer>>,
    info: RequestInfo,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received = Utc::now();
    let (labels, object_ref) = labels_of(&info);
    let mut seen = Seen {
        labels,
        object_ref,
        quiet: matches!(info.target, Target::Health(_) | Target::Version),
        ..Seen::default()
    };
    let peer = peer.map(|axum::Extension(p)| p);
    let result = serve_request(
        &app,
        &mut seen,
        info,
        &method,
        &uri,
        &headers,
        peer.as_ref(),
        body,
    )
    .await;
    let mut resp = result.unwrap_or_else(IntoResponse::into_response);
    let mut response_body = None;
    if !seen.quiet && app.audit.wants_response_body() {
        // Only complete bodies of known size: watches and other streams
        // pass untouched.
        use axum::body::HttpBody as _;
        if let Some(n) = resp.body().size_hint().exact()
            && n <= AUDIT_RESPONSE_MAX
        {
            let (parts, b) = resp.into_parts();
            let bytes = axum::body::to_bytes(b, n as usize)
                .await
                .unwrap_or_default();
            response_body = Some(bytes.clone());
            resp = Response::from_parts(parts, Body::from(bytes));
        }
    }
    if !seen.quiet && app.audit.enabled() {
        let user = seen.user.as_ref();
        app.audit.record(AuditRecord {
            audit_id: request_id
                .map(|axum::Extension(id)| id.as_str().to_owned())
                .unwrap_or_default(),
            request_uri: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned()),
            verb: seen.labels.verb.to_owned(),
            user: user.map_or_else(
                || AuditUser {
                    username: "system:anonymous".to_owned(),
                    ..AuditUser::default()
                },
                AuditUser::of,
            ),
            impersonated_user: seen.impersonated.as_ref().map(AuditUser::of),
            source_ips: audit::source_ips(peer.as_ref(), &headers, app.audit.trusted_proxies()),
            user_agent: headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            object_ref: seen.object_ref.clone(),
            workspace: seen.labels.workspace.clone(),
            code: resp.status().as_u16(),
            received,
            completed: Utc::now(),
            request_body: seen.request_body.take(),
            response_body,
        });
    }
    resp.extensions_mut().insert(seen.labels);
    resp
}

/// The path RBAC sees for a non-resource request: without `/clusters/<ws>`.
fn non_resource_path(path: &str) -> &str {
    match path.strip_prefix("/clusters/") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => path,
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_request(
    app: &AppState,
    seen: &mut Seen,
    info: RequestInfo,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    peer: Option<&tls::Peer>,
    body: Body,
) -> Result<Response, ApiError> {
    let user = gate::authenticate(app, headers, peer)?;
    seen.labels.user = Some(user.name.clone());
    seen.user = Some(user.clone());
    // Read once (with the handlers' size limit) so the audit event can
    // carry it; the handlers get the same bytes.
    let body = if app.audit.wants_request_body()
        && matches!(*method, Method::POST | Method::PUT | Method::PATCH)
    {
        let bytes = body::read(headers, body).await?;
        seen.request_body = Some(bytes.clone());
        Body::from(bytes)
    } else {
        body
    };
    let read_only = *method == Method::GET || *method == Method::HEAD;
    if !matches!(info.target, Target::Resource(_)) && !read_only {
        return Err(ApiError::method_not_allowed());
    }
    // Open to everybody, anonymous users included (system:public-info-viewer).
    match &info.target {
        Target::Version => return Ok(discovery::version()),
        Target::Health(name) => return Ok(health(app, name, uri.query()).await),
        _ => {}
    }
    let prefixed = uri.path().starts_with("/clusters/");
    let at = gate::resolve(
        app,
        &user,
        &info.workspace,
        prefixed,
        &info.target,
        uri.path(),
    )?;
    seen.labels.workspace = at.path.as_ref().map(ToString::to_string);
    if let Some(sa) = &user.service_account {
        check_service_account(app, &at.cluster, sa).await?;
    }
    // From here on the request runs as the impersonated user, if asked and
    // allowed (the workspace's RBAC decides, like every other check).
    let user = match impersonation::requested(headers)? {
        None => user,
        Some(want) => {
            let policy = app.authz.policy(&at.cluster).await?;
            let as_user = impersonation::impersonate(&policy, &user, want)?;
            if matches!(at.workspace, WorkspaceRef::All) {
                gate::check_wildcard(&as_user)?;
            }
            seen.impersonated = Some(as_user.clone());
            as_user
        }
    };
    let ws_key = seen
        .labels
        .workspace
        .clone()
        .unwrap_or_else(|| "*".to_owned());
    let long_running = match &info.target {
        Target::Resource(r) => is_long_running(r.verb.as_str(), r.subresource.as_deref()),
        _ => false,
    };
    let _permit = if long_running {
        None
    } else {
        // Reads take the CPU-sized pool, writes the storage-sized one.
        let admitted = if read_only {
            app.fairness.admit_read(&ws_key, &user.name).await
        } else {
            app.fairness.admit(&ws_key, &user.name).await
        };
        Some(admitted.map_err(|r| {
            app.metrics.rejected(r.reason);
            ApiError(r.to_api_error())
        })?)
    };
    // Authorized after admission, as upstream's filter chain does: a
    // refused request costs no RBAC evaluation, so a noisy workspace's
    // 429s take less from the others.
    let policy = gate::authorize(app, &user, &at, &info.target, uri.path()).await?;
    let api = app.registry.api_set(&at.cluster);
    match info.target {
        Target::Version | Target::Health(_) => Err(ApiError::not_found()),
        Target::Root => Ok(discovery::root_paths(&api)),
        Target::CoreVersions => discovery::root_list(&api, headers, true),
        Target::GroupList => discovery::root_list(&api, headers, false),
        Target::Group(g) => discovery::group(&api, headers, &g),
        Target::ResourceList { group, version } => {
            discovery::resource_list(&api, headers, &group, &version)
        }
        Target::OpenApiV3Root => app.openapi.v3_root(&api, headers),
        Target::OpenApiV3Document(path) => {
            app.openapi.v3_document(&api, &path, uri.query(), headers)
        }
        Target::OpenApiV2 => app.openapi.v2(&api, headers),
        Target::Resource(req) => {
            resource(app, &user, &policy, &at, &ws_key, req, uri, headers, body).await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn resource(
    app: &AppState,
    user: &User,
    policy: &registry::rbac::RbacPolicy,
    at: &gate::Resolved,
    ws_key: &str,
    req: ResourceRequest,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let workspace = at.path.clone().unwrap_or_else(WorkspacePath::root);
    if let Some(kind) = auth_api::Review::of(&req.group, &req.version, &req.resource) {
        if req.verb != Verb::Create || req.name.is_some() {
            return Err(ApiError::method_not_allowed());
        }
        let bytes = body::read(headers, body).await?;
        let obj = body::decode_object(headers, &bytes)?;
        let ctx = auth_api::ReviewContext {
            user,
            policy,
            auth: &app.auth,
            workspace: &workspace,
            cluster: &at.cluster,
            namespace: req.namespace.as_deref(),
            api_version: format!("{}/{}", req.group, req.version),
        };
        return auth_api::review(kind, &ctx, &obj);
    }
    if req.group.is_empty()
        && req.resource == "serviceaccounts"
        && req.subresource.as_deref() == Some("token")
    {
        if req.verb != Verb::Create || at.path.is_none() {
            return Err(ApiError::method_not_allowed());
        }
        let namespace = req.namespace.as_deref().ok_or_else(ApiError::not_found)?;
        let name = req.name.as_deref().unwrap_or("");
        let rs = app
            .registry
            .resource("", "v1", "serviceaccounts")
            .ok_or_else(ApiError::not_found)?;
        let sa = rs.get(&at.cluster, Some(namespace), name).await?;
        let bytes = body::read(headers, body).await?;
        let obj = body::decode_object(headers, &bytes)?;
        let ctx = auth_api::TokenRequestContext {
            auth: &app.auth,
            workspace: &workspace,
            cluster: &at.cluster,
            namespace,
            service_account: &sa,
            max_seconds: app.sa_max_seconds,
        };
        return auth_api::token_request(&ctx, &obj);
    }

    let rbac_write = gate::rbac_kind(&req).is_some() && authz::is_write(req.verb);
    let mut body = body;
    if rbac_write
        && !gate::is_master(user)
        && matches!(req.verb, Verb::Create | Verb::Update | Verb::Patch)
    {
        let bytes = body::read(headers, body).await?;
        let obj = if req.verb == Verb::Patch {
            dry_run_patch(app, &at.cluster, &req, headers, &bytes).await?
        } else {
            body::decode_object(headers, &bytes)?
        };
        gate::check_rbac_write(policy, user, &req, &obj)?;
        body = Body::from(bytes);
    }
    let watch_slot = if req.verb == Verb::Watch {
        let ws_path = at.path.clone().unwrap_or_else(WorkspacePath::root);
        Some(
            app.watches
                .open(
                    ws_key,
                    &user.name,
                    app.limits.max_watches(&ws_path),
                    app.limits.max_watches_per_user,
                )
                .inspect_err(|_| app.metrics.rejected(RejectReason::WatchLimit))?,
        )
    } else {
        None
    };
    let workspace_deleted = (req.group == registry::workspace::GROUP
        && req.resource == registry::workspace::PLURAL
        && req.verb == Verb::Delete)
        .then(|| {
            req.name
                .as_deref()
                .and_then(|n| app.registry.resolve(&workspace.child(n)).ok())
        })
        .flatten();
    let query = resources::Query::new(uri.query().map(form_pairs).unwrap_or_default())
        .with_user(&user.name);
    let (group, plural) = (req.group.clone(), req.resource.clone());
    let resp = resources::handle(app, at.workspace.clone(), req, headers, query, body).await?;
    if rbac_write
        && resp.status().is_success()
        && let Some(rev) = app.authz.source().current_revision().await
    {
        app.authz.source().observe(&at.cluster, rev);
    }
    if let Some(gone) = workspace_deleted
        && resp.status().is_success()
    {
        app.authz.forget(&gone);
    }
    match watch_slot {
        Some(slot) => {
            let guard = app.metrics.watch_opened(&group, &plural);
            let (parts, body) = resp.into_parts();
            let mut stopping = app.stopping.clone();
            let stop = async move {
                let _ = stopping.wait_for(|s| *s).await;
            };
            let stream = body.into_data_stream().take_until(stop).map(move |chunk| {
                // The slot and the gauge live exactly as long as the stream.
                let _held = (&slot, &guard);
                chunk
            });
            Ok(Response::from_parts(parts, Body::from_stream(stream)))
        }
        None => Ok(resp),
    }
}

/// The object a PATCH would store, without storing it (for escalation checks).
async fn dry_run_patch(
    app: &AppState,
    cluster: &ClusterId,
    req: &ResourceRequest,
    headers: &HeaderMap,
    bytes: &Bytes,
) -> Result<Value, ApiError> {
    let (kind, patch) = body::decode_patch(headers, bytes)?;
    let rs = app
        .registry
        .resource_in(cluster, &req.group, &req.version, &req.resource)
        .ok_or_else(ApiError::not_found)?;
    let opts = registry::options::WriteOptions {
        dry_run: true,
        ..Default::default()
    };
    let (obj, _) = app
        .registry
        .patch(
            &rs,
            cluster,
            req.namespace.as_deref(),
            req.name.as_deref().unwrap_or(""),
            kind,
            &patch,
            registry::store::Subresource::Main,
            &opts,
        )
        .await?;
    Ok(Value::Object(obj))
}

/// A bound ServiceAccount token is valid while its ServiceAccount exists
/// with the same uid (upstream's rule); checked at most every few seconds.
async fn check_service_account(
    app: &AppState,
    cluster: &ClusterId,
    sa: &ServiceAccountRef,
) -> Result<(), ApiError> {
    let key = (cluster.clone(), sa.namespace.clone(), sa.name.clone());
    if let Some(e) = app.service_accounts.get(&key)
        && e.0 == sa.uid
        && e.1.elapsed() < SA_CHECK_TTL
    {
        return Ok(());
    }
    let unauthorized = || ApiError(crate::auth::AuthError::Invalid.to_api_error());
    let rs = app
        .registry
        .resource("", "v1", "serviceaccounts")
        .ok_or_else(unauthorized)?;
    match rs.get(cluster, Some(&sa.namespace), &sa.name).await {
        Ok(obj) => {
            let uid = obj
                .get("metadata")
                .and_then(|m| m.get("uid"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if uid != sa.uid {
                tracing::debug!(namespace = %sa.namespace, name = %sa.name, "token of a replaced ServiceAccount");
                return Err(unauthorized());
            }
            app.service_accounts
                .insert(key, (uid.to_owned(), Instant::now()));
            Ok(())
        }
        Err(e) if e.code() == 404 => Err(unauthorized()),
        Err(e) => Err(e.into()),
    }
}

/// `/healthz`, `/livez`, `/readyz`, with `?verbose` per-check lines as
/// upstream (`[+]storage ok`). Readiness needs storage and fails once
/// shutdown has started.
async fn health(app: &AppState, name: &str, query: Option<&str>) -> Response {
    let verbose = query
        .map(form_pairs)
        .unwrap_or_default()
        .iter()
        .any(|(k, v)| k == "verbose" && v != "false");
    let mut checks: Vec<(&str, bool)> = vec![("ping", true)];
    if name == "readyz" {
        checks.push(("storage", app.registry.ready().await));
        checks.push(("shutdown", !app.stopping()));
    }
    let ok = checks.iter().all(|(_, ok)| *ok);
    let text = if ok && !verbose {
        "ok".to_owned()
    } else {
        let mut s = String::new();
        for (check, passed) in &checks {
            if *passed {
                s.push_str(&format!("[+]{check} ok\n"));
            } else {
                s.push_str(&format!("[-]{check} failed: reason withheld\n"));
            }
        }
        s.push_str(&format!(
            "{name} check {}\n",
            if ok { "passed" } else { "failed" }
        ));
        s
    };
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    discovery::bytes_response(code, "text/plain; charset=utf-8", Bytes::from(text))
}

/// `/metrics`: authenticated, and RBAC `get` on the non-resource URL
/// `/metrics` in root (system:masters always), like kube-apiserver.
async fn metrics_endpoint(
    State(app): State<Arc<AppState>>,
    peer: Option<axum::Extension<tls::Peer>>,
    headers: HeaderMap,
) -> Response {
    let answer = async {
        let user = gate::authenticate(&app, &headers, peer.as_deref())?;
        let root = WorkspacePath::root();
        if !user.workspaces.allows_path(&root) {
            return Err(ApiError(
                crate::auth::AuthError::WorkspaceNotAllowed.to_api_error(),
            ));
        }
        let policy = app.authz.policy(&ClusterId::root()).await?;
        let user = match impersonation::requested(&headers)? {
            None => user,
            Some(want) => impersonation::impersonate(&policy, &user, want)?,
        };
        authz::check_non_resource(&policy, &user.user_info(), "/metrics")?;
        Ok::<_, ApiError>(app.metrics.response())
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}
