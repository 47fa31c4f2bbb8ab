//! wsgate's own tokens: ES256 JWTs signed with [`TokenKeys`], for users
//! (`wsgate token create`, the admin kubeconfig) and for ServiceAccounts
//! (TokenRequest, see `service_account`).
//!
//! User token claims: `iss`, `sub` (user name), `aud`, `exp`, `iat`, `nbf`,
//! `jti`, optional `uid`, `groups`, and `wsgate.io/workspaces` (the scope,
//! see [`super::user`]; required: a token without it is rejected).
//!
//! Verification accepts only ES256 with one of the known keys (picked by
//! `kid`), so `alg: none`, HS256 signed with a public key, and any other
//! algorithm fail before a signature is even computed.

use std::time::Duration;

use chrono::Utc;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use registry::cluster::{ClusterId, WorkspacePath};
use serde::{Deserialize, Deserializer, Serialize};

use super::AuthError;
use super::keys::TokenKeys;
use super::user::{ServiceAccountRef, User, WorkspaceScope};

pub const WORKSPACES_CLAIM: &str = "wsgate.io/workspaces";
pub const WORKSPACE_CLAIM: &str = "wsgate.io/workspace";
pub const DEFAULT_ISSUER: &str = "https://wsgate.local";
pub const DEFAULT_AUDIENCE: &str = "https://wsgate.local";
pub const ADMIN_USER: &str = "wsgate-admin";
/// Clock skew tolerated on `exp` and `nbf`, as upstream's JWT authenticator.
pub const LEEWAY_SECONDS: u64 = 60;

/// The claims of every wsgate-issued token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    #[serde(deserialize_with = "string_or_list")]
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(
        rename = "wsgate.io/workspaces",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub workspaces: Option<Vec<String>>,
    /// ServiceAccount tokens only.
    #[serde(
        rename = "wsgate.io/workspace",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub workspace: Option<BoundWorkspace>,
    /// ServiceAccount tokens only, as upstream.
    #[serde(
        rename = "kubernetes.io",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub kubernetes: Option<KubernetesClaims>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundWorkspace {
    pub path: String,
    #[serde(rename = "clusterID")]
    pub cluster_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: ObjectRefClaim,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRefClaim {
    pub name: String,
    pub uid: String,
}

fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("signing the token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
    #[error("a user token cannot carry a ServiceAccount workspace binding")]
    BoundScope,
    #[error("token lifetime must be positive")]
    Lifetime,
}

/// Who the tokens are for and who issues them.
#[derive(Clone, Debug)]
pub struct TokenConfig {
    pub issuer: String,
    /// Audiences accepted on incoming tokens; the first is put in issued
    /// tokens by default.
    pub audiences: Vec<String>,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            issuer: DEFAULT_ISSUER.to_owned(),
            audiences: vec![DEFAULT_AUDIENCE.to_owned()],
        }
    }
}

/// What a user token should say.
#[derive(Clone, Debug)]
pub struct UserTokenRequest {
    pub name: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub workspaces: WorkspaceScope,
    pub lifetime: Duration,
}

/// Issues and verifies wsgate tokens.
#[derive(Clone, Debug)]
pub struct TokenService {
    keys: TokenKeys,
    config: TokenConfig,
    validation: Validation,
}

