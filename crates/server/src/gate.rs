//! The security gate every request passes, in this order:
//!
//! 1. **authenticate** the client certificate or else the bearer token
//!    ([`authenticate`]); no credential is the
//!    anonymous user (or, on `--insecure-http`, the local superuser of the
//!    insecure port), who may only read `/version` and the health checks
//!    (401 for everything else), a bad one is 401;
//! 2. pick the **workspace**: a ServiceAccount token on a path without
//!    `/clusters/` is served in its own workspace; the token's scope is
//!    checked *before* the path is resolved, so a workspace outside the
//!    scope answers the same 401 whether it exists or not;
//! 3. **impersonate** when `Impersonate-*` headers ask for it
//!    ([`crate::impersonation`]): the rest runs as that user;
//! 4. **authorize**: the user needs an access grant in the workspace (a
//!    binding naming them or one of their groups; `system:masters` always
//!    has one), then the workspace's RBAC ([`crate::authz`]) decides the
//!    request. A missing workspace and one without a grant answer the same
//!    403 ([`no_access`]);
//!
//! and the request-specific checks that need the body: privilege
//! escalation on Role and binding writes.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use registry::cluster::{ClusterId, WorkspacePath};
use registry::rbac::{Attributes, RbacPolicy, RoleKind};
use registry::status::Reason;
use serde_json::Value;

use crate::auth::{AuthError, User, WorkspaceScope};
use crate::error::ApiError;
use crate::request_info::{ResourceRequest, Target, Verb, WorkspaceRef};
use crate::tls::Peer;
use crate::{AppState, authz};

pub const SYSTEM_MASTERS: &str = "system:masters";
/// The identity of token-less requests on `--insecure-http` (upstream's
/// insecure port skipped authentication and authorization the same way).
pub const INSECURE_USER: &str = "system:unsecured";

fn unauthorized() -> ApiError {
    ApiError(AuthError::Invalid.to_api_error())
}

/// The request's user, or 401. A verified client certificate wins over a
/// bearer token (kube-apiserver tries x509 before tokens): its subject CN
/// is the user, each O a group; a certificate without a CN is 401.
pub fn authenticate(
    app: &AppState,
    headers: &HeaderMap,
    peer: Option<&Peer>,
) -> Result<User, ApiError> {
    if let Some(cert) = peer.and_then(|p| p.client_cert.as_deref()) {
        if cert.user.is_empty() {
            tracing::debug!("client certificate without a common name");
            return Err(unauthorized());
        }
        return Ok(User::authenticated(
            cert.user.clone(),
            cert.groups.clone(),
            WorkspaceScope::All,
        ));
    }
    let raw = headers.get(header::AUTHORIZATION);
    let value = match raw {
        None => None,
        // A header that is not text cannot be a bearer token.
        Some(v) => Some(v.to_str().map_err(|_| unauthorized())?),
    };
    match app.auth.authenticate(value) {
        Ok(u) => Ok(u),
        Err(AuthError::Missing) if app.insecure => Ok(User::authenticated(
            INSECURE_USER.to_owned(),
            vec![SYSTEM_MASTERS.to_owned()],
            WorkspaceScope::All,
        )),
        Err(AuthError::Missing) => Ok(User::anonymous()),
        Err(e) => {
            // The reason only: never the header.
            tracing::debug!(error = %e, "authentication failed");
            Err(ApiError(e.to_api_error()))
        }
    }
}

pub fn is_master(user: &User) -> bool {
    user.groups.iter().any(|g| g == SYSTEM_MASTERS)
}

/// Where a request is served.
pub struct Resolved {
    pub workspace: WorkspaceRef,
    /// `None` for `/clusters/*`.
    pub path: Option<WorkspacePath>,
    /// The workspace's cluster (root for `/clusters/*`, whose RBAC is root's).
    pub cluster: ClusterId,
}

/// The denial for a user without an access grant in the workspace at
/// `path`, built only from the request and the path the client sent: a
/// workspace that does not exist gets exactly the same answer, so a user
/// cannot probe for workspaces they were never given.
pub fn no_access(user: &User, path: &str, target: &Target, uri_path: &str) -> ApiError {
    let reason = format!("no access grant in workspace {path:?}");
    let me = user.user_info();
    let err = match target {
        Target::Resource(req) => authz::resource_attributes(&me, req).forbidden(&reason),
        _ => Attributes::non_resource(&me, "get", crate::non_resource_path(uri_path))
            .forbidden(&reason),
    };
    ApiError(err)
}

/// `/clusters/*` (every workspace) is for `system:masters` only; checked
/// for the caller and again for the user it impersonates.
pub fn check_wildcard(user: &User) -> Result<(), ApiError> {
    if is_master(user) {
        return Ok(());
    }
    Err(ApiError::new(
        Reason::Forbidden,
        format!(
            "forbidden: User {:?} cannot use /clusters/* (every workspace)",
            user.name
        ),
    ))
}

