//! External OIDC-style issuers: tokens signed by someone else's keys (PEM
//! public keys, a JWKS file, or a JWKS fetched over HTTPS from `jwks_url`
//! every `jwks_refresh`; no OIDC discovery), mapped to a user by configured
//! claim names and prefixes, like kube-apiserver's `--oidc-*` flags.
//!
//! Rules that keep an external issuer from impersonating wsgate identities:
//! only asymmetric keys are accepted (an `oct` JWK is refused), the
//! algorithm must belong to the key's family, a username that (after the
//! prefix) starts with `system:` is rejected, and groups that do are dropped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

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
    /// A JWKS fetched over HTTPS at start and every `jwks_refresh` (keys
    /// from files stay valid too). Until the first fetch succeeds, tokens
    /// of this issuer that need its keys are 401.
    #[serde(default)]
    pub jwks_url: Option<String>,
    #[serde(
        default = "default_jwks_refresh",
        with = "crate::config::units::duration"
    )]
    pub jwks_refresh: Duration,
    /// CA (PEM) trusted for `jwks_url` [default: the system roots].
    #[serde(default)]
    pub jwks_ca_file: Option<PathBuf>,
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

fn default_jwks_refresh() -> Duration {
    Duration::from_secs(3600)
}

/// The largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1 << 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Tokens with a `kid` the JWKS does not have make the refresher fetch
/// early (the issuer rotated), at most once per this interval.
pub const MIN_REFETCH: Duration = if cfg!(test) {
    Duration::from_millis(200)
} else {
    Duration::from_secs(10)
};

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
    #[error("issuer {issuer}: fetching {url}: {message}")]
    Fetch {
        issuer: String,
        url: String,
        message: String,
    },
}

#[derive(Clone)]
struct IssuerKey {
    kid: Option<String>,
    key: DecodingKey,
    validation: Validation,
}

/// A configured external issuer with its keys loaded.
pub struct ExternalIssuer {
    config: ExternalIssuerConfig,
    /// From files; always part of `keys`.
    static_keys: Vec<IssuerKey>,
    /// What verification uses: the static keys plus the last fetched JWKS.
    keys: RwLock<Arc<Vec<IssuerKey>>>,
    /// Woken by a token whose `kid` is unknown.
    unknown_kid: tokio::sync::Notify,
}

impl std::fmt::Debug for ExternalIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalIssuer")
            .field("issuer", &self.config.issuer)
            .field("keys", &self.current_keys().len())
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
        if let Some(url) = &config.jwks_url
            && !url.starts_with("https://")
        {
            return Err(IssuerError::Key {
                issuer: config.issuer.clone(),
                what: "jwks_url".to_owned(),
                message: "must be an https:// URL".to_owned(),
            });
        }
        let keys = build_keys(&config, pems, jwks)?;
        if keys.is_empty() && config.jwks_url.is_none() {
            return Err(IssuerError::NoKeys(config.issuer));
        }
        Ok(ExternalIssuer {
            config,
            keys: RwLock::new(Arc::new(keys.clone())),
            static_keys: keys,
            unknown_kid: tokio::sync::Notify::new(),
        })
    }

    fn current_keys(&self) -> Arc<Vec<IssuerKey>> {
        self.keys
            .read()
            .map(|k| k.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Where this issuer's JWKS is fetched from, if anywhere.
    pub fn jwks_url(&self) -> Option<&str> {
        self.config.jwks_url.as_deref()
    }

    pub fn jwks_refresh(&self) -> Duration {
        self.config.jwks_refresh
    }

    /// Resolves when a token with an unknown `kid` was seen since the last call.
    pub async fn unknown_kid_seen(&self) {
        self.unknown_kid.notified().await;
    }

    /// Fetches the JWKS from `jwks_url` and replaces the fetched keys;
    /// returns how many keys are in use. A failure keeps the current keys.
    pub async fn refresh(&self) -> Result<usize, IssuerError> {
        let Some(url) = self.config.jwks_url.as_deref() else {
            return Ok(self.current_keys().len());
        };
        let fetch_err = |message: String| IssuerError::Fetch {
            issuer: self.config.issuer.clone(),
            url: url.to_owned(),
            message,
        };
        let body = tokio::time::timeout(
            FETCH_TIMEOUT,
            fetch_https(url, self.config.jwks_ca_file.as_deref()),
        )
        .await
        .map_err(|_| fetch_err("timed out".to_owned()))?
        .map_err(fetch_err)?;
        let fetched = build_keys(&self.config, &[], Some(&body))?;
        if fetched.is_empty() {
            return Err(IssuerError::NoKeys(self.config.issuer.clone()));
        }
        let mut all = self.static_keys.clone();
        all.extend(fetched);
        let n = all.len();
        match self.keys.write() {
            Ok(mut k) => *k = Arc::new(all),
            Err(p) => *p.into_inner() = Arc::new(all),
        }
        Ok(n)
    }
}

fn build_keys(
    config: &ExternalIssuerConfig,
    pems: &[&[u8]],
    jwks: Option<&[u8]>,
) -> Result<Vec<IssuerKey>, IssuerError> {
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
            let key = DecodingKey::from_jwk(jwk).map_err(|e| key_err("JWKS key", e.to_string()))?;
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
    Ok(keys)
}

/// GET `url` over HTTPS (HTTP/1.1), trusting `ca_file` or the system
/// roots; the body, at most [`MAX_JWKS_BYTES`].
async fn fetch_https(url: &str, ca_file: Option<&Path>) -> Result<bytes::Bytes, String> {
    use http_body_util::{BodyExt, Empty, Limited};
    use rustls::pki_types::pem::PemObject;

    let uri: hyper::Uri = url.parse().map_err(|e| format!("invalid URL: {e}"))?;
    let host = uri.host().ok_or("the URL has no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            for c in certs {
                let c = c.map_err(|e| format!("reading {}: {e}", path.display()))?;
                roots.add(c).map_err(|e| e.to_string())?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                // A system certificate rustls cannot use is skipped.
                let _ = roots.add(c);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
        .map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let req = hyper::Request::get(path)
        .header(
            hyper::header::HOST,
            uri.authority().map_or(host.as_str(), |a| a.as_str()),
        )
        .header(hyper::header::ACCEPT, "application/json")
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    Limited::new(resp.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| e.to_string())
}

impl ExternalIssuer {
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// Verifies a token from this issuer and maps its claims to a user.
    pub fn verify(&self, token: &str) -> Result<User, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        let mut last = AuthError::Invalid;
        let mut claims = None;
        let keys = self.current_keys();
        for k in keys.iter() {
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
        if claims.is_none()
            && self.config.jwks_url.is_some()
            && header
                .kid
                .as_ref()
                .is_some_and(|kid| !keys.iter().any(|k| k.kid.as_ref() == Some(kid)))
        {
            self.unknown_kid.notify_one();
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
