//! `wsgate bench --scenarios fairness`: a noisy workspace against a quiet
//! one on the same server.
//!
//! The quiet workspace sends GETs of one ConfigMap at a fixed rate (open
//! loop, 50/s by default), measured from the planned send time so a stalled
//! server cannot hide its own delay; the send times come from a thread
//! sleeping with the OS's precision (tokio's timer would add up to 1 ms),
//! and the quiet client's threads run at nice -10 when allowed, as a client
//! on another machine would not wait behind the noisy load generator's
//! threads. The noisy workspace runs many closed-
//! loop connections of LISTs with a label selector that matches none of
//! its [`NOISY_OBJECTS`] ConfigMaps (every object is examined: heavy for
//! the server, a tiny answer for this client), far more than the
//! fair-admission limits admit; a 429 is retried after [`NOISY_BACKOFF`]
//! (a retrying client's backoff; `Retry-After`'s full second is ignored on
//! purpose, to keep the pressure on).
//!
//! Phases on one spawned server (embedded store) with fair admission on:
//! quiet alone, quiet with the noisy one, and the same again (memory must
//! not grow from the first noisy phase to the second), then quiet with a
//! noisy *writer* (the same connections sending cheap merge patches of
//! its ConfigMaps: writes take the storage-sized pool, not the read pool);
//! then, for comparison, quiet with the noisy one on a server with one
//! read seat per core for a workspace, on one with fairness off, and the
//! noisy writer with other write shares (`WSGATE_BENCH_WRITE_SHARES`,
//! comma-separated, default 150).
//! Printed: the quiet workspace's p50/p99 per phase and the ratio to
//! alone, the noisy one's admitted and refused (429) rates, server RSS.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper::{Method, StatusCode};

use super::client::{Conn, Endpoint, Pool, Req};
use super::histogram::Latencies;
use super::process::{free_port, rss_bytes};

/// ConfigMaps in the noisy workspace, all examined by each noisy LIST.
const NOISY_OBJECTS: usize = 1000;
/// How long a noisy connection waits after a 429 (or an error).
const NOISY_BACKOFF: Duration = Duration::from_millis(50);

/// What the fairness benchmark is run with.
#[derive(Clone, Debug)]
pub struct FairnessArgs {
    /// Measured time of each phase.
    pub duration: Duration,
    /// Unmeasured warm-up before each phase.
    pub warmup: Duration,
    /// Closed-loop connections of the noisy workspace.
    pub noisy_connections: usize,
    /// Quiet GETs per second.
    pub quiet_rate: u64,
}

/// The server's fair-admission settings for the measured run: the shipped
/// defaults, whose read pool is sized from the cores
/// ([`crate::config::FairnessSection::read_seats`]).
fn fairness_config(enabled: bool) -> String {
    format!("[limits.fairness]\nenabled = {enabled}\n")
}

/// Explicit read-pool seats (the noisy workspace's LISTs and the quiet
/// GETs are reads).
fn config_with(enabled: bool, max: usize, per_workspace: usize) -> String {
    format!(
        "[limits.fairness]\nenabled = {enabled}\nread_max_in_flight = {max}\nread_workspace_max_in_flight = {per_workspace}\nqueue_length = {}\n",
        8 * max
    )
}

