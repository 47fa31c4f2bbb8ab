//! Kubernetes `Status` errors, and the one place where storage errors become
//! them (one `interpret_*` function per verb, like upstream
//! `storage/errors`). Reasons and codes come from the [`Reason`] table.

use std::fmt;

use serde_json::{Map, Value, json};

use crate::validation::FieldError;

/// `metav1.StatusReason`, each with its one HTTP code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    NotAcceptable,
    AlreadyExists,
    Conflict,
    Expired,
    RequestEntityTooLarge,
    UnsupportedMediaType,
    Invalid,
    TooManyRequests,
    InternalError,
    ServiceUnavailable,
    Timeout,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadRequest => "BadRequest",
            Reason::Unauthorized => "Unauthorized",
            Reason::Forbidden => "Forbidden",
            Reason::NotFound => "NotFound",
            Reason::MethodNotAllowed => "MethodNotAllowed",
            Reason::NotAcceptable => "NotAcceptable",
            Reason::AlreadyExists => "AlreadyExists",
            Reason::Conflict => "Conflict",
            Reason::Expired => "Expired",
            Reason::RequestEntityTooLarge => "RequestEntityTooLarge",
            Reason::UnsupportedMediaType => "UnsupportedMediaType",
            Reason::Invalid => "Invalid",
            Reason::TooManyRequests => "TooManyRequests",
            Reason::InternalError => "InternalError",
            Reason::ServiceUnavailable => "ServiceUnavailable",
            Reason::Timeout => "Timeout",
        }
    }

    pub fn code(self) -> u16 {
        match self {
            Reason::BadRequest => 400,
            Reason::Unauthorized => 401,
            Reason::Forbidden => 403,
            Reason::NotFound => 404,
            Reason::MethodNotAllowed => 405,
            Reason::NotAcceptable => 406,
            Reason::AlreadyExists | Reason::Conflict => 409,
            Reason::Expired => 410,
            Reason::RequestEntityTooLarge => 413,
            Reason::UnsupportedMediaType => 415,
            Reason::Invalid => 422,
            Reason::TooManyRequests => 429,
            Reason::InternalError => 500,
            Reason::ServiceUnavailable => 503,
            Reason::Timeout => 504,
        }
    }
}

/// A group-qualified resource as it appears in messages: `configmaps`,
/// `deployments.apps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QualifiedResource {
    pub group: String,
    pub resource: String,
}

impl QualifiedResource {
    pub fn new(group: &str, resource: &str) -> Self {
        QualifiedResource {
            group: group.to_owned(),
            resource: resource.to_owned(),
        }
    }
}

impl fmt::Display for QualifiedResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// `metav1.StatusDetails`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatusDetails {
    pub name: Option<String>,
    pub group: Option<String>,
    /// The plural resource, except for Invalid where it is the Kind.
    pub kind: Option<String>,
    pub uid: Option<String>,
    pub causes: Vec<Value>,
    pub retry_after_seconds: Option<u64>,
}

/// An API error: everything needed to write a failure `Status`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{reason:?}: {message}")]
pub struct ApiError {
    pub reason: Reason,
    pub message: String,
    pub details: Option<Box<StatusDetails>>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        ApiError {
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn code(&self) -> u16 {
        self.reason.code()
    }

    #[must_use]
    pub fn with_details(mut self, details: StatusDetails) -> Self {
        self.details = Some(Box::new(details));
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Reason::BadRequest, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Reason::InternalError, message)
    }

    fn with_resource(reason: Reason, qr: &QualifiedResource, name: &str, message: String) -> Self {
        ApiError {
            reason,
            message,
            details: Some(Box::new(StatusDetails {
                name: (!name.is_empty()).then(|| name.to_owned()),
                group: Some(qr.group.clone()),
                kind: Some(qr.resource.clone()),
                ..Default::default()
            })),
        }
    }

    pub fn not_found(qr: &QualifiedResource, name: &str) -> Self {
        Self::with_resource(
            Reason::NotFound,
            qr,
            name,
            format!("{qr} \"{name}\" not found"),
        )
    }

    pub fn already_exists(qr: &QualifiedResource, name: &str) -> Self {
        Self::with_resource(
            Reason::AlreadyExists,
            qr,
            name,
            format!("{qr} \"{name}\" already exists"),
        )
    }

    pub fn conflict(qr: &QualifiedResource, name: &str, why: &str) -> Self {
        Self::with_resource(
            Reason::Conflict,
            qr,
            name,
            format!("Operation cannot be fulfilled on {qr} \"{name}\": {why}"),
        )
    }

