//! Cold values in the embedded engine: once compaction leaves a key with
//! only its current version, its value leaves memory and is read from the
//! file. Every read and every write that needs the value (guards, previous
//! values in events, delete_range, lease expiry) must see exactly what a
//! hot key would show, before and after a restart, and a store with only
//! cold keys must hold no values in memory.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use storage::embedded::EmbeddedStore;
use storage::{
    EmbeddedConfig, Error, EventKind, RangeRequest, Store, WatchRequest, WatchResponse, prefix_end,
};
use tokio::time::timeout;

const N: usize = 300;

fn config(dir: &Path) -> EmbeddedConfig {
    // Nothing compacts by itself during the test: compaction is explicit.
    let mut c = EmbeddedConfig::new(dir);
    c.history_age = Duration::from_secs(3600);
    c
}

fn key(i: usize) -> String {
    format!("/cold/k{i:04}")
}

fn value(i: usize, generation: u32) -> Bytes {
    Bytes::from(format!("value-{i}-{generation}-{}", "x".repeat(i % 97)))
}

/// Every key's expected value, checked by point gets and by ranges of
/// several page sizes (few cold values are read one by one, many by a scan).
async fn check_all(store: &EmbeddedStore, want: &BTreeMap<String, Bytes>, what: &str) {
    for (k, v) in want {
        let got = store.get(k.as_bytes(), None).await.expect("get").kv;
        assert_eq!(got.map(|kv| kv.value).as_ref(), Some(v), "{what}: get {k}");
    }
    for page in [3usize, 50, 0] {
        let mut got = Vec::new();
        let mut req = RangeRequest::prefix(&b"/cold/"[..]).limit(page);
        loop {
            let resp = store.range(req.clone()).await.expect("range");
            assert_eq!(resp.count as usize, want.len() - got.len(), "{what}: count");
            got.extend(resp.kvs.iter().map(|kv| {
                (
                    String::from_utf8_lossy(&kv.key).into_owned(),
                    kv.value.clone(),
                )
            }));
            match resp.kvs.last() {
                Some(last) if resp.more => {
                    req = req.at_revision(resp.revision).starting_after(&last.key)
                }
                _ => break,
            }
        }
        let got: BTreeMap<_, _> = got.into_iter().collect();
        assert_eq!(&got, want, "{what}: range in pages of {page}");
    }
    let mut keys_only = RangeRequest::prefix(&b"/cold/"[..]);
    keys_only.keys_only = true;
    let resp = store.range(keys_only).await.expect("keys only");
    assert_eq!(resp.kvs.len(), want.len());
    assert!(
        resp.kvs.iter().all(|kv| kv.value.is_empty()),
        "{what}: keys only"
    );
}

