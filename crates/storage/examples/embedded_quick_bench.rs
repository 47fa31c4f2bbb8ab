//! Quick figures for the embedded engine: durable puts/s at 1, 16 and 256
//! concurrent writers, point gets/s, and the latency of a 1,000-key range.
//!
//! Run: `cargo run --release -p wsgate-storage --example embedded_quick_bench [data-dir]`
//! (a temporary directory on the current volume by default; put it on the
//! disk you care about, since fsync cost is what bounds writes).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use storage::embedded::EmbeddedStore;
use storage::{EmbeddedConfig, RangeRequest, Store};

const VALUE_BYTES: usize = 256;
const RUN_FOR: Duration = Duration::from_secs(3);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::args()
        .nth(1)
        .map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(base)?;
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&EmbeddedConfig::new(dir.path())).await?);
    println!("embedded store in {}", dir.path().display());

    for writers in [1usize, 16, 256] {
        let rate = puts(&store, writers).await?;
        println!("durable puts, {writers:>3} concurrent writers: {rate:>9.0} puts/s");
    }

    // Point reads of existing keys.
    let mut keys = Vec::new();
    for i in 0..10_000u32 {
        let key = format!("/get/{i:06}");
        store
            .create(key.as_bytes(), Bytes::from(vec![b'v'; VALUE_BYTES]), None)
            .await?;
        keys.push(Bytes::from(key));
    }
    let keys = Arc::new(keys);
    for readers in [1usize, 2, 8] {
        let rate = gets(&store, &keys, readers).await?;
        println!("point gets,   {readers:>3} concurrent readers: {rate:>9.0} gets/s");
    }

    // A 1,000-key range of 1 KiB values.
    for i in 0..1_000u32 {
        store
            .create(
                format!("/range/{i:06}").as_bytes(),
                Bytes::from(vec![b'r'; 1024]),
                None,
            )
            .await?;
    }
    let mut samples = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        let r = store.range(RangeRequest::prefix("/range/")).await?;
        samples.push(t.elapsed());
        if r.kvs.len() != 1_000 {
            return Err(format!("range returned {} keys", r.kvs.len()).into());
        }
    }
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "range of 1,000 x 1 KiB keys: mean {:?}, p50 {:?}, p99 {:?}",
        mean,
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100]
    );
    Ok(())
}

async fn puts(store: &Arc<dyn Store>, writers: usize) -> Result<f64, Box<dyn std::error::Error>> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, stop, done) = (store.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("/put/{writers}/{w}/{i}");
                store
                    .create(key.as_bytes(), Bytes::from(vec![b'p'; VALUE_BYTES]), None)
                    .await?;
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            Ok::<_, storage::Error>(())
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(RUN_FOR).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

async fn gets(
    store: &Arc<dyn Store>,
    keys: &Arc<Vec<Bytes>>,
    readers: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for r in 0..readers {
        let (store, keys, stop, done) = (store.clone(), keys.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = r * 7919;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..1_000 {
                    let key = &keys[i % keys.len()];
                    let got = store.get(key, None).await?;
                    if got.kv.is_none() {
                        return Err(storage::Error::Corrupted("missing key".into()));
                    }
                    i = i.wrapping_add(1);
                }
                n += 1_000;
                // Share the executor with the timer and other readers.
                tokio::task::yield_now().await;
            }
            done.fetch_add(n, Ordering::Relaxed);
            Ok(())
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(RUN_FOR).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}
