//! etcd-specific behaviour of the etcd engine: watches that survive restarts
//! and leader changes, compaction learned from etcd, and the details of the
//! mapping that only a real etcd can show. The engine-neutral contract is in
//! `tests/conformance/`.
//!
//! Run: `cargo test -p wsgate-storage --test etcd_resilience`
//! (needs `etcd` on PATH; skipped loudly without it, fails under `CI`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use storage::etcd::EtcdStore;
use storage::testing::{
    EtcdProcess, ServerTls, etcd_available, etcd_cluster_or_skip, etcd_or_skip, free_port,
    skip_or_fail, unique_root,
};
use storage::{
    Error, EtcdConfig, Event, EventKind, KeyValue, RangeRequest, Store, WatchRequest,
    WatchResponse, WatchStream,
};

async fn connect(endpoints: Vec<String>) -> EtcdStore {
    let mut config = EtcdConfig::new(endpoints);
    config.request_timeout = Duration::from_secs(3);
    EtcdStore::connect(&config).await.expect("connect to etcd")
}

fn key(root: &str, i: usize) -> Vec<u8> {
    format!("{root}k{i:05}").into_bytes()
}

/// Creates a fresh key, riding out outages the way a careful caller must:
/// a write that failed with an unknown outcome is settled by reading the key
/// back (the keys here are unique, so finding it means our write applied).
async fn create_surely(store: &dyn Store, key: &[u8], value: &'static [u8]) -> KeyValue {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match store.create(key, Bytes::from_static(value), None).await {
            Ok(kv) => return kv,
            Err(Error::AlreadyExists { current }) => return *current,
            Err(e) if e.is_transient() && Instant::now() < deadline => {
                if let Ok(got) = store.get(key, None).await
                    && let Some(kv) = got.kv
                {
                    return kv;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("create {}: {e}", String::from_utf8_lossy(key)),
        }
    }
}

/// Reads events until `n` arrived, then checks that no more come for a
/// moment (a duplicate would).
async fn collect_events(stream: &mut WatchStream, n: usize, timeout: Duration) -> Vec<Event> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut events = Vec::new();
    while events.len() < n {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(WatchResponse::Events(batch)))) => events.extend(batch),
            Ok(Some(Ok(WatchResponse::Progress { .. }))) => {}
            Ok(Some(Err(e))) => panic!("watch failed after {} events: {e}", events.len()),
            Ok(None) => panic!("watch ended after {} events", events.len()),
            Err(_) => panic!("only {} of {n} events within {timeout:?}", events.len()),
        }
    }
    let extra = tokio::time::timeout(Duration::from_millis(700), async {
        loop {
            match stream.next().await {
                Some(Ok(WatchResponse::Progress { .. })) => continue,
                other => return other,
            }
        }
    })
    .await;
    if let Ok(Some(Ok(WatchResponse::Events(batch)))) = extra {
        panic!("unexpected extra events: {batch:?}");
    }
    events
}

/// Every key exactly once, in key order (= write order), revisions rising.
fn assert_exactly_once_in_order(events: &[Event], root: &str, n: usize) {
    let keys: Vec<Vec<u8>> = events.iter().map(|e| e.kv.key.to_vec()).collect();
    let expected: Vec<Vec<u8>> = (0..n).map(|i| key(root, i)).collect();
    if keys != expected {
        let seen: BTreeSet<_> = keys.iter().collect();
        let missing: Vec<_> = expected
            .iter()
            .filter(|k| !seen.contains(k))
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        panic!(
            "events not exactly once in order: {} events for {n} keys; missing {missing:?}",
            keys.len()
        );
    }
    assert!(
        events.windows(2).all(|w| w[0].revision() < w[1].revision()),
        "revisions must rise"
    );
    assert!(events.iter().all(|e| e.kind == EventKind::Put));
}

