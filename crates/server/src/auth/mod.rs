//! Authentication: a bearer token to a [`User`].
//!
//! Tokens are JWTs. The unverified `iss` claim picks the verifier: wsgate's
//! own ([`TokenService`]: user tokens and ServiceAccount tokens, ES256 with
//! the keys in `<data-dir>/pki/`), or one of the configured
//! [`ExternalIssuer`]s. Anything else is 401. Error texts are safe to show
//! and never contain the token.

pub mod issuers;
pub mod keys;
pub mod kubeconfig;
pub mod service_account;
pub mod token;
pub mod user;

#[cfg(test)]
mod tests;

use registry::cluster::{ClusterId, WorkspacePath};
use registry::status::{ApiError, Reason};
use serde::Deserialize;

pub use issuers::{ExternalIssuer, ExternalIssuerConfig, IssuerError};
pub use keys::{KeyError, TokenKeys};
pub use service_account::{IssuedToken, ServiceAccountTokenError, ServiceAccountTokenRequest};
pub use token::{Claims, TokenConfig, TokenError, TokenService, UserTokenRequest};
pub use user::{ScopePattern, ServiceAccountRef, User, WorkspaceScope};

/// Why a request is not authenticated. Every variant is a 401.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials were presented")]
    Missing,
    #[error("the Authorization header is not a bearer token")]
    Malformed,
    #[error("the token is invalid")]
    Invalid,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is not meant for this server")]
    Audience,
    #[error("the token's issuer is not trusted")]
    Issuer,
    #[error("the token is not valid for this workspace")]
    WorkspaceNotAllowed,
}

impl AuthError {
    /// The 401 `Status`. Its message is upstream's bare `Unauthorized`, so
    /// nothing about the token or other workspaces leaks; log `self` for
    /// the detail.
    pub fn to_api_error(&self) -> ApiError {
        ApiError::new(Reason::Unauthorized, "Unauthorized")
    }
}

/// Extracts the token from `Authorization: Bearer <token>`.
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    let value = authorization.ok_or(AuthError::Missing)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

#[derive(Deserialize)]
struct IssuerOnly {
    iss: Option<String>,
}

/// All token verifiers of the server.
#[derive(Debug)]
pub struct Authenticator {
    tokens: TokenService,
    external: Vec<std::sync::Arc<ExternalIssuer>>,
}

impl Authenticator {
    pub fn new(tokens: TokenService, external: Vec<ExternalIssuer>) -> Self {
        Authenticator {
            tokens,
            external: external.into_iter().map(std::sync::Arc::new).collect(),
        }
    }

    /// Starts fetching the JWKS of every issuer with a `jwks_url`: now,
    /// then every `jwks_refresh` (every 30 s while fetches fail), and early
    /// (at most every [`issuers::MIN_REFETCH`]) when a token names a key id
    /// the JWKS lacks. Needs a tokio runtime; the tasks end with the process.
    pub fn spawn_jwks_refresh(&self) {
        for issuer in self.external.iter().filter(|i| i.jwks_url().is_some()) {
            let issuer = issuer.clone();
            tokio::spawn(async move {
                loop {
                    let wait = match issuer.refresh().await {
                        Ok(n) => {
                            tracing::info!(issuer = issuer.issuer(), keys = n, "JWKS fetched");
                            issuer.jwks_refresh()
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "JWKS fetch failed; keeping the current keys");
                            issuer
                                .jwks_refresh()
                                .min(std::time::Duration::from_secs(30))
                        }
                    };
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = issuer.unknown_kid_seen() => {
                            // Rate limit: a stream of bogus kids costs one
                            // fetch per interval.
                            tokio::time::sleep(issuers::MIN_REFETCH).await;
                        }
                    }
                }
            });
        }
    }

    pub fn tokens(&self) -> &TokenService {
        &self.tokens
    }

    /// The user behind an `Authorization` header value. `Err(Missing)` for
    /// no header: the caller decides whether to continue as
    /// [`User::anonymous`] (only for `/version`, `/healthz`, ... ).
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<User, AuthError> {
        let token = bearer_token(authorization)?;
        // Routing only: the chosen verifier checks `iss` again with the signature.
        let iss = jsonwebtoken::dangerous::insecure_decode::<IssuerOnly>(token)
            .map_err(|_| AuthError::Invalid)?
            .claims
            .iss
            .ok_or(AuthError::Invalid)?;
        if iss == self.tokens.issuer() {
            return self.tokens.verify(token);
        }
        match self.external.iter().find(|i| i.issuer() == iss) {
            Some(issuer) => issuer.verify(token),
            None => Err(AuthError::Issuer),
        }
    }

    /// [`Self::authenticate`] plus the workspace scope check, for a request
    /// to `path` (resolved to `cluster`). A token used outside its scope is
    /// a 401, like a token for another audience: it is not a credential here.
    pub fn authenticate_in(
        &self,
        authorization: Option<&str>,
        path: &WorkspacePath,
        cluster: &ClusterId,
    ) -> Result<User, AuthError> {
        let user = self.authenticate(authorization)?;
        if user.workspaces.allows(path, cluster) {
            Ok(user)
        } else {
            Err(AuthError::WorkspaceNotAllowed)
        }
    }
}
