//! The server's configuration: a TOML file, overridden by command-line
//! flags and `WSGATE_*` environment variables.
//!
//! Precedence, highest first: **flag > environment > file > default**. The
//! flags are [`Overrides`] (derive `clap::Args`, every field `Option`, with
//! `env = "WSGATE_..."`): clap itself prefers a flag over its environment
//! variable, and [`Config::resolve`] applies whatever is `Some` over the
//! file. Flags therefore must not carry clap `default_value`s, or a default
//! would hide the file's value.
//!
//! Keys are `snake_case`, like the storage crate's, in every section
//! (external issuers included; they map onto
//! [`ExternalIssuerConfig`](crate::auth::ExternalIssuerConfig)). Unknown keys
//! are errors. Durations are seconds or `"1h30m"`-style strings, sizes
//! bytes or `"3MiB"`-style strings ([`units`]). Relative paths are relative
//! to the working directory, as flags are. `config/wsgate.toml` documents
//! every key with its default.
//!
//! Every error names where the value came from (`file:line:column`, the
//! file, or the flag), the key path (`storage.etcd.endpoints[0]`) and why.

pub mod units;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use registry::cluster::WorkspacePath;
use serde::Deserialize;
use storage::{EmbeddedConfig, EtcdConfig, StorageConfig};

use crate::auth::service_account::{
    DEFAULT_EXPIRATION_SECONDS, MAX_EXPIRATION_SECONDS, MIN_EXPIRATION_SECONDS,
};
use crate::auth::token::{DEFAULT_AUDIENCE, DEFAULT_ISSUER};
use crate::auth::{ExternalIssuerConfig, TokenConfig};

/// Upstream's request body limit (`3 * 1024 * 1024`).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 3 << 20;
/// etcd's default request limit is 1.5 MiB; a larger object could be
/// accepted by the embedded engine and then never move to etcd.
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 1536 << 10;

/// Where a configuration problem was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A position in the file (1-based line and column).
    FileAt {
        file: PathBuf,
        line: usize,
        column: usize,
    },
    File(PathBuf),
    /// A command-line flag or its environment variable.
    Flag {
        flag: &'static str,
        env: &'static str,
    },
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::FileAt { file, line, column } => {
                write!(f, "{}:{line}:{column}", file.display())
            }
            Origin::File(file) => write!(f, "{}", file.display()),
            Origin::Flag { flag, env } => write!(f, "{flag} (or {env})"),
            Origin::Default => f.write_str("built-in default"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML at all.
    #[error("{origin}: {message}")]
    Syntax { origin: Origin, message: String },
    /// A key that is unknown, mistyped or semantically wrong.
    #[error("{origin}: {key}: {message}")]
    Invalid {
        origin: Origin,
        /// Dotted key path, `.` for the whole document.
        key: String,
        message: String,
    },
}

impl ConfigError {
    /// The offending key path, if the error is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// A value that must never be printed (passwords).
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the API listens on.
    pub listen: SocketAddr,
    /// Embedded database, generated PKI, `admin.kubeconfig`.
    pub data_dir: PathBuf,
    /// `host:port` clients should use (kubeconfigs, discovery). Unset: the
    /// bound address, with loopback for an unspecified IP.
    pub advertise_address: Option<String>,
    /// Serve plain HTTP instead of TLS (tests and local development only).
    pub insecure_http: bool,
    pub storage: StorageSection,
    pub tls: TlsSection,
    pub auth: AuthSection,
    pub limits: LimitsSection,
    pub audit: AuditSection,
    pub logging: LoggingSection,
    pub metrics: MetricsSection,
    pub wildcard: WildcardSection,
    pub watch_cache: WatchCacheSection,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 6443)),
            data_dir: PathBuf::from("./wsgate-data"),
            advertise_address: None,
            insecure_http: false,
            storage: StorageSection::default(),
            tls: TlsSection::default(),
            auth: AuthSection::default(),
            limits: LimitsSection::default(),
            audit: AuditSection::default(),
            logging: LoggingSection::default(),
            metrics: MetricsSection::default(),
            wildcard: WildcardSection::default(),
            watch_cache: WatchCacheSection::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Embedded,
    Etcd,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    /// Unset: `etcd` when `etcd.endpoints` is given, else `embedded`.
    pub engine: Option<Engine>,
    /// Top of the key space; several installations can share one etcd.
    pub root: String,
    pub embedded: EmbeddedSection,
    pub etcd: EtcdSection,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            engine: None,
            root: "/registry".to_owned(),
            embedded: EmbeddedSection::default(),
            etcd: EtcdSection::default(),
        }
    }
}

impl StorageSection {
    pub fn effective_engine(&self) -> Engine {
        self.engine.unwrap_or(if self.etcd.endpoints.is_empty() {
            Engine::Embedded
        } else {
            Engine::Etcd
        })
    }
}

/// Mirrors `storage::EmbeddedConfig` (its data dir is the top-level `data_dir`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedSection {
    #[serde(with = "units::duration")]
    pub history_age: Duration,
    pub history_revisions: i64,
    #[serde(with = "units::duration")]
    pub progress_interval: Duration,
    /// redb's page cache: cold values (outside the history) are read
    /// through it.
    #[serde(with = "units::bytes")]
    pub cache_bytes: u64,
}