impl TokenService {
    pub fn new(keys: TokenKeys, config: TokenConfig) -> Self {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&config.audiences);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        TokenService {
            keys,
            config,
            validation,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    pub fn audiences(&self) -> &[String] {
        &self.config.audiences
    }

    pub fn keys(&self) -> &TokenKeys {
        &self.keys
    }

    pub(crate) fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.keys.signing_kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.keys.signing)?)
    }

    pub(crate) fn base_claims(&self, sub: String, aud: Vec<String>, lifetime_secs: i64) -> Claims {
        let now = Utc::now().timestamp();
        Claims {
            iss: self.config.issuer.clone(),
            sub,
            aud,
            exp: now + lifetime_secs,
            iat: now,
            nbf: now,
            jti: Some(format!("{:032x}", rand::random::<u128>())),
            uid: None,
            groups: Vec::new(),
            workspaces: None,
            workspace: None,
            kubernetes: None,
        }
    }

    /// A token for a user, valid in the workspaces of its scope.
    pub fn issue_user_token(&self, req: &UserTokenRequest) -> Result<String, TokenError> {
        if matches!(req.workspaces, WorkspaceScope::Bound { .. }) {
            return Err(TokenError::BoundScope);
        }
        let secs = i64::try_from(req.lifetime.as_secs()).unwrap_or(i64::MAX / 2);
        if secs <= 0 {
            return Err(TokenError::Lifetime);
        }
        let aud = self.config.audiences.iter().take(1).cloned().collect();
        let mut claims = self.base_claims(req.name.clone(), aud, secs);
        claims.uid = req.uid.clone();
        claims.groups = req.groups.clone();
        claims.workspaces = Some(req.workspaces.to_claim());
        self.sign(&claims)
    }

    /// The token for `admin.kubeconfig`: `system:masters`, every workspace.
    pub fn issue_admin_token(&self, lifetime: Duration) -> Result<String, TokenError> {
        self.issue_user_token(&UserTokenRequest {
            name: ADMIN_USER.to_owned(),
            uid: None,
            groups: vec!["system:masters".to_owned()],
            workspaces: WorkspaceScope::All,
            lifetime,
        })
    }

    /// Verifies signature, algorithm, `iss`, `aud`, `exp` and `nbf`, and
    /// returns the claims.
    pub fn verify_claims(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        if header.alg != Algorithm::ES256 {
            return Err(AuthError::Invalid);
        }
        let candidates: Vec<_> = match &header.kid {
            Some(kid) => self
                .keys
                .verification
                .iter()
                .filter(|k| &k.kid == kid)
                .collect(),
            None => self.keys.verification.iter().collect(),
        };
        let mut last = AuthError::Invalid;
        for k in candidates {
            match jsonwebtoken::decode::<Claims>(token, &k.key, &self.validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {}
                Err(e) => {
                    last = map_jwt_error(&e);
                    break;
                }
            }
        }
        Err(last)
    }

    /// Verifies a wsgate token (user or ServiceAccount) and builds its user.
    pub fn verify(&self, token: &str) -> Result<User, AuthError> {
        let claims = self.verify_claims(token)?;
        match &claims.kubernetes {
            Some(k8s) => service_account_user(&claims, k8s),
            None => {
                // Fail closed: a wsgate user token always states its scope.
                let patterns = claims.workspaces.as_deref().ok_or(AuthError::Invalid)?;
                let scope = WorkspaceScope::parse(patterns).map_err(|_| AuthError::Invalid)?;
                if claims.sub.is_empty() || claims.workspace.is_some() {
                    return Err(AuthError::Invalid);
                }
                let mut user =
                    User::authenticated(claims.sub.clone(), claims.groups.clone(), scope);
                user.uid = claims.uid.clone().unwrap_or_default();
                if let Some(jti) = &claims.jti {
                    user.extra
                        .insert(CREDENTIAL_ID.to_owned(), vec![format!("JTI={jti}")]);
                }
                Ok(user)
            }
        }
    }
}

/// Upstream's extra key naming the credential (for audit).
pub const CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";

fn service_account_user(claims: &Claims, k8s: &KubernetesClaims) -> Result<User, AuthError> {
    let bound = claims.workspace.as_ref().ok_or(AuthError::Invalid)?;
    let path = WorkspacePath::parse(&bound.path).map_err(|_| AuthError::Invalid)?;
    let cluster = ClusterId::parse(&bound.cluster_id).ok_or(AuthError::Invalid)?;
    let ns = &k8s.namespace;
    let name = &k8s.serviceaccount.name;
    if ns.is_empty() || name.is_empty() || ns.contains(':') || name.contains(':') {
        return Err(AuthError::Invalid);
    }
    let username = format!("system:serviceaccount:{ns}:{name}");
    if claims.sub != username {
        return Err(AuthError::Invalid);
    }
    let groups = vec![
        "system:serviceaccounts".to_owned(),
        format!("system:serviceaccounts:{ns}"),
    ];
    let mut user = User::authenticated(username, groups, WorkspaceScope::Bound { path, cluster });
    user.uid = k8s.serviceaccount.uid.clone();
    if let Some(jti) = &claims.jti {
        user.extra
            .insert(CREDENTIAL_ID.to_owned(), vec![format!("JTI={jti}")]);
    }
    user.service_account = Some(ServiceAccountRef {
        namespace: ns.clone(),
        name: name.clone(),
        uid: k8s.serviceaccount.uid.clone(),
    });
    Ok(user)
}

pub(crate) fn map_jwt_error(e: &jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAudience => AuthError::Audience,
        ErrorKind::InvalidIssuer => AuthError::Issuer,
        _ => AuthError::Invalid,
    }
}
