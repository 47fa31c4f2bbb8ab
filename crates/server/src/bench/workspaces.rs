//! `wsgate bench --scenarios workspaces --workspaces N`: creates N workspaces
//! through the HTTP API and reports the creation rate, the server's RSS
//! before and after (per idle workspace), storage bytes per workspace, the
//! p99 of a GET in a workspace created before the N vs one created after,
//! and the time a restarted server needs to load them all and be ready.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper::{Method, StatusCode};

use super::client::{Conn, Endpoint, Req};
use super::histogram::Latencies;
use super::process::{self, Child, Pids, rss_bytes};
use super::progress::Progress;
use super::report::{Report, Row};
use super::scenarios::{Outcome, Runner, Worker};

const WS_API: &str = "/apis/tenancy.wsgate.io/v1alpha1/workspaces";
const JSON: &str = "application/json";
/// The server logs how long its store open and workspace index load took
/// at this level.
const LOG_FILTER: &str = "warn,registry=info,storage=info";

/// What one run measured, for the report and docs/benchmarks.md.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct WorkspaceFigures {
    pub target: String,
    pub workspaces: u64,
    pub create_per_sec: f64,
    pub create_p99_ms: Option<f64>,
    pub rss_before_mib: f64,
    pub rss_after_mib: f64,
    pub rss_bytes_per_workspace: f64,
    pub storage_bytes_per_workspace: f64,
    pub get_old_p99_ms: Option<f64>,
    pub get_fresh_p99_ms: Option<f64>,
    pub restart_ready_s: f64,
    /// RSS of the restarted server once ready (no creation garbage).
    pub rss_after_restart_mib: f64,
    /// As the restarted server logged it.
    pub index_load_ms: Option<u64>,
    /// The embedded engine's open (keys read from disk), as logged.
    pub store_open_ms: Option<u64>,
}

/// The run's directory: removed at the end unless asked to keep it.
enum KeptOrTemp {
    Temp(tempfile::TempDir),
    Kept(std::path::PathBuf),
}

impl KeptOrTemp {
    fn path(&self) -> &Path {
        match self {
            KeptOrTemp::Temp(d) => d.path(),
            KeptOrTemp::Kept(p) => p,
        }
    }
}

struct GetWorker {
    conn: Conn,
    req: Req,
}

impl Worker for GetWorker {
    async fn op(&mut self, _seq: u64) -> Outcome {
        match self.conn.send(&self.req).await {
            Ok(r) if r.status == StatusCode::OK => Outcome::Ok,
            Ok(r) => Outcome::Err(format!("GET {} -> {}", self.req.path, r.status)),
            Err(e) => Outcome::Err(format!("GET {}: {e:#}", self.req.path)),
        }
    }
}

fn ws_body(name: &str) -> String {
    format!(
        r#"{{"apiVersion":"tenancy.wsgate.io/v1alpha1","kind":"Workspace","metadata":{{"name":"{name}"}}}}"#
    )
}

async fn post(conn: &mut Conn, path: String, body: String) -> anyhow::Result<()> {
    let req = Req::with_body(Method::POST, path, JSON, body, StatusCode::CREATED);
    let r = conn.send(&req).await?;
    if r.status != StatusCode::CREATED {
        bail!(
            "POST {} -> {}: {}",
            req.path,
            r.status,
            String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
        );
    }
    Ok(())
}

/// A workspace with one ConfigMap to GET.
async fn workspace_with_object(endpoint: &Endpoint, name: &str) -> anyhow::Result<()> {
    let mut c = Conn::connect(endpoint).await?;
    post(&mut c, WS_API.into(), ws_body(name)).await?;
    post(
        &mut c,
        format!("/clusters/{name}/api/v1/namespaces/default/configmaps"),
        r#"{"metadata":{"name":"c"},"data":{"k":"v"}}"#.into(),
    )
    .await
}

