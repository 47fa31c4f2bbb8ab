//! Accepting connections: over TLS (the HTTP version from ALPN) or plain
//! HTTP (h2c with prior knowledge told apart by a peek), each served by
//! hyper's HTTP/1.1 or HTTP/2 connection until shutdown, then drained.
//!
//! Why not hyper-util's `auto` builder: it reads the first bytes of a
//! connection to tell the versions apart and replays them, so hyper's
//! first read returns those few bytes alone and its 8 KiB read buffer
//! grows to 16 KiB for the rest of the request head. That buffer lives as
//! long as the connection, and an HTTP/1.1 watch is a connection. Choosing
//! the version without consuming bytes keeps it at 8 KiB.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use crate::tls::{CertIdentity, Peer};

/// A client that does not finish the TLS handshake, or send the first
/// bytes of a plain connection, in this time is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight connections get to finish after shutdown is asked.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// What an HTTP/2 client sends first (RFC 9113, 3.4). No HTTP/1.1 request
/// starts with `PRI `, so four bytes decide.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const SNIFF_LEN: usize = 4;
/// Streams one HTTP/2 connection may have open: kube-apiserver's default
/// (Go's), not hyper's 200. client-go multiplexes every watch of a process
/// on one connection and opens another only past this.
const H2_MAX_STREAMS: u32 = 250;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// Serves `app` on `listener` until `shutdown` resolves: over TLS when
/// `tls` is given (HTTP/1.1 and h2 chosen by ALPN), else plain HTTP/1.1
/// and h2c. Then stops accepting and gives open connections a few seconds
/// to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, app, watcher) = (acceptor.clone(), app.clone(), graceful.watcher());
        tokio::spawn(async move {
            let Some(acceptor) = acceptor else {
                let Some(protocol) = handshake(addr, "reading the first bytes", sniff(&tcp)).await
                else {
                    return;
                };
                let peer = Peer {
                    addr,
                    client_cert: None,
                };
                serve_connection(tcp, protocol, peer, app, watcher).await;
                return;
            };
            let Some(tls) = handshake(addr, "TLS handshake", acceptor.accept(tcp)).await else {
                return;
            };
            let session = tls.get_ref().1;
            // The chain was verified in the handshake (client CA, expiry,
            // clientAuth usage); only its subject is read here.
            let client_cert = session
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|leaf| CertIdentity::from_der(leaf))
                .map(Arc::new);
            // RFC 9113 9.2: h2 over TLS is negotiated by ALPN only.
            let protocol = if session.alpn_protocol() == Some(b"h2") {
                Protocol::Http2
            } else {
                Protocol::Http1
            };
            let peer = Peer { addr, client_cert };
            serve_connection(tls, protocol, peer, app, watcher).await;
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("some connections were still open after the drain timeout");
    }
    Ok(())
}

/// Runs a connection's first step within `HANDSHAKE_TIMEOUT`; `None`
/// (logged at debug: a client's problem, not ours) if it fails or stalls.
async fn handshake<T>(
    peer: SocketAddr,
    step: &str,
    fut: impl Future<Output = io::Result<T>>,
) -> Option<T> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, fut).await {
        Ok(Ok(t)) => Some(t),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "{step} failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "{step} timed out");
            None
        }
    }
}

