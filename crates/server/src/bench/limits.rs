//! The physical limits measured in the same run: a bare hyper handler
//! answering every request with a ~150-byte ConfigMap (what a GET through
//! wsgate is compared with), and raw `etcd-client` put/get against the
//! etcd the server uses (what CREATE on etcd is compared with).

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, header};
use hyper_util::rt::TokioIo;

use super::scenarios::{Outcome, Worker};

/// A ConfigMap as a server would return it, ~150 bytes.
pub const CONFIGMAP_150B: &str = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"g-1","namespace":"get","resourceVersion":"12345"},"data":{"k":"vvvvvvvvvvvvvvvvvvvvvvvvv"}}"#;

/// Serves [`CONFIGMAP_150B`] to every request on `addr` over HTTP/1.1 with
/// keep-alive, until the process is killed.
pub async fn serve_bare_hyper(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let body = Bytes::from_static(CONFIGMAP_150B.as_bytes());
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |_req| {
                let body = body.clone();
                async move {
                    let mut r = Response::new(Full::new(body));
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

/// Keys the raw get phase reads (written before it, untimed).
pub const RAW_GET_KEYS: u64 = 1000;

/// One closed-loop worker of raw etcd puts (new keys) or point gets.
pub struct RawEtcd {
    pub client: etcd_client::Client,
    pub prefix: String,
    pub worker: usize,
    pub value: Bytes,
    pub mode: RawMode,
}

/// What a raw etcd worker sends.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RawMode {
    /// A plain `Put` of a new key.
    Put,
    /// The create-if-absent transaction a Kubernetes create needs on etcd
    /// (`create_revision == 0` then put, else get): the limit of a
    /// guarded write.
    Txn,
    /// A point `Get`.
    Get,
}

impl Worker for RawEtcd {
    async fn op(&mut self, seq: u64) -> Outcome {
        let mut kv = self.client.kv_client();
        let key = format!("{}new/{:04}/{seq:08}", self.prefix, self.worker);
        let r = match self.mode {
            RawMode::Get => {
                let i = (self.worker as u64 * 31 + seq) % RAW_GET_KEYS;
                match kv.get(format!("{}get/{i:06}", self.prefix), None).await {
                    Ok(r) if r.kvs().len() == 1 => Ok(()),
                    Ok(_) => return Outcome::Err("raw etcd get: key missing".into()),
                    Err(e) => Err(e),
                }
            }
            RawMode::Put => kv.put(key, self.value.to_vec(), None).await.map(drop),
            RawMode::Txn => {
                let txn = Txn::new()
                    .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key.clone(), self.value.to_vec(), None)])
                    .or_else([TxnOp::get(key, None)]);
                match kv.txn(txn).await {
                    Ok(r) if r.succeeded() => Ok(()),
                    Ok(_) => return Outcome::Err("raw etcd txn: key existed".into()),
                    Err(e) => Err(e),
                }
            }
        };
        match r {
            Ok(()) => Outcome::Ok,
            Err(e) => Outcome::Err(format!("raw etcd: {e}")),
        }
    }
}

/// Writes the keys the raw get phase reads.
pub async fn raw_get_keys(
    client: &etcd_client::Client,
    prefix: &str,
    value: &Bytes,
) -> anyhow::Result<()> {
    let mut kv = client.kv_client();
    for i in 0..RAW_GET_KEYS {
        kv.put(format!("{prefix}get/{i:06}"), value.to_vec(), None)
            .await
            .context("raw etcd put")?;
    }
    Ok(())
}