fn port_of(endpoint: &str) -> u16 {
    endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("endpoint has a port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_etcd_restart() {
    let Some(mut etcd) = etcd_or_skip("watch_survives_etcd_restart") else {
        return;
    };
    let store = connect(vec![etcd.endpoint().to_string()]).await;
    let root = unique_root("restart");
    let mut watch = store
        .watch(WatchRequest::prefix(root.clone()))
        .await
        .expect("watch");

    const N: usize = 200;
    for i in 0..N / 2 {
        create_surely(&store, &key(&root, i), b"before").await;
    }
    // Kill while events may still be in flight to the watcher.
    etcd.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    etcd.restart().expect("restart etcd");
    for i in N / 2..N {
        create_surely(&store, &key(&root, i), b"after").await;
    }

    let events = collect_events(&mut watch, N, Duration::from_secs(30)).await;
    assert_exactly_once_in_order(&events, &root, N);
}

/// A watch "from now" that has not delivered anything yet must resume from
/// the revision it started at, not from a new "now" (which would skip what
/// was written while it was away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_now_resumes_where_it_started() {
    let Some(mut etcd) = etcd_or_skip("watch_from_now_resumes") else {
        return;
    };
    let endpoint = etcd.endpoint().to_string();
    let store = connect(vec![endpoint.clone()]).await;
    let root = unique_root("from-now");
    let mut from_now = store
        .watch(WatchRequest::prefix(root.clone()))
        .await
        .expect("watch");
    // Revision 0 is etcd's spelling of "from now".
    let mut from_zero = store
        .watch(WatchRequest::prefix(root.clone()).from_revision(0))
        .await
        .expect("watch from 0");

    etcd.restart_on(free_port().expect("port"))
        .expect("restart elsewhere");
    let elsewhere = connect(vec![etcd.endpoint().to_string()]).await;
    const N: usize = 5;
    for i in 0..N {
        create_surely(&elsewhere, &key(&root, i), b"while away").await;
    }
    etcd.restart_on(port_of(&endpoint))
        .expect("restart on the old port");

    for w in [&mut from_now, &mut from_zero] {
        let events = collect_events(w, N, Duration::from_secs(30)).await;
        assert_exactly_once_in_order(&events, &root, N);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resume_reports_compaction_that_happened_while_away() {
    let Some(mut etcd) = etcd_or_skip("watch_resume_reports_compaction") else {
        return;
    };
    let endpoint = etcd.endpoint().to_string();
    let store = connect(vec![endpoint.clone()]).await;
    let root = unique_root("resume-compacted");
    let mut watch = store
        .watch(WatchRequest::prefix(root.clone()))
        .await
        .expect("watch");
    create_surely(&store, &key(&root, 0), b"seen").await;
    let first = collect_events(&mut watch, 1, Duration::from_secs(10)).await;
    assert_eq!(first.len(), 1);

    // Serve on another port, out of the watcher's reach, and move on there.
    etcd.restart_on(free_port().expect("port"))
        .expect("restart elsewhere");
    let elsewhere = connect(vec![etcd.endpoint().to_string()]).await;
    create_surely(&elsewhere, &key(&root, 1), b"missed").await;
    let compact_at = create_surely(&elsewhere, &key(&root, 2), b"missed")
        .await
        .mod_revision;
    elsewhere.compact(compact_at).await.expect("compact");

    etcd.restart_on(port_of(&endpoint))
        .expect("restart on the old port");
    let item = tokio::time::timeout(Duration::from_secs(30), watch.next())
        .await
        .expect("an item after the restart");
    match item {
        Some(Err(Error::Compacted { compact_revision })) => {
            assert_eq!(compact_revision, compact_at)
        }
        other => panic!("expected Compacted({compact_at}), got {other:?}"),
    }
    let end = tokio::time::timeout(Duration::from_secs(5), watch.next()).await;
    assert!(matches!(end, Ok(None)), "the stream ends after the error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_watches_continue_after_leader_failover() {
    let Some(mut cluster) = etcd_cluster_or_skip("leader_failover", 3) else {
        return;
    };
    let store = connect(cluster.endpoints()).await;
    let root = unique_root("failover");
    // Two watches: the client spreads streams over members, so at least
    // one likely sits on the member that dies.
    let mut watches = Vec::new();
    for _ in 0..2 {
        watches.push(
            store
                .watch(WatchRequest::prefix(root.clone()))
                .await
                .expect("watch"),
        );
    }

    const N: usize = 300;
    for i in 0..N / 3 {
        create_surely(&store, &key(&root, i), b"v").await;
    }
    let leader = cluster
        .leader(Duration::from_secs(10))
        .await
        .expect("a leader");
    cluster.member_mut(leader).expect("member").kill();
    let killed = Instant::now();
    create_surely(&store, &key(&root, N / 3), b"v").await;
    eprintln!(
        "first write after killing the leader took {:?}",
        killed.elapsed()
    );
    for i in N / 3 + 1..N {
        create_surely(&store, &key(&root, i), b"v").await;
    }
    assert!(
        cluster.leader(Duration::from_secs(10)).await.is_some(),
        "a new leader"
    );

    for watch in &mut watches {
        let events = collect_events(watch, N, Duration::from_secs(30)).await;
        assert_exactly_once_in_order(&events, &root, N);
    }
    let listed = store
        .range(RangeRequest::prefix(root.clone()).count_only())
        .await
        .expect("count");
    assert_eq!(listed.count, N as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_receives_every_event_later() {
    let Some(etcd) = etcd_or_skip("slow_consumer") else {
        return;
    };
    let store = connect(vec![etcd.endpoint().to_string()]).await;
    let root = unique_root("slow");
    let mut watch = store
        .watch(WatchRequest::prefix(root.clone()))
        .await
        .expect("watch");
    // Far more responses than the channel holds, none read meanwhile.
    const N: usize = 2000;
    let writes = futures::stream::iter(0..N)
        .map(|i| {
            let store = &store;
            let k = key(&root, i);
            async move { store.create(&k, Bytes::from_static(b"x"), None).await }
        })
        .buffer_unordered(1)
        .collect::<Vec<_>>()
        .await;
    assert!(writes.iter().all(|w| w.is_ok()));
    let events = collect_events(&mut watch, N, Duration::from_secs(30)).await;
    assert_exactly_once_in_order(&events, &root, N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_watch_outlives_the_request_timeout() {
    let Some(etcd) = etcd_or_skip("idle_watch_outlives_timeout") else {
        return;
    };
    let mut config = EtcdConfig::new(vec![etcd.endpoint().to_string()]);
    config.request_timeout = Duration::from_secs(1);
    let store = EtcdStore::connect(&config).await.expect("connect");
    let root = unique_root("idle");
    let mut watch = store
        .watch(WatchRequest::prefix(root.clone()))
        .await
        .expect("watch");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    create_surely(&store, &key(&root, 0), b"late").await;
    let events = collect_events(&mut watch, 1, Duration::from_secs(5)).await;
    assert_exactly_once_in_order(&events, &root, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_reports_create_revision_version_and_lease() {
    let Some(etcd) = etcd_or_skip("update_reports_metadata") else {
        return;
    };
    let store = connect(vec![etcd.endpoint().to_string()]).await;
    let root = unique_root("update");
    let k = key(&root, 0);
    let created = store
        .create(&k, Bytes::from_static(b"one"), None)
        .await
        .expect("create");
    let lease = store
        .lease_grant(Duration::from_secs(30))
        .await
        .expect("lease");
    let updated = store
        .update(
            &k,
            Bytes::from_static(b"two"),
            created.mod_revision,
            Some(lease.id),
        )
        .await
        .expect("update");
    assert_eq!(updated.create_revision, created.create_revision);
    assert_eq!(updated.version, 2);
    assert!(updated.mod_revision > created.mod_revision);
    assert_eq!(updated.lease, Some(lease.id));
    assert_eq!(updated.value, Bytes::from_static(b"two"));
    let read = store.get(&k, None).await.expect("get").kv.expect("present");
    assert_eq!(read, updated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_by_another_client_is_learned_exactly() {
    let Some(etcd) = etcd_or_skip("compaction_by_another_client") else {
        return;
    };
    let store = connect(vec![etcd.endpoint().to_string()]).await;
    let other = connect(vec![etcd.endpoint().to_string()]).await;
    let root = unique_root("other-compacts");
    let mut revisions = Vec::new();
    for i in 0..20 {
        revisions.push(
            create_surely(&store, &key(&root, i), b"v")
                .await
                .mod_revision,
        );
    }
    assert_eq!(store.compacted_revision().await.expect("compacted"), 0);
    other.compact(revisions[12]).await.expect("compact");

    assert_eq!(
        store.compacted_revision().await.expect("compacted"),
        revisions[12]
    );
    let err = store
        .get(&key(&root, 0), Some(revisions[3]))
        .await
        .expect_err("compacted read");
    assert!(
        matches!(err, Error::Compacted { compact_revision } if compact_revision == revisions[12]),
        "{err:?}"
    );
    let err = store
        .range(RangeRequest::prefix(root.clone()).at_revision(revisions[5]))
        .await
        .expect_err("compacted range");
    assert!(
        matches!(err, Error::Compacted { compact_revision } if compact_revision == revisions[12]),
        "{err:?}"
    );
    // Reading at the compacted revision itself still works.
    store
        .get(&key(&root, 0), Some(revisions[12]))
        .await
        .expect("read at the compacted revision");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_etcd_fails_fast_and_typed() {
    let mut config = EtcdConfig::new(vec![format!(
        "http://127.0.0.1:{}",
        free_port().expect("port")
    )]);
    config.dial_timeout = Duration::from_millis(500);
    config.request_timeout = Duration::from_millis(500);
    let started = Instant::now();
    let err = EtcdStore::connect(&config)
        .await
        .err()
        .expect("nothing listens there");
    assert!(err.is_transient(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// Writes a CA, a server certificate for 127.0.0.1 and a client certificate
/// into `dir` with the `openssl` CLI; false if openssl is not installed.
fn make_certificates(dir: &std::path::Path) -> bool {
    let run = |args: &[&str]| {
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ok = run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=wsgate-test-ca",
        ],
    ]
    .concat());
    for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
        let ext = format!("subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n");
        ok = ok
            && std::fs::write(dir.join(format!("{name}.ext")), ext).is_ok()
            && run(&[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.csr"),
                    "-subj",
                    &format!("/CN={name}"),
                ],
            ]
            .concat())
            && run(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "1",
                "-extfile",
                &format!("{name}.ext"),
            ]);
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates() {
    const TEST: &str = "tls_with_client_certificates";
    if !etcd_available() {
        skip_or_fail(TEST, "the `etcd` binary is not on PATH");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    if !make_certificates(dir.path()) {
        skip_or_fail(TEST, "the `openssl` CLI is missing or failed");
        return;
    }
    let etcd = EtcdProcess::start_tls(ServerTls {
        cert_file: dir.path().join("server.pem"),
        key_file: dir.path().join("server.key"),
        client_ca_file: Some(dir.path().join("ca.pem")),
    })
    .expect("start etcd with TLS");
    assert!(etcd.endpoint().starts_with("https://"));

    let mut config = EtcdConfig::new(vec![etcd.endpoint().to_string()]);
    config.ca_file = Some(dir.path().join("ca.pem"));
    config.cert_file = Some(dir.path().join("client.pem"));
    config.key_file = Some(dir.path().join("client.key"));
    let store = EtcdStore::connect(&config)
        .await
        .expect("connect over mTLS");
    let root = unique_root("tls");
    let kv = create_surely(&store, &key(&root, 0), b"secret").await;
    let got = store.get(&kv.key, None).await.expect("get").kv;
    assert_eq!(got, Some(kv));

    // Without a client certificate etcd refuses the handshake.
    config.cert_file = None;
    config.key_file = None;
    config.dial_timeout = Duration::from_secs(1);
    assert!(EtcdStore::connect(&config).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_authentication() {
    let Some(etcd) = etcd_or_skip("password_authentication") else {
        return;
    };
    let mut admin = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .expect("admin client");
    admin
        .user_add("root", "s3cret", None)
        .await
        .expect("add root");
    admin
        .user_grant_role("root", "root")
        .await
        .expect("grant root");
    admin.auth_enable().await.expect("enable auth");

    let mut config = EtcdConfig::new(vec![etcd.endpoint().to_string()]);
    config.username = Some("root".into());
    config.password = Some("s3cret".into());
    let store = EtcdStore::connect(&config)
        .await
        .expect("connect with password");
    let root = unique_root("auth");
    create_surely(&store, &key(&root, 0), b"v").await;

    config.password = Some("wrong".into());
    let err = EtcdStore::connect(&config)
        .await
        .err()
        .expect("wrong password");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");

    config.username = None;
    config.password = None;
    let err = EtcdStore::connect(&config)
        .await
        .err()
        .expect("no credentials");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}
