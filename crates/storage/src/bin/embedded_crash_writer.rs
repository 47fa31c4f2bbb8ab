//! Test helper for `tests/embedded_durability.rs`: writes to an embedded
//! store from many tasks at once and prints `ACK <key> <revision> <value>`
//! for each acknowledged write, until it is killed.
//!
//! Run: `embedded_crash_writer <data-dir>` (built only with the `testing`
//! feature, which the crate's own tests enable).

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use storage::embedded::EmbeddedStore;
use storage::{EmbeddedConfig, Store};

const TASKS: usize = 32;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: embedded_crash_writer <data-dir>")?;
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&EmbeddedConfig::new(dir)).await?);
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { write_forever(store, t).await }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Creates keys and, every third write, updates the task's previous key,
/// so the history holds both kinds of writes.
async fn write_forever(store: Arc<dyn Store>, task: usize) -> Result<(), storage::Error> {
    let mut last: Option<storage::KeyValue> = None;
    for i in 0u64.. {
        let value = format!("t{task}-i{i}-{}", "x".repeat((i % 7) as usize * 40));
        let kv = match &last {
            Some(prev) if i % 3 == 0 => {
                store
                    .update(
                        &prev.key,
                        Bytes::from(value.clone()),
                        prev.mod_revision,
                        None,
                    )
                    .await?
            }
            _ => {
                let key = format!("/crash/{task:02}/{i:08}");
                store
                    .create(key.as_bytes(), Bytes::from(value.clone()), None)
                    .await?
            }
        };
        // Printed only after the store acknowledged the write.
        let line = format!(
            "ACK {} {} {}\n",
            String::from_utf8_lossy(&kv.key),
            kv.mod_revision,
            value
        );
        std::io::stdout().lock().write_all(line.as_bytes()).ok();
        last = Some(kv);
    }
    Ok(())
}