/// A spawned `wsgate serve`, killed on drop.
struct Server {
    child: std::process::Child,
    endpoint: Endpoint,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    async fn start(exe: &Path, config: &str) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        let config_path = dir.path().join("fairness.toml");
        std::fs::write(&config_path, config)?;
        let port = free_port()?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let child = Command::new(exe)
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .arg("--insecure-http")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("WSGATE_LOG_LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawning {} serve", exe.display()))?;
        let mut server = Server {
            child,
            endpoint: Endpoint::from_addr(addr),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = server.child.try_wait()? {
                bail!("wsgate serve exited during start-up: {status}");
            }
            if let Ok(mut c) = Conn::connect(&server.endpoint).await
                && let Ok(r) = c.send(&Req::get("/readyz")).await
                && r.status.is_success()
            {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!("wsgate serve was not ready within 60s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn rss(&self) -> Option<u64> {
        rss_bytes(self.child.id())
    }
}

const JSON: &str = "application/json";

async fn expect(pool: &Pool, req: Req) -> anyhow::Result<()> {
    let r = pool.send(&req).await?;
    if r.status != req.expect {
        bail!(
            "{} {}: {} {}",
            req.method,
            req.path,
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    Ok(())
}

/// Creates the two workspaces and their objects.
async fn set_up(pool: &Pool, noisy: &str, quiet: &str) -> anyhow::Result<()> {
    for ws in [noisy, quiet] {
        let body = serde_json::json!({
            "apiVersion": "tenancy.wsgate.io/v1alpha1", "kind": "Workspace",
            "metadata": {"name": ws},
        });
        expect(
            pool,
            Req::with_body(
                Method::POST,
                "/apis/tenancy.wsgate.io/v1alpha1/workspaces",
                JSON,
                body.to_string(),
                StatusCode::CREATED,
            ),
        )
        .await?;
    }
    let cm = |name: &str| {
        serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name},
            "data": {"key": "x".repeat(100)},
        })
        .to_string()
    };
    for i in 0..NOISY_OBJECTS {
        expect(
            pool,
            Req::with_body(
                Method::POST,
                format!("/clusters/{noisy}/api/v1/namespaces/default/configmaps"),
                JSON,
                cm(&format!("cm-{i}")),
                StatusCode::CREATED,
            ),
        )
        .await?;
    }
    expect(
        pool,
        Req::with_body(
            Method::POST,
            format!("/clusters/{quiet}/api/v1/namespaces/default/configmaps"),
            JSON,
            cm("probe"),
            StatusCode::CREATED,
        ),
    )
    .await
}

/// What the noisy workspace sends.
#[derive(Clone, Copy)]
enum Noise {
    /// LISTs that examine every object and select none.
    Lists,
    /// Merge patches of one small field of its ConfigMaps (each a storage
    /// write), a different object per connection.
    Writes,
}

/// One phase's figures.
#[derive(Default)]
struct Phase {
    quiet: Latencies,
    quiet_errors: u64,
    noisy_ok: u64,
    noisy_429: u64,
    noisy_errors: u64,
    seconds: f64,
}

/// Runs the quiet workspace for `warmup + duration` (recording only the
/// measured part) and, when `noisy` is set, the noisy one alongside.
async fn phase(
    endpoint: &Endpoint,
    args: &FairnessArgs,
    noisy: Option<(&str, Noise)>,
    quiet: &str,
) -> anyhow::Result<Phase> {
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let counters = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let mut noisy_tasks = Vec::new();
    if let Some((ws, noise)) = noisy {
        let list = Req::get(format!(
            "/clusters/{ws}/api/v1/namespaces/default/configmaps?labelSelector=app%3Dnone"
        ));
        for i in 0..args.noisy_connections {
            let (stop, measuring, counters, list) = (
                stop.clone(),
                measuring.clone(),
                counters.clone(),
                list.clone(),
            );
            let endpoint = endpoint.clone();
            let patch_path = format!(
                "/clusters/{ws}/api/v1/namespaces/default/configmaps/cm-{}",
                i % NOISY_OBJECTS
            );
            noisy_tasks.push(tokio::spawn(async move {
                let mut conn = match Conn::connect(&endpoint).await {
                    Ok(c) => c,
                    Err(_) => return,
                };
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let req = match noise {
                        Noise::Lists => list.clone(),
                        Noise::Writes => {
                            // A new value each time: an unchanged object
                            // would not be written.
                            seq += 1;
                            Req::with_body(
                                Method::PATCH,
                                patch_path.clone(),
                                "application/merge-patch+json",
                                format!(r#"{{"data":{{"n":"{seq}"}}}}"#),
                                StatusCode::OK,
                            )
                        }
                    };
                    let r = conn.send(&req).await;
                    let slot = match &r {
                        Ok(r) if r.status == StatusCode::OK => 0,
                        Ok(r) if r.status == StatusCode::TOO_MANY_REQUESTS => 1,
                        _ => 2,
                    };
                    if measuring.load(Ordering::Relaxed) {
                        counters[slot].fetch_add(1, Ordering::Relaxed);
                    }
                    if slot != 0 {
                        tokio::time::sleep(NOISY_BACKOFF).await;
                    }
                }
            }));
        }
    }

    // The quiet workspace, on its own thread and runtime so that its sends
    // never queue behind the noisy client's tasks in this process.
    let quiet_run = QuietRun {
        endpoint: endpoint.clone(),
        path: format!("/clusters/{quiet}/api/v1/namespaces/default/configmaps/probe"),
        rate: args.quiet_rate,
        warmup: args.warmup,
        duration: args.duration,
        measuring: measuring.clone(),
    };
    let samples = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        quiet_client_priority();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(rt.block_on(quiet_run.run()))
    })
    .await??;
    let mut out = Phase::default();
    for (ok, latency) in samples {
        if ok {
            out.quiet.record(latency);
        } else {
            out.quiet_errors += 1;
        }
    }
    measuring.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for t in noisy_tasks {
        let _ = t.await;
    }
    out.seconds = args.duration.as_secs_f64();
    out.noisy_ok = counters[0].load(Ordering::Relaxed);
    out.noisy_429 = counters[1].load(Ordering::Relaxed);
    out.noisy_errors = counters[2].load(Ordering::Relaxed);
    Ok(out)
}

