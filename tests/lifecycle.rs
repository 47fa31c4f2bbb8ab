//! SIGTERM with watches open, through the real binary on plain HTTP: one
//! watch over HTTP/1.1 (one connection per watch, as kube-rs does) and one
//! over h2c (multiplexed, as client-go does). Both must end with a clean
//! end of stream (a terminal chunk; END_STREAM), not a reset, so a client
//! relists elsewhere; the process exits 0 well within its grace period,
//! and a restart on the same data serves everything acknowledged before.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use wsgate_e2e::{Engine, RawResponse, Server, raw_request};

const WATCH: &str = "/clusters/life/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=0";

fn events(body: &[u8]) -> Result<Vec<Value>> {
    body.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).with_context(|| String::from_utf8_lossy(l).into_owned()))
        .collect()
}

fn added_names(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "ADDED")
        .filter_map(|e| e["object"]["metadata"]["name"].as_str().map(str::to_owned))
        .collect()
}

/// An h2c watch: returns the body once the server ends the stream.
async fn h2c_watch(port: u16) -> Result<(u16, Vec<u8>)> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::get(format!("http://127.0.0.1:{port}{WATCH}"))
        .header("Accept", "application/json")
        .body(Empty::<Bytes>::new())?;
    let resp = send.send_request(req).await?;
    let status = resp.status().as_u16();
    // An error here is a reset stream, not a clean end.
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body.to_vec()))
}

#[test]
fn sigterm_ends_http1_and_h2c_watches_cleanly_and_loses_nothing() -> Result<()> {
    let mut s = Server::start(Engine::Embedded)?;
    s.create_workspace("life")?;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "before"}, "data": {"a": "1"}});
    let r = s.request(
        "POST",
        "/clusters/life/api/v1/namespaces/default/configmaps",
        &[("Content-Type", "application/json")],
        Some(cm.to_string().as_bytes()),
    )?;
    ensure!(r.status == 201, "create: {} {}", r.status, r.text());

    let port = s.port;
    // raw_request sends `Connection: close` and reads to the end, so it
    // returns when the server ends the watch; a missing terminal chunk
    // fails its chunked decoding.
    let http1 = std::thread::spawn(move || {
        raw_request(port, "GET", WATCH, &[("Accept", "application/json")], None)
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let h2 = rt.spawn(h2c_watch(port));

    // Both watches are registered once the gauge counts them.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = s.request("GET", "/metrics", &[], None)?;
        let open: f64 = m
            .text()
            .lines()
            .filter(|l| l.starts_with("wsgate_watches_open{") && l.contains("configmaps"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if open >= 2.0 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the two watches never opened: {}",
            m.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let started = Instant::now();
    let status = s.terminate(Duration::from_secs(20))?;
    ensure!(status.success(), "exit status after SIGTERM: {status}");
    // Well within the default grace period: the watches ended, nothing waited.
    ensure!(
        started.elapsed() < Duration::from_secs(8),
        "SIGTERM took {:?}",
        started.elapsed()
    );

    let r: RawResponse = http1
        .join()
        .map_err(|_| anyhow::anyhow!("the HTTP/1.1 watch thread panicked"))?
        .context("the HTTP/1.1 watch did not end cleanly")?;
    ensure!(r.status == 200, "HTTP/1.1 watch: {} {}", r.status, r.text());
    ensure!(
        added_names(&events(&r.body)?) == ["before"],
        "HTTP/1.1 watch events: {}",
        r.text()
    );
    let (code, body) = rt
        .block_on(h2)?
        .context("the h2c watch did not end cleanly")?;
    ensure!(code == 200, "h2c watch: {code}");
    ensure!(
        added_names(&events(&body)?) == ["before"],
        "h2c watch events: {}",
        String::from_utf8_lossy(&body)
    );

    s.restart()?;
    let r = s.request(
        "GET",
        "/clusters/life/api/v1/namespaces/default/configmaps/before",
        &[],
        None,
    )?;
    ensure!(r.status == 200, "after restart: {} {}", r.status, r.text());
    Ok(())
}
