//! External OIDC-style issuers: tokens signed by someone else's keys (PEM
//! public keys or a JWKS file; no discovery over the network), mapped to a
//! user by configured claim names and prefixes, like kube-apiserver's
//! `--oidc-*` flags.
//!
//! Rules that keep an external issuer from impersonating wsgate identities:
//! only asymmetric keys are accepted (an `oct` JWK is refused), the
//! algorithm must belong to the key's family, a username that (after the
//! prefix) starts with `system:` is rejected, and groups that do are dropped.

use std::path::PathBuf;

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::AuthError;
use super::token::{LEEWAY_SECONDS, map_jwt_error};
use super::user::{User, WorkspaceScope};

/// One external issuer, as written in the config file (`[[auth.issuers]]`,
/// snake_case keys like the rest of the file).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExternalIssuerConfig {
    /// Must equal the tokens' `iss`.
    pub issuer: String,
    /// A token must carry at least one of these in `aud`.
    pub audiences: Vec<String>,
    #[serde(default)]
    pub public_key_files: Vec<PathBuf>,
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Claim holding the user name (default `sub`).
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// Prepended to the user name. Unset: `<issuer>#` unless the claim is
    /// `email` (upstream's default); `-` means no prefix.
    #[serde(default)]
    pub username_prefix: Option<String>,
    /// Claim holding the groups (a string or a list), if any.
    #[serde(default)]
    pub groups_claim: Option<String>,
    #[serde(default)]
    pub groups_prefix: String,
    /// Claim holding workspace scope patterns. Unset: the token is valid in
    /// every workspace (RBAC still decides). Set but absent in a token: the
    /// token is valid nowhere.
    #[serde(default)]
    pub workspaces_claim: Option<String>,
}

fn default_username_claim() -> String {
    "sub".to_owned()
}

#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("issuer {issuer}: reading {path}: {source}")]
    Io {
        issuer: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("issuer {issuer}: {what}: {message}")]
    Key {
        issuer: String,
        what: String,
        message: String,
    },
    #[error("issuer {0}: no public keys configured")]
    NoKeys(String),
}

struct IssuerKey {
    kid: Option<String>,
    key: DecodingKey,
    validation: Validation,
}

/// A configured external issuer with its keys loaded.
pub struct ExternalIssuer {
    config: ExternalIssuerConfig,
    keys: Vec<IssuerKey>,
}

impl std::fmt::Debug for ExternalIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalIssuer")
            .field("issuer", &self.config.issuer)
            .field("keys", &self.keys.len())
            .finish()
    }
}

const EC: &[Algorithm] = &[Algorithm::ES256, Algorithm::ES384];
const RSA: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
const ED: &[Algorithm] = &[Algorithm::EdDSA];

