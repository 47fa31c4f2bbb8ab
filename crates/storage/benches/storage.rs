//! Storage benchmark: the embedded engine, the etcd engine, and raw
//! `etcd-client` calls (the physical limit of etcd here), in one run.
//!
//! Run: `cargo bench -p wsgate-storage --bench storage`
//!
//! It starts its own single-node etcd on loopback (via `storage::testing`)
//! and an embedded store in a temp dir, on the same disk. Settings:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `WSGATE_BENCH_OPS` | 20000 | puts per concurrency level, and point gets |
//! | `WSGATE_BENCH_ROUNDS` | 3 | throughput rounds (ops split across them; best round kept) |
//! | `WSGATE_BENCH_SAMPLES` | 2000 | sequential puts and watch round trips timed one by one |
//! | `WSGATE_BENCH_RANGES` | 200 | 1,000-key range reads |
//! | `WSGATE_BENCH_TARGETS` | `embedded,etcd,raw,rawtxn` | which columns to run |
//!
//! Puts write new keys with 256-byte values: `create` on the engines (a
//! create-if-absent transaction on etcd); raw etcd-client sends a plain
//! `Put` (the physical limit), and "raw etcd txn" sends exactly the engine's
//! transaction, which separates etcd's cost of the guard from engine
//! overhead. Machine noise (other builds on few cores) moves throughput by
//! tens of percent, hence the rounds.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, WatchOptions};
use futures::StreamExt;
use storage::embedded::EmbeddedStore;
use storage::etcd::EtcdStore;
use storage::testing::{EtcdProcess, etcd_available};
use storage::{EmbeddedConfig, EtcdConfig, RangeRequest, Store, WatchRequest, WatchResponse};
use tokio::sync::mpsc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const PUT_VALUE_BYTES: usize = 256;
const RANGE_KEYS: usize = 1000;
const RANGE_VALUE_BYTES: usize = 1024;
const CONCURRENCY: [usize; 3] = [1, 16, 256];
const GET_READERS: usize = 16;

fn main() -> Result<(), BoxError> {
    let settings = Settings::from_env();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(settings))
}

struct Settings {
    ops: usize,
    samples: usize,
    ranges: usize,
    rounds: usize,
    targets: Vec<String>,
}

impl Settings {
    fn from_env() -> Self {
        fn num(name: &str, default: usize) -> usize {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .unwrap_or(default)
        }
        let targets = std::env::var("WSGATE_BENCH_TARGETS")
            .unwrap_or_else(|_| "embedded,etcd,raw,rawtxn".into())
            .split(',')
            .map(|s| s.trim().to_string())
            .collect();
        Settings {
            ops: num("WSGATE_BENCH_OPS", 20_000),
            samples: num("WSGATE_BENCH_SAMPLES", 2_000),
            ranges: num("WSGATE_BENCH_RANGES", 200),
            rounds: num("WSGATE_BENCH_ROUNDS", 3),
            targets,
        }
    }

    fn wants(&self, target: &str) -> bool {
        self.targets.iter().any(|t| t == target)
    }
}

