//! Embedded-engine tests the shared conformance suite cannot express:
//! restarts, a SIGKILLed writer, persisted leases and compaction, slow
//! watchers, automatic compaction and corrupted files.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use storage::embedded::{EmbeddedOptions, EmbeddedStore};
use storage::{
    EmbeddedConfig, Error, EventKind, KeyValue, RangeRequest, Revision, Store, WatchRequest,
    WatchResponse, WatchStream,
};
use tokio::time::timeout;

const PROMPT: Duration = Duration::from_secs(10);

fn config(dir: &Path) -> EmbeddedConfig {
    let mut c = EmbeddedConfig::new(dir);
    c.progress_interval = Duration::from_secs(1);
    c
}

async fn open(dir: &Path) -> Arc<dyn Store> {
    Arc::new(EmbeddedStore::open(&config(dir)).await.expect("open"))
}

/// Next item of a watch, skipping progress notifications.
async fn next_item(w: &mut WatchStream) -> Option<storage::Result<Vec<storage::Event>>> {
    loop {
        match timeout(PROMPT, w.next()).await.expect("watch item in time") {
            Some(Ok(WatchResponse::Progress { .. })) => continue,
            Some(Ok(WatchResponse::Events(ev))) => return Some(Ok(ev)),
            Some(Err(e)) => return Some(Err(e)),
            None => return None,
        }
    }
}

/// Closing the store under an open watch ends it with an error after the
/// events already queued; resuming from the last delivered revision + 1
/// after reopening loses and repeats nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_across_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    let start = store.current_revision().await.expect("revision") + 1;
    let mut watch = store
        .watch(WatchRequest::prefix("/w/").from_revision(start))
        .await
        .expect("watch");

    let mut written: Vec<(Revision, KeyValue)> = Vec::new();
    let mut last: Option<KeyValue> = None;
    for i in 0..20 {
        let kv = match &last {
            Some(prev) if i % 2 == 1 => store
                .update(
                    &prev.key,
                    Bytes::from(format!("u{i}")),
                    prev.mod_revision,
                    None,
                )
                .await
                .expect("update"),
            _ => store
                .create(
                    format!("/w/{i:02}").as_bytes(),
                    Bytes::from(format!("c{i}")),
                    None,
                )
                .await
                .expect("create"),
        };
        written.push((kv.mod_revision, kv.clone()));
        last = Some(kv);
    }
    // Consume part of the stream, then close the store under it.
    let mut delivered: Vec<storage::Event> = Vec::new();
    while delivered.len() < 8 {
        delivered.extend(next_item(&mut watch).await.expect("open").expect("events"));
    }
    drop(store);
    loop {
        match next_item(&mut watch).await {
            Some(Ok(events)) => delivered.extend(events),
            Some(Err(Error::Unavailable { .. })) => break,
            other => panic!("expected the close to end the watch with Unavailable, got {other:?}"),
        }
    }
    assert!(
        next_item(&mut watch).await.is_none(),
        "the stream ends after its error"
    );
    let resume_from = delivered.last().expect("delivered").revision() + 1;

    let store = open(dir.path()).await;
    assert_eq!(
        store.current_revision().await.expect("revision"),
        written.last().expect("writes").0,
        "the revision survives the restart"
    );
    let mut watch = store
        .watch(WatchRequest::prefix("/w/").from_revision(resume_from))
        .await
        .expect("watch");
    for i in 20..30 {
        let kv = store
            .create(
                format!("/w/{i:02}").as_bytes(),
                Bytes::from(format!("c{i}")),
                None,
            )
            .await
            .expect("create");
        written.push((kv.mod_revision, kv));
    }
    let final_rev = written.last().expect("writes").0;
    while delivered.last().is_none_or(|e| e.revision() < final_rev) {
        delivered.extend(next_item(&mut watch).await.expect("open").expect("events"));
    }
    let got: Vec<(Revision, KeyValue)> = delivered
        .iter()
        .map(|e| (e.revision(), e.kv.clone()))
        .collect();
    assert_eq!(got, written, "every write exactly once, in order");
    // prev_kv survived the restart too (replayed updates carry it).
    for pair in delivered.windows(2) {
        if pair[1].prev_kv.is_some() {
            assert_eq!(pair[1].prev_kv.as_ref(), Some(&pair[0].kv));
        }
    }
}

