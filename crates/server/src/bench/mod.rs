//! `wsgate bench`: a load generator for the HTTP API (issue 8).
//!
//! It targets a running server (`--target http://127.0.0.1:6443`) or starts
//! `wsgate serve` itself from this executable (`--spawn embedded,etcd`, the
//! default; etcd from PATH), runs each scenario for a warm-up and a
//! measured window, and prints one table: ops/s, p50/p99 latency, errors
//! and the CPU used by itself, the server and etcd. In the same run it
//! measures the limits: a bare hyper handler (separate process, same
//! loopback setup) and raw `etcd-client` put/get against the same etcd.
//! `--json FILE` writes the table as JSON.
//!
//! Every response's status (and for reads, its content) is checked; errors
//! are counted in the table and the first of each kind printed.

mod client;
mod fairness;
mod histogram;
mod limits;
mod process;
mod progress;
mod report;
mod scenarios;
mod workspaces;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;

use self::client::Endpoint;
use self::limits::RawMode;
use self::process::{Child, Pids};
use self::progress::Progress;
use self::report::{Report, Row};
use self::scenarios::{Bench, Runner};

/// Scenarios, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Get,
    List,
    Create,
    Update,
    Patch,
    Delete,
    Mixed,
    Watch,
    /// Bare hyper GET and raw etcd put/get.
    Limits,
    /// Create --workspaces workspaces; RSS, storage, GET p99, restart time
    /// (spawned servers only; not in the default set).
    Workspaces,
    /// A noisy workspace at saturation against a quiet one at 50 GET/s
    /// (spawned embedded servers; not in the default set). See `fairness.rs`.
    Fairness,
}

/// Which store a spawned server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    Embedded,
    Etcd,
}

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Benchmark an already running server (plain HTTP), e.g. http://127.0.0.1:6443.
    #[arg(long, conflicts_with = "spawn")]
    pub target: Option<String>,
    /// Start `wsgate serve` on each of these stores (temp data dir, free
    /// loopback port; etcd is started from PATH). Default: embedded,etcd.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub spawn: Vec<Engine>,
    /// Concurrent connections of the closed-loop phases.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Connections of the LIST phases (their target is latency).
    #[arg(long, default_value_t = 2)]
    pub list_connections: usize,
    /// Measured time of each phase (e.g. 5s, 500ms, 1m).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured warm-up before each phase.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Concurrent watches of the watch phase, one per workspace.
    #[arg(long, default_value_t = 10_000)]
    pub watches: usize,
    /// Watches per HTTP/2 connection in the watch phase (as client-go
    /// multiplexes them after ALPN); 1 opens one HTTP/1.1 connection per
    /// watch (as kube-rs and curl do).
    #[arg(long, default_value_t = 1)]
    pub watch_streams_per_connection: usize,
    /// Writes per second during the watch phase.
    #[arg(long, default_value_t = 1_000)]
    pub watch_rate: u64,
    /// Controllers of the mixed phase (two connections each).
    #[arg(long, default_value_t = 32)]
    pub controllers: usize,
    /// Workspaces the `workspaces` scenario creates.
    #[arg(long, default_value_t = 100_000)]
    pub workspaces: u64,
    /// Scenarios to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "get,list,create,update,patch,delete,mixed,watch,limits"
    )]
    pub scenarios: Vec<Scenario>,
    /// Also write the table as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// With --target: the etcd the server uses, for the raw etcd limits.
    #[arg(long)]
    pub etcd_endpoint: Option<String>,
    /// With --target: the server's pid, for its RSS and CPU.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Internal: serve the bare hyper handler on this address.
    #[arg(long, hide = true)]
    pub internal_bare_hyper: Option<SocketAddr>,
}

