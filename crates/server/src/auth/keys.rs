//! The ES256 key pair wsgate signs its tokens with, and the public keys it
//! accepts (rotation).
//!
//! Files under `<data-dir>/pki/`:
//! - `token-signing.key`: the active private key (PKCS#8 PEM, mode 0600),
//!   created on first use and then reused.
//! - `token-verification/*.pub`: earlier public keys (SPKI PEM), still
//!   accepted so tokens signed before a rotation stay valid until they
//!   expire. Delete a file to stop accepting its tokens.
//!
//! Rotation ([`TokenKeys::rotate`]) moves the active public key into
//! `token-verification/` and creates a new signing key. Every key is known
//! by its RFC 7638 thumbprint, which tokens carry as `kid`.

use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};

use crate::tls::files;

pub const SIGNING_KEY_FILE: &str = "token-signing.key";
pub const VERIFICATION_DIR: &str = "token-verification";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} is not a usable P-256 key: {message}")]
    Invalid { what: String, message: String },
}

/// A public key tokens may be verified with.
#[derive(Clone)]
pub struct VerificationKey {
    pub kid: String,
    pub(crate) key: DecodingKey,
}

/// The active signing key and every accepted verification key.
#[derive(Clone)]
pub struct TokenKeys {
    pub(crate) signing: EncodingKey,
    pub(crate) signing_kid: String,
    signing_public_pem: String,
    /// The active key's public half first, then earlier keys.
    pub(crate) verification: Vec<VerificationKey>,
}

impl std::fmt::Debug for TokenKeys {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("signing_kid", &self.signing_kid)
            .field(
                "verification",
                &self.verification.iter().map(|k| &k.kid).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> KeyError + 'a {
    move |source| KeyError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

fn invalid(what: impl Into<String>) -> impl FnOnce(String) -> KeyError {
    let what = what.into();
    move |message| KeyError::Invalid { what, message }
}

fn public_kid(key: &DecodingKey, what: &str) -> Result<String, KeyError> {
    Jwk::from_decoding_key(key, Some(Algorithm::ES256))
        .and_then(|j| j.thumbprint(ThumbprintHash::SHA256))
        .map_err(|e| invalid(what)(e.to_string()))
}

impl TokenKeys {
    /// Loads `<data_dir>/pki/token-signing.key` (creating it if missing)
    /// and the earlier public keys.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, KeyError> {
        let pki = data_dir.join(crate::tls::PKI_DIR);
        files::create_private_dir(&pki).map_err(io("creating", &pki))?;
        let key_path = pki.join(SIGNING_KEY_FILE);
        let private_pem = if key_path.exists() {
            std::fs::read_to_string(&key_path).map_err(io("reading", &key_path))?
        } else {
            let pem = generate_pem()?;
            files::write_atomic(&key_path, pem.as_bytes(), 0o600)
                .map_err(io("writing", &key_path))?;
            pem
        };
        let mut keys = Self::from_private_pem(&private_pem)?;
        let dir = pki.join(VERIFICATION_DIR);
        if dir.is_dir() {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(io("listing", &dir))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "pub"))
                .collect();
            paths.sort();
            for p in paths {
                let pem = std::fs::read(&p).map_err(io("reading", &p))?;
                keys.add_public_pem(&pem, &p.display().to_string())?;
            }
        }
        Ok(keys)
    }

    /// Moves the active key to the verification set and creates a new
    /// signing key. Returns the new key set.
    pub fn rotate(data_dir: &Path) -> Result<Self, KeyError> {
        let current = Self::load_or_create(data_dir)?;
        let pki = data_dir.join(crate::tls::PKI_DIR);
        let dir = pki.join(VERIFICATION_DIR);
        files::create_private_dir(&dir).map_err(io("creating", &dir))?;
        let pub_path = dir.join(format!("{}.pub", current.signing_kid));
        files::write_atomic(&pub_path, current.signing_public_pem.as_bytes(), 0o644)
            .map_err(io("writing", &pub_path))?;
        let key_path = pki.join(SIGNING_KEY_FILE);
        files::write_atomic(&key_path, generate_pem()?.as_bytes(), 0o600)
            .map_err(io("writing", &key_path))?;
        Self::load_or_create(data_dir)
    }

    /// A key set from a PKCS#8 PEM private key (P-256).
    pub fn from_private_pem(pem: &str) -> Result<Self, KeyError> {
        let pair =
            KeyPair::from_pem(pem).map_err(|e| invalid("the token signing key")(e.to_string()))?;
        if !pair.is_compatible(&PKCS_ECDSA_P256_SHA256) {
            return Err(invalid("the token signing key")(
                "not an ECDSA P-256 key".into(),
            ));
        }
        let public_pem = pair.public_key_pem();
        let signing = EncodingKey::from_ec_pem(pem.as_bytes())
            .map_err(|e| invalid("the token signing key")(e.to_string()))?;
        let decoding = DecodingKey::from_ec_pem(public_pem.as_bytes())
            .map_err(|e| invalid("the token signing key")(e.to_string()))?;
        let kid = public_kid(&decoding, "the token signing key")?;
        Ok(TokenKeys {
            signing,
            signing_kid: kid.clone(),
            signing_public_pem: public_pem,
            verification: vec![VerificationKey { kid, key: decoding }],
        })
    }

    /// Accepts tokens signed by the private half of this public key (SPKI
    /// PEM, P-256). `what` names the source in errors.
    pub fn add_public_pem(&mut self, pem: &[u8], what: &str) -> Result<(), KeyError> {
        let key = DecodingKey::from_ec_pem(pem).map_err(|e| invalid(what)(e.to_string()))?;
        let kid = public_kid(&key, what)?;
        if !self.verification.iter().any(|k| k.kid == kid) {
            self.verification.push(VerificationKey { kid, key });
        }
        Ok(())
    }

    /// The `kid` of the active signing key.
    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }

    /// The active public key (SPKI PEM), e.g. for a JWKS document.
    pub fn public_pem(&self) -> &str {
        &self.signing_public_pem
    }

    pub fn verification_kids(&self) -> impl Iterator<Item = &str> {
        self.verification.iter().map(|k| k.kid.as_str())
    }
}

fn generate_pem() -> Result<String, KeyError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map(|k| k.serialize_pem())
        .map_err(|e| invalid("a new token signing key")(e.to_string()))
}
