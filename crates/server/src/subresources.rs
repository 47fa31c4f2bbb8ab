//! Requests answered by the registry's special-purpose handlers rather than
//! the generic verbs: pod binding, eviction, ephemeral containers, the
//! connect subresources (log, exec, attach, portforward, proxy)
//! of pods, nodes and services, the `bindings` resource and
//! `componentstatuses`. See `registry::builtin::pods` for what each answers.

use axum::http::StatusCode;
use registry::builtin::pods::{CONNECT, POD_UPDATE_SUBRESOURCES, PodPartBody};
use registry::cluster::ClusterId;
use registry::options::WriteOptions;
use registry::store::PatchKind;
use serde_json::Value;

use crate::AppState;
use crate::error::ApiError;
use crate::request_info::{ResourceRequest, Verb};

/// What the caller renders.
pub enum Reply {
    /// A `Status` (or other fixed-kind body), rendered as is.
    Status(StatusCode, Value),
    /// An object of the requested resource.
    Object(StatusCode, Value),
    /// A list of the requested resource.
    List(Value),
    /// An empty `text/plain` body (the log of a pod that never ran).
    EmptyText,
}

/// Whether `req` is one of the requests this module answers.
pub fn handles(req: &ResourceRequest) -> bool {
    if !req.group.is_empty() || req.version != "v1" {
        return false;
    }
    match (req.resource.as_str(), req.subresource.as_deref()) {
        ("pods", Some(s)) => {
            CONNECT.contains(&s)
                || s == "binding"
                || s == "eviction"
                || POD_UPDATE_SUBRESOURCES.contains(&s)
        }
        ("nodes" | "services", Some("proxy")) => true,
        ("bindings", None) => req.verb == Verb::Create,
        ("componentstatuses", None) => matches!(req.verb, Verb::Get | Verb::List),
        _ => false,
    }
}

/// The decoded request body, when the request has one.
pub enum Input {
    None,
    Object(Value),
    Patch(PatchKind, Value),
}

pub struct Call<'a> {
    pub app: &'a AppState,
    pub cluster: &'a ClusterId,
    pub namespace: Option<&'a str>,
    pub req: &'a ResourceRequest,
    pub container: Option<&'a str>,
    pub wopts: WriteOptions,
    pub input: Input,
}

pub async fn handle(call: Call<'_>) -> Result<Reply, ApiError> {
    let reg = &call.app.registry;
    let req = call.req;
    let ns = call.namespace.unwrap_or("");
    let name = req.name.as_deref().unwrap_or("");
    let sub = req.subresource.as_deref().unwrap_or("");
    match (req.resource.as_str(), sub) {
        ("componentstatuses", _) => match req.name.as_deref() {
            Some(n) => Ok(Reply::Object(
                StatusCode::OK,
                reg.component_status(n).await?,
            )),
            None => Ok(Reply::List(reg.component_statuses().await)),
        },
        ("bindings", _) => {
            let Input::Object(b) = &call.input else {
                return Err(ApiError::bad_request("a Binding body is required"));
            };
            let s = reg.bind_pod(call.cluster, ns, None, b, &call.wopts).await?;
            Ok(Reply::Status(StatusCode::CREATED, s))
        }
        ("pods", "binding") => {
            let Input::Object(b) = &call.input else {
                return Err(ApiError::bad_request("a Binding body is required"));
            };
            let s = reg
                .bind_pod(call.cluster, ns, Some(name), b, &call.wopts)
                .await?;
            Ok(Reply::Status(StatusCode::CREATED, s))
        }
        ("pods", "eviction") => {
            let Input::Object(e) = &call.input else {
                return Err(ApiError::bad_request("an Eviction body is required"));
            };
            let (code, s) = reg
                .evict_pod(call.cluster, ns, name, e, call.wopts.dry_run)
                .await?;
            let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Ok(Reply::Status(code, s))
        }
        ("pods", s) if POD_UPDATE_SUBRESOURCES.contains(&s) => {
            let obj = match (&call.input, req.verb) {
                (_, Verb::Get) => {
                    reg.resource("", "v1", "pods")
                        .ok_or_else(ApiError::not_found)?
                        .get(call.cluster, Some(ns), name)
                        .await?
                }
                (Input::Object(Value::Object(o)), Verb::Update) => {
                    reg.update_pod_part(
                        call.cluster,
                        ns,
                        name,
                        s,
                        PodPartBody::Replace(o),
                        &call.wopts,
                    )
                    .await?
                }
                (Input::Patch(kind, p), Verb::Patch) => {
                    reg.update_pod_part(
                        call.cluster,
                        ns,
                        name,
                        s,
                        PodPartBody::Patch(*kind, p),
                        &call.wopts,
                    )
                    .await?
                }
                _ => return Err(ApiError::bad_request("the request body must be a Pod")),
            };
            Ok(Reply::Object(StatusCode::OK, Value::Object(obj)))
        }
        ("pods", s) => match reg
            .pod_connect(call.cluster, ns, name, s, call.container)
            .await?
        {
            registry::builtin::pods::ConnectAnswer::EmptyLog => Ok(Reply::EmptyText),
        },
        ("nodes", _) => {
            reg.node_proxy(call.cluster, name).await?;
            Ok(Reply::EmptyText)
        }
        ("services", _) => {
            reg.service_proxy(call.cluster, ns, name).await?;
            Ok(Reply::EmptyText)
        }
        _ => Err(ApiError::not_found()),
    }
}