/// `5s`, `500ms`, `2m`, or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 5s, 500ms or 1m"))?;
    if !(v > 0.0 && v * scale <= 3600.0) {
        return Err(format!("{s:?} must be between 0 and 1h"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// One server the scenarios run against.
enum Plan {
    Target(String),
    Spawn(Engine),
}

/// A short id that keeps this run's workspaces and keys apart from others'.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}", (std::process::id() << 12) ^ nanos)
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(addr) = args.internal_bare_hyper {
        return limits::serve_bare_hyper(addr).await;
    }
    if args.connections == 0 || args.list_connections == 0 || args.controllers == 0 {
        bail!("--connections, --list-connections and --controllers must be at least 1");
    }
    let started = Instant::now();
    let progress = Progress::new(!args.no_progress);
    let exe = std::env::current_exe().context("locating this executable")?;
    let id = run_id();
    if args.scenarios.contains(&Scenario::Fairness) {
        let f = fairness::FairnessArgs {
            duration: args.duration,
            warmup: args.warmup,
            noisy_connections: 2 * args.connections,
            quiet_rate: 50,
        };
        fairness::run(&exe, &id, &f).await?;
        if args.scenarios.len() == 1 {
            return Ok(());
        }
    }
    let mut report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        duration_per_phase_s: args.duration.as_secs_f64(),
        warmup_s: args.warmup.as_secs_f64(),
        ..Report::default()
    };
    let plans: Vec<Plan> = match (&args.target, args.spawn.is_empty()) {
        (Some(url), _) => vec![Plan::Target(url.clone())],
        (None, true) => vec![Plan::Spawn(Engine::Embedded), Plan::Spawn(Engine::Etcd)],
        (None, false) => args.spawn.iter().map(|e| Plan::Spawn(*e)).collect(),
    };
    let wants = |s: Scenario| args.scenarios.contains(&s);
    if wants(Scenario::Watch)
        && let Some(limit) = process::open_files_limit()
        && limit < args.watches as u64 + 1_000
    {
        let msg = format!(
            "{} watches need as many sockets in this process and in the server, but the open-files limit is {limit}: raise it (ulimit -n) or lower --watches",
            args.watches
        );
        eprintln!("\n*** {msg} ***\n");
        report.notes.push(msg);
    }

    // One etcd for the run: the etcd-backed server and the raw limits use it.
    let mut etcd: Option<(Child, String)> = None;
    let needs_etcd = plans.iter().any(|p| matches!(p, Plan::Spawn(Engine::Etcd)));
    if needs_etcd {
        if process::etcd_available() {
            progress.println("starting etcd ...");
            etcd = Some(process::start_etcd().await?);
        } else {
            let msg =
                "etcd skipped: the `etcd` binary is not on PATH (apt-get install -y etcd-server)";
            eprintln!("\n*** {msg} ***\n");
            report.notes.push(msg.into());
        }
    }
    let etcd_pid = etcd.as_ref().map(|(c, _)| c.pid());
    let mut object_bytes = 0usize;
    let mut get_connections = args.connections;

    // Only the workspaces scenario (and limits) asked for: no generic phases.
    let generic = args
        .scenarios
        .iter()
        .any(|s| !matches!(s, Scenario::Workspaces | Scenario::Limits));
    for plan in &plans {
        if wants(Scenario::Workspaces) {
            let (target, etcd_arg) = match plan {
                Plan::Spawn(Engine::Embedded) => ("embedded", None),
                Plan::Spawn(Engine::Etcd) => match &etcd {
                    Some((_, url)) => ("etcd", Some((url.as_str(), etcd_pid))),
                    None => continue,
                },
                Plan::Target(_) => {
                    report.notes.push(
                        "workspaces: needs a spawned server (it restarts it); skipped for --target"
                            .into(),
                    );
                    continue;
                }
            };
            let runner = Runner {
                progress,
                warmup: args.warmup,
                duration: args.duration,
                pids: Pids::default(),
            };
            match workspaces::run(
                &exe,
                target,
                etcd_arg,
                &id,
                args.workspaces,
                args.connections,
                runner,
                progress,
                &mut report,
            )
            .await
            {
                Ok(fig) => report.workspaces.push(fig),
                Err(e) => {
                    let msg = format!("[{target}] workspaces failed: {e:#}");
                    eprintln!("{msg}");
                    report.notes.push(msg);
                }
            }
        }
        if !generic {
            continue;
        }
        let (server, endpoint, name, pids) = match plan {
            Plan::Target(url) => {
                let endpoint = Endpoint::parse(url).await?;
                let pids = Pids {
                    server: args.server_pid,
                    etcd: None,
                };
                (None, endpoint, "target", pids)
            }
            Plan::Spawn(Engine::Embedded) => {
                progress.println("starting wsgate serve (embedded store) ...");
                let (child, endpoint) = process::start_server(&exe, None, &id).await?;
                let pids = Pids {
                    server: Some(child.pid()),
                    etcd: None,
                };
                (Some(child), endpoint, "embedded", pids)
            }
            Plan::Spawn(Engine::Etcd) => {
                let Some((_, url)) = &etcd else { continue };
                progress.println("starting wsgate serve (etcd) ...");
                let (child, endpoint) = process::start_server(&exe, Some(url), &id).await?;
                let pids = Pids {
                    server: Some(child.pid()),
                    etcd: etcd_pid,
                };
                (Some(child), endpoint, "etcd", pids)
            }
        };
        let runner = Runner {
            progress,
            warmup: args.warmup,
            duration: args.duration,
            pids,
        };
        let mut bench = Bench::new(
            endpoint,
            runner,
            name,
            &id,
            args.connections,
            args.list_connections,
            args.controllers,
            args.watches,
            args.watch_rate,
        );
        bench.watch_streams = args.watch_streams_per_connection.max(1);
        bench.etcd_url = match plan {
            Plan::Spawn(Engine::Etcd) => etcd.as_ref().map(|(_, url)| url.clone()),
            Plan::Target(_) => args.etcd_endpoint.clone(),
            Plan::Spawn(Engine::Embedded) => None,
        };
        bench
            .setup()
            .await
            .with_context(|| format!("[{name}] creating the benchmark workspace"))?;
        let mut push = |r: anyhow::Result<Row>, what: &str| match r {
            Ok(row) => report.rows.push(row),
            Err(e) => {
                let msg = format!("[{name}] {what} failed: {e:#}");
                eprintln!("{msg}");
                report.notes.push(msg);
            }
        };
        if wants(Scenario::Get) {
            push(bench.get().await, "GET");
            push(bench.get_cached().await, "GET rv=0");
        }
        if wants(Scenario::List) {
            for n in [1, 100, 1000] {
                push(bench.list(n).await, "LIST");
            }
        }
        if wants(Scenario::Create) {
            push(bench.create().await, "CREATE");
        }
        if wants(Scenario::Update) {
            push(bench.update().await, "UPDATE");
        }
        if wants(Scenario::Patch) {
            push(bench.patch().await, "PATCH");
        }
        if wants(Scenario::Delete) {
            push(bench.delete().await, "DELETE");
        }
        if wants(Scenario::Mixed) {
            push(bench.mixed().await, "mixed");
        }
        if wants(Scenario::Watch) {
            match bench.watch_delivery(pids.server).await {
                Ok((rows, memory)) => {
                    report.rows.extend(rows);
                    report.memory.extend(memory);
                }
                Err(e) => {
                    let msg = format!("[{name}] watch delivery failed: {e:#}");
                    eprintln!("{msg}");
                    report.notes.push(msg);
                }
            }
        }
        object_bytes = object_bytes.max(bench.object_bytes.load(Ordering::Relaxed));
        get_connections = bench.connections;
        drop(bench);
        // The server goes before the next one starts.
        drop(server);
    }

    if wants(Scenario::Limits) {
        let runner = Runner {
            progress,
            warmup: args.warmup,
            duration: args.duration,
            pids: Pids::default(),
        };
        match limit_rows(&exe, runner, get_connections).await {
            Ok(row) => report.rows.push(row),
            Err(e) => report.notes.push(format!("bare hyper limit failed: {e:#}")),
        }
        let etcd_url = etcd
            .as_ref()
            .map(|(_, u)| u.clone())
            .or(args.etcd_endpoint.clone());
        if let Some(url) = etcd_url {
            let runner = Runner {
                pids: Pids {
                    server: None,
                    etcd: etcd_pid,
                },
                ..runner
            };
            let value = Bytes::from(vec![b'v'; object_bytes.max(256)]);
            match raw_etcd_rows(&url, runner, args.connections, &id, value).await {
                Ok(rows) => report.rows.extend(rows),
                Err(e) => report.notes.push(format!("raw etcd limits failed: {e:#}")),
            }
        }
    }
    drop(etcd);

    checks(&mut report);
    report.total_s = started.elapsed().as_secs_f64();
    report.print();
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        println!("JSON written to {}", path.display());
    }
    Ok(())
}

