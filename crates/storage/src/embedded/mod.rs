//! The embedded engine: one redb file in the data directory, no external
//! process.
//!
//! - [`mvcc`]: the multi-version key space every read is served from, in
//!   memory, so reads never wait for the disk or for a commit.
//! - [`writer`]: one thread owns the database and group-commits writes
//!   (one durable transaction per batch, one revision per successful write).
//! - [`history`]: the per-revision event log behind watch replay and
//!   compaction; [`watch`]: replay-then-live watch streams.
//! - [`lease`]: TTL leases with absolute, persisted deadlines.
//! - [`disk`] and [`encoding`]: the redb tables and their byte layout.
//!
//! Memory: every key and its bookkeeping (revisions, version, lease) is in
//! memory; values only while the retained history (bounded by
//! `history_revisions` and `history_age`) mentions the key ("hot"), shared
//! with the history's events. Older ("cold") values are read from the
//! file through redb's page cache (`cache_bytes`), via a read snapshot the
//! writer renews with every batch, so a cold read sees exactly the state
//! the memory index is at.

mod disk;
mod encoding;
mod history;
mod lease;
mod mvcc;
mod watch;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::oneshot;

use self::disk::Disk;
use self::mvcc::State;
use self::watch::Hub;
use self::writer::{Msg, Op, Reply, Writer};
use crate::{
    DeleteRangeResponse, DeleteResponse, EmbeddedConfig, Error, GetResponse, KeyValue, Lease,
    LeaseId, MAX_VALUE_BYTES, RangeRequest, RangeResponse, Result, Revision, Store, WatchRequest,
    WatchStream,
};

pub use self::disk::FILE_NAME;

/// Engine knobs that are not part of the user-facing configuration.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Events a watcher may have queued and not yet consumed before its
    /// watch is ended with [`Error::Unavailable`].
    pub watch_buffer_events: usize,
    /// Most write requests applied in one group commit.
    pub max_batch: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            watch_buffer_events: 100_000,
            max_batch: 256,
        }
    }
}

/// What [`EmbeddedStore::memory_stats`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryStats {
    /// Keys tracked: live, or deleted with retained history.
    pub keys: usize,
    /// Keys whose values are in memory (the rest are read from disk).
    pub hot_keys: usize,
    /// Revisions of event history retained.
    pub history_revisions: usize,
}

/// State shared by the store handle, the writer thread and watch streams.
struct Shared {
    state: RwLock<State>,
    /// Locked only while holding `state` (read or write): state, then hub.
    hub: Mutex<Hub>,
    progress_interval: Duration,
    watch_buffer: usize,
    closed: AtomicBool,
}

impl Shared {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Called by the writer as it exits: ends every watch.
    fn close(&self) {
        let _state = self.state.write();
        self.closed.store(true, Ordering::Release);
        self.hub.lock().close();
    }
}

/// The embedded engine. Dropping it finishes the writes in flight, closes
/// the database file (so it can be opened again) and ends every watch.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    requests: mpsc::Sender<Msg>,
    writer: Option<thread::JoinHandle<()>>,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `config.data_dir`.
    pub async fn open(config: &EmbeddedConfig) -> Result<Self> {
        Self::open_with(config, EmbeddedOptions::default()).await
    }

    pub async fn open_with(config: &EmbeddedConfig, options: EmbeddedOptions) -> Result<Self> {
        let dir = config.data_dir.clone();
        let cache_bytes = config.cache_bytes;
        let started = std::time::Instant::now();
        // Reading the whole file is blocking work; keep it off the executor.
        let (disk, state) = tokio::task::spawn_blocking(move || -> Result<(Disk, State)> {
            let (disk, snapshot) = Disk::open(&dir, cache_bytes)?;
            let read = started.elapsed();
            let mut state = State::restore(snapshot)?;
            state.disk = Some(disk.snapshot()?);
            tracing::debug!(
                read_ms = read.as_millis() as u64,
                "embedded store: file read, index built"
            );
            Ok((disk, state))
        })
        .await
        .map_err(|e| Error::unavailable("embedded store open task failed", e))??;
        tracing::info!(
            data_dir = %config.data_dir.display(),
            revision = state.revision,
            compacted = state.compacted,
            keys = state.tracked_keys(),
            hot_keys = state.hot_keys(),
            history = state.history.len(),
            leases = state.leases.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "embedded store opened"
        );
        let shared = Arc::new(Shared {
            state: RwLock::new(state),
            hub: Mutex::new(Hub::default()),
            progress_interval: config.progress_interval,
            watch_buffer: options.watch_buffer_events.max(1),
            closed: AtomicBool::new(false),
        });
        let (requests, rx) = mpsc::channel();
        let writer = Writer::new(disk, shared.clone(), rx, config.clone(), options.max_batch);
        let handle = thread::Builder::new()
            .name("wsgate-embedded-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| Error::unavailable("starting the embedded writer thread", e))?;
        Ok(EmbeddedStore {
            shared,
            requests,
            writer: Some(handle),
        })
    }

    async fn submit(&self, op: Op) -> Result<Reply> {
        let (tx, rx) = oneshot::channel();
        self.requests.send(Msg::Op(op, tx)).map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// What the engine holds in memory (for tests, benchmarks and metrics;
    /// counts the hot keys, so it walks every key).
    pub fn memory_stats(&self) -> MemoryStats {
        let state = self.shared.state.read();
        MemoryStats {
            keys: state.tracked_keys(),
            hot_keys: state.hot_keys(),
            history_revisions: state.history.len(),
        }
    }

    /// Watchers currently registered (for tests and metrics).
    pub fn watcher_count(&self) -> usize {
        let _state = self.shared.state.read();
        self.shared.hub.lock().len()
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        let _ = self.requests.send(Msg::Shutdown);
        if let Some(handle) = self.writer.take() {
            // Waits for the commit in flight (milliseconds) so the file is
            // closed when drop returns and can be reopened at once.
            if handle.join().is_err() {
                tracing::error!("embedded writer thread panicked");
            }
        }
    }
}

fn closed() -> Error {
    Error::Unavailable {
        message: "embedded store is closed".into(),
        retry_after: None,
        source: None,
    }
}

fn unexpected(reply: &Reply) -> Error {
    let what = match reply {
        Reply::Kv(_) => "key-value",
        Reply::Deleted(_) => "delete",
        Reply::DeletedRange(_) => "delete-range",
        Reply::Granted(_) => "lease grant",
        Reply::Renewed(_) => "lease renewal",
        Reply::Done => "acknowledgement",
    };
    Error::Corrupted(format!(
        "embedded writer answered with an unexpected {what}"
    ))
}

fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidArgument("empty key".into()));
    }
    Ok(())
}