/// One column of the table.
#[derive(Clone)]
enum Target {
    Engine {
        name: &'static str,
        store: Arc<dyn Store>,
    },
    Raw(etcd_client::Client),
    /// Raw etcd-client sending the very transaction the engine's `create`
    /// sends: separates etcd's cost of create-if-absent from engine overhead.
    RawTxn(etcd_client::Client),
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Target::Engine { name, .. } => name,
            Target::Raw(_) => "raw etcd-client",
            Target::RawTxn(_) => "raw etcd txn",
        }
    }

    async fn put(&self, key: Vec<u8>, value: &Bytes) -> Result<(), BoxError> {
        match self {
            Target::Engine { store, .. } => {
                store.create(&key, value.clone(), None).await?;
            }
            Target::Raw(client) => {
                client.kv_client().put(key, value.to_vec(), None).await?;
            }
            Target::RawTxn(client) => {
                let txn = Txn::new()
                    .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key.clone(), value.to_vec(), None)])
                    .or_else([TxnOp::get(key, None)]);
                client.kv_client().txn(txn).await?;
            }
        }
        Ok(())
    }

    async fn get(&self, key: Vec<u8>) -> Result<bool, BoxError> {
        Ok(match self {
            Target::Engine { store, .. } => store.get(&key, None).await?.kv.is_some(),
            Target::Raw(client) | Target::RawTxn(client) => {
                !client.kv_client().get(key, None).await?.kvs().is_empty()
            }
        })
    }

    async fn range(&self, prefix: &str) -> Result<usize, BoxError> {
        Ok(match self {
            Target::Engine { store, .. } => store
                .range(RangeRequest::prefix(prefix.to_string()))
                .await?
                .kvs
                .len(),
            Target::Raw(client) | Target::RawTxn(client) => client
                .kv_client()
                .get(prefix, Some(GetOptions::new().with_prefix()))
                .await?
                .kvs()
                .len(),
        })
    }

    /// Watches `prefix`; each event's key arrives with the instant it was
    /// received.
    async fn watch(
        &self,
        prefix: &str,
    ) -> Result<mpsc::UnboundedReceiver<(Vec<u8>, Instant)>, BoxError> {
        let (tx, rx) = mpsc::unbounded_channel();
        match self {
            Target::Engine { store, .. } => {
                let mut stream = store
                    .watch(WatchRequest::prefix(prefix.to_string()))
                    .await?;
                tokio::spawn(async move {
                    while let Some(Ok(resp)) = stream.next().await {
                        let now = Instant::now();
                        if let WatchResponse::Events(events) = resp {
                            for e in events {
                                if tx.send((e.kv.key.to_vec(), now)).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
            Target::Raw(client) | Target::RawTxn(client) => {
                let mut stream = client
                    .watch_client()
                    .watch(
                        prefix,
                        Some(WatchOptions::new().with_prefix().with_prev_key()),
                    )
                    .await?;
                tokio::spawn(async move {
                    while let Ok(Some(resp)) = stream.message().await {
                        let now = Instant::now();
                        for e in resp.events() {
                            let Some(kv) = e.kv() else { continue };
                            if tx.send((kv.key().to_vec(), now)).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        }
        Ok(rx)
    }
}

/// Figures for one column.
#[derive(Default)]
struct Column {
    put_p50: Option<Duration>,
    put_p99: Option<Duration>,
    puts_per_sec: HashMap<usize, f64>,
    /// This process's CPU time per put at 256 writers (excludes etcd).
    client_cpu_per_put: Option<Duration>,
    gets_per_sec: Option<f64>,
    range_p50: Option<Duration>,
    range_p99: Option<Duration>,
    watch_p50: Option<Duration>,
    watch_p99: Option<Duration>,
}

async fn run(settings: Settings) -> Result<(), BoxError> {
    let started = Instant::now();
    println!(
        "wsgate storage benchmark: {} ops per level in {} rounds, {} samples, {} ranges; {} cores",
        settings.ops,
        settings.rounds,
        settings.samples,
        settings.ranges,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let mut targets = Vec::new();
    let mut notes = Vec::new();
    let dir = tempfile::tempdir()?;
    if settings.wants("embedded") {
        match EmbeddedStore::open(&EmbeddedConfig::new(dir.path())).await {
            Ok(store) => targets.push(Target::Engine {
                name: "embedded",
                store: Arc::new(store),
            }),
            Err(e) => notes.push(format!(
                "embedded column skipped: EmbeddedStore::open failed: {e}"
            )),
        }
    }
    // Kept alive until the end; killed on drop.
    let mut _etcd = None;
    if ["etcd", "raw", "rawtxn"].iter().any(|t| settings.wants(t)) {
        if etcd_available() {
            let etcd = EtcdProcess::start()?;
            let endpoint = etcd.endpoint().to_string();
            // Wait for it to serve, through the engine's start-up probe.
            let engine = EtcdStore::connect(&EtcdConfig::new(vec![endpoint.clone()])).await?;
            if settings.wants("etcd") {
                targets.push(Target::Engine {
                    name: "etcd engine",
                    store: Arc::new(engine),
                });
            }
            if settings.wants("raw") {
                let client = etcd_client::Client::connect([&endpoint], None).await?;
                targets.push(Target::Raw(client));
            }
            if settings.wants("rawtxn") {
                let client = etcd_client::Client::connect([&endpoint], None).await?;
                targets.push(Target::RawTxn(client));
            }
            _etcd = Some(etcd);
        } else {
            notes.push("etcd columns skipped: the `etcd` binary is not on PATH".into());
        }
    }
    for n in &notes {
        println!("NOTE: {n}");
    }

    let mut columns: Vec<Column> = targets.iter().map(|_| Column::default()).collect();
    let put_value = Bytes::from(vec![b'v'; PUT_VALUE_BYTES]);

    // Phases run across all targets before the next phase, so each sees the
    // etcd database at a similar size.
    for (t, col) in targets.iter().zip(columns.iter_mut()) {
        phase(t, "sequential puts");
        let mut lat = Vec::with_capacity(settings.samples);
        let begun = Instant::now();
        for i in 0..settings.samples {
            let t0 = Instant::now();
            t.put(key(t, "seq", i), &put_value).await?;
            lat.push(t0.elapsed());
        }
        col.puts_per_sec
            .insert(1, settings.samples as f64 / begun.elapsed().as_secs_f64());
        (col.put_p50, col.put_p99) = percentiles(&mut lat);
    }
    // Throughput phases run in rounds, targets interleaved, and keep each
    // target's best round: a burst of other work on the machine then spoils
    // one round of one target rather than the figure.
    let per_round = (settings.ops / settings.rounds).max(1);
    for writers in CONCURRENCY.into_iter().filter(|c| *c > 1) {
        for round in 0..settings.rounds {
            for (t, col) in targets.iter().zip(columns.iter_mut()) {
                phase(
                    t,
                    &format!("puts, {writers} concurrent writers, round {}", round + 1),
                );
                let cpu_before = process_cpu();
                let rate = concurrent(per_round, writers, {
                    let (t, v) = (t.clone(), put_value.clone());
                    let tag = format!("c{writers}r{round}");
                    move |i| {
                        let (t, v, k) = (t.clone(), v.clone(), key(&t, &tag, i));
                        async move { t.put(k, &v).await.map(drop) }
                    }
                })
                .await?;
                let best = col.puts_per_sec.entry(writers).or_insert(0.0);
                *best = best.max(rate);
                if let (Some(a), Some(b), true) = (cpu_before, process_cpu(), writers == 256) {
                    let per_put = b.saturating_sub(a) / per_round as u32;
                    col.client_cpu_per_put =
                        Some(col.client_cpu_per_put.map_or(per_put, |c| c.min(per_put)));
                }
            }
        }
    }
    for round in 0..settings.rounds {
        for (t, col) in targets.iter().zip(columns.iter_mut()) {
            phase(
                t,
                &format!("point gets, {GET_READERS} readers, round {}", round + 1),
            );
            let n = settings.samples;
            let rate = concurrent(per_round, GET_READERS, {
                let t = t.clone();
                move |i| {
                    let (t, k) = (t.clone(), key(&t, "seq", (i * 7919) % n));
                    async move {
                        match t.get(k).await? {
                            true => Ok(()),
                            false => Err("benchmark key missing".into()),
                        }
                    }
                }
            })
            .await?;
            col.gets_per_sec = Some(col.gets_per_sec.map_or(rate, |r| r.max(rate)));
        }
    }
    for (t, col) in targets.iter().zip(columns.iter_mut()) {
        phase(t, &format!("{RANGE_KEYS}-key prefix ranges (1 KiB values)"));
        let prefix = format!("/bench/{}/range/", slug(t));
        let big = Bytes::from(vec![b'r'; RANGE_VALUE_BYTES]);
        concurrent(RANGE_KEYS, 64, {
            let (t, prefix) = (t.clone(), prefix.clone());
            move |i| {
                let (t, v) = (t.clone(), big.clone());
                let k = format!("{prefix}{i:06}").into_bytes();
                async move { t.put(k, &v).await.map(drop) }
            }
        })
        .await?;
        let mut lat = Vec::with_capacity(settings.ranges);
        for _ in 0..settings.ranges {
            let t0 = Instant::now();
            let n = t.range(&prefix).await?;
            lat.push(t0.elapsed());
            if n != RANGE_KEYS {
                return Err(format!("{}: range returned {n} keys", t.name()).into());
            }
        }
        (col.range_p50, col.range_p99) = percentiles(&mut lat);
    }
    for (t, col) in targets.iter().zip(columns.iter_mut()) {
        phase(t, "watch delivery");
        let prefix = format!("/bench/{}/watch/", slug(t));
        let mut events = t.watch(&prefix).await?;
        let mut lat = Vec::with_capacity(settings.samples);
        for i in 0..settings.samples {
            let k = format!("{prefix}{i:06}").into_bytes();
            let t0 = Instant::now();
            t.put(k.clone(), &put_value).await?;
            loop {
                let recv = tokio::time::timeout(Duration::from_secs(10), events.recv()).await;
                match recv {
                    Ok(Some((got, at))) if got == k => {
                        lat.push(at.saturating_duration_since(t0));
                        break;
                    }
                    Ok(Some(_)) => {}
                    _ => return Err(format!("{}: watch event {i} did not arrive", t.name()).into()),
                }
            }
        }
        (col.watch_p50, col.watch_p99) = percentiles(&mut lat);
    }

    print_table(&targets, &columns);
    print_ratios(&targets, &columns);
    for n in &notes {
        println!("NOTE: {n}");
    }
    println!("total {:.1?}", started.elapsed());
    Ok(())
}

fn phase(t: &Target, what: &str) {
    println!("  [{}] {what} ...", t.name());
}

fn slug(t: &Target) -> &'static str {
    match t {
        Target::Engine {
            name: "embedded", ..
        } => "embedded",
        Target::Engine { .. } => "engine",
        Target::Raw(_) => "raw",
        Target::RawTxn(_) => "rawtxn",
    }
}

fn key(t: &Target, phase: &str, i: usize) -> Vec<u8> {
    format!("/bench/{}/{phase}/{i:08}", slug(t)).into_bytes()
}

/// Runs `ops` calls of `op(i)` with `workers` in flight; returns calls/s.
async fn concurrent<F, Fut>(ops: usize, workers: usize, op: F) -> Result<f64, BoxError>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), BoxError>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let begun = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (next, op) = (next.clone(), op.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= ops {
                        return Ok::<(), BoxError>(());
                    }
                    op(i).await?;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(ops as f64 / begun.elapsed().as_secs_f64())
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat`
/// (Linux; clock ticks of 10 ms, fine for phases lasting seconds).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the line.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn percentiles(samples: &mut [Duration]) -> (Option<Duration>, Option<Duration>) {
    if samples.is_empty() {
        return (None, None);
    }
    samples.sort_unstable();
    let at = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    (Some(at(50)), Some(at(99)))
}

fn print_table(targets: &[Target], columns: &[Column]) {
    fn ms(d: Option<Duration>) -> String {
        d.map_or("-".into(), |d| format!("{:.3} ms", d.as_secs_f64() * 1e3))
    }
    fn rate(r: Option<f64>) -> String {
        r.map_or("-".into(), |r| format!("{r:.0}/s"))
    }
    type Row<'a> = (String, Box<dyn Fn(&Column) -> String + 'a>);
    let mut rows: Vec<Row> = vec![
        (
            "put latency p50 (1 writer)".into(),
            Box::new(|c| ms(c.put_p50)),
        ),
        (
            "put latency p99 (1 writer)".into(),
            Box::new(|c| ms(c.put_p99)),
        ),
    ];
    for w in CONCURRENCY {
        rows.push((
            format!("puts/s, {w} writer{}", if w == 1 { "" } else { "s" }),
            Box::new(move |c| rate(c.puts_per_sec.get(&w).copied())),
        ));
    }
    rows.extend::<Vec<Row>>(vec![
        (
            "client CPU per put @256".into(),
            Box::new(|c| {
                c.client_cpu_per_put
                    .map_or("-".into(), |d| format!("{} us", d.as_micros()))
            }),
        ),
        (
            format!("point gets/s ({GET_READERS} readers)"),
            Box::new(|c| rate(c.gets_per_sec)),
        ),
        (
            format!("range {RANGE_KEYS} x 1 KiB p50"),
            Box::new(|c| ms(c.range_p50)),
        ),
        (
            format!("range {RANGE_KEYS} x 1 KiB p99"),
            Box::new(|c| ms(c.range_p99)),
        ),
        ("watch put->event p50".into(), Box::new(|c| ms(c.watch_p50))),
        ("watch put->event p99".into(), Box::new(|c| ms(c.watch_p99))),
    ]);
    println!();
    print!("{:<30}", "");
    for t in targets {
        print!("{:>18}", t.name());
    }
    println!();
    for (label, cell) in &rows {
        print!("{label:<30}");
        for c in columns {
            print!("{:>18}", cell(c));
        }
        println!();
    }
    println!();
}

fn print_ratios(targets: &[Target], columns: &[Column]) {
    let find = |name: &str| {
        targets
            .iter()
            .position(|t| t.name() == name)
            .map(|i| &columns[i])
    };
    let (embedded, engine, raw, raw_txn) = (
        find("embedded"),
        find("etcd engine"),
        find("raw etcd-client"),
        find("raw etcd txn"),
    );
    let puts = |c: Option<&Column>, w: usize| c.and_then(|c| c.puts_per_sec.get(&w).copied());
    let verdict = |r: f64, target: f64| if r >= target { "ok" } else { "BELOW TARGET" };
    if let (Some(e), Some(r)) = (puts(embedded, 256), puts(raw, 256)) {
        let ratio = e / r;
        println!(
            "embedded puts/s @256 / raw etcd @256 = {ratio:.2} (target >= 1.5: {})",
            verdict(ratio, 1.5)
        );
    }
    for w in CONCURRENCY {
        if let (Some(e), Some(r)) = (puts(engine, w), puts(raw, w)) {
            let ratio = e / r;
            println!(
                "etcd engine / raw etcd-client puts/s @{w:<3} = {ratio:.2} (target >= 0.9: {})",
                verdict(ratio, 0.9)
            );
        }
    }
    // Same etcd request on both sides: what the engine itself costs.
    for w in CONCURRENCY {
        if let (Some(e), Some(r)) = (puts(engine, w), puts(raw_txn, w)) {
            println!(
                "etcd engine / raw etcd txn (same request) puts/s @{w:<3} = {:.2}",
                e / r
            );
        }
    }
    if let (Some(e), Some(r)) = (
        engine.and_then(|c| c.gets_per_sec),
        raw.and_then(|c| c.gets_per_sec),
    ) {
        let ratio = e / r;
        println!(
            "etcd engine / raw etcd-client gets/s      = {ratio:.2} (target >= 0.9: {})",
            verdict(ratio, 0.9)
        );
    }
}