/// The quiet workspace's open loop: GETs at a fixed rate, on a few
/// connections, each timed from its planned send time.
struct QuietRun {
    endpoint: Endpoint,
    path: String,
    rate: u64,
    warmup: Duration,
    duration: Duration,
    /// Set when the measured window starts (the noisy side counts from then).
    measuring: Arc<AtomicBool>,
}

impl QuietRun {
    /// `(ok, latency)` of every GET sent in the measured window.
    async fn run(self) -> Vec<(bool, Duration)> {
        let pool = Arc::new(Pool::new(&self.endpoint, 8));
        let probe = Req::get(self.path.clone());
        let interval = Duration::from_secs_f64(1.0 / self.rate.max(1) as f64);
        let started = Instant::now();
        let measure_from = started + self.warmup;
        let end = measure_from + self.duration;
        // The send times come from a thread that sleeps with the OS's
        // precision: tokio's timer rounds a deadline up to the next
        // millisecond, which would add up to 1 ms to every latency (they
        // count from the planned send time) and hide the server's own.
        let (tx, mut planned_sends) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            quiet_client_priority();
            let mut next = started;
            while next < end {
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                if tx.send(next).is_err() {
                    return;
                }
                next += interval;
            }
        });
        let mut sends = Vec::new();
        while let Some(next) = planned_sends.recv().await {
            let measured = next >= measure_from;
            if measured {
                self.measuring.store(true, Ordering::Relaxed);
            }
            let (pool, probe, planned) = (pool.clone(), probe.clone(), next);
            sends.push(tokio::spawn(async move {
                let r = pool.send(&probe).await;
                let ok = matches!(&r, Ok(r) if r.status == StatusCode::OK);
                (measured, ok, planned.elapsed())
            }));
        }
        let mut out = Vec::with_capacity(sends.len());
        for s in sends {
            if let Ok((true, ok, latency)) = s.await {
                out.push((ok, latency));
            }
        }
        out
    }
}

/// The quiet client's threads run at a higher scheduling priority than the
/// noisy client's (nice -10 when allowed): on a real installation the two
/// clients are other machines, and the quiet one's own wake-ups would
/// otherwise queue behind the noisy load generator's threads on these
/// cores and count as server latency. The server gets no priority.
fn quiet_client_priority() {
    // SAFETY: plain syscalls on the calling thread's id.
    let r = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, -10)
    };
    if r != 0 {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            eprintln!(
                "fairness: could not raise the quiet client's priority ({}); its own scheduling delays count as latency",
                std::io::Error::last_os_error()
            );
        });
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".into(),
        |d| format!("{:.2} ms", d.as_secs_f64() * 1e3),
    )
}

fn mib(b: Option<u64>) -> String {
    b.map_or_else(
        || "-".into(),
        |b| format!("{:.1} MiB", b as f64 / 1048576.0),
    )
}