/// A child process writes concurrently and prints each acknowledged write;
/// it is SIGKILLed mid-stream. Every acknowledged write must be there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_embedded_crash_writer"))
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn crash writer");
    let stdout = child.stdout.take().expect("child stdout");
    let reader = std::thread::spawn(move || {
        let mut acks: Vec<(String, Revision, String)> = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut parts = line.splitn(4, ' ');
            if parts.next() != Some("ACK") {
                continue;
            }
            let key = parts.next().unwrap_or_default().to_string();
            let rev = parts.next().and_then(|r| r.parse().ok()).unwrap_or(0);
            let value = parts.next().unwrap_or_default().to_string();
            acks.push((key, rev, value));
        }
        acks
    });
    // Let it write for a while (through many group commits), then kill it
    // without warning.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let acks = reader.join().expect("reader");
    assert!(
        acks.len() > 100,
        "the child acknowledged only {} writes",
        acks.len()
    );

    let store = open(dir.path()).await;
    let max_acked = acks.iter().map(|a| a.1).max().unwrap_or(0);
    assert!(store.current_revision().await.expect("revision") >= max_acked);
    for (key, rev, value) in &acks {
        // Read at the acknowledged revision: a later, unacknowledged write
        // to the same key may also have made it to disk, which is fine.
        let got = store
            .get(key.as_bytes(), Some(*rev))
            .await
            .unwrap_or_else(|e| panic!("get {key}@{rev}: {e}"));
        let kv = got
            .kv
            .unwrap_or_else(|| panic!("acknowledged {key}@{rev} is missing"));
        assert_eq!(kv.mod_revision, *rev, "{key}");
        assert_eq!(&kv.value[..], value.as_bytes(), "{key}@{rev}");
        assert!(
            store
                .get(key.as_bytes(), None)
                .await
                .expect("get")
                .kv
                .is_some()
        );
    }
    eprintln!("{} acknowledged writes verified after SIGKILL", acks.len());
}

