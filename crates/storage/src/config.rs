//! How to open a store. Filled from the server's config file, flags and
//! environment; this crate only reads it.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "engine", rename_all = "lowercase")]
pub enum StorageConfig {
    Embedded(EmbeddedConfig),
    Etcd(EtcdConfig),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedConfig {
    /// Directory holding the database file; created if missing.
    pub data_dir: PathBuf,
    /// Event history older than this is compacted automatically.
    #[serde(default = "default_history_age", with = "humantime_secs")]
    pub history_age: Duration,
    /// At most this many revisions of history are kept.
    #[serde(default = "default_history_revisions")]
    pub history_revisions: i64,
    /// How often an idle watch with progress notification hears the revision.
    #[serde(default = "default_progress_interval", with = "humantime_secs")]
    pub progress_interval: Duration,
    /// Bytes of redb page cache (read cache plus write buffer). Values of
    /// keys outside the history window are read through it.
    #[serde(default = "default_cache_bytes")]
    pub cache_bytes: usize,
}

impl EmbeddedConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EmbeddedConfig {
            data_dir: data_dir.into(),
            history_age: default_history_age(),
            history_revisions: default_history_revisions(),
            progress_interval: default_progress_interval(),
            cache_bytes: default_cache_bytes(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// `http://host:port` or `https://host:port`.
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// PEM CA bundle to verify the etcd servers (enables TLS).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key for mutual TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default = "default_dial_timeout", with = "humantime_secs")]
    pub dial_timeout: Duration,
    #[serde(default = "default_request_timeout", with = "humantime_secs")]
    pub request_timeout: Duration,
}

impl EtcdConfig {
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdConfig {
            endpoints,
            username: None,
            password: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            dial_timeout: default_dial_timeout(),
            request_timeout: default_request_timeout(),
        }
    }
}

fn default_history_age() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_history_revisions() -> i64 {
    100_000
}
fn default_cache_bytes() -> usize {
    64 << 20
}
fn default_progress_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_dial_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Durations in config files are whole seconds (`history_age = 300`).
mod humantime_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}