impl Default for EmbeddedSection {
    fn default() -> Self {
        let d = EmbeddedConfig::new("");
        EmbeddedSection {
            history_age: d.history_age,
            history_revisions: d.history_revisions,
            progress_interval: d.progress_interval,
            cache_bytes: d.cache_bytes as u64,
        }
    }
}

/// Mirrors `storage::EtcdConfig`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdSection {
    pub endpoints: Vec<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    #[serde(with = "units::duration")]
    pub dial_timeout: Duration,
    #[serde(with = "units::duration")]
    pub request_timeout: Duration,
}

impl Default for EtcdSection {
    fn default() -> Self {
        let d = EtcdConfig::new(Vec::new());
        EtcdSection {
            endpoints: Vec::new(),
            username: None,
            password: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            dial_timeout: d.dial_timeout,
            request_timeout: d.request_timeout,
        }
    }
}

/// Serving certificate. Unset files: generated under `<data_dir>/pki/`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// DNS names or IPs added to the generated certificate (localhost,
    /// 127.0.0.1 and ::1 are always there).
    pub extra_sans: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// `iss` of wsgate's own tokens.
    pub issuer: String,
    /// Accepted `aud` values; the first goes into issued tokens.
    pub audiences: Vec<String>,
    /// Default lifetime of `wsgate token create`.
    #[serde(with = "units::duration")]
    pub user_token_ttl: Duration,
    /// Lifetime of the token in `admin.kubeconfig`.
    #[serde(with = "units::duration")]
    pub admin_token_ttl: Duration,
    /// TokenRequest default when `expirationSeconds` is not given.
    #[serde(with = "units::duration")]
    pub service_account_token_ttl: Duration,
    /// Longest TokenRequest lifetime accepted.
    #[serde(with = "units::duration")]
    pub service_account_token_max_ttl: Duration,
    /// Other token issuers (`[[auth.issuers]]`).
    pub issuers: Vec<ExternalIssuerConfig>,
    /// CA (PEM) that signs accepted client certificates (CN = user, O =
    /// groups) [default: the generated CA in <data-dir>/pki/ca.crt].
    pub client_ca_file: Option<PathBuf>,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            issuer: DEFAULT_ISSUER.to_owned(),
            audiences: vec![DEFAULT_AUDIENCE.to_owned()],
            user_token_ttl: Duration::from_secs(24 * 3600),
            admin_token_ttl: Duration::from_secs(365 * 86_400),
            service_account_token_ttl: Duration::from_secs(DEFAULT_EXPIRATION_SECONDS as u64),
            service_account_token_max_ttl: Duration::from_secs(MAX_EXPIRATION_SECONDS as u64),
            issuers: Vec::new(),
            client_ca_file: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Largest request body (413 above it).
    #[serde(with = "units::bytes")]
    pub max_body_bytes: u64,
    /// Largest stored object after defaulting and patching.
    #[serde(with = "units::bytes")]
    pub max_object_bytes: u64,
    /// Objects per workspace (all resources); 0 is unlimited. Also
    /// accepted as `max_objects_per_workspace`.
    #[serde(alias = "max_objects_per_workspace")]
    pub default_object_quota: u64,
    /// Open watches per workspace.
    pub max_watches_per_workspace: u32,
    /// Open watches per user across all workspaces.
    pub max_watches_per_user: u32,
    /// Per-workspace overrides, keyed by workspace path.
    pub workspaces: BTreeMap<String, WorkspaceLimits>,
    pub fairness: FairnessSection,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
            // High enough for any benchmark workspace; operators lower it.
            default_object_quota: 1_000_000,
            max_watches_per_workspace: 1000,
            max_watches_per_user: 500,
            workspaces: BTreeMap::new(),
            fairness: FairnessSection::default(),
        }
    }
}

impl LimitsSection {
    /// The object quota of `workspace` (0 = unlimited).
    pub fn object_quota(&self, workspace: &WorkspacePath) -> u64 {
        self.workspaces
            .get(workspace.as_str())
            .and_then(|w| w.object_quota)
            .unwrap_or(self.default_object_quota)
    }

