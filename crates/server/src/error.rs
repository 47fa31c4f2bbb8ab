//! The only writer of failure `Status` bodies: every error the server
//! answers with, from a bad path to a storage outage, goes through
//! [`ApiError`]'s `IntoResponse`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use registry::status::Reason;

/// A registry `ApiError` made answerable over HTTP.
#[derive(Debug)]
pub struct ApiError(pub registry::ApiError);

impl From<registry::ApiError> for ApiError {
    fn from(e: registry::ApiError) -> Self {
        ApiError(e)
    }
}

impl ApiError {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        ApiError(registry::ApiError::new(reason, message))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Reason::BadRequest, message)
    }

    pub fn not_found() -> Self {
        ApiError(registry::ApiError::route_not_found())
    }

    pub fn method_not_allowed() -> Self {
        ApiError(registry::ApiError::method_not_allowed())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let code = StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if code.is_server_error() {
            tracing::warn!(reason = e.reason.as_str(), message = %e.message, "request failed");
        }
        let body = serde_json::to_vec(&e.to_status()).unwrap_or_default();
        let mut resp = (code, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = e.retry_after()
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}
