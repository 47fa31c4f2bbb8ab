//! Request bodies: read with the configured limit (`limits.max_body_bytes`,
//! 3 MiB by default) and decoded by Content-Type (JSON, YAML, Kubernetes
//! protobuf; the patch media types for PATCH).

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use registry::status::Reason;
use registry::store::PatchKind;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::ApiError;

/// Kubernetes' request body limit, the default of `limits.max_body_bytes`.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The limit in force. One process serves one configuration, so the limit is
/// process-wide and set once at startup (`serve`) rather than threaded
/// through every handler that reads a body.
static LIMIT: AtomicUsize = AtomicUsize::new(MAX_BODY_BYTES);

/// Sets the request body limit (from `limits.max_body_bytes`).
pub fn set_limit(bytes: u64) {
    let bytes = usize::try_from(bytes).unwrap_or(usize::MAX).max(1);
    LIMIT.store(bytes, Ordering::Relaxed);
}

/// The request body limit in force.
pub fn limit() -> usize {
    LIMIT.load(Ordering::Relaxed)
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        Reason::RequestEntityTooLarge,
        format!("the request body is larger than the limit of {limit} bytes"),
    )
}

pub async fn read(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let limit = limit();
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // The only way a limited read of a well-formed body fails is the limit.
        tracing::debug!(error = %e, "reading request body failed");
        too_large(limit)
    })
}

/// The media type without parameters, lowercased.
fn essence(headers: &HeaderMap) -> Option<String> {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|s| !s.is_empty())
}

fn unsupported(media: &str, allowed: &str) -> ApiError {
    ApiError::new(
        Reason::UnsupportedMediaType,
        format!(
            "the body of the request was in an unknown format - accepted media types include: {allowed}; got {media:?}"
        ),
    )
}

pub fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("error decoding request body as JSON: {e}")))
}

pub fn parse_yaml(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_saphyr::from_slice::<Value>(bytes)
        .map_err(|e| ApiError::bad_request(format!("error decoding request body as YAML: {e}")))
}

/// Decodes an object body (create, update, delete options).
pub fn decode_object(headers: &HeaderMap, bytes: &[u8]) -> Result<Value, ApiError> {
    match essence(headers).as_deref() {
        None | Some("application/json") => parse_json(bytes),
        Some("application/yaml") | Some("application/x-yaml") | Some("text/yaml") => {
            parse_yaml(bytes)
        }
        Some("application/vnd.kubernetes.protobuf") => {
            crate::protobuf::decode(bytes).map_err(|e| ApiError::bad_request(e.to_string()))
        }
        Some(other) => Err(unsupported(
            other,
            "application/json, application/yaml, application/vnd.kubernetes.protobuf",
        )),
    }
}

/// Decodes a PATCH body and its kind.
pub fn decode_patch(headers: &HeaderMap, bytes: &[u8]) -> Result<(PatchKind, Value), ApiError> {
    let media = essence(headers).unwrap_or_default();
    let kind = match media.as_str() {
        "application/json-patch+json" => PatchKind::Json,
        "application/merge-patch+json" => PatchKind::Merge,
        "application/strategic-merge-patch+json" => PatchKind::Strategic,
        "application/apply-patch+yaml" | "application/apply-patch+cbor"
            if media.ends_with("yaml") =>
        {
            PatchKind::Apply
        }
        other => {
            return Err(unsupported(
                other,
                "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json",
            ));
        }
    };
    let value = if kind == PatchKind::Apply {
        // Apply bodies are YAML, and JSON is YAML.
        parse_json(bytes).or_else(|_| parse_yaml(bytes))?
    } else {
        parse_json(bytes)?
    };
    Ok((kind, value))
}