    pub fn max_watches(&self, workspace: &WorkspacePath) -> u32 {
        self.workspaces
            .get(workspace.as_str())
            .and_then(|w| w.max_watches)
            .unwrap_or(self.max_watches_per_workspace)
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WorkspaceLimits {
    pub object_quota: Option<u64>,
    pub max_watches: Option<u32>,
}

/// Per-workspace fair admission ([`crate::fairness`]). Watches are exempt.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FairnessSection {
    pub enabled: bool,
    /// Requests served at once, all workspaces together.
    pub max_in_flight: u32,
    /// Writes (and other non-read requests) one workspace may have in
    /// flight at once. 0 (the default) derives it from the engine: on the
    /// embedded engine a write is CPU work (its commits are grouped), so 2 x
    /// cores, and a workspace flooding writes cannot take the CPU from the
    /// others; on etcd a write waits on etcd's disk, so 150.
    pub workspace_max_in_flight: u32,
    /// Seats of the separate pool for reads (get, list, discovery), which
    /// are answered from memory and so bound by CPU, not I/O: more seats
    /// than cores only queue them in the runtime, where fairness cannot
    /// order them. 0 (the default) derives it: twice the cores.
    pub read_max_in_flight: u32,
    /// A workspace's share of the read pool; 0 (the default) derives it:
    /// half the cores, at least 1, so one workspace never owns every core.
    pub read_workspace_max_in_flight: u32,
    /// Requests one workspace may have waiting; more get 429 at once.
    pub queue_length: u32,
    /// A request waiting longer gets 429.
    #[serde(with = "units::duration")]
    pub queue_timeout: Duration,
    /// `Retry-After` of a 429.
    #[serde(with = "units::duration")]
    pub retry_after: Duration,
    /// Users never queued (like upstream's exempt priority level).
    pub exempt_users: Vec<String>,
}

impl FairnessSection {
    /// A workspace's share of the write pool on `engine`: the configured
    /// value, or derived (see [`FairnessSection::workspace_max_in_flight`]).
    pub fn write_share(&self, engine: Engine) -> u32 {
        match (self.workspace_max_in_flight, engine) {
            (0, Engine::Embedded) => cores().saturating_mul(2),
            (0, Engine::Etcd) => 150,
            (n, _) => n,
        }
        .min(self.max_in_flight.max(1))
    }

    /// The read pool's seats and per-workspace share: the configured values,
    /// or derived from the cores this process may use.
    pub fn read_seats(&self) -> (u32, u32) {
        let cores = cores();
        let total = match self.read_max_in_flight {
            0 => cores.saturating_mul(2).max(2),
            n => n,
        };
        let share = match self.read_workspace_max_in_flight {
            0 => (cores / 2).max(1),
            n => n,
        };
        (total, share.min(total))
    }
}

/// The cores this process may use.
fn cores() -> u32 {
    std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1)
}

