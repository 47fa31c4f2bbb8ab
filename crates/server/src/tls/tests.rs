use std::os::unix::fs::PermissionsExt;

use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::body::Bytes;
use rustls::RootCertStore;
use rustls::pki_types::ServerName;

use super::*;
use hyper_util::rt::{TokioExecutor, TokioIo};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0)
}

#[test]
fn first_start_creates_and_later_starts_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let first = load_or_create(dir.path(), None, &[]).unwrap();
    let pki = dir.path().join(PKI_DIR);
    for f in [CA_CERT, CA_KEY, SERVING_CERT, SERVING_KEY, SERVING_META] {
        assert!(pki.join(f).exists(), "{f}");
    }
    assert_eq!(mode(&pki.join(CA_KEY)), 0o600);
    assert_eq!(mode(&pki.join(SERVING_KEY)), 0o600);
    assert_eq!(mode(&pki), 0o700);
    assert!(first.generated);
    let serving = std::fs::read(pki.join(SERVING_CERT)).unwrap();

    let second = load_or_create(dir.path(), None, &[]).unwrap();
    assert_eq!(first.ca_pem, second.ca_pem);
    assert_eq!(std::fs::read(pki.join(SERVING_CERT)).unwrap(), serving);

    // A new name re-issues the serving certificate under the same CA.
    let third = load_or_create(dir.path(), None, &["wsgate.example.com".into()]).unwrap();
    assert_eq!(first.ca_pem, third.ca_pem);
    assert_ne!(std::fs::read(pki.join(SERVING_CERT)).unwrap(), serving);

    // A missing serving key is regenerated; the CA stays.
    std::fs::remove_file(pki.join(SERVING_KEY)).unwrap();
    let fourth = load_or_create(dir.path(), None, &[]).unwrap();
    assert_eq!(first.ca_pem, fourth.ca_pem);
}

#[test]
fn configured_certificates_replace_generated_ones() {
    let dir = tempfile::tempdir().unwrap();
    let generated = load_or_create(dir.path(), None, &[]).unwrap();
    let pki = dir.path().join(PKI_DIR);
    // Configure a chain file (leaf + CA): the CA becomes the advertised one.
    let chain = format!(
        "{}{}",
        std::fs::read_to_string(pki.join(SERVING_CERT)).unwrap(),
        generated.ca_pem.clone().unwrap()
    );
    let other = tempfile::tempdir().unwrap();
    let chain_path = other.path().join("tls.crt");
    std::fs::write(&chain_path, chain).unwrap();
    let material = load_or_create(
        other.path(),
        Some((&chain_path, &pki.join(SERVING_KEY))),
        &[],
    )
    .unwrap();
    assert!(!material.generated);
    assert_eq!(material.ca_pem, generated.ca_pem);
    // The generated CA exists for client certificates; no serving files.
    assert!(!other.path().join(PKI_DIR).join(SERVING_CERT).exists());

    let missing = load_or_create(
        other.path(),
        Some((&other.path().join("nope.crt"), &pki.join(SERVING_KEY))),
        &[],
    );
    assert!(matches!(missing, Err(TlsError::Io { .. })));
}

#[test]
fn bad_names_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["", "a b", "-x.com", "x..com"] {
        assert!(
            matches!(
                load_or_create(dir.path(), None, &[bad.to_owned()]),
                Err(TlsError::InvalidName(_))
            ),
            "{bad:?}"
        );
    }
    assert!(
        load_or_create(
            dir.path(),
            None,
            &["10.0.0.1".into(), "*.example.com".into()]
        )
        .is_ok()
    );
}

