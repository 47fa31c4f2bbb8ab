//! The authentication and authorization APIs, answered from the request's
//! user and the workspace's RBAC policy (never stored):
//!
//! - `authorization.k8s.io/v1`: SelfSubjectAccessReview (`kubectl auth
//!   can-i`), SelfSubjectRulesReview (`can-i --list`), SubjectAccessReview,
//!   LocalSubjectAccessReview;
//! - `authentication.k8s.io/v1` (and `v1beta1`): SelfSubjectReview
//!   (`kubectl auth whoami`), TokenReview;
//! - TokenRequest: `POST .../namespaces/<ns>/serviceaccounts/<sa>/token`
//!   (`kubectl create token`), a token bound to this workspace.
//!
//! Every answer is `201 Created` with the request object plus `status`.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use k8s_openapi::api::authorization::v1::{NonResourceAttributes, ResourceAttributes};
use registry::cluster::{ClusterId, WorkspacePath};
use registry::rbac::{Attributes, RbacPolicy, UserInfo};
use serde_json::{Map, Value, json};

use crate::auth::{Authenticator, ServiceAccountTokenRequest, User};
use crate::error::ApiError;

/// Which review a request is, from its group, version and resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Review {
    SelfSubjectAccess,
    SelfSubjectRules,
    SubjectAccess,
    LocalSubjectAccess,
    SelfSubject,
    Token,
}

impl Review {
    pub fn of(group: &str, version: &str, resource: &str) -> Option<Review> {
        match (group, version, resource) {
            ("authorization.k8s.io", "v1", "selfsubjectaccessreviews") => {
                Some(Review::SelfSubjectAccess)
            }
            ("authorization.k8s.io", "v1", "selfsubjectrulesreviews") => {
                Some(Review::SelfSubjectRules)
            }
            ("authorization.k8s.io", "v1", "subjectaccessreviews") => Some(Review::SubjectAccess),
            ("authorization.k8s.io", "v1", "localsubjectaccessreviews") => {
                Some(Review::LocalSubjectAccess)
            }
            ("authentication.k8s.io", "v1" | "v1beta1", "selfsubjectreviews") => {
                Some(Review::SelfSubject)
            }
            ("authentication.k8s.io", "v1", "tokenreviews") => Some(Review::Token),
            _ => None,
        }
    }
}

/// Everything a review needs.
pub struct ReviewContext<'a> {
    pub user: &'a User,
    pub policy: &'a RbacPolicy,
    pub auth: &'a Authenticator,
    pub workspace: &'a WorkspacePath,
    pub cluster: &'a ClusterId,
    /// The namespace segment of the URL (LocalSubjectAccessReview).
    pub namespace: Option<&'a str>,
    pub api_version: String,
}

fn created(body: &Value) -> Response {
    crate::discovery::bytes_response(
        StatusCode::CREATED,
        "application/json",
        Bytes::from(serde_json::to_vec(body).unwrap_or_default()),
    )
}

fn spec_of(obj: &Value) -> Value {
    obj.get("spec").cloned().unwrap_or_else(|| json!({}))
}

fn echo(obj: &Value, api_version: &str, kind: &str, status: Value) -> Value {
    let metadata = obj
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| json!({"creationTimestamp": null}));
    json!({
        "kind": kind,
        "apiVersion": api_version,
        "metadata": metadata,
        "spec": spec_of(obj),
        "status": status,
    })
}

fn invalid(kind: &str, field: &str, detail: &str) -> ApiError {
    let group = if kind.contains("AccessReview") || kind.contains("RulesReview") {
        "authorization.k8s.io"
    } else {
        "authentication.k8s.io"
    };
    registry::ApiError::invalid(
        group,
        kind,
        "",
        &[registry::validation::FieldError::required(field, detail)],
    )
    .into()
}

/// Decides `spec.resourceAttributes` or `spec.nonResourceAttributes` for `user`.
fn access_status(
    policy: &RbacPolicy,
    user: &UserInfo,
    spec: &Value,
    kind: &str,
    force_namespace: Option<&str>,
) -> Result<Value, ApiError> {
    let resource: Option<ResourceAttributes> = spec
        .get("resourceAttributes")
        .filter(|v| !v.is_null())
        .map(|v| serde_json::from_value(v.clone()))
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("spec.resourceAttributes: {e}")))?;
    let non_resource: Option<NonResourceAttributes> = spec
        .get("nonResourceAttributes")
        .filter(|v| !v.is_null())
        .map(|v| serde_json::from_value(v.clone()))
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("spec.nonResourceAttributes: {e}")))?;
    let allowed = match (&resource, &non_resource) {
        (Some(r), None) => {
            let ns = force_namespace.unwrap_or(r.namespace.as_deref().unwrap_or(""));
            let attrs = Attributes::resource(
                user,
                r.verb.as_deref().unwrap_or(""),
                r.group.as_deref().unwrap_or(""),
                r.resource.as_deref().unwrap_or(""),
            )
            .namespace(ns)
            .name(r.name.as_deref().unwrap_or(""))
            .subresource(r.subresource.as_deref().unwrap_or(""));
            policy.allows(&attrs)
        }
        (None, Some(n)) => {
            let attrs = Attributes::non_resource(
                user,
                n.verb.as_deref().unwrap_or(""),
                n.path.as_deref().unwrap_or(""),
            );
            policy.allows(&attrs)
        }
        _ => {
            return Err(invalid(
                kind,
                "spec.resourceAttributes",
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ));
        }
    };
    let mut status = json!({ "allowed": allowed });
    if allowed {
        status["reason"] = json!("RBAC: allowed by the workspace's roles");
    }
    Ok(status)
}