impl Default for FairnessSection {
    fn default() -> Self {
        FairnessSection {
            enabled: true,
            // Upstream's --max-requests-inflight + --max-mutating-requests-inflight.
            max_in_flight: 600,
            workspace_max_in_flight: 0,
            read_max_in_flight: 0,
            read_workspace_max_in_flight: 0,
            queue_length: 50,
            // A quarter of upstream's 60 s request timeout, as in APF.
            queue_timeout: Duration::from_secs(15),
            retry_after: Duration::from_secs(1),
            exempt_users: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuditLevel {
    /// Who, what, where and the response code.
    Metadata,
    /// Metadata plus the request body (Secret values redacted).
    Request,
    /// Request plus the response body when not streamed (Secret values
    /// and tokens redacted).
    #[value(name = "requestresponse")]
    RequestResponse,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSection {
    pub enabled: bool,
    /// A file (appended to) or `-` for standard output.
    pub path: String,
    pub level: AuditLevel,
    /// Events buffered before new ones are dropped (and counted).
    pub queue_capacity: usize,
    /// Rotate the file when it would grow past this many MiB (0: never).
    pub max_size_mb: u64,
    /// Rotated files kept (`<path>.1` newest).
    pub max_backups: usize,
    /// Peers whose `X-Forwarded-For` goes into `sourceIPs`.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Per user/group/verb/resource levels; first match wins, else `level`.
    pub rules: Vec<crate::audit::AuditRule>,
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection {
            enabled: false,
            path: "-".to_owned(),
            level: AuditLevel::Metadata,
            queue_capacity: 10_000,
            max_size_mb: 100,
            max_backups: 5,
            trusted_proxies: Vec::new(),
            rules: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingSection {
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `debug`, `info,wsgate_server=debug`.
    pub level: String,
}

impl Default for LoggingSection {
    fn default() -> Self {
        LoggingSection {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// Busiest workspaces reported with a `workspace` label (0 disables).
    pub top_workspaces: usize,
    /// Window the busiest workspaces are counted over.
    #[serde(with = "units::duration")]
    pub top_window: Duration,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            top_workspaces: 10,
            top_window: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WildcardSection {
    /// Serve `/clusters/*` (list and watch across all workspaces) to
    /// authenticated users until RBAC decides it.
    pub allow: bool,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WatchCacheSection {
    /// Serve LIST, WATCH and GET with a resourceVersion from the
    /// in-memory watch caches; off, every read goes to storage.
    pub enabled: bool,
}

impl Default for WatchCacheSection {
    fn default() -> Self {
        WatchCacheSection { enabled: true }
    }
}

// Command-line flags and their environment variables; `None` keeps the
// file's value. `main.rs` can `#[command(flatten)]` this struct. (A plain
// comment: a doc comment would become the subcommand's `about`.)
#[derive(Clone, Debug, Default, clap::Args)]
#[command(
    next_help_heading = "Configuration (flag > WSGATE_* environment > --config file > default)"
)]
pub struct Overrides {
    /// Address to listen on [default: 127.0.0.1:6443] [key: listen]
    #[arg(long, env = "WSGATE_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Data directory [default: ./wsgate-data] [key: data_dir]
    #[arg(long, env = "WSGATE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// host:port clients should use [default: the listen address] [key: advertise_address]
    #[arg(long, env = "WSGATE_ADVERTISE_ADDRESS", value_name = "HOST:PORT")]
    pub advertise_address: Option<String>,
    /// Serve plain HTTP, without TLS [default: false] [key: insecure_http]
    #[arg(long, env = "WSGATE_INSECURE_HTTP", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub insecure_http: Option<bool>,
    /// Storage engine [default: etcd if endpoints are given, else embedded] [key: storage.engine]
    #[arg(long, env = "WSGATE_STORAGE_ENGINE", value_enum)]
    pub storage_engine: Option<Engine>,
    /// Top of the storage key space [default: /registry] [key: storage.root]
    #[arg(long, env = "WSGATE_STORAGE_ROOT", value_name = "PREFIX")]
    pub storage_root: Option<String>,
    /// etcd endpoints; selects the etcd engine [key: storage.etcd.endpoints]
    #[arg(
        long,
        env = "WSGATE_ETCD_ENDPOINTS",
        value_delimiter = ',',
        value_name = "URL,..."
    )]
    pub etcd_endpoints: Option<Vec<String>>,
    /// etcd user [key: storage.etcd.username]
    #[arg(long, env = "WSGATE_ETCD_USERNAME", value_name = "USER")]
    pub etcd_username: Option<String>,
    /// etcd password [key: storage.etcd.password]
    #[arg(
        long,
        env = "WSGATE_ETCD_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub etcd_password: Option<String>,
    /// CA bundle verifying etcd (enables TLS) [key: storage.etcd.ca_file]
    #[arg(long, env = "WSGATE_ETCD_CA_FILE", value_name = "FILE")]
    pub etcd_ca_file: Option<PathBuf>,
    /// Client certificate for etcd [key: storage.etcd.cert_file]
    #[arg(long, env = "WSGATE_ETCD_CERT_FILE", value_name = "FILE")]
    pub etcd_cert_file: Option<PathBuf>,
    /// Client key for etcd [key: storage.etcd.key_file]
    #[arg(long, env = "WSGATE_ETCD_KEY_FILE", value_name = "FILE")]
    pub etcd_key_file: Option<PathBuf>,
    /// Serving certificate (PEM chain) [default: generated] [key: tls.cert_file]
    #[arg(long, env = "WSGATE_TLS_CERT_FILE", value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// Serving key (PEM) [default: generated] [key: tls.key_file]
    #[arg(long, env = "WSGATE_TLS_KEY_FILE", value_name = "FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// Extra names in the generated certificate [key: tls.extra_sans]
    #[arg(
        long,
        env = "WSGATE_TLS_EXTRA_SANS",
        value_delimiter = ',',
        value_name = "NAME,..."
    )]
    pub tls_extra_sans: Option<Vec<String>>,
    /// Audit log file, or - for stdout; enables auditing [default: off] [key: audit.path]
    #[arg(long, env = "WSGATE_AUDIT_LOG", value_name = "PATH")]
    pub audit_log: Option<String>,
    /// Audit detail [default: metadata] [key: audit.level]
    #[arg(long, env = "WSGATE_AUDIT_LEVEL", value_enum)]
    pub audit_level: Option<AuditLevel>,
    /// Log format [default: text] [key: logging.format]
    #[arg(long, env = "WSGATE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. info or info,wsgate_server=debug [default: info] [key: logging.level]
    #[arg(long, env = "WSGATE_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Serve /clusters/* to authenticated users [default: false] [key: wildcard.allow]
    #[arg(long, env = "WSGATE_ALLOW_WILDCARD", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub allow_wildcard: Option<bool>,
    /// Serve reads from the watch caches [default: true] [key: watch_cache.enabled]
    #[arg(long, env = "WSGATE_WATCH_CACHE", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub watch_cache: Option<bool>,
}

/// Which keys the overrides set, so an error about one names the flag.
type Applied = Vec<(&'static str, &'static str, &'static str)>;

impl Overrides {
    fn apply(&self, c: &mut Config) -> Applied {
        let mut applied: Applied = Vec::new();
        macro_rules! set {
            ($field:ident, $key:literal, $flag:literal, $env:literal, |$v:ident| $assign:expr) => {
                if let Some($v) = &self.$field {
                    $assign;
                    applied.push(($key, $flag, $env));
                }
            };
        }
        set!(listen, "listen", "--listen", "WSGATE_LISTEN", |v| c
            .listen =
            *v);
        set!(data_dir, "data_dir", "--data-dir", "WSGATE_DATA_DIR", |v| {
            c.data_dir = v.clone()
        });
        set!(
            advertise_address,
            "advertise_address",
            "--advertise-address",
            "WSGATE_ADVERTISE_ADDRESS",
            |v| c.advertise_address = Some(v.clone())
        );
        set!(
            insecure_http,
            "insecure_http",
            "--insecure-http",
            "WSGATE_INSECURE_HTTP",
            |v| c.insecure_http = *v
        );
        set!(
            storage_engine,
            "storage.engine",
            "--storage-engine",
            "WSGATE_STORAGE_ENGINE",
            |v| c.storage.engine = Some(*v)
        );
        set!(
            storage_root,
            "storage.root",
            "--storage-root",
            "WSGATE_STORAGE_ROOT",
            |v| c.storage.root = v.clone()
        );
        if let Some(v) = &self.etcd_endpoints {
            c.storage.etcd.endpoints = v.clone();
            applied.push((
                "storage.etcd.endpoints",
                "--etcd-endpoints",
                "WSGATE_ETCD_ENDPOINTS",
            ));
            // The design's `--etcd-endpoints` means "use etcd" even when the
            // file says embedded, unless the engine flag says otherwise.
            if self.storage_engine.is_none() && !v.is_empty() {
                c.storage.engine = Some(Engine::Etcd);
            }
        }
        set!(
            etcd_username,
            "storage.etcd.username",
            "--etcd-username",
            "WSGATE_ETCD_USERNAME",
            |v| c.storage.etcd.username = Some(v.clone())
        );
        set!(
            etcd_password,
            "storage.etcd.password",
            "--etcd-password",
            "WSGATE_ETCD_PASSWORD",
            |v| c.storage.etcd.password = Some(Secret::new(v.clone()))
        );
        set!(
            etcd_ca_file,
            "storage.etcd.ca_file",
            "--etcd-ca-file",
            "WSGATE_ETCD_CA_FILE",
            |v| c.storage.etcd.ca_file = Some(v.clone())
        );
        set!(
            etcd_cert_file,
            "storage.etcd.cert_file",
            "--etcd-cert-file",
            "WSGATE_ETCD_CERT_FILE",
            |v| c.storage.etcd.cert_file = Some(v.clone())
        );
        set!(
            etcd_key_file,
            "storage.etcd.key_file",
            "--etcd-key-file",
            "WSGATE_ETCD_KEY_FILE",
            |v| c.storage.etcd.key_file = Some(v.clone())
        );
        set!(
            tls_cert_file,
            "tls.cert_file",
            "--tls-cert-file",
            "WSGATE_TLS_CERT_FILE",
            |v| c.tls.cert_file = Some(v.clone())
        );
        set!(
            tls_key_file,
            "tls.key_file",
            "--tls-key-file",
            "WSGATE_TLS_KEY_FILE",
            |v| c.tls.key_file = Some(v.clone())
        );
        set!(
            tls_extra_sans,
            "tls.extra_sans",
            "--tls-extra-sans",
            "WSGATE_TLS_EXTRA_SANS",
            |v| c.tls.extra_sans = v.clone()
        );
        if let Some(v) = &self.audit_log {
            c.audit.path = v.clone();
            c.audit.enabled = true;
            applied.push(("audit.path", "--audit-log", "WSGATE_AUDIT_LOG"));
        }
        set!(
            audit_level,
            "audit.level",
            "--audit-level",
            "WSGATE_AUDIT_LEVEL",
            |v| c.audit.level = *v
        );
        set!(
            log_format,
            "logging.format",
            "--log-format",
            "WSGATE_LOG_FORMAT",
            |v| c.logging.format = *v
        );
        set!(
            log_level,
            "logging.level",
            "--log-level",
            "WSGATE_LOG_LEVEL",
            |v| c.logging.level = v.clone()
        );
        set!(
            allow_wildcard,
            "wildcard.allow",
            "--allow-wildcard",
            "WSGATE_ALLOW_WILDCARD",
            |v| c.wildcard.allow = *v
        );
        set!(
            watch_cache,
            "watch_cache.enabled",
            "--watch-cache",
            "WSGATE_WATCH_CACHE",
            |v| c.watch_cache.enabled = *v
        );
        applied
    }
}

/// A semantic problem: key path and reason; the origin is decided later.
struct Problem {
    key: String,
    message: String,
}

fn problem(key: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        key: key.into(),
        message: message.into(),
    }
}

impl Config {
    /// Reads and validates one file (no overrides).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::resolve(Some(path), &Overrides::default())
    }

    /// Defaults, then the file (if any), then the overrides; validated.
    pub fn resolve(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    file: path.to_owned(),
                    source,
                })?;
                Self::parse(&text, path)?
            }
            None => Config::default(),
        };
        let applied = overrides.apply(&mut config);
        config.validate().map_err(|p| {
            // The most specific override that covers the key named the value.
            let origin = applied
                .iter()
                .filter(|(k, _, _)| p.key == *k || p.key.starts_with(&format!("{k}[")))
                .map(|&(_, flag, env)| Origin::Flag { flag, env })
                .next()
                .or_else(|| file.map(|f| Origin::File(f.to_owned())))
                .unwrap_or(Origin::Default);
            ConfigError::Invalid {
                origin,
                key: p.key,
                message: p.message,
            }
        })?;
        Ok(config)
    }

    /// Parses TOML text (syntax and types only); `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let at = |span: Option<std::ops::Range<usize>>| match span {
            Some(span) => {
                let (line, column) = line_column(text, span.start);
                Origin::FileAt {
                    file: file.to_owned(),
                    line,
                    column,
                }
            }
            None => Origin::File(file.to_owned()),
        };
        let de = toml::de::Deserializer::parse(text).map_err(|e| ConfigError::Syntax {
            origin: at(e.span()),
            message: e.message().trim().to_owned(),
        })?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.inner();
            ConfigError::Invalid {
                origin: at(inner.span()),
                key,
                message: inner.message().trim().to_owned(),
            }
        })
    }

    /// What the storage crate opens.
    pub fn storage_config(&self) -> StorageConfig {
        match self.storage.effective_engine() {
            Engine::Embedded => {
                let e = &self.storage.embedded;
                let mut c = EmbeddedConfig::new(&self.data_dir);
                c.history_age = e.history_age;
                c.history_revisions = e.history_revisions;
                c.progress_interval = e.progress_interval;
                c.cache_bytes = usize::try_from(e.cache_bytes).unwrap_or(usize::MAX);
                StorageConfig::Embedded(c)
            }
            Engine::Etcd => {
                let e = &self.storage.etcd;
                let mut c = EtcdConfig::new(e.endpoints.clone());
                c.username = e.username.clone();
                c.password = e.password.as_ref().map(|p| p.expose().to_owned());
                c.ca_file = e.ca_file.clone();
                c.cert_file = e.cert_file.clone();
                c.key_file = e.key_file.clone();
                c.dial_timeout = e.dial_timeout;
                c.request_timeout = e.request_timeout;
                StorageConfig::Etcd(c)
            }
        }
    }

    /// The configured serving certificate and key, for `tls::load_or_create`.
    pub fn tls_files(&self) -> Option<(&Path, &Path)> {
        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(c), Some(k)) => Some((c, k)),
            _ => None,
        }
    }

    pub fn token_config(&self) -> TokenConfig {
        TokenConfig {
            issuer: self.auth.issuer.clone(),
            audiences: self.auth.audiences.clone(),
        }
    }

    pub fn external_issuers(&self) -> Vec<ExternalIssuerConfig> {
        self.auth.issuers.clone()
    }

    /// Semantic checks serde cannot express.
    fn validate(&self) -> Result<(), Problem> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(problem("data_dir", "must not be empty"));
        }
        if let Some(a) = &self.advertise_address {
            check_host_port(a).map_err(|m| problem("advertise_address", m))?;
        }
        self.validate_storage()?;
        self.validate_tls()?;
        self.validate_auth()?;
        self.validate_limits()?;
        let audit = &self.audit;
        if audit.enabled && audit.path != "-" {
            if audit.path.is_empty() {
                return Err(problem("audit.path", "must be a file or - for stdout"));
            }
            let parent = Path::new(&audit.path)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !parent.is_dir() {
                return Err(problem(
                    "audit.path",
                    format!("directory {} does not exist", parent.display()),
                ));
            }
        }
        if audit.queue_capacity == 0 {
            return Err(problem("audit.queue_capacity", "must be positive"));
        }
        tracing_subscriber::EnvFilter::try_new(&self.logging.level)
            .map_err(|e| problem("logging.level", format!("invalid filter: {e}")))?;
        if self.metrics.top_workspaces > 1000 {
            return Err(problem(
                "metrics.top_workspaces",
                "at most 1000 (each is a metric series)",
            ));
        }
        positive(self.metrics.top_window, "metrics.top_window")?;
        Ok(())
    }

    fn validate_storage(&self) -> Result<(), Problem> {
        let s = &self.storage;
        let root = &s.root;
        if !root.starts_with('/')
            || root.len() < 2
            || root.ends_with('/')
            || root.contains("//")
            || root.chars().any(char::is_whitespace)
        {
            return Err(problem(
                "storage.root",
                format!(
                    "{root:?} must start with / and have no trailing /, empty segment or space"
                ),
            ));
        }
        positive(s.embedded.history_age, "storage.embedded.history_age")?;
        positive(
            s.embedded.progress_interval,
            "storage.embedded.progress_interval",
        )?;
        if s.embedded.history_revisions <= 0 {
            return Err(problem(
                "storage.embedded.history_revisions",
                "must be positive",
            ));
        }
        let e = &s.etcd;
        match s.effective_engine() {
            Engine::Etcd if e.endpoints.is_empty() => {
                return Err(problem(
                    "storage.etcd.endpoints",
                    "the etcd engine needs at least one endpoint",
                ));
            }
            Engine::Embedded if !e.endpoints.is_empty() => {
                return Err(problem(
                    "storage.engine",
                    "is embedded but storage.etcd.endpoints is set; remove one",
                ));
            }
            _ => {}
        }
        for (i, ep) in e.endpoints.iter().enumerate() {
            check_url(ep).map_err(|m| problem(format!("storage.etcd.endpoints[{i}]"), m))?;
        }
        if e.password.is_some() && e.username.is_none() {
            return Err(problem(
                "storage.etcd.password",
                "is set without storage.etcd.username",
            ));
        }
        pair(
            &e.cert_file,
            &e.key_file,
            "storage.etcd.cert_file",
            "storage.etcd.key_file",
        )?;
        for (key, f) in [
            ("storage.etcd.ca_file", &e.ca_file),
            ("storage.etcd.cert_file", &e.cert_file),
            ("storage.etcd.key_file", &e.key_file),
        ] {
            if let Some(f) = f {
                file_exists(f, key)?;
            }
        }
        positive(e.dial_timeout, "storage.etcd.dial_timeout")?;
        positive(e.request_timeout, "storage.etcd.request_timeout")?;
        Ok(())
    }

    fn validate_tls(&self) -> Result<(), Problem> {
        let t = &self.tls;
        pair(&t.cert_file, &t.key_file, "tls.cert_file", "tls.key_file")?;
        if self.insecure_http && t.cert_file.is_some() {
            return Err(problem(
                "tls.cert_file",
                "is set but insecure_http = true serves without TLS; remove one",
            ));
        }
        for (key, f) in [
            ("tls.cert_file", &t.cert_file),
            ("tls.key_file", &t.key_file),
        ] {
            if let Some(f) = f {
                file_exists(f, key)?;
            }
        }
        for (i, san) in t.extra_sans.iter().enumerate() {
            if san.is_empty() || san.chars().any(|c| c.is_whitespace() || c == '/') {
                return Err(problem(
                    format!("tls.extra_sans[{i}]"),
                    format!("{san:?} is not a DNS name or IP address"),
                ));
            }
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), Problem> {
        let a = &self.auth;
        if a.issuer.trim().is_empty() {
            return Err(problem("auth.issuer", "must not be empty"));
        }
        if a.audiences.is_empty() {
            return Err(problem("auth.audiences", "needs at least one audience"));
        }
        for (i, aud) in a.audiences.iter().enumerate() {
            if aud.trim().is_empty() {
                return Err(problem(format!("auth.audiences[{i}]"), "must not be empty"));
            }
        }
        positive(a.user_token_ttl, "auth.user_token_ttl")?;
        positive(a.admin_token_ttl, "auth.admin_token_ttl")?;
        let (min, max) = (
            Duration::from_secs(MIN_EXPIRATION_SECONDS as u64),
            Duration::from_secs(MAX_EXPIRATION_SECONDS as u64),
        );
        for (key, d) in [
            (
                "auth.service_account_token_ttl",
                a.service_account_token_ttl,
            ),
            (
                "auth.service_account_token_max_ttl",
                a.service_account_token_max_ttl,
            ),
        ] {
            if d < min || d > max {
                return Err(problem(
                    key,
                    format!(
                        "{} is outside {} to {}",
                        units::format_duration(d),
                        units::format_duration(min),
                        units::format_duration(max)
                    ),
                ));
            }
        }
        if a.service_account_token_ttl > a.service_account_token_max_ttl {
            return Err(problem(
                "auth.service_account_token_ttl",
                "is longer than auth.service_account_token_max_ttl",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, iss) in a.issuers.iter().enumerate() {
            let key = |field: &str| format!("auth.issuers[{i}].{field}");
            if iss.issuer.trim().is_empty() {
                return Err(problem(key("issuer"), "must not be empty"));
            }
            if iss.issuer == a.issuer {
                return Err(problem(
                    key("issuer"),
                    format!("{:?} is wsgate's own issuer (auth.issuer)", iss.issuer),
                ));
            }
            if !seen.insert(iss.issuer.as_str()) {
                return Err(problem(
                    key("issuer"),
                    format!("{:?} is configured twice", iss.issuer),
                ));
            }
            if iss.audiences.is_empty() {
                return Err(problem(key("audiences"), "needs at least one audience"));
            }
            if iss.public_key_files.is_empty() && iss.jwks_file.is_none() {
                return Err(problem(
                    key("public_key_files"),
                    "an issuer needs public_key_files or jwks_file",
                ));
            }
            for (j, f) in iss.public_key_files.iter().enumerate() {
                file_exists(f, &key(&format!("public_key_files[{j}]")))?;
            }
            if let Some(f) = &iss.jwks_file {
                file_exists(f, &key("jwks_file"))?;
            }
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), Problem> {
        let l = &self.limits;
        if l.max_body_bytes == 0 {
            return Err(problem("limits.max_body_bytes", "must be positive"));
        }
        if l.max_object_bytes == 0 {
            return Err(problem("limits.max_object_bytes", "must be positive"));
        }
        if l.max_watches_per_workspace == 0 {
            return Err(problem(
                "limits.max_watches_per_workspace",
                "must be positive",
            ));
        }
        if l.max_watches_per_user == 0 {
            return Err(problem("limits.max_watches_per_user", "must be positive"));
        }
        for (path, w) in &l.workspaces {
            WorkspacePath::parse(path)
                .map_err(|e| problem(format!("limits.workspaces.{path:?}"), e.to_string()))?;
            if w.max_watches == Some(0) {
                return Err(problem(
                    format!("limits.workspaces.{path:?}.max_watches"),
                    "must be positive",
                ));
            }
        }
        let f = &l.fairness;
        if f.max_in_flight == 0 {
            return Err(problem("limits.fairness.max_in_flight", "must be positive"));
        }
        if f.workspace_max_in_flight > f.max_in_flight {
            return Err(problem(
                "limits.fairness.workspace_max_in_flight",
                format!(
                    "must be at most max_in_flight ({}); 0 derives it",
                    f.max_in_flight
                ),
            ));
        }
        if f.read_max_in_flight != 0 && f.read_workspace_max_in_flight > f.read_max_in_flight {
            return Err(problem(
                "limits.fairness.read_workspace_max_in_flight",
                format!(
                    "must be at most read_max_in_flight ({})",
                    f.read_max_in_flight
                ),
            ));
        }
        positive(f.queue_timeout, "limits.fairness.queue_timeout")?;
        if f.retry_after < Duration::from_secs(1) || f.retry_after.subsec_nanos() != 0 {
            return Err(problem(
                "limits.fairness.retry_after",
                "must be whole seconds, at least 1s (Retry-After has no fractions)",
            ));
        }
        Ok(())
    }

    /// A few lines describing the effective configuration, for
    /// `wsgate config check` and the start-up log. Never prints secrets.
    pub fn summary(&self) -> String {
        let mut out = Vec::new();
        let scheme = if self.insecure_http { "http" } else { "https" };
        out.push(format!("listen: {scheme}://{}", self.listen));
        if let Some(a) = &self.advertise_address {
            out.push(format!("advertise address: {a}"));
        }
        out.push(format!("data dir: {}", self.data_dir.display()));
        match self.storage.effective_engine() {
            Engine::Embedded => out.push(format!(
                "storage: embedded in {}, root {}",
                self.data_dir.display(),
                self.storage.root
            )),
            Engine::Etcd => {
                let e = &self.storage.etcd;
                out.push(format!(
                    "storage: etcd {}, root {}{}{}",
                    e.endpoints.join(","),
                    self.storage.root,
                    if e.ca_file.is_some() { ", TLS" } else { "" },
                    e.username
                        .as_ref()
                        .map(|u| format!(", user {u}"))
                        .unwrap_or_default()
                ));
            }
        }
        if !self.watch_cache.enabled {
            out.push("watch cache: off (every read from storage)".to_owned());
        }
        if !self.insecure_http {
            out.push(match self.tls_files() {
                Some((c, _)) => format!("tls: {}", c.display()),
                None => format!(
                    "tls: generated in {}",
                    self.data_dir.join(crate::tls::PKI_DIR).display()
                ),
            });
        }
        out.push(format!(
            "auth: issuer {}, {} external issuer(s)",
            self.auth.issuer,
            self.auth.issuers.len()
        ));
        let l = &self.limits;
        out.push(format!(
            "limits: body {}, object {}, quota {} objects/workspace ({} override(s)), watches {}/workspace {}/user",
            units::format_bytes(l.max_body_bytes),
            units::format_bytes(l.max_object_bytes),
            l.default_object_quota,
            l.workspaces.len(),
            l.max_watches_per_workspace,
            l.max_watches_per_user
        ));
        let f = &l.fairness;
        out.push(if f.enabled {
            let (reads, read_share) = f.read_seats();
            format!(
                "fairness: reads {reads} in flight, {read_share} per workspace; others {} in flight, {} per workspace; queue {} for {}",
                f.max_in_flight,
                f.write_share(self.storage.effective_engine()),
                f.queue_length,
                units::format_duration(f.queue_timeout)
            )
        } else {
            "fairness: off".to_owned()
        });
        out.push(if self.audit.enabled {
            format!(
                "audit: {:?} to {}",
                self.audit.level,
                if self.audit.path == "-" {
                    "stdout"
                } else {
                    &self.audit.path
                }
            )
        } else {
            "audit: off".to_owned()
        });
        out.push(format!(
            "logging: {:?}, {}",
            self.logging.format, self.logging.level
        ));
        out.join("\n")
    }
}

/// `wsgate config check FILE`: validates without starting; the summary on success.
pub fn check(path: &Path) -> Result<String, ConfigError> {
    let config = Config::load(path)?;
    Ok(format!("{}: OK\n{}", path.display(), config.summary()))
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn positive(d: Duration, key: &str) -> Result<(), Problem> {
    if d.is_zero() {
        Err(problem(key, "must be positive"))
    } else {
        Ok(())
    }
}

fn pair(a: &Option<PathBuf>, b: &Option<PathBuf>, ka: &str, kb: &str) -> Result<(), Problem> {
    match (a, b) {
        (Some(_), None) => Err(problem(ka, format!("is set without {kb}"))),
        (None, Some(_)) => Err(problem(kb, format!("is set without {ka}"))),
        _ => Ok(()),
    }
}

fn file_exists(path: &Path, key: &str) -> Result<(), Problem> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(problem(key, format!("{} is not a file", path.display()))),
        Err(e) => Err(problem(key, format!("{}: {e}", path.display()))),
    }
}

fn check_url(s: &str) -> Result<(), String> {
    let uri: axum::http::Uri = s.parse().map_err(|e| format!("invalid URL {s:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(format!(
                "invalid URL {s:?}: the scheme must be http or https"
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("invalid URL {s:?}: no host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("invalid URL {s:?}: an endpoint has no path"));
    }
    Ok(())
}

fn check_host_port(s: &str) -> Result<(), String> {
    if s.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not host:port"))?;
    port.parse::<u16>()
        .map_err(|_| format!("{s:?}: invalid port {port:?}"))?;
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !host_ok {
        return Err(format!("{s:?}: invalid host {host:?}"));
    }
    Ok(())
}
