//! TokenRequest (`POST .../serviceaccounts/<sa>/token`): tokens bound to one
//! workspace (path and logical cluster id), namespace and ServiceAccount
//! (name and uid). Claims as upstream (`iss`, `sub =
//! system:serviceaccount:<ns>:<sa>`, `aud`, `exp`, `iat`, `nbf`, `jti`,
//! `kubernetes.io{namespace, serviceaccount{name, uid}}`) plus
//! `wsgate.io/workspace{path, clusterID}`.

use chrono::{DateTime, TimeZone, Utc};
use registry::cluster::{ClusterId, WorkspacePath};
use registry::status::ApiError;
use registry::validation::FieldError;

use super::token::{BoundWorkspace, KubernetesClaims, ObjectRefClaim, TokenError, TokenService};

/// Upstream's minimum: 10 minutes.
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// Upstream's default when `spec.expirationSeconds` is unset.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// Upstream's validation maximum (2^32 s).
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

/// A TokenRequest, already resolved: the ServiceAccount exists with `uid`.
#[derive(Clone, Debug)]
pub struct ServiceAccountTokenRequest {
    pub workspace: WorkspacePath,
    pub cluster: ClusterId,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `spec.audiences`; empty means the server's own audiences.
    pub audiences: Vec<String>,
    /// `spec.expirationSeconds`.
    pub expiration_seconds: Option<i64>,
}

/// What goes into the TokenRequest's `status` (and `spec.audiences`).
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub token: String,
    pub expiration_timestamp: DateTime<Utc>,
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceAccountTokenError {
    #[error(
        "spec.expirationSeconds: Invalid value: {0}: may not specify a duration less than 10 minutes"
    )]
    ExpirationTooShort(i64),
    #[error(
        "spec.expirationSeconds: Invalid value: {0}: may not specify a duration larger than 2^32 seconds"
    )]
    ExpirationTooLong(i64),
    #[error(transparent)]
    Token(#[from] TokenError),
}

impl ServiceAccountTokenError {
    /// 422 for invalid input (as upstream:
    /// `TokenRequest.authentication.k8s.io "default" is invalid: ...`), 500 otherwise.
    pub fn to_api_error(&self, service_account: &str) -> ApiError {
        let field =
            |secs: i64, detail: &str| FieldError::invalid("spec.expirationSeconds", secs, detail);
        let fe = match self {
            ServiceAccountTokenError::ExpirationTooShort(s) => {
                field(*s, "may not specify a duration less than 10 minutes")
            }
            ServiceAccountTokenError::ExpirationTooLong(s) => {
                field(*s, "may not specify a duration larger than 2^32 seconds")
            }
            ServiceAccountTokenError::Token(_) => {
                return ApiError::internal("failed to sign the token");
            }
        };
        let mut err = ApiError::invalid(
            "authentication.k8s.io",
            "TokenRequest",
            service_account,
            &[fe],
        );
        // Upstream qualifies the kind in the message only.
        err.message =
            err.message
                .replacen("TokenRequest ", "TokenRequest.authentication.k8s.io ", 1);
        err
    }
}

/// Validates `spec.expirationSeconds` and applies the default.
pub fn expiration_seconds(requested: Option<i64>) -> Result<i64, ServiceAccountTokenError> {
    let secs = requested.unwrap_or(DEFAULT_EXPIRATION_SECONDS);
    if secs < MIN_EXPIRATION_SECONDS {
        return Err(ServiceAccountTokenError::ExpirationTooShort(secs));
    }
    if secs > MAX_EXPIRATION_SECONDS {
        return Err(ServiceAccountTokenError::ExpirationTooLong(secs));
    }
    Ok(secs)
}

impl TokenService {
    pub fn issue_service_account_token(
        &self,
        req: &ServiceAccountTokenRequest,
    ) -> Result<IssuedToken, ServiceAccountTokenError> {
        let secs = expiration_seconds(req.expiration_seconds)?;
        let audiences = if req.audiences.is_empty() {
            self.audiences().to_vec()
        } else {
            req.audiences.clone()
        };
        let sub = format!("system:serviceaccount:{}:{}", req.namespace, req.name);
        let mut claims = self.base_claims(sub, audiences.clone(), secs);
        claims.kubernetes = Some(KubernetesClaims {
            namespace: req.namespace.clone(),
            serviceaccount: ObjectRefClaim {
                name: req.name.clone(),
                uid: req.uid.clone(),
            },
        });
        claims.workspace = Some(BoundWorkspace {
            path: req.workspace.to_string(),
            cluster_id: req.cluster.to_string(),
        });
        let token = self.sign(&claims)?;
        let expiration_timestamp = Utc
            .timestamp_opt(claims.exp, 0)
            .single()
            .unwrap_or_else(Utc::now);
        Ok(IssuedToken {
            token,
            expiration_timestamp,
            audiences,
            expiration_seconds: secs,
        })
    }
}
