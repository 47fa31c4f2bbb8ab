//! Turning an [`EtcdConfig`] into an `etcd-client` connection.

use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use crate::{Error, EtcdConfig, Result};

/// HTTP/2 pings on idle connections, so a watch on a vanished host (no TCP
/// reset) is noticed. etcd's default `--grpc-keepalive-min-time` is 5 s and
/// it closes connections that ping more often.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn connect(config: &EtcdConfig) -> Result<Client> {
    if config.endpoints.is_empty() {
        return Err(Error::InvalidArgument(
            "etcd: at least one endpoint is required".into(),
        ));
    }
    let options = options(config)?;
    Client::connect(&config.endpoints, Some(options))
        .await
        .map_err(|e| match e {
            // Authentication happens here and is a configuration problem.
            etcd_client::Error::GRpcStatus(ref s)
                if matches!(
                    s.code(),
                    tonic::Code::Unauthenticated
                        | tonic::Code::InvalidArgument
                        | tonic::Code::PermissionDenied
                        | tonic::Code::FailedPrecondition
                ) =>
            {
                Error::InvalidArgument(format!("etcd: authentication failed: {}", s.message()))
            }
            etcd_client::Error::InvalidArgs(m) => Error::InvalidArgument(format!("etcd: {m}")),
            etcd_client::Error::InvalidUri(u) => {
                Error::InvalidArgument(format!("etcd: bad endpoint: {u}"))
            }
            other => Error::unavailable(
                format!("cannot connect to etcd at {:?}", config.endpoints),
                other,
            ),
        })
}

fn options(config: &EtcdConfig) -> Result<ConnectOptions> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(config.dial_timeout)
        .with_timeout(config.request_timeout)
        .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)
        // A member cut off from the quorum then fails requests and ends
        // watches ("no leader") instead of serving nothing, so the watch
        // reconnects to a member that has a leader.
        .with_require_leader(true);

    match (&config.username, &config.password) {
        (Some(user), Some(password)) => {
            options = options
                .with_user(user.clone(), password.clone())
                .with_auto_token_refresh(true);
        }
        (None, None) => {}
        _ => {
            return Err(Error::InvalidArgument(
                "etcd: username and password must be given together".into(),
            ));
        }
    }

    if let Some(tls) = tls(config)? {
        options = options.with_tls(tls);
    }
    Ok(options)
}

/// TLS settings when any TLS file is configured or an endpoint is https.
fn tls(config: &EtcdConfig) -> Result<Option<TlsOptions>> {
    let any_https = config.endpoints.iter().any(|e| e.starts_with("https://"));
    let any_file = config.ca_file.is_some() || config.cert_file.is_some();
    if !any_https && !any_file {
        return Ok(None);
    }
    if let Some(plain) = config.endpoints.iter().find(|e| !e.starts_with("https://")) {
        return Err(Error::InvalidArgument(format!(
            "etcd: TLS is configured but endpoint {plain} is not https://"
        )));
    }
    let mut tls = TlsOptions::new();
    tls = match &config.ca_file {
        Some(ca) => tls.ca_certificate(Certificate::from_pem(read(ca, "ca_file")?)),
        None => tls.with_native_roots(),
    };
    match (&config.cert_file, &config.key_file) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(
                read(cert, "cert_file")?,
                read(key, "key_file")?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(Error::InvalidArgument(
                "etcd: cert_file and key_file must be given together".into(),
            ));
        }
    }
    Ok(Some(tls))
}

fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::InvalidArgument(format!("etcd: cannot read {what} {}: {e}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_needs_https_endpoints() {
        let mut c = EtcdConfig::new(vec!["http://127.0.0.1:2379".into()]);
        assert!(tls(&c).is_ok_and(|t| t.is_none()));
        c.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(matches!(tls(&c), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn half_credentials_are_rejected() {
        let mut c = EtcdConfig::new(vec!["http://127.0.0.1:2379".into()]);
        c.username = Some("root".into());
        assert!(matches!(options(&c), Err(Error::InvalidArgument(_))));
    }
}
