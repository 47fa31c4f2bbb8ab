use std::os::unix::fs::PermissionsExt;

use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::body::Bytes;
use rustls::RootCertStore;
use rustls::pki_types::ServerName;

use super::*;

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
    assert!(!other.path().join(PKI_DIR).exists());

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
