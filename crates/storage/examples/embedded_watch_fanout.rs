//! Watch fan-out cost of the embedded engine: N watchers on distinct
//! per-cluster prefixes (`/registry/core/configmaps/<cluster>/`) plus a few
//! all-workspace watchers (`/registry/core/configmaps/`), while W writes/s
//! are spread over the clusters.
//!
//! Reports, per N: achieved writer throughput, delivery latency (commit
//! request to the event reaching the watcher's task) p50/p99, process CPU
//! time per wall second during the write phase (from /proc/self/stat), and
//! the memory cost of one idle watch (RSS growth and live heap growth, the
//! latter through a counting allocator, divided by N).
//!
//! Run: `cargo run --release -p wsgate-storage --example embedded_watch_fanout
//! [-- <watchers,...> <writes/s> <seconds>]` (default `0,1000,10000 1000 5`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use storage::embedded::EmbeddedStore;
use storage::{EmbeddedConfig, Store, WatchRequest, WatchResponse};
use tokio::sync::Semaphore;

/// Counts live heap bytes so the per-watch figure is not hidden by the
/// allocator's page granularity.
struct Counting;

static LIVE_HEAP: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_HEAP.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_HEAP.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_HEAP.fetch_add(new_size, Ordering::Relaxed);
        LIVE_HEAP.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ALL_WORKSPACE_WATCHERS: usize = 4;
const VALUE_BYTES: usize = 256;
/// Clusters the writes are spread over when there are no per-cluster watchers.
const MIN_CLUSTERS: usize = 1000;
const MAX_IN_FLIGHT: usize = 512;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let counts: Vec<usize> = match args.next() {
        Some(list) => list.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => vec![0, 1_000, 10_000],
    };
    let rate: u64 = args.next().map_or(Ok(1_000), |s| s.parse())?;
    let seconds: u64 = args.next().map_or(Ok(5), |s| s.parse())?;
    println!(
        "watchers = N per-cluster + {ALL_WORKSPACE_WATCHERS} all-workspace; \
         target {rate} writes/s for {seconds}s; 2 worker threads"
    );
    for n in counts {
        run(n, rate, Duration::from_secs(seconds)).await?;
    }
    Ok(())
}

async fn run(n: usize, rate: u64, run_for: Duration) -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&EmbeddedConfig::new(dir.path())).await?);
    let base = Instant::now();

    // Idle watch memory.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (rss0, heap0) = (rss_bytes()?, LIVE_HEAP.load(Ordering::Relaxed));
    let delivered = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let mut specs: Vec<String> = (0..n)
        .map(|i| format!("/registry/core/configmaps/{}/", cluster(i)))
        .collect();
    specs.extend((0..ALL_WORKSPACE_WATCHERS).map(|_| "/registry/core/configmaps/".to_owned()));
    for prefix in specs {
        let stream = store.watch(WatchRequest::prefix(prefix)).await?;
        let delivered = delivered.clone();
        tasks.push(tokio::spawn(consume(stream, base, delivered)));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss1, heap1) = (rss_bytes()?, LIVE_HEAP.load(Ordering::Relaxed));
    let per = |a: usize, b: usize| (b.saturating_sub(a)) as f64 / n.max(1) as f64;

    // Paced writes spread over the clusters.
    let clusters = if n == 0 { MIN_CLUSTERS } else { n };
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let written = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_seconds()?;
    let t0 = Instant::now();
    let mut seq = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while t0.elapsed() < run_for {
        tick.tick().await;
        let due = (t0.elapsed().as_secs_f64() * rate as f64) as u64;
        while seq < due {
            let permit = permits.clone().acquire_owned().await?;
            let key = format!(
                "/registry/core/configmaps/{}/default/cm-{seq}",
                cluster((seq as usize * 7919) % clusters)
            );
            seq += 1;
            let (store, written) = (store.clone(), written.clone());
            tokio::spawn(async move {
                let mut value = vec![b'v'; VALUE_BYTES];
                let at = base.elapsed().as_nanos() as u64;
                value[..8].copy_from_slice(&at.to_le_bytes());
                if store
                    .create(key.as_bytes(), Bytes::from(value), None)
                    .await
                    .is_ok()
                {
                    written.fetch_add(1, Ordering::Relaxed);
                }
                drop(permit);
            });
        }
    }
    let _all = permits.acquire_many(MAX_IN_FLIGHT as u32).await?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds()? - cpu0;
    let writes = written.load(Ordering::Relaxed);
    // Let the last deliveries arrive, then stop the consumers.
    let expected = writes * (ALL_WORKSPACE_WATCHERS as u64 + u64::from(n > 0));
    let wait = Instant::now();
    while delivered.load(Ordering::Relaxed) < expected && wait.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Closing the store ends every watch.
    drop(store);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await?);
    }
    latencies.sort_unstable();
    let pct = |p: usize| {
        latencies
            .get(latencies.len().saturating_sub(1) * p / 100)
            .map_or(0.0, |ns| *ns as f64 / 1e6)
    };
    println!(
        "N={n:>6}: {:>7.0} writes/s, latency p50 {:>6.2} ms p99 {:>7.2} ms ({} deliveries of {expected}), \
         CPU {:.3} s/s, idle watch: RSS {:>6.0} B, heap {:>6.0} B",
        writes as f64 / wall,
        pct(50),
        pct(99),
        latencies.len(),
        cpu / wall,
        per(rss0, rss1),
        per(heap0, heap1),
    );
    Ok(())
}

/// Reads one watch until it ends (the store is dropped); returns the
/// delivery latencies.
async fn consume(
    mut stream: storage::WatchStream,
    base: Instant,
    delivered: Arc<AtomicU64>,
) -> Vec<u64> {
    let mut latencies = Vec::new();
    while let Some(Ok(item)) = stream.next().await {
        let WatchResponse::Events(events) = item else {
            continue;
        };
        let now = base.elapsed().as_nanos() as u64;
        for ev in &events {
            let mut stamp = [0u8; 8];
            if let Some(head) = ev.kv.value.get(..8) {
                stamp.copy_from_slice(head);
            }
            latencies.push(now.saturating_sub(u64::from_le_bytes(stamp)));
        }
        delivered.fetch_add(events.len() as u64, Ordering::Relaxed);
    }
    latencies
}

fn cluster(i: usize) -> String {
    format!("c{i:07x}")
}

fn rss_bytes() -> Result<usize, BoxError> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: usize = statm.split_whitespace().nth(1).ok_or("statm")?.parse()?;
    Ok(pages * 4096)
}

/// utime + stime of the process, assuming the usual 100 clock ticks/s.
fn cpu_seconds() -> Result<f64, BoxError> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the parenthesised command name; utime and stime are
    // fields 14 and 15 of the whole line.
    let rest = stat.rsplit_once(')').ok_or("stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).ok_or("utime")?.parse()?;
    let stime: u64 = fields.get(12).ok_or("stime")?.parse()?;
    Ok((utime + stime) as f64 / 100.0)
}
