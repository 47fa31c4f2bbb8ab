//! Engine construction for the conformance suite: the one place that names
//! concrete engines.

#![allow(dead_code)] // each capability file uses its own subset

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use storage::testing::{EtcdProcess, etcd_or_skip, unique_root};
use storage::{
    EmbeddedConfig, Error, EtcdConfig, Event, EventKind, KeyValue, RangeRequest, Revision, Store,
    WatchRequest, WatchResponse, WatchStream,
};
use tokio::time::timeout;

pub struct Ctx {
    pub store: Arc<dyn Store>,
    /// Unique key root for this case; every key a case writes starts here.
    pub root: String,
    _guard: Guard,
}

#[allow(dead_code)] // held only to be dropped at the end of the case
enum Guard {
    Dir(tempfile::TempDir),
    Etcd(EtcdProcess),
}

impl Ctx {
    pub async fn embedded() -> Ctx {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = EmbeddedConfig::new(dir.path());
        // The same idle-watch progress interval the test etcd is started with.
        config.progress_interval = PROGRESS_INTERVAL;
        let store = storage::open(&storage::StorageConfig::Embedded(config))
            .await
            .expect("open embedded store");
        Ctx {
            store,
            root: unique_root("conformance"),
            _guard: Guard::Dir(dir),
        }
    }

    pub async fn etcd(case: &str) -> Option<Ctx> {
        let etcd = etcd_or_skip(case)?;
        let store = storage::open(&storage::StorageConfig::Etcd(EtcdConfig::new(vec![
            etcd.endpoint().to_string(),
        ])))
        .await
        .expect("connect to etcd");
        Some(Ctx {
            store,
            root: unique_root("conformance"),
            _guard: Guard::Etcd(etcd),
        })
    }

    /// `root` + `suffix` as a key.
    pub fn key(&self, suffix: &str) -> Vec<u8> {
        format!("{}{}", self.root, suffix).into_bytes()
    }

    /// Every key of this case.
    pub fn all(&self) -> RangeRequest {
        RangeRequest::prefix(self.key(""))
    }

    /// Creates `root + suffix` with `value`, no lease.
    pub async fn create(&self, suffix: &str, value: &str) -> KeyValue {
        self.store
            .create(
                &self.key(suffix),
                Bytes::copy_from_slice(value.as_bytes()),
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("create {suffix}: {e}"))
    }

    /// Replaces the value of `kv`'s key, guarded by its mod_revision.
    pub async fn update(&self, kv: &KeyValue, value: &str) -> KeyValue {
        self.store
            .update(
                &kv.key,
                Bytes::copy_from_slice(value.as_bytes()),
                kv.mod_revision,
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("update {kv:?}: {e}"))
    }

    /// A watch on `root + suffix` (a prefix) delivering every event after
    /// the current revision. The start revision is explicit so no engine
    /// can miss a write made right after this returns.
    pub async fn watch_from_now(&self, suffix: &str) -> (WatchStream, Revision) {
        let now = self
            .store
            .current_revision()
            .await
            .expect("current revision");
        let stream = self
            .store
            .watch(WatchRequest::prefix(self.key(suffix)).from_revision(now + 1))
            .await
            .expect("watch");
        (stream, now)
    }
}

/// Idle-watch progress interval of both test engines.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Bound on waiting for something that should happen promptly.
pub const PROMPT: Duration = Duration::from_secs(10);

/// The next stream item, skipping progress notifications.
pub async fn next_events(stream: &mut WatchStream) -> Vec<Event> {
    loop {
        match timeout(PROMPT, stream.next()).await {
            Ok(Some(Ok(WatchResponse::Events(events)))) => {
                assert!(!events.is_empty(), "an Events response must not be empty");
                return events;
            }
            Ok(Some(Ok(WatchResponse::Progress { .. }))) => continue,
            Ok(Some(Err(e))) => panic!("watch failed: {e}"),
            Ok(None) => panic!("watch ended early"),
            Err(_) => panic!("no watch event within {PROMPT:?}"),
        }
    }
}

/// Events until (and including) the first one at `last` or later.
pub async fn events_through(stream: &mut WatchStream, last: Revision) -> Vec<Event> {
    let mut all: Vec<Event> = Vec::new();
    while all.last().is_none_or(|e| e.revision() < last) {
        all.extend(next_events(stream).await);
    }
    all
}

/// The next item must be an error; returns it.
pub async fn next_error(stream: &mut WatchStream) -> Error {
    loop {
        match timeout(PROMPT, stream.next()).await {
            Ok(Some(Ok(WatchResponse::Progress { .. }))) => continue,
            Ok(Some(Ok(other))) => panic!("expected a watch error, got {other:?}"),
            Ok(Some(Err(e))) => return e,
            Ok(None) => panic!("watch ended without an error"),
            Err(_) => panic!("no watch error within {PROMPT:?}"),
        }
    }
}

/// The stream must end (promptly) with no further item.
pub async fn assert_ended(stream: &mut WatchStream) {
    match timeout(PROMPT, stream.next()).await {
        Ok(None) => {}
        Ok(Some(item)) => panic!("watch should have ended, got {item:?}"),
        Err(_) => panic!("watch did not end within {PROMPT:?}"),
    }
}

/// What tests compare about an event: kind, key, revision, value, version,
/// and the previous value's revision and bytes.
pub type EventSig = (
    EventKind,
    Bytes,
    Revision,
    Bytes,
    i64,
    Option<(Revision, Bytes)>,
);

pub fn sig(ev: &Event) -> EventSig {
    let (value, version) = match ev.kind {
        EventKind::Put => (ev.kv.value.clone(), ev.kv.version),
        EventKind::Delete => (Bytes::new(), 0),
    };
    (
        ev.kind,
        ev.kv.key.clone(),
        ev.kv.mod_revision,
        value,
        version,
        ev.prev_kv
            .as_ref()
            .map(|p| (p.mod_revision, p.value.clone())),
    )
}

pub fn put_sig(kv: &KeyValue, prev: Option<&KeyValue>) -> EventSig {
    (
        EventKind::Put,
        kv.key.clone(),
        kv.mod_revision,
        kv.value.clone(),
        kv.version,
        prev.map(|p| (p.mod_revision, p.value.clone())),
    )
}

pub fn delete_sig(prev: &KeyValue, revision: Revision) -> EventSig {
    (
        EventKind::Delete,
        prev.key.clone(),
        revision,
        Bytes::new(),
        0,
        Some((prev.mod_revision, prev.value.clone())),
    )
}

pub fn value_of(kv: &Option<KeyValue>) -> Option<&[u8]> {
    kv.as_ref().map(|kv| &kv.value[..])
}