async fn limit_rows(
    exe: &std::path::Path,
    runner: Runner,
    connections: usize,
) -> anyhow::Result<Row> {
    let (child, endpoint) = process::start_bare_hyper(exe).await?;
    let runner = Runner {
        pids: Pids {
            server: Some(child.pid()),
            etcd: None,
        },
        ..runner
    };
    let mut workers = Vec::with_capacity(connections);
    for _ in 0..connections {
        workers.push(scenarios::bare_get_worker(&endpoint).await?);
    }
    let row = runner
        .closed_loop("bare hyper GET (limit)", "limit", workers)
        .await;
    drop(child);
    Ok(row)
}

async fn raw_etcd_rows(
    url: &str,
    runner: Runner,
    connections: usize,
    id: &str,
    value: Bytes,
) -> anyhow::Result<Vec<Row>> {
    let client = etcd_client::Client::connect([url], None)
        .await
        .with_context(|| format!("connecting to etcd at {url}"))?;
    let prefix = format!("/wsgate-bench-raw/{id}/");
    limits::raw_get_keys(&client, &format!("{prefix}{}/", RawMode::Get as u8), &value).await?;
    let workers = |mode: RawMode| -> Vec<limits::RawEtcd> {
        (0..connections)
            .map(|worker| limits::RawEtcd {
                client: client.clone(),
                prefix: format!("{prefix}{}/", mode as u8),
                worker,
                value: value.clone(),
                mode,
            })
            .collect()
    };
    let mut rows = Vec::new();
    for (mode, label) in [
        (
            RawMode::Put,
            format!("raw etcd put {}B (limit)", value.len()),
        ),
        (RawMode::Txn, "raw etcd create txn (limit)".to_string()),
        (RawMode::Get, "raw etcd get (limit)".to_string()),
    ] {
        rows.push(runner.closed_loop(&label, "limit", workers(mode)).await);
    }
    Ok(rows)
}

