//! The embedded engine's watch index: whatever the shapes of the watched
//! ranges (prefixes at any byte, single keys, arbitrary and open-ended
//! ranges, empty ones), each watch gets exactly its events, and the hub's
//! bookkeeping survives watches being dropped, cut off and replaced.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use storage::embedded::{EmbeddedOptions, EmbeddedStore};
use storage::{
    EmbeddedConfig, Error, Event, EventKind, KeyValue, Revision, Store, WatchRequest,
    WatchResponse, WatchStream, in_range, prefix_end,
};
use tokio::time::timeout;

const PROMPT: Duration = Duration::from_secs(10);

fn config(dir: &Path) -> EmbeddedConfig {
    let mut c = EmbeddedConfig::new(dir);
    c.progress_interval = Duration::from_secs(1);
    c
}

async fn next_events(w: &mut WatchStream) -> Vec<Event> {
    loop {
        match timeout(PROMPT, w.next()).await.expect("watch item in time") {
            Some(Ok(WatchResponse::Progress { .. })) => continue,
            Some(Ok(WatchResponse::Events(ev))) => {
                assert!(!ev.is_empty(), "empty Events message");
                return ev;
            }
            Some(Err(e)) => panic!("watch failed: {e}"),
            None => panic!("watch ended"),
        }
    }
}

/// Nothing more arrives (beyond progress) within a short wait.
async fn assert_quiet(w: &mut WatchStream, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    loop {
        match tokio::time::timeout_at(deadline, w.next()).await {
            Err(_) => return,
            Ok(Some(Ok(WatchResponse::Progress { .. }))) => continue,
            Ok(other) => panic!("{what}: unexpected item {other:?}"),
        }
    }
}

type Sig = (EventKind, Bytes, Revision, Option<Revision>);

fn sig(e: &Event) -> Sig {
    (
        e.kind,
        e.kv.key.clone(),
        e.kv.mod_revision,
        e.prev_kv.as_ref().map(|p| p.mod_revision),
    )
}

fn contains(start: &[u8], end: &[u8], key: &[u8]) -> bool {
    if end.is_empty() {
        key == start
    } else {
        in_range(key, start, end)
    }
}

/// Keys over a small alphabet so ranges, prefixes and keys overlap a lot;
/// byte 0xff included to exercise `prefix_end`'s carry.
fn random_key(rng: &mut StdRng) -> Vec<u8> {
    const PARTS: [&[u8]; 6] = [b"a", b"b", b"ab", b"/", b"\xff", b"c"];
    let len = rng.random_range(1..=5);
    let mut key = b"/r/".to_vec();
    for _ in 0..len {
        key.extend_from_slice(PARTS[rng.random_range(0..PARTS.len())]);
    }
    key
}

/// A random range: a prefix (sometimes not at a `/`, sometimes the empty
/// prefix), a single key, an arbitrary or open-ended range, or an empty one.
fn random_range(rng: &mut StdRng) -> (Vec<u8>, Vec<u8>) {
    let key = random_key(rng);
    match rng.random_range(0..7) {
        0 | 1 => {
            let cut = rng.random_range(0..=key.len());
            let start = key[..cut].to_vec();
            let end = prefix_end(&start).to_vec();
            (start, end)
        }
        2 => (key, Vec::new()),
        3 | 4 => {
            let other = random_key(rng);
            let (start, end) = if key <= other {
                (key, other)
            } else {
                (other, key)
            };
            (start, end)
        }
        5 => (key, b"\0".to_vec()),
        _ => {
            // Empty: start >= end.
            let other = random_key(rng);
            let (start, end) = if key >= other {
                (key, other)
            } else {
                (other, key)
            };
            (start, end)
        }
    }
}