    /// The optimistic-concurrency conflict.
    pub fn modified(qr: &QualifiedResource, name: &str) -> Self {
        Self::conflict(
            qr,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn forbidden(qr: &QualifiedResource, name: &str, why: &str) -> Self {
        let message = if name.is_empty() {
            format!("{qr} is forbidden: {why}")
        } else {
            format!("{qr} \"{name}\" is forbidden: {why}")
        };
        Self::with_resource(Reason::Forbidden, qr, name, message)
    }

    /// 422 with causes; `details.kind` is the Kind, as upstream.
    pub fn invalid(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> Self {
        let list = match errors {
            [one] => one.to_string(),
            many => format!(
                "[{}]",
                many.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        // Upstream names the group-qualified kind (`Deployment.apps`).
        let qualified = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        ApiError {
            reason: Reason::Invalid,
            message: format!("{qualified} \"{name}\" is invalid: {list}"),
            details: Some(Box::new(StatusDetails {
                name: (!name.is_empty()).then(|| name.to_owned()),
                group: Some(group.to_owned()),
                kind: Some(kind.to_owned()),
                causes: errors.iter().map(FieldError::cause).collect(),
                ..Default::default()
            })),
        }
    }

    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(Reason::Expired, message)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            Reason::MethodNotAllowed,
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn route_not_found() -> Self {
        Self::new(
            Reason::NotFound,
            "the server could not find the requested resource",
        )
    }

    pub fn too_large_resource_version(requested: i64, current: i64) -> Self {
        ApiError {
            reason: Reason::Timeout,
            message: format!("Too large resource version: {requested}, current: {current}"),
            details: Some(Box::new(StatusDetails {
                causes: vec![
                    json!({"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}),
                ],
                retry_after_seconds: Some(1),
                ..Default::default()
            })),
        }
    }

    pub fn retry_after(&self) -> Option<u64> {
        self.details.as_ref().and_then(|d| d.retry_after_seconds)
    }

    /// The failure `Status` object.
    pub fn to_status(&self) -> Value {
        let mut s = Map::new();
        s.insert("kind".into(), "Status".into());
        s.insert("apiVersion".into(), "v1".into());
        s.insert("metadata".into(), json!({}));
        s.insert("status".into(), "Failure".into());
        s.insert("message".into(), self.message.clone().into());
        s.insert("reason".into(), self.reason.as_str().into());
        if let Some(d) = &self.details {
            s.insert("details".into(), details_json(d));
        }
        s.insert("code".into(), self.code().into());
        Value::Object(s)
    }
}

fn details_json(d: &StatusDetails) -> Value {
    let mut m = Map::new();
    if let Some(n) = &d.name {
        m.insert("name".into(), n.clone().into());
    }
    if let Some(g) = d.group.as_ref().filter(|g| !g.is_empty()) {
        m.insert("group".into(), g.clone().into());
    }
    if let Some(k) = &d.kind {
        m.insert("kind".into(), k.clone().into());
    }
    if let Some(u) = &d.uid {
        m.insert("uid".into(), u.clone().into());
    }
    if !d.causes.is_empty() {
        m.insert("causes".into(), Value::Array(d.causes.clone()));
    }
    if let Some(r) = d.retry_after_seconds {
        m.insert("retryAfterSeconds".into(), r.into());
    }
    Value::Object(m)
}

/// The success `Status` returned by deletes of types that do not return the
/// object.
pub fn success_status(qr: &QualifiedResource, name: &str, uid: Option<&str>) -> Value {
    let mut details = Map::new();
    details.insert("name".into(), name.into());
    if !qr.group.is_empty() {
        details.insert("group".into(), qr.group.clone().into());
    }
    details.insert("kind".into(), qr.resource.clone().into());
    if let Some(uid) = uid {
        details.insert("uid".into(), uid.into());
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

/// Errors every verb maps the same way.
fn interpret_common(err: storage::Error, qr: &QualifiedResource, name: &str) -> ApiError {
    match err {
        storage::Error::NotFound { .. } => ApiError::not_found(qr, name),
        storage::Error::AlreadyExists { .. } => ApiError::already_exists(qr, name),
        storage::Error::Conflict { .. } => ApiError::modified(qr, name),
        storage::Error::Compacted { compact_revision } => ApiError::expired(format!(
            "The resourceVersion for the provided list is too old. Oldest available is {compact_revision}"
        )),
        storage::Error::FutureRevision { requested, current } => {
            ApiError::too_large_resource_version(requested, current)
        }
        storage::Error::TooLarge { size, limit } => ApiError::new(
            Reason::RequestEntityTooLarge,
            format!("Request entity too large: object is {size} bytes, limit is {limit}"),
        ),
        storage::Error::Unavailable {
            message,
            retry_after,
            ..
        } => ApiError {
            reason: Reason::ServiceUnavailable,
            message: format!("storage is unavailable: {message}"),
            details: Some(Box::new(StatusDetails {
                retry_after_seconds: Some(retry_after.map_or(1, |d| d.as_secs().max(1))),
                ..Default::default()
            })),
        },
        other => {
            tracing::error!(error = %other, resource = %qr, name, "storage error");
            ApiError::internal(format!("Internal error occurred: {other}"))
        }
    }
}

pub fn interpret_get_error(err: storage::Error, qr: &QualifiedResource, name: &str) -> ApiError {
    interpret_common(err, qr, name)
}

pub fn interpret_list_error(err: storage::Error, qr: &QualifiedResource) -> ApiError {
    interpret_common(err, qr, "")
}

pub fn interpret_create_error(err: storage::Error, qr: &QualifiedResource, name: &str) -> ApiError {
    interpret_common(err, qr, name)
}

pub fn interpret_update_error(err: storage::Error, qr: &QualifiedResource, name: &str) -> ApiError {
    interpret_common(err, qr, name)
}

pub fn interpret_delete_error(err: storage::Error, qr: &QualifiedResource, name: &str) -> ApiError {
    interpret_common(err, qr, name)
}

/// A compacted watch start, reported inside the stream (HTTP 200).
pub fn watch_expired(requested: i64, compacted: i64) -> ApiError {
    ApiError::expired(format!(
        "too old resource version: {requested} ({compacted})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_status() {
        let e = ApiError::not_found(&QualifiedResource::new("apps", "deployments"), "x");
        let s = e.to_status();
        assert_eq!(s["message"], "deployments.apps \"x\" not found");
        assert_eq!(s["code"], 404);
        assert_eq!(s["details"]["kind"], "deployments");
        assert_eq!(s["details"]["group"], "apps");
    }
}