#[tokio::test]
async fn cold_values_read_and_write_like_hot_ones_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut want = BTreeMap::new();
    let store = EmbeddedStore::open(&config(dir.path()))
        .await
        .expect("open");
    for i in 0..N {
        store
            .create(key(i).as_bytes(), value(i, 0), None)
            .await
            .expect("create");
        want.insert(key(i), value(i, 0));
    }
    // A second version of every third key, so some keys carry history.
    for i in (0..N).step_by(3) {
        let cur = store
            .get(key(i).as_bytes(), None)
            .await
            .expect("get")
            .kv
            .expect("kv");
        store
            .update(key(i).as_bytes(), value(i, 1), cur.mod_revision, None)
            .await
            .expect("update");
        want.insert(key(i), value(i, 1));
    }
    let before_compaction = store.current_revision().await.expect("rev");
    assert!(store.memory_stats().hot_keys >= N);
    store.compact(before_compaction).await.expect("compact");
    let stats = store.memory_stats();
    assert_eq!(stats.keys, N);
    assert_eq!(stats.hot_keys, 0, "compaction leaves no value in memory");
    check_all(&store, &want, "cold after compaction").await;

    // Guards and previous values come from disk.
    let mut watch = store
        .watch(WatchRequest::prefix(&b"/cold/"[..]))
        .await
        .expect("watch");
    match store.create(key(1).as_bytes(), value(1, 9), None).await {
        Err(Error::AlreadyExists { current }) => assert_eq!(current.value, want[&key(1)]),
        other => panic!("create over a cold key: {other:?}"),
    }
    let cur = store
        .get(key(2).as_bytes(), None)
        .await
        .expect("get")
        .kv
        .expect("kv");
    match store
        .update(key(2).as_bytes(), value(2, 9), cur.mod_revision - 1, None)
        .await
    {
        Err(Error::Conflict { current }) => {
            assert_eq!(current.map(|c| c.value).as_ref(), Some(&want[&key(2)]))
        }
        other => panic!("stale update of a cold key: {other:?}"),
    }
    store
        .update(key(2).as_bytes(), value(2, 2), cur.mod_revision, None)
        .await
        .expect("update a cold key");
    let deleted = store.delete(key(4).as_bytes(), None).await.expect("delete");
    assert_eq!(deleted.prev.value, want[&key(4)]);
    let ranged = store
        .delete_range(key(10).as_bytes(), key(20).as_bytes())
        .await
        .expect("delete_range");
    assert_eq!(ranged.deleted, 10);

    let mut events = Vec::new();
    while events.len() < 12 {
        match timeout(Duration::from_secs(10), watch.next()).await {
            Ok(Some(Ok(WatchResponse::Events(evs)))) => events.extend(evs),
            Ok(Some(Ok(WatchResponse::Progress { .. }))) => {}
            other => panic!("watch: {other:?}"),
        }
    }
    assert_eq!(events[0].kind, EventKind::Put);
    assert_eq!(
        events[0].prev_kv.as_ref().map(|p| &p.value),
        Some(&want[&key(2)]),
        "an update's prev_kv is the cold value"
    );
    assert_eq!(
        events[1].prev_kv.as_ref().map(|p| &p.value),
        Some(&want[&key(4)])
    );
    for (ev, i) in events[2..].iter().zip(10..20) {
        assert_eq!(ev.kind, EventKind::Delete);
        assert_eq!(ev.prev_kv.as_ref().map(|p| &p.value), Some(&want[&key(i)]));
    }
    want.insert(key(2), value(2, 2));
    want.remove(&key(4));
    for i in 10..20 {
        want.remove(&key(i));
    }
    // Reads at the compaction point still see the versions of then.
    let old = store
        .get(key(2).as_bytes(), Some(before_compaction))
        .await
        .expect("get at the compaction point")
        .kv
        .expect("kv");
    assert_eq!(old.value, value(2, 0));
    let old = store
        .get(key(4).as_bytes(), Some(before_compaction))
        .await
        .expect("get at the compaction point")
        .kv
        .expect("deleted later, live then");
    assert_eq!(old.value, value(4, 0));
    check_all(&store, &want, "after writes over cold keys").await;
    drop(watch);
    drop(store);

    // Reopened: the keys written since the compaction are hot again from
    // the log; the others are cold from the start.
    let store = EmbeddedStore::open(&config(dir.path()))
        .await
        .expect("reopen");
    let stats = store.memory_stats();
    assert_eq!(
        stats.keys, N,
        "live keys plus the deleted ones with history"
    );
    // The 12 written after the compaction, and the key written at the
    // compaction point (its log entry is the first one kept).
    assert_eq!(
        stats.hot_keys, 13,
        "only keys in the log are hot: {stats:?}"
    );
    check_all(&store, &want, "after a restart").await;
    // Compaction keeps the entry at its revision: compact past the
    // writes, at one outside the checked prefix.
    store
        .create(b"/other", Bytes::from_static(b"o"), None)
        .await
        .expect("create");
    let rev = store.current_revision().await.expect("rev");
    store.compact(rev).await.expect("compact");
    let stats = store.memory_stats();
    assert_eq!(
        (stats.keys, stats.hot_keys),
        (want.len() + 1, 1),
        "{stats:?}"
    );
    drop(store);

    let store = EmbeddedStore::open(&config(dir.path()))
        .await
        .expect("reopen");
    let stats = store.memory_stats();
    assert_eq!(stats.hot_keys, 1, "an open reads no cold values: {stats:?}");
    check_all(&store, &want, "after a second restart").await;
    let end = prefix_end(b"/cold/");
    assert_eq!(
        store
            .delete_range(b"/cold/", &end)
            .await
            .expect("delete all")
            .deleted as usize,
        want.len()
    );
}

/// A leased key that turned cold still expires with its lease.
#[tokio::test]
async fn a_cold_leased_key_expires() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&config(dir.path()))
        .await
        .expect("open");
    let lease = store
        .lease_grant(Duration::from_secs(1))
        .await
        .expect("grant");
    store
        .create(b"/lease/k", Bytes::from_static(b"v"), Some(lease.id))
        .await
        .expect("create");
    // Compaction keeps the entry at its revision: write past it.
    store
        .create(b"/other", Bytes::from_static(b"o"), None)
        .await
        .expect("create");
    let rev = store.current_revision().await.expect("rev");
    store.compact(rev).await.expect("compact");
    assert_eq!(store.memory_stats().hot_keys, 1, "only /other is hot");
    let mut watch = store
        .watch(WatchRequest::prefix(&b"/lease/"[..]))
        .await
        .expect("watch");
    loop {
        match timeout(Duration::from_secs(10), watch.next()).await {
            Ok(Some(Ok(WatchResponse::Events(evs)))) => {
                assert_eq!(evs[0].kind, EventKind::Delete);
                assert_eq!(
                    evs[0].prev_kv.as_ref().map(|p| &p.value[..]),
                    Some(&b"v"[..])
                );
                break;
            }
            Ok(Some(Ok(WatchResponse::Progress { .. }))) => {}
            other => panic!("expiry: {other:?}"),
        }
    }
    assert!(
        store
            .get(b"/lease/k", None)
            .await
            .expect("get")
            .kv
            .is_none()
    );
}
