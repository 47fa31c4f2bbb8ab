//! A lean HTTP/1.1 client on hyper 1: one keep-alive connection per
//! [`Conn`], reconnecting after a failure; [`Pool`] shares N of them among
//! open-loop senders; [`WatchStream`] reads a watch response line by line.
//! [`H2Conn`] multiplexes watches on one HTTP/2 connection (prior
//! knowledge, as client-go does over TLS after ALPN).

use std::net::SocketAddr;
use std::sync::Mutex;

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::client::conn::http2;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::Semaphore;

/// Where the server is: `http://host:port` resolved once.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    host: HeaderValue,
}

impl Endpoint {
    /// Parses `http://HOST:PORT` (a trailing `/` is allowed, a path is not).
    pub async fn parse(url: &str) -> anyhow::Result<Endpoint> {
        if url.starts_with("https://") {
            bail!("{url}: only plain-HTTP servers can be benchmarked for now");
        }
        let authority = url
            .strip_prefix("http://")
            .with_context(|| format!("{url}: expected http://HOST:PORT"))?
            .trim_end_matches('/');
        if authority.contains('/') {
            bail!("{url}: give the server's root URL, without a path");
        }
        let addr = tokio::net::lookup_host(authority)
            .await
            .with_context(|| format!("resolving {authority}"))?
            .next()
            .with_context(|| format!("{authority} resolves to no address"))?;
        Ok(Endpoint {
            addr,
            host: HeaderValue::from_str(authority).context("host header")?,
        })
    }

    pub fn from_addr(addr: SocketAddr) -> Endpoint {
        let host = HeaderValue::from_str(&addr.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        Endpoint { addr, host }
    }

    async fn handshake(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        tcp.set_nodelay(true)?;
        let (send, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .context("HTTP/1.1 handshake")?;
        tokio::spawn(async move {
            // The connection ends when the server closes it or the sender
            // is dropped; the next request then sees the failure.
            let _ = conn.await;
        });
        Ok(send)
    }

    /// One HTTP/2 connection without TLS (h2c with prior knowledge, which
    /// the server's listener detects from the connection preface).
    async fn handshake_h2(&self) -> anyhow::Result<http2::SendRequest<Full<Bytes>>> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        tcp.set_nodelay(true)?;
        let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .context("HTTP/2 handshake")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&'static str>,
        body: Bytes,
    ) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.host.clone())
            .header(header::ACCEPT, "application/json");
        if let Some(ct) = content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        Ok(b.body(Full::new(body))?)
    }
}

/// One request to send.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub content_type: Option<&'static str>,
    pub body: Bytes,
    /// The only status that counts as success.
    pub expect: StatusCode,
}

impl Req {
    pub fn get(path: impl Into<String>) -> Req {
        Req {
            method: Method::GET,
            path: path.into(),
            content_type: None,
            body: Bytes::new(),
            expect: StatusCode::OK,
        }
    }

    pub fn with_body(
        method: Method,
        path: impl Into<String>,
        content_type: &'static str,
        body: impl Into<Bytes>,
        expect: StatusCode,
    ) -> Req {
        Req {
            method,
            path: path.into(),
            content_type: Some(content_type),
            body: body.into(),
            expect,
        }
    }
}

/// A complete response.
pub struct Resp {
    pub status: StatusCode,
    pub body: Bytes,
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    endpoint: Endpoint,
    send: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    pub async fn connect(endpoint: &Endpoint) -> anyhow::Result<Conn> {
        let send = endpoint.handshake().await?;
        Ok(Conn {
            endpoint: endpoint.clone(),
            send: Some(send),
        })
    }

    async fn sender(&mut self) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        if self.send.as_ref().is_none_or(|s| s.is_closed()) {
            self.send = Some(self.endpoint.handshake().await?);
        }
        let send = self
            .send
            .as_mut()
            .context("connection vanished after a handshake")?;
        send.ready().await.context("connection not ready")?;
        Ok(send)
    }

    /// Sends `req` and reads the whole response. A transport error drops
    /// the connection (the next call reconnects) and is returned.
    pub async fn send(&mut self, req: &Req) -> anyhow::Result<Resp> {
        let r = async {
            let request = self.endpoint.request(
                req.method.clone(),
                &req.path,
                req.content_type,
                req.body.clone(),
            )?;
            let resp = self.sender().await?.send_request(request).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok(Resp { status, body })
        }
        .await;
        if r.is_err() {
            self.send = None;
        }
        r
    }

    /// Starts a streaming GET (a watch); the connection belongs to the
    /// stream from then on.
    pub async fn stream(mut self, path: &str) -> anyhow::Result<(StatusCode, WatchStream)> {
        let request = self
            .endpoint
            .request(Method::GET, path, None, Bytes::new())?;
        let resp = self.sender().await?.send_request(request).await?;
        Ok(WatchStream::start(resp, Held::H1 { _conn: self }))
    }
}