fn dir_bytes(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

async fn storage_bytes(dir: &Path, etcd: Option<&str>) -> anyhow::Result<u64> {
    match etcd {
        None => Ok(dir_bytes(&dir.join("data"))),
        Some(url) => {
            let mut c = etcd_client::Client::connect([url], None).await?;
            Ok(c.status().await?.db_size().max(0) as u64)
        }
    }
}

fn index_load_ms(dir: &Path) -> Option<u64> {
    logged_ms(dir, "workspace index loaded", "elapsed_ms=")
}

/// `<field><n>` of the last server log line containing `message`.
fn logged_ms(dir: &Path, message: &str, field: &str) -> Option<u64> {
    let log = std::fs::read_to_string(dir.join("wsgate.log")).ok()?;
    let line = log.lines().rev().find(|l| l.contains(message))?;
    // Without colour codes (`\x1b[...m`), then `elapsed_ms=<n>`.
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    let rest = plain.split(field).nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

async fn get_p99(
    runner: &Runner,
    endpoint: &Endpoint,
    ws: &str,
    label: &str,
    target: &str,
) -> anyhow::Result<Row> {
    let mut workers = Vec::new();
    for _ in 0..8 {
        workers.push(GetWorker {
            conn: Conn::connect(endpoint).await?,
            req: Req::get(format!(
                "/clusters/{ws}/api/v1/namespaces/default/configmaps/c"
            )),
        });
    }
    Ok(runner.closed_loop(label, target, workers).await)
}

/// Runs the scenario on a server it starts (and restarts) itself.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    exe: &Path,
    target: &str,
    etcd: Option<(&str, Option<u32>)>,
    run_id: &str,
    n: u64,
    connections: usize,
    runner: Runner,
    progress: Progress,
    report: &mut Report,
) -> anyhow::Result<WorkspaceFigures> {
    let dir = tempfile::tempdir()?;
    // To time further restarts by hand: the data stays (path printed).
    let dir = if std::env::var_os("WSGATE_BENCH_KEEP_DATA").is_some() {
        let kept = dir.keep();
        progress.println(format!("[{target}] keeping the data in {}", kept.display()));
        KeptOrTemp::Kept(kept)
    } else {
        KeptOrTemp::Temp(dir)
    };
    let etcd_url = etcd.map(|(u, _)| u);
    let root = format!("{run_id}-ws");
    progress.println(format!(
        "[{target}] workspaces: starting wsgate serve, then creating {n} workspaces ..."
    ));
    let (server, endpoint) =
        process::start_server_in(exe, etcd_url, &root, dir.path(), Some(LOG_FILTER)).await?;
    let pids = Pids {
        server: Some(server.pid()),
        etcd: etcd.and_then(|(_, p)| p),
    };
    let runner = Runner { pids, ..runner };
    let mut fig = WorkspaceFigures {
        target: target.into(),
        workspaces: n,
        ..Default::default()
    };
    workspace_with_object(&endpoint, "bench-old").await?;
    runner.quiesce().await;
    let rss0 = rss_bytes(server.pid()).unwrap_or(0);
    let disk0 = storage_bytes(dir.path(), etcd_url).await.unwrap_or(0);

    // Create N workspaces, `connections` at a time.
    let next = Arc::new(AtomicU64::new(0));
    let bar = progress.counted(&format!("create {n} workspaces [{target}]"), n);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (next, endpoint, bar) = (next.clone(), endpoint.clone(), bar.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::connect(&endpoint).await?;
            let mut lat = Latencies::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                post(&mut conn, WS_API.into(), ws_body(&format!("w-{i:07}"))).await?;
                lat.record(t.elapsed());
                if i % 256 == 0 {
                    bar.set_position(i);
                }
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Latencies::new();
    for t in tasks {
        lat.merge(&t.await.context("creator task")??);
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    fig.create_per_sec = n as f64 / elapsed.as_secs_f64();
    fig.create_p99_ms = lat.p99().map(|d| d.as_secs_f64() * 1e3);
    let mut row = Row::new(format!("workspace CREATE x{n}"), target, connections);
    row.ops = n;
    row.ops_per_sec = fig.create_per_sec;
    row.latencies(&lat);
    report.rows.push(row);

    runner.quiesce().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss1 = rss_bytes(server.pid()).unwrap_or(0);
    let disk1 = storage_bytes(dir.path(), etcd_url).await.unwrap_or(0);
    fig.rss_before_mib = rss0 as f64 / 1048576.0;
    fig.rss_after_mib = rss1 as f64 / 1048576.0;
    fig.rss_bytes_per_workspace = rss1.saturating_sub(rss0) as f64 / n as f64;
    fig.storage_bytes_per_workspace = disk1.saturating_sub(disk0) as f64 / n as f64;

    // GET in an old vs a fresh workspace.
    workspace_with_object(&endpoint, "bench-fresh").await?;
    let old = get_p99(
        &runner,
        &endpoint,
        "bench-old",
        "GET in the first workspace",
        target,
    )
    .await?;
    let fresh = get_p99(
        &runner,
        &endpoint,
        "bench-fresh",
        "GET in the newest workspace",
        target,
    )
    .await?;
    fig.get_old_p99_ms = old.p99_ms;
    fig.get_fresh_p99_ms = fresh.p99_ms;
    report.rows.push(old);
    report.rows.push(fresh);

    // Restart on the same data: time until /readyz, then a check that the
    // last workspace resolves.
    drop(server);
    let t = Instant::now();
    let (server, endpoint) =
        process::start_server_in(exe, etcd_url, &root, dir.path(), Some(LOG_FILTER)).await?;
    fig.restart_ready_s = t.elapsed().as_secs_f64();
    fig.index_load_ms = index_load_ms(dir.path());
    fig.store_open_ms = logged_ms(dir.path(), "embedded store opened", "elapsed_ms=");
    tokio::time::sleep(Duration::from_secs(1)).await;
    fig.rss_after_restart_mib = rss_bytes(server.pid()).unwrap_or(0) as f64 / 1048576.0;
    let mut c = Conn::connect(&endpoint).await?;
    let last = format!(
        "/clusters/w-{:07}/api/v1/namespaces/default",
        n.saturating_sub(1)
    );
    let r = c.send(&Req::get(last.clone())).await?;
    if r.status != StatusCode::OK {
        bail!("after the restart, GET {last} -> {}", r.status);
    }
    drop::<Child>(server);

    report.check(
        format!("workspace creation [{target}]"),
        fig.create_per_sec,
        "/s",
        ">= 10000",
        fig.create_per_sec >= 10_000.0,
    );
    report.check(
        format!("RSS per idle workspace [{target}]"),
        fig.rss_bytes_per_workspace,
        "B",
        "<= 1024",
        fig.rss_bytes_per_workspace <= 1024.0,
    );
    report.check(
        format!("storage per workspace [{target}]"),
        fig.storage_bytes_per_workspace,
        "B",
        "-",
        true,
    );
    if let (Some(o), Some(f)) = (fig.get_old_p99_ms, fig.get_fresh_p99_ms) {
        report.check(
            format!("GET p99 newest / first workspace [{target}]"),
            f / o,
            "x",
            "~1",
            f / o < 1.5,
        );
    }
    report.check(
        format!("restart to ready with {n} workspaces [{target}]"),
        fig.restart_ready_s,
        "s",
        "< 10",
        fig.restart_ready_s < 10.0,
    );
    report.notes.push(format!(
        "[{target}] {n} workspaces: {:.0}/s (p99 {:.1} ms); RSS {:.1} -> {:.1} MiB ({:.0} B/workspace); storage {:.0} B/workspace; GET p99 first {:.2} ms vs newest {:.2} ms; restart {:.2} s (store open {} ms, index load {} ms, RSS after restart {:.1} MiB)",
        fig.create_per_sec,
        fig.create_p99_ms.unwrap_or(0.0),
        fig.rss_before_mib,
        fig.rss_after_mib,
        fig.rss_bytes_per_workspace,
        fig.storage_bytes_per_workspace,
        fig.get_old_p99_ms.unwrap_or(0.0),
        fig.get_fresh_p99_ms.unwrap_or(0.0),
        fig.restart_ready_s,
        fig.store_open_ms.map_or("?".into(), |m| m.to_string()),
        fig.index_load_ms.map_or("?".into(), |m| m.to_string()),
        fig.rss_after_restart_mib,
    ));
    Ok(fig)
}