/// Runs the benchmark and prints its table.
pub async fn run(exe: &Path, run_id: &str, args: &FairnessArgs) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let noisy = format!("noisy-{run_id}");
    let quiet = format!("quiet-{run_id}");
    println!(
        "fairness: quiet {} GET/s, noisy {} connections of LIST ({} objects, none selected; {:?} after a 429), {}s per phase after {}s warm-up",
        args.quiet_rate,
        args.noisy_connections,
        NOISY_OBJECTS,
        NOISY_BACKOFF,
        args.duration.as_secs_f64(),
        args.warmup.as_secs_f64()
    );
    let on_config = fairness_config(true);
    let (seats, share) = crate::config::FairnessSection::default().read_seats();
    println!(
        "server config (fairness on, defaults: {seats} read seats, {share} per workspace on {cores} cores):\n{on_config}"
    );

    let mut rows = Vec::new();
    let server = Server::start(exe, &on_config).await?;
    set_up(&Pool::new(&server.endpoint, 4), &noisy, &quiet).await?;
    let rss_start = server.rss();
    let alone = phase(&server.endpoint, args, None, &quiet).await?;
    rows.push(("quiet alone".to_owned(), alone, server.rss()));
    let lists = Some((noisy.as_str(), Noise::Lists));
    let first = phase(&server.endpoint, args, lists, &quiet).await?;
    rows.push(("with noisy (fairness on)".to_owned(), first, server.rss()));
    let second = phase(&server.endpoint, args, lists, &quiet).await?;
    rows.push((
        "with noisy again (fairness on)".to_owned(),
        second,
        server.rss(),
    ));
    let writes = Some((noisy.as_str(), Noise::Writes));
    let writer = phase(&server.endpoint, args, writes, &quiet).await?;
    rows.push((
        "with noisy writer (fairness on)".to_owned(),
        writer,
        server.rss(),
    ));
    drop(server);

    // For comparison: one workspace allowed a request per core (it can own
    // the CPU), no fair admission at all, and the noisy writer with the
    // storage-sized write share etcd gets (150) instead of the embedded
    // engine's cores-sized one.
    // WSGATE_BENCH_WRITE_SHARES (comma-separated, default 150) adds one
    // noisy-writer row per write share, to compare shares in one run.
    let write_shares: Vec<u32> = std::env::var("WSGATE_BENCH_WRITE_SHARES")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|v: &Vec<u32>| !v.is_empty())
        .unwrap_or_else(|| vec![150]);
    let mut comparisons = vec![
        (
            "with noisy (per-workspace = cores)".to_owned(),
            config_with(true, 2 * cores.max(1), cores.max(1)),
            lists,
        ),
        (
            "with noisy (fairness off)".to_owned(),
            fairness_config(false),
            lists,
        ),
    ];
    for share in write_shares {
        comparisons.push((
            format!("noisy writer (write share {share})"),
            format!("[limits.fairness]\nenabled = true\nworkspace_max_in_flight = {share}\n"),
            writes,
        ));
    }
    for (name, config, noise) in comparisons {
        let server = Server::start(exe, &config).await?;
        set_up(&Pool::new(&server.endpoint, 4), &noisy, &quiet).await?;
        let p = phase(&server.endpoint, args, noise, &quiet).await?;
        rows.push((name, p, server.rss()));
    }

    let base_p99 = rows[0].1.quiet.p99();
    println!(
        "\n{:<36} {:>10} {:>10} {:>8} {:>7} {:>11} {:>11} {:>7} {:>10}",
        "phase",
        "quiet p50",
        "quiet p99",
        "p99 x",
        "q err",
        "noisy ok/s",
        "noisy 429/s",
        "n err",
        "RSS end"
    );
    for (name, p, rss) in &rows {
        let ratio = match (p.quiet.p99(), base_p99) {
            (Some(a), Some(b)) if !b.is_zero() => {
                format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64())
            }
            _ => "-".into(),
        };
        println!(
            "{:<36} {:>10} {:>10} {:>8} {:>7} {:>11.0} {:>11.0} {:>7} {:>10}",
            name,
            ms(p.quiet.p50()),
            ms(p.quiet.p99()),
            ratio,
            p.quiet_errors,
            p.noisy_ok as f64 / p.seconds,
            p.noisy_429 as f64 / p.seconds,
            p.noisy_errors,
            mib(*rss)
        );
    }
    println!(
        "\nserver RSS (fairness on): {} after set-up, {} after the first noisy phase, {} after the second",
        mib(rss_start),
        mib(rows[1].2),
        mib(rows[2].2)
    );
    if let (Some(on), Some(alone)) = (rows[1].1.quiet.p99(), base_p99) {
        let x = on.as_secs_f64() / alone.as_secs_f64().max(1e-9);
        println!(
            "quiet p99 with noisy / alone (fairness on): {x:.2}x (target <= 2x: {})",
            if x <= 2.0 { "ok" } else { "ABOVE TARGET" }
        );
    }
    Ok(())
}