fn check_value(value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::TooLarge {
            size: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// Lease id 0 means "no lease", as in etcd.
fn lease_arg(lease: Option<LeaseId>) -> Option<LeaseId> {
    lease.filter(|id| *id != 0)
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &[u8], revision: Option<Revision>) -> Result<GetResponse> {
        check_key(key)?;
        let (found, at) = {
            let state = self.shared.state.read();
            let at = state.resolve(revision)?;
            (state.get_at(key, at), at)
        };
        // A cold value is read with the lock released.
        Ok(GetResponse {
            kv: found.complete()?.pop(),
            revision: at,
        })
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        let (found, mut resp) = {
            let state = self.shared.state.read();
            let at = state.resolve(req.revision)?;
            state.range(&req, at)
        };
        resp.kvs = found.complete()?;
        Ok(resp)
    }

    async fn create(&self, key: &[u8], value: Bytes, lease: Option<LeaseId>) -> Result<KeyValue> {
        check_key(key)?;
        check_value(&value)?;
        let op = Op::Create {
            key: Bytes::copy_from_slice(key),
            value,
            lease: lease_arg(lease),
        };
        match self.submit(op).await? {
            Reply::Kv(kv) => Ok(kv),
            other => Err(unexpected(&other)),
        }
    }

    async fn update(
        &self,
        key: &[u8],
        value: Bytes,
        expected_mod_revision: Revision,
        lease: Option<LeaseId>,
    ) -> Result<KeyValue> {
        check_key(key)?;
        check_value(&value)?;
        let op = Op::Update {
            key: Bytes::copy_from_slice(key),
            value,
            expected: expected_mod_revision,
            lease: lease_arg(lease),
        };
        match self.submit(op).await? {
            Reply::Kv(kv) => Ok(kv),
            other => Err(unexpected(&other)),
        }
    }

    async fn delete(
        &self,
        key: &[u8],
        expected_mod_revision: Option<Revision>,
    ) -> Result<DeleteResponse> {
        check_key(key)?;
        let op = Op::Delete {
            key: Bytes::copy_from_slice(key),
            expected: expected_mod_revision,
        };
        match self.submit(op).await? {
            Reply::Deleted(d) => Ok(d),
            other => Err(unexpected(&other)),
        }
    }

    async fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<DeleteRangeResponse> {
        check_key(start)?;
        let op = Op::DeleteRange {
            start: Bytes::copy_from_slice(start),
            end: Bytes::copy_from_slice(end),
        };
        match self.submit(op).await? {
            Reply::DeletedRange(d) => Ok(d),
            other => Err(unexpected(&other)),
        }
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.state.read().revision)
    }

    async fn watch(&self, req: WatchRequest) -> Result<WatchStream> {
        watch::open(&self.shared, req)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self.submit(Op::Compact(revision)).await? {
            Reply::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.shared.state.read().compacted)
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<Lease> {
        match self.submit(Op::LeaseGrant(ttl)).await? {
            Reply::Granted(lease) => Ok(lease),
            other => Err(unexpected(&other)),
        }
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration> {
        match self.submit(Op::LeaseKeepAlive(id)).await? {
            Reply::Renewed(ttl) => Ok(ttl),
            other => Err(unexpected(&other)),
        }
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<()> {
        match self.submit(Op::LeaseRevoke(id)).await? {
            Reply::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }
}