fn client_config(ca_pem: Option<&str>, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    if let Some(pem) = ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

async fn start_server(
    material: &TlsMaterial,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let app = Router::new().route(
        "/hello",
        get(|req: axum::extract::Request| async move { format!("{:?}", req.version()) }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(serve_tls(
        listener,
        material.server_config.clone(),
        app,
        async move {
            let _ = rx.await;
        },
    ));
    (addr, tx)
}

/// GET /hello over TLS with the given ALPN; returns the body (the HTTP
/// version the server saw).
async fn get_hello(
    addr: std::net::SocketAddr,
    host: &str,
    ca_pem: Option<&str>,
    h2: bool,
) -> Result<String, String> {
    let alpn: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
    let connector = tokio_rustls::TlsConnector::from(client_config(ca_pem, alpn));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
    let io = TokioIo::new(tls);
    let req = Request::get(format!("https://{host}/hello"))
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = if h2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        send.send_request(req).await.map_err(|e| e.to_string())?
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = req;
        req.headers_mut()
            .insert(hyper::header::HOST, host.parse().map_err(|_| "host")?);
        send.send_request(req).await.map_err(|e| e.to_string())?
    };
    assert_eq!(resp.status(), 200);
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
}

#[tokio::test]
async fn https_over_h2_and_http1_with_the_generated_ca() {
    let dir = tempfile::tempdir().unwrap();
    let material = load_or_create(dir.path(), None, &[]).unwrap();
    let ca = material.ca_pem.clone().unwrap();
    let (addr, stop) = start_server(&material).await;

    assert_eq!(
        get_hello(addr, "localhost", Some(&ca), true).await.unwrap(),
        "HTTP/2.0"
    );
    assert_eq!(
        get_hello(addr, "localhost", Some(&ca), false)
            .await
            .unwrap(),
        "HTTP/1.1"
    );
    assert_eq!(
        get_hello(addr, "127.0.0.1", Some(&ca), true).await.unwrap(),
        "HTTP/2.0"
    );

    // Without the CA, or for a name not in the certificate, the handshake fails.
    let err = get_hello(addr, "localhost", None, true).await.unwrap_err();
    assert!(
        err.contains("UnknownIssuer") || err.contains("invalid peer certificate"),
        "{err}"
    );
    let err = get_hello(addr, "example.com", Some(&ca), false)
        .await
        .unwrap_err();
    assert!(
        err.contains("NotValidForName") || err.contains("certificate"),
        "{err}"
    );

    // A later start reuses the CA, so the same client still trusts it.
    let again = load_or_create(dir.path(), None, &[]).unwrap();
    let (addr2, stop2) = start_server(&again).await;
    assert_eq!(
        get_hello(addr2, "localhost", Some(&ca), true)
            .await
            .unwrap(),
        "HTTP/2.0"
    );
    let _ = stop.send(());
    let _ = stop2.send(());
}

#[test]
fn a_generated_certificate_near_expiry_is_renewed_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let material = load_or_create(dir.path(), None, &[]).unwrap();
    let pki = dir.path().join(PKI_DIR);
    let before = material.reloader.current_leaf().unwrap();
    assert!(!material.reloader.refresh().unwrap(), "nothing to do yet");
    // Pretend it expires tomorrow: the next check re-issues and swaps it.
    let meta: ServingMeta =
        serde_json::from_str(&std::fs::read_to_string(pki.join(SERVING_META)).unwrap()).unwrap();
    let soon = ServingMeta {
        not_after: Utc::now().timestamp() + 86_400,
        ..meta
    };
    std::fs::write(pki.join(SERVING_META), serde_json::to_vec(&soon).unwrap()).unwrap();
    assert!(material.reloader.refresh().unwrap());
    let after = material.reloader.current_leaf().unwrap();
    assert_ne!(before, after);
    // What is served is what is on disk (a restart serves the same).
    assert_eq!(read_certs(&pki.join(SERVING_CERT)).unwrap()[0], after);
    assert!(!material.reloader.refresh().unwrap(), "renewed once");
}

#[test]
fn configured_files_are_reloaded_when_they_change() {
    let source = tempfile::tempdir().unwrap();
    let generated = load_or_create(source.path(), None, &[]).unwrap();
    let pki = source.path().join(PKI_DIR);
    let conf = tempfile::tempdir().unwrap();
    let (cert, key) = (conf.path().join("tls.crt"), conf.path().join("tls.key"));
    std::fs::copy(pki.join(SERVING_CERT), &cert).unwrap();
    std::fs::copy(pki.join(SERVING_KEY), &key).unwrap();
    let material = load_or_create(conf.path(), Some((&cert, &key)), &[]).unwrap();
    let before = material.reloader.current_leaf().unwrap();
    assert!(!material.reloader.refresh().unwrap());
    // The operator (or cert-manager) replaces the files.
    let renewed = load_or_create(source.path(), None, &["new.example.com".into()]).unwrap();
    drop((generated, renewed));
    std::fs::copy(pki.join(SERVING_CERT), &cert).unwrap();
    std::fs::copy(pki.join(SERVING_KEY), &key).unwrap();
    assert!(material.reloader.refresh().unwrap());
    assert_ne!(material.reloader.current_leaf().unwrap(), before);
    // A broken file keeps the current certificate.
    std::fs::write(&cert, "garbage").unwrap();
    assert!(material.reloader.refresh().is_err());
    assert!(material.reloader.current_leaf().is_some());
}

#[tokio::test]
async fn client_certificates_are_requested_not_required_and_name_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let material = load_or_create(dir.path(), None, &[]).unwrap();
    let ca = material.ca_pem.clone().unwrap();
    let app = Router::new().route(
        "/hello",
        get(|peer: Option<axum::Extension<Peer>>| async move {
            match peer.and_then(|p| p.0.client_cert.clone()) {
                Some(id) => format!("{} {:?}", id.user, id.groups),
                None => "anonymous".to_owned(),
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_tls(
        listener,
        material.server_config.clone(),
        app,
        async move {
            let _ = rx.await;
        },
    ));

    // No certificate: the handshake still works.
    assert_eq!(
        get_hello(addr, "localhost", Some(&ca), false)
            .await
            .unwrap(),
        "anonymous"
    );

    let (cert, key) = issue_client_cert(
        dir.path(),
        "alice",
        &["dev".to_owned()],
        Duration::from_secs(3600),
    )
    .unwrap();
    assert_eq!(
        get_with_cert(addr, &ca, &cert, &key).await.unwrap(),
        r#"alice ["dev"]"#
    );
    assert!(issue_client_cert(dir.path(), "x", &["a".into(), "b".into()], Duration::ZERO).is_err());

    // A certificate from another CA fails the handshake.
    let other = tempfile::tempdir().unwrap();
    let (cert, key) =
        issue_client_cert(other.path(), "mallory", &[], Duration::from_secs(3600)).unwrap();
    assert!(get_with_cert(addr, &ca, &cert, &key).await.is_err());
    // So does an expired one.
    let (cert, key) = issue_client_cert(dir.path(), "old", &[], Duration::ZERO).unwrap();
    // X.509 times have whole seconds: let not-after pass.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(get_with_cert(addr, &ca, &cert, &key).await.is_err());
    let _ = tx.send(());
}

async fn get_with_cert(
    addr: std::net::SocketAddr,
    ca: &str,
    cert: &str,
    key: &str,
) -> Result<String, String> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<_> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost".to_owned()).unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::get("https://localhost/hello")
        .header(hyper::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    // TLS 1.3 reports a rejected client certificate on the first read.
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
}

#[tokio::test]
async fn a_changed_client_ca_file_is_reloaded() {
    // Two CAs (two data dirs); the server trusts the file's CA.
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ca_a = load_or_create(a.path(), None, &[]).unwrap().ca_pem.unwrap();
    let ca_b = load_or_create(b.path(), None, &[]).unwrap().ca_pem.unwrap();
    let conf = tempfile::tempdir().unwrap();
    let ca_file = conf.path().join("client-ca.crt");
    std::fs::write(&ca_file, &ca_a).unwrap();
    let material = load_with_client_ca(conf.path(), None, &[], Some(&ca_file)).unwrap();
    let server_ca = material.ca_pem.clone().unwrap();
    let app = Router::new().route(
        "/hello",
        get(|peer: Option<axum::Extension<Peer>>| async move {
            peer.and_then(|p| p.0.client_cert.clone())
                .map_or_else(|| "anonymous".to_owned(), |id| id.user.clone())
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_tls(
        listener,
        material.server_config.clone(),
        app,
        async move {
            let _ = rx.await;
        },
    ));
    let hour = Duration::from_secs(3600);
    let (ca, ka) = issue_client_cert(a.path(), "from-a", &[], hour).unwrap();
    let (cb, kb) = issue_client_cert(b.path(), "from-b", &[], hour).unwrap();
    assert_eq!(
        get_with_cert(addr, &server_ca, &ca, &ka).await.unwrap(),
        "from-a"
    );
    assert!(get_with_cert(addr, &server_ca, &cb, &kb).await.is_err());
    assert!(!material.reloader.client_ca().refresh().unwrap());

    // Rotate to CA b (with a as well during the overlap, then b alone).
    std::fs::write(&ca_file, format!("{ca_a}{ca_b}")).unwrap();
    assert!(material.reloader.client_ca().refresh().unwrap());
    assert_eq!(
        get_with_cert(addr, &server_ca, &cb, &kb).await.unwrap(),
        "from-b"
    );
    assert_eq!(
        get_with_cert(addr, &server_ca, &ca, &ka).await.unwrap(),
        "from-a"
    );
    std::fs::write(&ca_file, &ca_b).unwrap();
    assert!(material.reloader.client_ca().refresh().unwrap());
    assert!(get_with_cert(addr, &server_ca, &ca, &ka).await.is_err());
    // A broken file keeps the CA in use.
    std::fs::write(&ca_file, "garbage").unwrap();
    assert!(material.reloader.client_ca().refresh().is_err());
    assert_eq!(
        get_with_cert(addr, &server_ca, &cb, &kb).await.unwrap(),
        "from-b"
    );
    let _ = tx.send(());
}
