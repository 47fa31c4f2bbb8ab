//! Start-up and shutdown of `wsgate serve`: TLS material, token keys,
//! storage, registry, the admin kubeconfig, the operations plumbing
//! (metrics, audit, fairness), and a graceful stop on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use registry::cluster::WorkspacePath;
use registry::rbac_source::RbacSource;
use registry::{Registry, RegistryConfig};

use crate::audit::AuditLog;
use crate::auth::kubeconfig::{self, KubeconfigParams};
use crate::auth::{Authenticator, ExternalIssuer, TokenKeys, TokenService};
use crate::authz::Authorizer;
use crate::config::Config;
use crate::fairness::FairAdmission;
use crate::metrics::{Metrics, MetricsLayer};
use crate::quota::ObjectQuota;
use crate::request_id::RequestIdLayer;
use crate::storage_metrics::MeteredStore;
use crate::{AppState, app};

/// What `serve` needs besides the configuration file's contents.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub config: Config,
    /// `--insecure-http` on a non-loopback address.
    pub allow_insecure_remote: bool,
    /// After a shutdown signal: how long in-flight requests get.
    pub shutdown_grace: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("opening storage: {0}")]
    Storage(#[from] storage::Error),
    #[error("starting the registry: {0}")]
    Registry(#[from] registry::RegistryError),
    #[error("starting the RBAC watch: {0}")]
    Rbac(registry::ApiError),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--insecure-http serves without TLS or authentication; it listens only on loopback addresses (not {0}) unless --insecure-allow-remote is given"
    )]
    InsecureRemote(SocketAddr),
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("token keys: {0}")]
    Keys(#[from] crate::auth::KeyError),
    #[error("external issuer: {0}")]
    Issuer(#[from] crate::auth::IssuerError),
    #[error("admin kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("audit log: {0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
}

/// A future resolving at SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Writes `<data-dir>/admin.kubeconfig` unless one for this server URL
/// exists already; returns its path when written.
fn admin_kubeconfig(
    config: &Config,
    tokens: &TokenService,
    server: &str,
    ca_pem: Option<&str>,
) -> Result<Option<std::path::PathBuf>, ServeError> {
    let path = config.data_dir.join(kubeconfig::ADMIN_KUBECONFIG);
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    let want = kubeconfig::server_url(server, &WorkspacePath::root());
    if current.contains(&want) {
        return Ok(None);
    }
    let token = tokens
        .issue_admin_token(config.auth.admin_token_ttl)
        .map_err(|e| ServeError::Kubeconfig(e.to_string()))?;
    let yaml = kubeconfig::render_yaml(&KubeconfigParams {
        server,
        workspace: &WorkspacePath::root(),
        ca_pem,
        token: &token,
        user: crate::auth::token::ADMIN_USER,
        client_cert: None,
    })
    .map_err(|e| ServeError::Kubeconfig(e.to_string()))?;
    // Rewritten when the server URL changed (another port), like k3s.
    kubeconfig::write_admin_kubeconfig(&config.data_dir, &yaml, !current.is_empty())
        .map_err(|e| ServeError::Kubeconfig(e.to_string()))
}

/// The authenticator of a configuration (also used by `wsgate token create`).
pub fn token_service(config: &Config) -> Result<TokenService, ServeError> {
    crate::tls::files::create_private_dir(&config.data_dir).map_err(ServeError::Serve)?;
    Ok(TokenService::new(
        TokenKeys::load_or_create(&config.data_dir)?,
        config.token_config(),
    ))
}

/// Opens storage, builds the registry, and serves until `shutdown` resolves;
/// then stops accepting, ends watches, lets in-flight requests finish (at
/// most `shutdown_grace`), and flushes the audit log.
pub async fn serve(
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let config = opts.config;
    if config.insecure_http && !config.listen.ip().is_loopback() && !opts.allow_insecure_remote {
        return Err(ServeError::InsecureRemote(config.listen));
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(ServeError::Serve)?;
    let advertise = match &config.advertise_address {
        Some(a) => a.clone(),
        None if local.ip().is_unspecified() => {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), local.port()).to_string()
        }
        None => local.to_string(),
    };

    let tls = if config.insecure_http {
        None
    } else {
        Some(crate::tls::load_with_client_ca(
            &config.data_dir,
            config.tls_files(),
            &config.tls.extra_sans,
            config.auth.client_ca_file.as_deref(),
        )?)
    };
    let tokens = token_service(&config)?;
    let mut external = Vec::new();
    for c in config.external_issuers() {
        external.push(ExternalIssuer::load(c)?);
    }

    let metrics = Arc::new(Metrics::new(
        config.metrics.top_workspaces,
        config.metrics.top_window,
    ));
    // Every storage operation is timed, and values above the object size
    // limit are refused, for all verbs alike.
    let store: Arc<dyn storage::Store> = Arc::new(MeteredStore::new(
        storage::open(&config.storage_config()).await?,
        metrics.clone(),
        config.limits.max_object_bytes,
    ));
    let registry = Registry::open(
        store.clone(),
        RegistryConfig {
            key_root: config.storage.root.clone(),
            advertise_address: advertise.clone(),
        },
    )
    .await?;
    registry.set_wildcard_allowed(config.wildcard.allow);
    // Only the embedded engine delivers watch events before a write is
    // visible; on etcd consistent reads check the quorum revision instead.
    registry.watch_caches().trust_watch_delivery(matches!(
        config.storage_config(),
        storage::StorageConfig::Embedded(_)
    ));
    registry
        .watch_caches()
        .set_enabled(config.watch_cache.enabled);
    let scheme = if config.insecure_http {
        "http"
    } else {
        "https"
    };
    registry.set_base_url(&format!("{scheme}://{advertise}"));
    let rbac = RbacSource::start(registry.clone())
        .await
        .map_err(ServeError::Rbac)?;

    if let Some(tls) = &tls {
        let server = format!("https://{advertise}");
        if let Some(path) = admin_kubeconfig(&config, &tokens, &server, tls.ca_pem.as_deref())? {
            tracing::info!(
                path = %path.display(),
                "wrote the admin kubeconfig: kubectl --kubeconfig {} get namespaces",
                path.display()
            );
        }
    }

    let (audit, audit_writer) = AuditLog::start(&config.audit, metrics.audit_dropped_counter())?;
    crate::body::set_limit(config.limits.max_body_bytes);
    let mut fair = config.limits.fairness.clone();
    fair.workspace_max_in_flight = fair.write_share(config.storage.effective_engine());
    let fairness = FairAdmission::with_read_pool(&fair, Some(metrics.fairness_gauges()));
    let limits = Arc::new(config.limits.clone());
    let quota = Arc::new(ObjectQuota::new(
        store,
        limits.clone(),
        Some(metrics.clone()),
    ));
    quota.spawn_sweeper();
    crate::metrics::spawn_workspace_gauges(metrics.clone(), registry.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let auth = Arc::new(Authenticator::new(tokens, external));
    auth.spawn_jwks_refresh();
    let state = AppState::new(
        registry.clone(),
        crate::Security {
            auth,
            authz: Arc::new(Authorizer::new(rbac, registry.clone())),
            insecure: config.insecure_http,
            service_account_max_seconds: i64::try_from(
                config.auth.service_account_token_max_ttl.as_secs(),
            )
            .unwrap_or(i64::MAX),
        },
        crate::Operations {
            metrics: metrics.clone(),
            audit,
            fairness: Arc::new(fairness),
            limits,
            quota,
            stopping: stop_rx.clone(),
        },
    );
    let router = app(state)
        .layer(MetricsLayer::new(metrics))
        .layer(RequestIdLayer);

    let mut stop = stop_rx.clone();
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let server = match tls {
        Some(tls) => {
            tracing::info!(address = %local, "wsgate is serving (HTTPS)");
            // Renews the generated certificate before expiry and reloads
            // configured files when they change, without a restart.
            let _renewal = tls.reloader.spawn(crate::tls::RELOAD_INTERVAL);
            tokio::spawn(crate::tls::serve_tls(
                listener,
                tls.server_config,
                router,
                stopped,
            ))
        }
        None => {
            tracing::warn!(
                address = %local,
                "wsgate is serving plain HTTP: requests without a token act as system:masters (--insecure-http)"
            );
            tokio::spawn(crate::listener::serve(listener, None, router, stopped))
        }
    };
    tokio::pin!(server);
    let result = tokio::select! {
        r = &mut server => Some(r),
        () = shutdown => None,
    };
    let result = match result {
        Some(r) => r,
        None => {
            tracing::info!(grace = ?opts.shutdown_grace, "shutting down: no new connections, ending watches");
            let _ = stop_tx.send(true);
            match tokio::time::timeout(opts.shutdown_grace, &mut server).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!(
                        "requests still running after the grace period; stopping anyway"
                    );
                    server.abort();
                    Ok(Ok(()))
                }
            }
        }
    };
    if let Some(w) = audit_writer
        && let Err(e) = w.finish().await
    {
        tracing::warn!(error = %e, "flushing the audit log failed");
    }
    // Every write was acknowledged durably; dropping the registry closes storage.
    drop(registry);
    match result {
        Ok(r) => r.map_err(ServeError::Serve),
        Err(e) => Err(ServeError::Serve(std::io::Error::other(e))),
    }
}