/// Leases, their keys and deadlines survive a restart; a lease that expired
/// while the store was closed is reaped right after it opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_survive_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    let long = store
        .lease_grant(Duration::from_secs(120))
        .await
        .expect("grant");
    let short = store
        .lease_grant(Duration::from_secs(1))
        .await
        .expect("grant");
    let kept = store
        .create(b"/l/kept", Bytes::from_static(b"k"), Some(long.id))
        .await
        .expect("create");
    let doomed = store
        .create(b"/l/doomed", Bytes::from_static(b"d"), Some(short.id))
        .await
        .expect("create");
    drop(store);
    // The short lease's deadline passes while the store is closed.
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let store = open(dir.path()).await;
    let deadline = Instant::now() + PROMPT;
    while store
        .get(&doomed.key, None)
        .await
        .expect("get")
        .kv
        .is_some()
    {
        assert!(
            Instant::now() < deadline,
            "expired lease was not reaped after reopening"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match store.lease_keep_alive(short.id).await {
        Err(Error::LeaseNotFound(_)) => {}
        other => panic!("expected LeaseNotFound, got {other:?}"),
    }
    assert_eq!(
        store.get(&kept.key, None).await.expect("get").kv,
        Some(kept.clone())
    );
    assert_eq!(
        store.lease_keep_alive(long.id).await.expect("keep alive"),
        long.ttl
    );
    let fresh = store
        .lease_grant(Duration::from_secs(5))
        .await
        .expect("grant");
    assert!(
        fresh.id != long.id && fresh.id != short.id,
        "lease ids are not reused"
    );

    // The key index of the lease survived too: revoking deletes the key.
    store.lease_revoke(long.id).await.expect("revoke");
    assert_eq!(store.get(&kept.key, None).await.expect("get").kv, None);
}

/// The compaction point and the history above it survive a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_and_history_survive_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    let v1 = store
        .create(b"/c/k", Bytes::from_static(b"1"), None)
        .await
        .expect("create");
    let mut kv = v1.clone();
    let mut versions = vec![v1.clone()];
    for i in 2..=6 {
        kv = store
            .update(&kv.key, Bytes::from(format!("{i}")), kv.mod_revision, None)
            .await
            .expect("update");
        versions.push(kv.clone());
    }
    let other = store
        .create(b"/c/other", Bytes::from_static(b"o"), None)
        .await
        .expect("create");
    store.delete(&other.key, None).await.expect("delete");
    let point = versions[3].mod_revision;
    store.compact(point).await.expect("compact");
    drop(store);

    let store = open(dir.path()).await;
    assert_eq!(store.compacted_revision().await.expect("compacted"), point);
    match store.get(&v1.key, Some(point - 1)).await {
        Err(Error::Compacted { compact_revision }) => assert_eq!(compact_revision, point),
        other => panic!("expected Compacted, got {other:?}"),
    }
    for v in &versions[3..] {
        let got = store.get(&v1.key, Some(v.mod_revision)).await.expect("get");
        assert_eq!(got.kv.as_ref(), Some(v));
    }
    assert_eq!(store.get(&other.key, None).await.expect("get").kv, None);
    let at_create = store
        .get(&other.key, Some(other.mod_revision))
        .await
        .expect("get");
    assert_eq!(at_create.kv, Some(other));
    let mut w = store
        .watch(WatchRequest::prefix("/c/k").from_revision(point))
        .await
        .expect("watch");
    let mut revs = Vec::new();
    while revs.last() != Some(&kv.mod_revision) {
        let events = next_item(&mut w).await.expect("open").expect("events");
        revs.extend(events.iter().map(|e| e.revision()));
    }
    let want: Vec<_> = versions[3..].iter().map(|v| v.mod_revision).collect();
    assert_eq!(revs, want);
}

/// A watcher that does not read is cut off once its backlog passes the
/// bound: it gets everything up to there, then an error, and writers are
/// never held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_is_cut_off_not_blocking() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = EmbeddedOptions {
        watch_buffer_events: 50,
        ..EmbeddedOptions::default()
    };
    let store: Arc<dyn Store> = Arc::new(
        EmbeddedStore::open_with(&config(dir.path()), options)
            .await
            .expect("open"),
    );
    let start = store.current_revision().await.expect("revision") + 1;
    let mut slow = store
        .watch(WatchRequest::prefix("/s/").from_revision(start))
        .await
        .expect("watch");
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                store
                    .create(
                        format!("/s/{t}/{i}").as_bytes(),
                        Bytes::from_static(b"v"),
                        None,
                    )
                    .await
                    .expect("create");
            }
        }));
    }
    for t in tasks {
        timeout(PROMPT, t)
            .await
            .expect("writers are not blocked")
            .expect("task");
    }
    let mut revs = Vec::new();
    let err = loop {
        match next_item(&mut slow).await {
            Some(Ok(events)) => revs.extend(events.iter().map(|e| e.revision())),
            Some(Err(e)) => break e,
            None => panic!("the stream ended without saying why"),
        }
    };
    assert!(matches!(err, Error::Unavailable { .. }), "got {err:?}");
    assert!(revs.len() <= 50, "no more than the bound was buffered");
    let want: Vec<Revision> = (start..start + revs.len() as i64).collect();
    assert_eq!(revs, want, "what was delivered is a gap-free prefix");
    assert!(next_item(&mut slow).await.is_none());
    // Resuming from the last delivered revision + 1 gets the rest.
    let resume = revs.last().map_or(start, |r| r + 1);
    let mut again = store
        .watch(WatchRequest::prefix("/s/").from_revision(resume))
        .await
        .expect("watch");
    let end = store.current_revision().await.expect("revision");
    let mut rest = Vec::new();
    while rest.last().is_none_or(|r| *r < end) {
        let events = next_item(&mut again).await.expect("open").expect("events");
        rest.extend(events.iter().map(|e| e.revision()));
    }
    assert_eq!(revs.len() + rest.len(), 200);
}

