//! `/openapi/v3`, `/openapi/v3/<gv path>` and `/openapi/v2` for a workspace.
//! The documents and their caching headers come from
//! [`registry::openapi`] (built once per distinct API set and shared across
//! workspaces); this module only picks the document, negotiates the v2
//! encoding, sets the headers and answers `If-None-Match` with 304.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use registry::discovery::ApiSet;
use registry::openapi::{Document, OpenApiCache, OpenApiError, V2_PROTOBUF_ACCEPT};

use crate::error::ApiError;

pub struct OpenApi {
    cache: OpenApiCache,
}

impl OpenApi {
    /// Builds the documents of `api` now, so the first kubectl does not wait.
    pub fn new(api: &Arc<ApiSet>) -> Self {
        let cache = OpenApiCache::new(crate::discovery::GIT_VERSION);
        let started = std::time::Instant::now();
        // The built-in set's v2 too (kubectl's client-side validation).
        let built = cache.get(api).and_then(|d| {
            d.v2(api, false)?;
            Ok(d)
        });
        match built {
            Ok(docs) => tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                bytes = docs.size(),
                schemas = registry::openapi::schema_source().unwrap_or_default(),
                "OpenAPI documents built"
            ),
            Err(e) => tracing::error!(error = %e, "building the OpenAPI documents"),
        }
        OpenApi { cache }
    }

    /// The documents of `api`, built once per distinct set (a workspace's
    /// CRDs bring their schemas with the set).
    fn docs(&self, api: &Arc<ApiSet>) -> Result<Arc<registry::openapi::OpenApi>, ApiError> {
        self.cache
            .get_with(api, || api.custom_schemas.clone())
            .map_err(internal)
    }

    /// `GET /openapi/v3`.
    pub fn v3_root(&self, api: &Arc<ApiSet>, headers: &HeaderMap) -> Result<Response, ApiError> {
        let docs = self.docs(api)?;
        Ok(respond(docs.v3_root(), None, headers))
    }

    /// `GET /openapi/v3/<gv path>[?hash=...]`.
    pub fn v3_document(
        &self,
        api: &Arc<ApiSet>,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Response, ApiError> {
        let docs = self.docs(api)?;
        let doc = docs.v3_document(path).ok_or_else(ApiError::not_found)?;
        let hash = query.and_then(|q| {
            crate::request_info::form_pairs(q)
                .into_iter()
                .find(|(k, _)| k == "hash")
                .map(|(_, v)| v)
        });
        Ok(respond(doc, hash.as_deref(), headers))
    }

    /// `GET /openapi/v2`: gnostic protobuf when asked for, JSON otherwise.
    pub fn v2(&self, api: &Arc<ApiSet>, headers: &HeaderMap) -> Result<Response, ApiError> {
        let docs = self.docs(api)?;
        let protobuf = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.split(';').next().unwrap_or_default().trim())
            .any(|t| V2_PROTOBUF_ACCEPT.contains(&t));
        let doc = docs.v2(api, protobuf).map_err(internal)?;
        Ok(respond(doc, None, headers))
    }
}

fn internal(e: OpenApiError) -> ApiError {
    ApiError(registry::ApiError::internal(e.to_string()))
}

fn respond(doc: &Document, hash: Option<&str>, req: &HeaderMap) -> Response {
    let not_modified = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| doc.not_modified(v));
    let mut resp = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, doc.body.clone()).into_response()
    };
    for (name, value) in doc.headers(hash, chrono::Utc::now()) {
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(HeaderName::from_static(name), v);
        }
    }
    if not_modified {
        resp.headers_mut().remove(header::CONTENT_TYPE);
    }
    resp
}