/// Hundreds of random watches against random puts, updates, deletes and
/// delete_ranges: each receives exactly the events of its range at or after
/// its start revision, in order, revisions whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_ranges_get_exactly_their_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(
        EmbeddedStore::open(&config(dir.path()))
            .await
            .expect("open"),
    );
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut current: BTreeMap<Bytes, KeyValue> = BTreeMap::new();
    let mut written: Vec<Sig> = Vec::new();
    let mut watches: Vec<(Vec<u8>, Vec<u8>, Revision, WatchStream)> = Vec::new();
    for round in 0..6 {
        // New watches each round: from the past (replay), now, the future.
        let now = store.current_revision().await.expect("revision");
        for _ in 0..60 {
            let (start, end) = random_range(&mut rng);
            let from = match rng.random_range(0..3) {
                0 => (now - rng.random_range(0..10)).max(1),
                1 => now + 1,
                _ => now + rng.random_range(1..20),
            };
            let mut req = WatchRequest::prefix(Bytes::from(start.clone())).from_revision(from);
            req.end = Bytes::from(end.clone());
            if round % 2 == 0 {
                req = req.with_progress_notify();
            }
            let w = store.watch(req).await.expect("watch");
            watches.push((start, end, from, w));
        }
        // Drop a few (the hub must forget them and keep the rest).
        for _ in 0..5 {
            let i = rng.random_range(0..watches.len());
            drop(watches.swap_remove(i));
        }
        for _ in 0..40 {
            let key = Bytes::from(random_key(&mut rng));
            match (rng.random_range(0..10), current.get(&key).cloned()) {
                (0, _) => {
                    let (a, b) = (random_key(&mut rng), random_key(&mut rng));
                    let (start, end) = if a <= b { (a, b) } else { (b, a) };
                    let res = store
                        .delete_range(&start, &end)
                        .await
                        .expect("delete_range");
                    let gone: Vec<Bytes> = current
                        .keys()
                        .filter(|k| in_range(k, &start, &end))
                        .cloned()
                        .collect();
                    assert_eq!(res.deleted as usize, gone.len());
                    for k in gone {
                        if let Some(prev) = current.remove(&k) {
                            written.push((
                                EventKind::Delete,
                                k,
                                res.revision,
                                Some(prev.mod_revision),
                            ));
                        }
                    }
                }
                (1..=2, Some(prev)) => {
                    let res = store.delete(&key, None).await.expect("delete");
                    current.remove(&key);
                    written.push((
                        EventKind::Delete,
                        key,
                        res.revision,
                        Some(prev.mod_revision),
                    ));
                }
                (_, Some(prev)) => {
                    let kv = store
                        .update(&key, Bytes::from_static(b"u"), prev.mod_revision, None)
                        .await
                        .expect("update");
                    written.push((
                        EventKind::Put,
                        key.clone(),
                        kv.mod_revision,
                        Some(prev.mod_revision),
                    ));
                    current.insert(key, kv);
                }
                (_, None) => {
                    let kv = store
                        .create(&key, Bytes::from_static(b"c"), None)
                        .await
                        .expect("create");
                    written.push((EventKind::Put, key.clone(), kv.mod_revision, None));
                    current.insert(key, kv);
                }
            }
        }
    }
    assert!(watches.len() > 300);
    assert_eq!(
        store.current_revision().await.expect("revision"),
        written.last().expect("writes").2
    );
    let mut delivered = 0;
    let mut drained = Vec::new();
    for (start, end, from, mut w) in watches {
        let what = format!(
            "[{:?}, {:?}) from {from}",
            Bytes::from(start.clone()),
            Bytes::from(end.clone())
        );
        let want: Vec<Sig> = written
            .iter()
            .filter(|e| e.2 >= from && contains(&start, &end, &e.1))
            .cloned()
            .collect();
        let mut got: Vec<Sig> = Vec::new();
        while got.len() < want.len() {
            let events = next_events(&mut w).await;
            if let Some(prev) = got.last() {
                assert!(prev.2 < events[0].revision(), "{what}: revision split");
            }
            got.extend(events.iter().map(sig));
        }
        assert_eq!(got, want, "{what}");
        delivered += got.len();
        drained.push((what, w));
    }
    assert!(delivered > 1_000, "the ranges overlap the writes");
    // And nothing beyond: checked for all watches at once.
    futures::future::join_all(
        drained
            .iter_mut()
            .map(|(what, w)| async move { assert_quiet(w, what).await }),
    )
    .await;
}

/// A watch cut off for falling behind frees its place; the watch that
/// reuses it is not forgotten when the cut-off stream is dropped later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_watcher_slots_are_not_confused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = EmbeddedOptions {
        watch_buffer_events: 5,
        ..EmbeddedOptions::default()
    };
    let store = EmbeddedStore::open_with(&config(dir.path()), options)
        .await
        .expect("open");
    let mut slow = store
        .watch(WatchRequest::prefix("/a/"))
        .await
        .expect("watch");
    for i in 0..10 {
        store
            .create(format!("/a/{i}").as_bytes(), Bytes::from_static(b"v"), None)
            .await
            .expect("create");
    }
    assert_eq!(store.watcher_count(), 0, "the slow watch was cut off");
    let mut next = store
        .watch(WatchRequest::prefix("/b/"))
        .await
        .expect("watch");
    assert_eq!(store.watcher_count(), 1);
    // The cut-off stream still yields its backlog, then the error.
    let mut seen = 0;
    loop {
        match timeout(PROMPT, slow.next()).await.expect("in time") {
            Some(Ok(WatchResponse::Events(ev))) => seen += ev.len(),
            Some(Ok(WatchResponse::Progress { .. })) => {}
            Some(Err(e)) => {
                assert!(matches!(e, Error::Unavailable { .. }), "got {e:?}");
                break;
            }
            None => panic!("ended without an error"),
        }
    }
    assert_eq!(seen, 5);
    drop(slow);
    let kv = store
        .create(b"/b/x", Bytes::from_static(b"v"), None)
        .await
        .expect("create");
    assert_eq!(store.watcher_count(), 1, "the new watch is kept");
    let events = next_events(&mut next).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kv, kv);
    drop(next);
    store
        .create(b"/c/x", Bytes::from_static(b"v"), None)
        .await
        .expect("create");
    assert_eq!(store.watcher_count(), 0);
}

/// Thousands of idle watches cost nothing per write that does not touch
/// them; the one that matches still gets its event, and closing the store
/// ends them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_idle_watches_and_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&config(dir.path()))
        .await
        .expect("open");
    let mut watches = Vec::new();
    for i in 0..5_000 {
        let w = store
            .watch(WatchRequest::prefix(format!(
                "/registry/core/configmaps/c{i}/"
            )))
            .await
            .expect("watch");
        watches.push(w);
    }
    assert_eq!(store.watcher_count(), 5_000);
    let kv = store
        .create(
            b"/registry/core/configmaps/c4242/default/x",
            Bytes::from_static(b"v"),
            None,
        )
        .await
        .expect("create");
    let events = next_events(&mut watches[4242]).await;
    assert_eq!(events[0].kv, kv);
    assert_quiet(&mut watches[424], "c424 is a different prefix").await;
    drop(store);
    for w in &mut watches[..10] {
        match timeout(PROMPT, w.next()).await.expect("in time") {
            Some(Err(Error::Unavailable { .. })) => {}
            other => panic!("expected the closed error, got {other:?}"),
        }
        assert!(timeout(PROMPT, w.next()).await.expect("in time").is_none());
    }
}