/// History beyond `history_revisions` is compacted in the background, and
/// reads at the new compaction point still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_compacted_automatically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.history_revisions = 10;
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&cfg).await.expect("open"));
    let mut kv = store
        .create(b"/a/k", Bytes::from_static(b"0"), None)
        .await
        .expect("create");
    for i in 1..30 {
        kv = store
            .update(&kv.key, Bytes::from(format!("{i}")), kv.mod_revision, None)
            .await
            .expect("update");
    }
    let deadline = Instant::now() + PROMPT;
    let compacted = loop {
        let c = store.compacted_revision().await.expect("compacted");
        if c >= kv.mod_revision - 10 {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "no automatic compaction (at {c})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let at = store
        .get(&kv.key, Some(compacted))
        .await
        .expect("read at the point");
    assert!(at.kv.is_some());
    assert!(matches!(
        store.get(&kv.key, Some(compacted - 1)).await,
        Err(Error::Compacted { .. })
    ));
    let all = store
        .range(RangeRequest::prefix("/a/"))
        .await
        .expect("range");
    assert_eq!(all.kvs, vec![kv]);
}

/// Bytes on disk that do not decode are reported as `Corrupted`, not a
/// panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_records_are_corrupted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    store
        .create(b"/x", Bytes::from_static(b"v"), None)
        .await
        .expect("create");
    drop(store);
    {
        let db = redb::Database::create(dir.path().join(storage::embedded::FILE_NAME))
            .expect("open file");
        let txn = db.begin_write().expect("txn");
        {
            let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("live");
            let mut live = txn.open_table(def).expect("live");
            live.insert(&b"/x"[..], &b"garbage"[..]).expect("insert");
        }
        txn.commit().expect("commit");
    }
    match EmbeddedStore::open(&config(dir.path())).await {
        Err(Error::Corrupted(_)) => {}
        Err(other) => panic!("expected Corrupted, got {other:?}"),
        Ok(_) => panic!("expected Corrupted, the store opened"),
    }
}

/// A lease expiry is a logged revision like any other: replayed after a
/// restart, its delete carries the key's last value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expiry_survives_being_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path()).await;
    let start = store.current_revision().await.expect("revision") + 1;
    let lease = store
        .lease_grant(Duration::from_secs(1))
        .await
        .expect("grant");
    let kv = store
        .create(b"/e/k", Bytes::from_static(b"v"), Some(lease.id))
        .await
        .expect("create");
    let deadline = Instant::now() + PROMPT;
    while store.get(&kv.key, None).await.expect("get").kv.is_some() {
        assert!(Instant::now() < deadline, "lease did not expire");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(store);
    let store = open(dir.path()).await;
    let mut w = store
        .watch(WatchRequest::prefix("/e/").from_revision(start))
        .await
        .expect("watch");
    let mut events = Vec::new();
    while events.len() < 2 {
        events.extend(next_item(&mut w).await.expect("open").expect("events"));
    }
    assert_eq!(events[0].kv, kv);
    assert_eq!(events[1].kind, EventKind::Delete);
    assert_eq!(events[1].prev_kv.as_ref(), Some(&kv));
}

/// Dropped watch streams are forgotten, even on an idle store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_watches_are_released() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&config(dir.path()))
        .await
        .expect("open");
    for _ in 0..10 {
        let w = store
            .watch(WatchRequest::prefix("/d/"))
            .await
            .expect("watch");
        drop(w);
    }
    let kept = store
        .watch(WatchRequest::prefix("/d/"))
        .await
        .expect("watch");
    assert_eq!(store.watcher_count(), 1);
    drop(kept);
    store
        .create(b"/d/k", Bytes::from_static(b"v"), None)
        .await
        .expect("create");
    assert_eq!(store.watcher_count(), 0);
}