/// The targets, for whatever rows this run has.
fn checks(report: &mut Report) {
    let targets: Vec<String> = ["embedded", "etcd", "target"]
        .iter()
        .filter(|t| report.rows.iter().any(|r| r.target == **t))
        .map(|t| t.to_string())
        .collect();
    let bare = report
        .row("bare hyper GET (limit)", "limit")
        .map(|r| r.ops_per_sec);
    let raw_put = report
        .rows
        .iter()
        .find(|r| r.scenario.starts_with("raw etcd put"))
        .map(|r| r.ops_per_sec);
    let raw_txn = report
        .row("raw etcd create txn (limit)", "limit")
        .map(|r| r.ops_per_sec);
    let mut found = Vec::new();
    for t in &targets {
        if let Some(r) = report.row("GET 1 object", t) {
            found.push((
                format!("GET ops/s [{t}]"),
                r.ops_per_sec,
                "/s",
                ">= 30000",
                r.ops_per_sec >= 30_000.0,
            ));
            if let Some(p99) = r.p99_ms {
                found.push((
                    format!("GET p99 @{} [{t}]", r.concurrency),
                    p99,
                    "ms",
                    "<= 2",
                    p99 <= 2.0,
                ));
            }
            if let Some(b) = bare.filter(|b| *b > 0.0) {
                let ratio = r.ops_per_sec / b;
                found.push((
                    format!("GET / bare hyper GET [{t}]"),
                    ratio,
                    "x",
                    ">= 0.5",
                    ratio >= 0.5,
                ));
            }
        }
        if let Some(p50) = report.row("LIST 1,000 objects", t).and_then(|r| r.p50_ms) {
            found.push((
                format!("LIST 1,000 p50 [{t}]"),
                p50,
                "ms",
                "<= 5",
                p50 <= 5.0,
            ));
        }
        if let Some(r) = report.row("CREATE", t) {
            if t == "embedded" {
                found.push((
                    format!("CREATE ops/s [{t}]"),
                    r.ops_per_sec,
                    "/s",
                    ">= 5000",
                    r.ops_per_sec >= 5_000.0,
                ));
            }
            if t == "etcd"
                && let Some(p) = raw_put.filter(|p| *p > 0.0)
            {
                let ratio = r.ops_per_sec / p;
                found.push((
                    format!("CREATE / raw etcd put [{t}]"),
                    ratio,
                    "x",
                    ">= 0.8",
                    ratio >= 0.8,
                ));
            }
            if t == "etcd"
                && let Some(p) = raw_txn.filter(|p| *p > 0.0)
            {
                let ratio = r.ops_per_sec / p;
                found.push((
                    format!("CREATE / raw etcd create txn [{t}]"),
                    ratio,
                    "x",
                    "-",
                    true,
                ));
            }
        }
        if let Some(r) = report.row("watch delivery", t)
            && let Some(p99) = r.p99_ms
        {
            found.push((
                format!("watch event p99, {} watches [{t}]", r.concurrency),
                p99,
                "ms",
                "<= 100",
                p99 <= 100.0,
            ));
        }
        if let Some(m) = report.memory.iter().find(|m| m.target == *t) {
            let delta = m.rss_with_watches_mib - m.rss_workspaces_listed_mib;
            found.push((
                format!(
                    "server RSS for {} watches over {} [{t}]",
                    m.watches, m.transport
                ),
                delta,
                "MiB",
                "<= 200",
                delta <= 200.0,
            ));
        }
    }
    for (what, value, unit, target, ok) in found {
        report.check(what, value, unit, target, ok);
    }
}