fn user_info_json(u: &UserInfo) -> Value {
    let mut info = json!({ "username": u.name, "groups": u.groups });
    if !u.uid.is_empty() {
        info["uid"] = json!(u.uid);
    }
    if !u.extra.is_empty() {
        info["extra"] = json!(u.extra);
    }
    info
}

/// Answers one review.
pub fn review(kind: Review, ctx: &ReviewContext<'_>, obj: &Value) -> Result<Response, ApiError> {
    let me = ctx.user.user_info();
    let v = &ctx.api_version;
    let spec = spec_of(obj);
    let body = match kind {
        Review::SelfSubjectAccess => {
            let status = access_status(ctx.policy, &me, &spec, "SelfSubjectAccessReview", None)?;
            echo(obj, v, "SelfSubjectAccessReview", status)
        }
        Review::SelfSubjectRules => {
            let ns = spec.get("namespace").and_then(Value::as_str).unwrap_or("");
            let status = serde_json::to_value(ctx.policy.rules_review(&me, ns))
                .map_err(|e| ApiError(registry::ApiError::internal(e.to_string())))?;
            echo(obj, v, "SelfSubjectRulesReview", status)
        }
        Review::SubjectAccess | Review::LocalSubjectAccess => {
            let kind_name = if kind == Review::SubjectAccess {
                "SubjectAccessReview"
            } else {
                "LocalSubjectAccessReview"
            };
            let name = spec.get("user").and_then(Value::as_str).unwrap_or("");
            let groups: Vec<String> = spec
                .get("groups")
                .and_then(Value::as_array)
                .map(|g| {
                    g.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            if name.is_empty() && groups.is_empty() {
                return Err(invalid(
                    kind_name,
                    "spec.user",
                    "at least one of user or group must be specified",
                ));
            }
            let extra: BTreeMap<String, Vec<String>> = spec
                .get("extra")
                .and_then(|e| serde_json::from_value(e.clone()).ok())
                .unwrap_or_default();
            let subject = UserInfo {
                name: name.to_owned(),
                uid: spec
                    .get("uid")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                groups,
                extra,
            };
            let force_ns = if kind == Review::LocalSubjectAccess {
                Some(ctx.namespace.unwrap_or(""))
            } else {
                None
            };
            let status = access_status(ctx.policy, &subject, &spec, kind_name, force_ns)?;
            echo(obj, v, kind_name, status)
        }
        Review::SelfSubject => {
            let status = json!({ "userInfo": user_info_json(&me) });
            let metadata = obj
                .get("metadata")
                .cloned()
                .unwrap_or_else(|| json!({"creationTimestamp": null}));
            json!({"kind": "SelfSubjectReview", "apiVersion": v, "metadata": metadata, "status": status})
        }
        Review::Token => {
            let token = spec.get("token").and_then(Value::as_str).unwrap_or("");
            if token.is_empty() {
                return Err(invalid(
                    "TokenReview",
                    "spec.token",
                    "token must be specified",
                ));
            }
            let header = format!("Bearer {token}");
            let status = match ctx
                .auth
                .authenticate_in(Some(&header), ctx.workspace, ctx.cluster)
            {
                Ok(u) => json!({
                    "authenticated": true,
                    "user": user_info_json(&u.user_info()),
                    "audiences": ctx.auth.tokens().audiences(),
                }),
                Err(e) => {
                    tracing::debug!(error = %e, "TokenReview: token rejected");
                    json!({"authenticated": false, "error": e.to_string()})
                }
            };
            echo(obj, v, "TokenReview", status)
        }
    };
    Ok(created(&body))
}

/// What a TokenRequest needs besides the body.
pub struct TokenRequestContext<'a> {
    pub auth: &'a Authenticator,
    pub workspace: &'a WorkspacePath,
    pub cluster: &'a ClusterId,
    pub namespace: &'a str,
    /// The ServiceAccount, read from storage (so it exists).
    pub service_account: &'a Map<String, Value>,
    /// The longest lifetime handed out; longer requests are shortened, as
    /// upstream's `--service-account-max-token-expiration` does.
    pub max_seconds: i64,
}

/// `POST .../serviceaccounts/<sa>/token`.
pub fn token_request(ctx: &TokenRequestContext<'_>, obj: &Value) -> Result<Response, ApiError> {
    let meta = ctx.service_account.get("metadata");
    let field = |k: &str| {
        meta.and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let name = field("name");
    let uid = field("uid");
    let spec = spec_of(obj);
    let audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let requested = spec.get("expirationSeconds").and_then(Value::as_i64);
    // Validate first (422 below the minimum), then cap at the maximum.
    crate::auth::service_account::expiration_seconds(requested)
        .map_err(|e| ApiError(e.to_api_error(&name)))?;
    let expiration_seconds = requested.map(|s| s.min(ctx.max_seconds.max(600)));
    let issued = ctx
        .auth
        .tokens()
        .issue_service_account_token(&ServiceAccountTokenRequest {
            workspace: ctx.workspace.clone(),
            cluster: ctx.cluster.clone(),
            namespace: ctx.namespace.to_owned(),
            name: name.clone(),
            uid,
            audiences,
            expiration_seconds,
        })
        .map_err(|e| ApiError(e.to_api_error(&name)))?;
    let mut out_spec = spec.clone();
    out_spec["audiences"] = json!(issued.audiences);
    out_spec["expirationSeconds"] = json!(issued.expiration_seconds);
    let body = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ctx.namespace, "creationTimestamp": null},
        "spec": out_spec,
        "status": {
            "token": issued.token,
            "expirationTimestamp": issued.expiration_timestamp.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        },
    });
    Ok(created(&body))
}