/// Step 2: the workspace, checked against the token's scope. A workspace
/// that does not exist answers like one without an access grant
/// ([`no_access`]) for everybody but `system:masters`, who may enter any.
pub fn resolve(
    app: &AppState,
    user: &User,
    requested: &WorkspaceRef,
    prefixed: bool,
    target: &Target,
    uri_path: &str,
) -> Result<Resolved, ApiError> {
    // Anonymous access is off: a request without credentials gets 401
    // everywhere (only /version and the health checks, answered before
    // this, are open), and so learns nothing about which workspaces exist.
    if user.is_anonymous() {
        return Err(unauthorized());
    }
    let requested = match (requested, &user.workspaces) {
        // A ServiceAccount token without /clusters/ means its own workspace,
        // never root by accident.
        (WorkspaceRef::Path(_), WorkspaceScope::Bound { path, .. }) if !prefixed => {
            WorkspaceRef::Path(path.clone())
        }
        (w, _) => w.clone(),
    };
    match &requested {
        WorkspaceRef::All => {
            if !user.workspaces.allows_all_workspaces() {
                return Err(unauthorized());
            }
            // The server switch (`wildcard.allow`) is checked with the
            // route; here the identity: only the superuser group.
            check_wildcard(user)?;
            Ok(Resolved {
                workspace: requested,
                path: None,
                cluster: ClusterId::root(),
            })
        }
        WorkspaceRef::Path(p) => {
            if !user.workspaces.allows_path(p) {
                return Err(unauthorized());
            }
            let bound = matches!(user.workspaces, WorkspaceScope::Bound { .. });
            let cluster = match app.registry.resolve(p) {
                Ok(c) => c,
                Err(_) if bound => return Err(unauthorized()),
                Err(e) if is_master(user) => return Err(e.into()),
                Err(_) => return Err(no_access(user, p.as_str(), target, uri_path)),
            };
            if !user.workspaces.allows(p, &cluster) {
                return Err(unauthorized());
            }
            Ok(Resolved {
                path: Some(p.clone()),
                workspace: requested,
                cluster,
            })
        }
    }
}

/// Step 4: the workspace's policy, its access grant, then RBAC for the
/// request itself.
pub async fn authorize(
    app: &AppState,
    user: &User,
    at: &Resolved,
    target: &Target,
    uri_path: &str,
) -> Result<Arc<RbacPolicy>, ApiError> {
    let policy = app.authz.policy(&at.cluster).await?;
    let me = user.user_info();
    if let Some(path) = &at.path
        && !policy.has_access(&me)
    {
        return Err(no_access(user, path.as_str(), target, uri_path));
    }
    match target {
        Target::Resource(req) => authz::check_resource(&policy, &me, req)?,
        _ => authz::check_non_resource(&policy, &me, crate::non_resource_path(uri_path))?,
    }
    Ok(policy)
}

/// The RBAC resource kind of an `rbac.authorization.k8s.io` plural.
pub fn rbac_kind(req: &ResourceRequest) -> Option<(RoleKind, bool)> {
    if req.group != registry::rbac_source::RBAC_GROUP || req.subresource.is_some() {
        return None;
    }
    match req.resource.as_str() {
        "roles" => Some((RoleKind::Role, false)),
        "clusterroles" => Some((RoleKind::ClusterRole, false)),
        "rolebindings" => Some((RoleKind::Role, true)),
        "clusterrolebindings" => Some((RoleKind::ClusterRole, true)),
        _ => None,
    }
}

/// Escalation check of the object a Role/ClusterRole/binding write would
/// store (`obj`: the request body for create and update, the dry-run
/// result for patch).
pub fn check_rbac_write(
    policy: &RbacPolicy,
    user: &User,
    req: &ResourceRequest,
    obj: &Value,
) -> Result<(), ApiError> {
    let Some((kind, binding)) = rbac_kind(req) else {
        return Ok(());
    };
    if !matches!(req.verb, Verb::Create | Verb::Update | Verb::Patch) {
        return Ok(());
    }
    let ui = user.user_info();
    let namespace = req.namespace.as_deref().unwrap_or("");
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .or(req.name.as_deref())
        .unwrap_or("");
    let result = if binding {
        let role_ref = obj
            .get("roleRef")
            .cloned()
            .and_then(|r| serde_json::from_value(r).ok())
            .ok_or_else(|| {
                ApiError::bad_request("roleRef: Required value: a binding needs a roleRef")
            })?;
        policy.check_binding_write(&ui, namespace, &role_ref)
    } else {
        let rules: Vec<k8s_openapi::api::rbac::v1::PolicyRule> = obj
            .get("rules")
            .filter(|r| !r.is_null())
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| ApiError::bad_request(format!("rules: {e}")))?
            .unwrap_or_default();
        let aggregation = obj.get("aggregationRule").is_some_and(|a| !a.is_null());
        policy.check_role_write(&ui, kind, namespace, name, &rules, aggregation)
    };
    result.map_err(|e| ApiError(e.forbidden(&req.resource, name)))
}
