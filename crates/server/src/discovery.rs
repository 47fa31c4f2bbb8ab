//! `/version`, health endpoints, and discovery rendered from the
//! workspace's [`registry::discovery::ApiSet`].

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use registry::discovery::ApiSet;
use serde_json::json;

use crate::error::ApiError;
use crate::negotiate::{Endpoint, Output, negotiate};

/// What `/version` reports: Kubernetes 1.32, so kubectl's version dispatcher
/// and helm's semver checks see a supported server.
pub const GIT_VERSION: &str = "v1.32.4+wsgate";

pub fn version() -> Response {
    bytes_response(
        StatusCode::OK,
        "application/json",
        Bytes::from(
            json!({
                "major": "1",
                "minor": "32",
                "gitVersion": GIT_VERSION,
                "gitCommit": option_env!("WSGATE_GIT_COMMIT").unwrap_or("unknown"),
                "gitTreeState": "clean",
                "buildDate": "1970-01-01T00:00:00Z",
                "goVersion": "go1.23.0",
                "compiler": "gc",
                "platform": format!("{}/{}", std::env::consts::OS, match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a }),
            })
            .to_string(),
        ),
    )
}

pub fn bytes_response(code: StatusCode, content_type: &str, body: Bytes) -> Response {
    let mut r = (code, body).into_response();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

/// Discovery documents carry an ETag (a hash of the body) and answer a
/// matching `If-None-Match` with 304, as kube-apiserver does.
fn discovery_response(headers: &HeaderMap, content_type: &str, body: Bytes) -> Response {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    content_type.hash(&mut h);
    body.hash(&mut h);
    let etag = format!("\"{:016X}\"", h.finish());
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut r = if matches {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(content_type) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        r
    } else {
        bytes_response(StatusCode::OK, content_type, body)
    };
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("public"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// `/api` (core) or `/apis` (named groups), legacy or aggregated.
pub fn root_list(api: &ApiSet, headers: &HeaderMap, core: bool) -> Result<Response, ApiError> {
    let out = negotiate(headers, Endpoint::Discovery)?;
    Ok(match out {
        Output::Aggregated(_) => {
            let body = if core {
                &api.rendered.aggregated_core
            } else {
                &api.rendered.aggregated_groups
            };
            discovery_response(headers, &out.content_type(true), body.clone())
        }
        _ => {
            let body = if core {
                &api.rendered.api_versions
            } else {
                &api.rendered.group_list
            };
            discovery_response(headers, "application/json", body.clone())
        }
    })
}

pub fn group(api: &ApiSet, headers: &HeaderMap, name: &str) -> Result<Response, ApiError> {
    negotiate(headers, Endpoint::Other)?;
    let body = api
        .rendered
        .groups
        .get(name)
        .ok_or_else(ApiError::not_found)?;
    Ok(discovery_response(
        headers,
        "application/json",
        body.clone(),
    ))
}

pub fn resource_list(
    api: &ApiSet,
    headers: &HeaderMap,
    group: &str,
    version: &str,
) -> Result<Response, ApiError> {
    negotiate(headers, Endpoint::Other)?;
    let body = api
        .rendered
        .resource_lists
        .get(&(group.to_owned(), version.to_owned()))
        .ok_or_else(ApiError::not_found)?;
    Ok(discovery_response(
        headers,
        "application/json",
        body.clone(),
    ))
}

pub fn root_paths(api: &ApiSet) -> Response {
    let mut paths = vec!["/api".to_owned(), "/api/v1".to_owned(), "/apis".to_owned()];
    for g in api.groups.iter().filter(|g| !g.name.is_empty()) {
        paths.push(format!("/apis/{}", g.name));
        for v in &g.versions {
            paths.push(format!("/apis/{}/{}", g.name, v.version));
        }
    }
    paths.extend(["/healthz", "/livez", "/openapi/v3", "/readyz", "/version"].map(str::to_owned));
    bytes_response(
        StatusCode::OK,
        "application/json",
        Bytes::from(json!({"paths": paths}).to_string()),
    )
}