impl ExternalIssuer {
    /// Loads the key files named in `config`.
    pub fn load(config: ExternalIssuerConfig) -> Result<Self, IssuerError> {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| IssuerError::Io {
                issuer: config.issuer.clone(),
                path: path.clone(),
                source,
            })
        };
        let pems = config
            .public_key_files
            .iter()
            .map(read)
            .collect::<Result<Vec<_>, _>>()?;
        let jwks = config.jwks_file.as_ref().map(read).transpose()?;
        let pem_refs: Vec<&[u8]> = pems.iter().map(Vec::as_slice).collect();
        Self::from_parts(config.clone(), &pem_refs, jwks.as_deref())
    }

    /// Builds an issuer from key material already in memory.
    pub fn from_parts(
        config: ExternalIssuerConfig,
        pems: &[&[u8]],
        jwks: Option<&[u8]>,
    ) -> Result<Self, IssuerError> {
        let key_err = |what: &str, message: String| IssuerError::Key {
            issuer: config.issuer.clone(),
            what: what.to_owned(),
            message,
        };
        let mut keys = Vec::new();
        for (i, pem) in pems.iter().enumerate() {
            let key = DecodingKey::from_ec_pem(pem)
                .map(|k| (k, EC))
                .or_else(|_| DecodingKey::from_rsa_pem(pem).map(|k| (k, RSA)))
                .or_else(|_| DecodingKey::from_ed_pem(pem).map(|k| (k, ED)))
                .map_err(|e| key_err(&format!("public key {}", i + 1), e.to_string()))?;
            keys.push((None, key.0, key.1));
        }
        if let Some(jwks) = jwks {
            let set: JwkSet =
                serde_json::from_slice(jwks).map_err(|e| key_err("JWKS", e.to_string()))?;
            for jwk in &set.keys {
                // Symmetric (`oct`) keys would let anyone holding the
                // "public" key sign: skip them.
                let algorithms = match &jwk.algorithm {
                    AlgorithmParameters::EllipticCurve(_) => EC,
                    AlgorithmParameters::RSA(_) => RSA,
                    AlgorithmParameters::OctetKeyPair(_) => ED,
                    _ => continue,
                };
                let key =
                    DecodingKey::from_jwk(jwk).map_err(|e| key_err("JWKS key", e.to_string()))?;
                keys.push((jwk.common.key_id.clone(), key, algorithms));
            }
        }
        let keys: Vec<IssuerKey> = keys
            .into_iter()
            .map(|(kid, key, algorithms)| {
                let mut validation = Validation::new(algorithms[0]);
                validation.algorithms = algorithms.to_vec();
                validation.set_issuer(&[&config.issuer]);
                validation.set_audience(&config.audiences);
                validation.set_required_spec_claims(&["exp", "iss", "aud"]);
                validation.validate_nbf = true;
                validation.leeway = LEEWAY_SECONDS;
                IssuerKey {
                    kid,
                    key,
                    validation,
                }
            })
            .collect();
        if keys.is_empty() {
            return Err(IssuerError::NoKeys(config.issuer));
        }
        Ok(ExternalIssuer { config, keys })
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// Verifies a token from this issuer and maps its claims to a user.
    pub fn verify(&self, token: &str) -> Result<User, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        let mut last = AuthError::Invalid;
        let mut claims = None;
        for k in &self.keys {
            if header.kid.is_some() && k.kid.is_some() && header.kid != k.kid {
                continue;
            }
            if !k.validation.algorithms.contains(&header.alg) {
                continue;
            }
            match jsonwebtoken::decode::<Map<String, Value>>(token, &k.key, &k.validation) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        jsonwebtoken::errors::ErrorKind::InvalidSignature
                            | jsonwebtoken::errors::ErrorKind::InvalidAlgorithm
                            | jsonwebtoken::errors::ErrorKind::InvalidEcdsaKey
                            | jsonwebtoken::errors::ErrorKind::InvalidRsaKey(_)
                    ) => {}
                Err(e) => {
                    last = map_jwt_error(&e);
                    break;
                }
            }
        }
        let claims = claims.ok_or(last)?;
        self.user_from_claims(&claims)
    }

    fn user_from_claims(&self, claims: &Map<String, Value>) -> Result<User, AuthError> {
        let c = &self.config;
        let raw = claims
            .get(&c.username_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(AuthError::Invalid)?;
        if c.username_claim == "email"
            && claims
                .get("email_verified")
                .is_some_and(|v| v != &Value::Bool(true))
        {
            return Err(AuthError::Invalid);
        }
        let prefix = match c.username_prefix.as_deref() {
            Some("-") => String::new(),
            Some(p) => p.to_owned(),
            None if c.username_claim == "email" => String::new(),
            None => format!("{}#", c.issuer),
        };
        let name = format!("{prefix}{raw}");
        if name.starts_with("system:") {
            return Err(AuthError::Invalid);
        }
        let groups: Vec<String> = match c.groups_claim.as_ref().and_then(|g| claims.get(g)) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
        .into_iter()
        .map(|g| format!("{}{g}", c.groups_prefix))
        .filter(|g| !g.starts_with("system:"))
        .collect();
        let scope = match &c.workspaces_claim {
            None => WorkspaceScope::All,
            Some(claim) => {
                let patterns: Vec<String> = match claims.get(claim) {
                    Some(Value::Array(items)) => items
                        .iter()
                        .map(|v| v.as_str().map(str::to_owned).ok_or(AuthError::Invalid))
                        .collect::<Result<_, _>>()?,
                    Some(Value::String(s)) => vec![s.clone()],
                    None => Vec::new(),
                    Some(_) => return Err(AuthError::Invalid),
                };
                WorkspaceScope::parse(&patterns).map_err(|_| AuthError::Invalid)?
            }
        };
        Ok(User::authenticated(name, groups, scope))
    }
}
