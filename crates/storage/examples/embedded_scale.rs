//! Memory and reopen time of the embedded engine with many idle keys, shaped
//! like stored Workspaces: N keys under one prefix, ~560-byte values,
//! created at 256 in flight.
//!
//! Run (the second step is a fresh process, as after a restart):
//!
//!     cargo run --release -p wsgate-storage --example embedded_scale create 1000000 DIR
//!     cargo run --release -p wsgate-storage --example embedded_scale open DIR
//!
//! `create` prints RSS before and after the creates and once the history
//! window is compacted away, and the file size; `open` the open time, the
//! RSS it added, and the time of a full paged scan of the values (what the
//! workspace index load reads at start-up), then point gets/s of random
//! keys (all cold after an open: values read through redb's cache).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use storage::embedded::EmbeddedStore;
use storage::{EmbeddedConfig, RangeRequest, Store, prefix_end};

const PREFIX: &str = "/registry/tenancy.wsgate.io/workspaces/2f9c1d0e7a3b4c5d/";
const VALUE_BYTES: usize = 560;
const IN_FLIGHT: usize = 256;
const PAGE: usize = 10_000;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

async fn scan(store: &dyn Store) -> Result<(usize, Duration), storage::Error> {
    let started = Instant::now();
    let end = prefix_end(PREFIX.as_bytes());
    let mut start = Bytes::copy_from_slice(PREFIX.as_bytes());
    let mut seen = 0;
    let mut revision = None;
    loop {
        let resp = store
            .range(RangeRequest {
                start: start.clone(),
                end: end.clone(),
                limit: PAGE,
                revision,
                keys_only: false,
                count_only: false,
            })
            .await?;
        revision = Some(resp.revision);
        seen += resp.kvs.len();
        let Some(last) = resp.kvs.last() else { break };
        if !resp.more {
            break;
        }
        let mut next = last.key.to_vec();
        next.push(0);
        start = Bytes::from(next);
    }
    Ok((seen, started.elapsed()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("create") if args.len() == 4 => {
            let n = args[2].replace(['_', ','], "").parse()?;
            create(n, args[3].as_ref()).await
        }
        Some("open") if args.len() == 3 => open(args[2].as_ref()).await,
        _ => {
            eprintln!("usage: embedded_scale create N DIR | embedded_scale open DIR");
            std::process::exit(2);
        }
    }
}

fn config(dir: &std::path::Path) -> EmbeddedConfig {
    let mut config = EmbeddedConfig::new(dir);
    // Short history so the idle figure is reached within the run.
    config.history_age = Duration::from_secs(2);
    config
}

async fn create(n: usize, dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let store = Arc::new(EmbeddedStore::open(&config(dir)).await?);
    let before = rss_bytes();
    let value = Bytes::from(vec![b'w'; VALUE_BYTES]);
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (store, next, value) = (store.clone(), next.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), storage::Error>(());
                }
                let key = format!("{PREFIX}w-{i:07}");
                store.create(key.as_bytes(), value.clone(), None).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let created = started.elapsed();
    let after = rss_bytes();
    println!(
        "created {n} keys in {:.2} s ({:.0}/s)",
        created.as_secs_f64(),
        n as f64 / created.as_secs_f64()
    );
    println!(
        "RSS {:.0} MiB -> {:.0} MiB after the creates: {:.0} B per key",
        mib(before),
        mib(after),
        (after.saturating_sub(before)) as f64 / n as f64
    );
    // Let automatic compaction drop the history window (checked every 1 s).
    tokio::time::sleep(Duration::from_secs(4)).await;
    store.create(b"/tick", Bytes::new(), None).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_bytes();
    println!(
        "RSS {:.0} MiB once the history is compacted: {:.0} B per key",
        mib(idle),
        (idle.saturating_sub(before)) as f64 / n as f64
    );
    println!("engine: {:?}", store.memory_stats());
    let file = std::fs::metadata(dir.join(storage::embedded::FILE_NAME))?.len();
    println!(
        "file {:.0} MiB: {:.0} B per key",
        mib(file),
        file as f64 / n as f64
    );
    Ok(())
}

async fn open(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let before = rss_bytes();
    let started = Instant::now();
    let store = EmbeddedStore::open(&config(dir)).await?;
    let opened = started.elapsed();
    let after = rss_bytes();
    println!("engine: {:?}", store.memory_stats());
    let (seen, took) = scan(&store).await?;
    let scanned = rss_bytes();
    println!(
        "open: {:.2} s, RSS {:.0} MiB -> {:.0} MiB: {:.0} B per key",
        opened.as_secs_f64(),
        mib(before),
        mib(after),
        (after.saturating_sub(before)) as f64 / seen.max(1) as f64
    );
    println!(
        "paged scan of {seen} values ({PAGE} per page): {:.2} s; RSS after it {:.0} MiB",
        took.as_secs_f64(),
        mib(scanned)
    );
    let (seen, took) = scan(&store).await?;
    println!("second scan of {seen}: {:.2} s", took.as_secs_f64());
    let store: Arc<dyn Store> = Arc::new(store);
    for readers in [1usize, 4] {
        let rate = cold_gets(&store, seen, readers).await?;
        println!("point gets of random (cold) keys, {readers} readers: {rate:.0}/s");
    }
    Ok(())
}

/// Gets/s of random keys for 2 s; after an open every key is cold, so
/// each get reads its value through redb's cache.
async fn cold_gets(
    store: &Arc<dyn Store>,
    n: usize,
    readers: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    if n == 0 {
        return Ok(0.0);
    }
    let until = Instant::now() + Duration::from_secs(2);
    let mut tasks = Vec::new();
    for r in 0..readers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            // A cheap, seeded pseudo-random walk over the key space.
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ r as u64;
            let mut done = 0u64;
            while Instant::now() < until {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let key = format!("{PREFIX}w-{:07}", x % n as u64);
                if store.get(key.as_bytes(), None).await?.kv.is_none() {
                    return Err(storage::Error::Corrupted(format!("{key} missing")));
                }
                done += 1;
            }
            Ok(done)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / 2.0)
}