/// Tells h2c prior knowledge from HTTP/1.1 by peeking at the first bytes,
/// leaving them in the socket for hyper's first read.
async fn sniff(tcp: &TcpStream) -> io::Result<Protocol> {
    let mut buf = [0u8; SNIFF_LEN];
    loop {
        let n = tcp.peek(&mut buf).await?;
        if n == 0 {
            // Closed before a byte: HTTP/1.1 ends it quietly.
            return Ok(Protocol::Http1);
        }
        if !H2_PREFACE.starts_with(&buf[..n]) {
            return Ok(Protocol::Http1);
        }
        if n == SNIFF_LEN {
            return Ok(Protocol::Http2);
        }
        // A prefix of the preface so far: a peek would return the same
        // bytes at once, so wait for the rest.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Serves one connection with `protocol`, every request carrying `peer`.
async fn serve_connection<IO>(io: IO, protocol: Protocol, peer: Peer, app: Router, watcher: Watcher)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let addr = peer.addr;
    let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
        req.extensions_mut().insert(peer.clone());
        app.clone().oneshot(req)
    });
    let io = TokioIo::new(io);
    // No handler takes a connection over (no exec/attach streams), so
    // HTTP/1.1 upgrades are not served.
    let result = match protocol {
        Protocol::Http1 => {
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(io, service);
            watcher.watch(conn).await
        }
        Protocol::Http2 => {
            let conn = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .max_concurrent_streams(H2_MAX_STREAMS)
                .serve_connection(io, service);
            watcher.watch(conn).await
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = %addr, error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sniff_tells_h2c_from_http1_without_consuming() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        for (sent, want) in [
            (&b"GET / HTTP/1.1\r\n\r\n"[..], Protocol::Http1),
            (H2_PREFACE, Protocol::Http2),
            // A preface arriving byte by byte.
            (&b"P"[..], Protocol::Http2),
            (&b"PUT /x HTTP/1.1\r\n\r\n"[..], Protocol::Http1),
        ] {
            let mut client = TcpStream::connect(addr).await.expect("connect");
            let (server, _) = listener.accept().await.expect("accept");
            use tokio::io::AsyncWriteExt;
            client.write_all(sent).await.expect("write");
            if sent == b"P" {
                let rest = &H2_PREFACE[1..];
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    client.write_all(rest).await.expect("write rest");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                });
            }
            let got = sniff(&server).await.expect("sniff");
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(sent));
            // The bytes are still there for hyper.
            let mut first = [0u8; 1];
            assert_eq!(server.peek(&mut first).await.expect("peek"), 1);
            assert_eq!(first[0], sent[0]);
        }
    }

    /// Plain HTTP/1.1 and h2c prior knowledge on one listener, each request
    /// carrying its connection's peer address; one h2c connection holds
    /// 250 open streams; shutdown ends `serve`.
    #[tokio::test]
    async fn plain_http1_and_h2c_carry_the_peer_and_h2_holds_250_streams() {
        use axum::routing::get;
        use bytes::Bytes;
        use http_body_util::{BodyExt, Empty};

        let app =
            Router::new()
                .route(
                    "/hold",
                    get(|| async {
                        axum::body::Body::from_stream(futures::stream::pending::<
                            Result<Bytes, std::io::Error>,
                        >())
                    }),
                )
                .route(
                    "/hello",
                    get(
                        |axum::Extension(peer): axum::Extension<Peer>,
                         req: axum::extract::Request| async move {
                            format!("{:?} {}", req.version(), peer.addr.ip())
                        },
                    ),
                );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, None, app, async move {
            let _ = stopped.await;
        }));

        for h2 in [false, true] {
            let io = TokioIo::new(TcpStream::connect(addr).await.expect("connect"));
            let req = hyper::Request::get(format!("http://{addr}/hello"))
                .header(hyper::header::HOST, addr.to_string())
                .body(Empty::<Bytes>::new())
                .expect("request");
            let resp = if h2 {
                let (mut send, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .expect("h2c handshake");
                tokio::spawn(conn);
                send.send_request(req).await.expect("h2c request")
            } else {
                let (mut send, conn) = hyper::client::conn::http1::handshake(io)
                    .await
                    .expect("http1 handshake");
                tokio::spawn(conn);
                send.send_request(req).await.expect("http1 request")
            };
            assert_eq!(resp.status(), 200);
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            let want = if h2 {
                "HTTP/2.0 127.0.0.1"
            } else {
                "HTTP/1.1 127.0.0.1"
            };
            assert_eq!(String::from_utf8_lossy(&body), want);
        }

        // As many long-running streams on one h2c connection as
        // kube-apiserver allows (a client-go process's watches share one).
        let io = TokioIo::new(TcpStream::connect(addr).await.expect("connect"));
        let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .expect("h2c handshake");
        tokio::spawn(conn);
        let mut held = Vec::new();
        for _ in 0..H2_MAX_STREAMS {
            let mut send = send.clone();
            let req = hyper::Request::get(format!("http://{addr}/hold"))
                .body(Empty::<Bytes>::new())
                .expect("request");
            held.push(tokio::spawn(async move {
                send.ready().await.expect("ready");
                // The response (and its stream) stays open while held.
                send.send_request(req).await.expect("stream")
            }));
        }
        let mut open = Vec::new();
        for h in held {
            let resp = tokio::time::timeout(Duration::from_secs(5), h)
                .await
                .expect("every stream answered while the others stay open")
                .expect("join");
            assert_eq!(resp.status(), 200);
            open.push(resp);
        }
        drop(open);

        stop.send(()).expect("server running");
        tokio::time::timeout(Duration::from_secs(15), server)
            .await
            .expect("serve returns after shutdown")
            .expect("join")
            .expect("serve");
    }
}