/// One HTTP/2 connection carrying many streaming GETs (watches).
#[derive(Clone)]
pub struct H2Conn {
    endpoint: Endpoint,
    send: http2::SendRequest<Full<Bytes>>,
}

impl H2Conn {
    pub async fn connect(endpoint: &Endpoint) -> anyhow::Result<H2Conn> {
        Ok(H2Conn {
            endpoint: endpoint.clone(),
            send: endpoint.handshake_h2().await?,
        })
    }

    /// Starts a streaming GET on a new stream of this connection.
    pub async fn stream(&self, path: &str) -> anyhow::Result<(StatusCode, WatchStream)> {
        // HTTP/2 carries scheme and authority as pseudo-headers: an
        // absolute URI, not a Host header.
        let uri = format!("http://{}{path}", self.endpoint.addr);
        let mut request = self
            .endpoint
            .request(Method::GET, &uri, None, Bytes::new())?;
        request.headers_mut().remove(header::HOST);
        let mut send = self.send.clone();
        send.ready().await.context("HTTP/2 connection not ready")?;
        let resp = send.send_request(request).await?;
        let held = Held::H2 {
            _send: self.send.clone(),
        };
        Ok(WatchStream::start(resp, held))
    }
}

/// What keeps a watch's connection open while its stream is read.
enum Held {
    H1 {
        _conn: Conn,
    },
    H2 {
        _send: http2::SendRequest<Full<Bytes>>,
    },
}

/// N connections shared by tasks that send on their own schedule.
pub struct Pool {
    endpoint: Endpoint,
    idle: Mutex<Vec<Conn>>,
    permits: Semaphore,
}

impl Pool {
    pub fn new(endpoint: &Endpoint, size: usize) -> Pool {
        Pool {
            endpoint: endpoint.clone(),
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Semaphore::new(size.max(1)),
        }
    }

    fn take_idle(&self) -> Option<Conn> {
        self.idle.lock().ok().and_then(|mut v| v.pop())
    }

    fn put_idle(&self, c: Conn) {
        if let Ok(mut v) = self.idle.lock() {
            v.push(c);
        }
    }

    /// Waits for a free connection, then `before_send` builds the request
    /// (so a timestamp inside it is taken when it really leaves).
    pub async fn send_with(&self, before_send: impl FnOnce() -> Req) -> anyhow::Result<Resp> {
        let _permit = self.permits.acquire().await?;
        let mut conn = match self.take_idle() {
            Some(c) => c,
            None => Conn::connect(&self.endpoint).await?,
        };
        let r = conn.send(&before_send()).await;
        self.put_idle(conn);
        r
    }

    pub async fn send(&self, req: &Req) -> anyhow::Result<Resp> {
        self.send_with(|| req.clone()).await
    }
}

/// The body of a watch response, split into lines (one event each).
pub struct WatchStream {
    body: Incoming,
    buf: BytesMut,
    _conn: Held,
}

impl WatchStream {
    /// The response's status and its body as a line stream that keeps
    /// `conn` open while it lives.
    fn start(resp: hyper::Response<Incoming>, conn: Held) -> (StatusCode, WatchStream) {
        let status = resp.status();
        let stream = WatchStream {
            body: resp.into_body(),
            buf: BytesMut::new(),
            _conn: conn,
        };
        (status, stream)
    }

    /// The next complete line without its `\n`; None at the end.
    pub async fn next_line(&mut self) -> anyhow::Result<Option<Bytes>> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line = self.buf.split_to(i + 1).freeze();
                return Ok(Some(line.slice(..i)));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(frame) => {
                    if let Ok(data) = frame?.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}
