//! The watch cache against both engines (etcd when installed): lists equal
//! storage after random writes, watches from a revision in the window,
//! 410 after compaction, a slow watcher cut off while a fast one keeps
//! receiving, consistent reads of a write made through a second replica,
//! and bookmarks.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use registry::cluster::{ClusterId, ClusterScope, WorkspacePath};
use registry::options::{DeleteOptions, ListOptions, WriteOptions};
use registry::resource::Object;
use registry::store::ResourceStore;
use registry::watch::{WatchEvent, WatchEvents};
use registry::{Registry, RegistryConfig};
use serde_json::{Value, json};
use storage::{RangeRequest, Store};

struct Engine {
    name: &'static str,
    /// Two replicas: on etcd two connections, on the embedded engine two
    /// registries over the one store.
    a: Arc<Registry>,
    b: Arc<Registry>,
    store: Arc<dyn Store>,
    cluster: ClusterId,
    other: ClusterId,
    /// Keeps the engine's directory or etcd process alive.
    _engine: storage::testing::TestEngine,
}

async fn open(store: Arc<dyn Store>, root: &str, trusted: bool) -> Arc<Registry> {
    let r = Registry::open(
        store,
        RegistryConfig {
            key_root: root.into(),
            advertise_address: "127.0.0.1:6443".into(),
        },
    )
    .await
    .expect("registry");
    r.watch_caches().trust_watch_delivery(trusted);
    r
}

async fn workspace(r: &Registry, name: &str) -> ClusterId {
    let ws = r
        .resource("tenancy.wsgate.io", "v1alpha1", "workspaces")
        .expect("workspaces")
        .clone();
    r.create(
        &ws,
        &ClusterId::root(),
        None,
        obj(json!({"metadata": {"name": name}})),
        &WriteOptions::default(),
    )
    .await
    .expect("workspace");
    r.resolve(&WorkspacePath::parse(name).expect("path"))
        .expect("resolves at once")
}

async fn engines(test: &str) -> Vec<Engine> {
    let mut out = Vec::new();
    for engine in storage::testing::engines(test).await {
        // The embedded engine delivers every event before the write is
        // visible; Debian's etcd does not promise that.
        let trusted = engine.etcd.is_none();
        let a = open(engine.store.clone(), &engine.root, trusted).await;
        let b = open(engine.connect_again().await, &engine.root, trusted).await;
        let cluster = workspace(&a, "acme").await;
        let other = workspace(&a, "other").await;
        // The second replica learns the workspaces through its index watch.
        for _ in 0..100 {
            if b.resolve(&WorkspacePath::parse("other").expect("path"))
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        out.push(Engine {
            name: engine.name,
            a,
            b,
            store: engine.store.clone(),
            cluster,
            other,
            _engine: engine,
        });
    }
    out
}

fn obj(v: Value) -> Object {
    match v {
        Value::Object(o) => o,
        _ => panic!("not an object"),
    }
}

fn rv_of(v: &Value) -> i64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn cms(r: &Registry) -> Arc<ResourceStore> {
    r.resource("", "v1", "configmaps")
        .expect("configmaps")
        .clone()
}

fn one(c: &ClusterId) -> ClusterScope {
    ClusterScope::One(c.clone())
}

async fn create(r: &Registry, c: &ClusterId, ns: &str, name: &str, labels: Value) -> Value {
    let o = cms(r)
        .create(
            c,
            Some(ns),
            obj(json!({"metadata": {"name": name, "labels": labels}, "data": {"k": name}})),
            &WriteOptions::default(),
        )
        .await
        .expect("create");
    Value::Object(o)
}

/// Starts the configmaps cache and waits until it has loaded.
async fn cache_ready(r: &Registry) {
    let rs = cms(r);
    for _ in 0..250 {
        let _ = rs
            .list(&ClusterScope::All, None, &ListOptions::default())
            .await;
        let stats = r.watch_caches().stats().await;
        if stats
            .iter()
            .any(|s| s.prefix.ends_with("/core/configmaps/") && s.ready)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the configmaps cache did not load");
}

fn names(items: &[Value]) -> Vec<(String, String, i64)> {
    items
        .iter()
        .map(|o| {
            (
                o["metadata"]["namespace"].as_str().unwrap_or("").to_owned(),
                o["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                rv_of(o),
            )
        })
        .collect()
}

/// The collection straight from storage, at `rev` (or the latest).
async fn stored(
    e: &Engine,
    c: &ClusterId,
    ns: Option<&str>,
    rev: Option<i64>,
) -> Vec<(String, String, i64)> {
    let rs = cms(&e.a);
    let prefix = rs.descriptor.prefix.collection(&one(c), ns);
    let mut req = RangeRequest::prefix(prefix);
    if let Some(r) = rev {
        req = req.at_revision(r);
    }
    let resp = e.store.range(req).await.expect("range");
    let items: Vec<Value> = resp
        .kvs
        .iter()
        .map(|kv| {
            let mut v: Value = serde_json::from_slice(&kv.value).expect("json");
            v["metadata"]["resourceVersion"] = kv.mod_revision.to_string().into();
            v
        })
        .collect();
    names(&items)
}

async fn list_all(
    rs: &ResourceStore,
    scope: &ClusterScope,
    ns: Option<&str>,
    opts: ListOptions,
) -> (Vec<Value>, i64) {
    let mut items = Vec::new();
    let mut opts = opts;
    let mut first_rv = 0;
    loop {
        let page = rs.list(scope, ns, &opts).await.expect("list");
        if first_rv == 0 {
            first_rv = page.resource_version;
        }
        assert_eq!(page.resource_version, first_rv, "one snapshot across pages");
        items.extend(page.items);
        match page.continue_token {
            Some(t) => {
                opts.continue_token = Some(t);
                opts.resource_version = None;
                opts.resource_version_match = None;
            }
            None => return (items, first_rv),
        }
    }
}

async fn next(events: &mut WatchEvents) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("event in time")
        .expect("stream open")
}

#[tokio::test]
async fn cache_list_equals_storage_after_random_writes() {
    for e in engines("cache_list_equals_storage").await {
        cache_ready(&e.a).await;
        let rs = cms(&e.a);
        let mut rng = rand::rng();
        let mut live: Vec<(String, String)> = Vec::new();
        let mut mid_rev = 0;
        for i in 0..240 {
            let ns = ["default", "kube-system", "kube-public"][rng.random_range(0..3)];
            let op = rng.random_range(0..10);
            if op < 6 || live.is_empty() {
                let name = format!("cm-{i}");
                let env = if i % 2 == 0 { "prod" } else { "dev" };
                create(&e.a, &e.cluster, ns, &name, json!({"env": env})).await;
                live.push((ns.to_owned(), name));
            } else if op < 8 {
                let (ns, name) = live[rng.random_range(0..live.len())].clone();
                rs.patch(
                    &e.cluster,
                    Some(&ns),
                    &name,
                    registry::store::PatchKind::Merge,
                    &json!({"data": {"n": i.to_string()}}),
                    registry::store::Subresource::Main,
                    &WriteOptions::default(),
                )
                .await
                .expect("patch");
            } else {
                let (ns, name) = live.swap_remove(rng.random_range(0..live.len()));
                rs.delete(&e.cluster, Some(&ns), &name, &DeleteOptions::default())
                    .await
                    .expect("delete");
            }
            // Noise in another workspace, same prefix.
            if i % 5 == 0 {
                create(&e.a, &e.other, "default", &format!("noise-{i}"), json!({})).await;
            }
            if i == 120 {
                mid_rev = e.store.current_revision().await.expect("revision");
            }
        }
        // Consistent list (resourceVersion unset), whole and paged, per
        // namespace and per workspace.
        for ns in [None, Some("default"), Some("kube-public")] {
            let want = stored(&e, &e.cluster, ns, None).await;
            let (got, _) = list_all(&rs, &one(&e.cluster), ns, ListOptions::default()).await;
            assert_eq!(names(&got), want, "{}: consistent list of {ns:?}", e.name);
            let paged = ListOptions {
                limit: Some(7),
                ..Default::default()
            };
            let (got, _) = list_all(&rs, &one(&e.cluster), ns, paged).await;
            assert_eq!(names(&got), want, "{}: paged list of {ns:?}", e.name);
        }
        // Selectors.
        let sel = ListOptions {
            label_selector: Some("env=prod".into()),
            ..Default::default()
        };
        let (got, _) = list_all(&rs, &one(&e.cluster), None, sel).await;
        assert!(got.iter().all(|o| o["metadata"]["labels"]["env"] == "prod"));
        let want: Vec<_> = stored(&e, &e.cluster, None, None).await;
        let prod = names(&got);
        assert!(prod.len() < want.len() && !prod.is_empty(), "{}", e.name);
        // An exact older revision still in the window, after storage has
        // compacted it: only the cache can answer that.
        let want_mid = stored(&e, &e.cluster, None, Some(mid_rev)).await;
        let current = e.store.current_revision().await.expect("revision");
        e.store.compact(current).await.expect("compact");
        let exact = ListOptions {
            resource_version: Some(mid_rev.to_string()),
            resource_version_match: Some("Exact".into()),
            limit: Some(10),
            ..Default::default()
        };
        let (got, rv) = list_all(&rs, &one(&e.cluster), None, exact).await;
        assert_eq!(rv, mid_rev, "{}", e.name);
        assert_eq!(
            names(&got),
            want_mid,
            "{}: list at {mid_rev} from the window",
            e.name
        );
        // The JSON fast path renders the same objects.
        let bytes = rs
            .list_json(&one(&e.cluster), None, &ListOptions::default())
            .await
            .expect("list json");
        let doc: Value = serde_json::from_slice(&bytes).expect("valid JSON");
        assert_eq!(doc["kind"], "ConfigMapList");
        let items = doc["items"].as_array().cloned().unwrap_or_default();
        assert_eq!(names(&items), stored(&e, &e.cluster, None, None).await);
    }
}

#[tokio::test]
async fn watch_from_an_old_revision_in_the_window() {
    for e in engines("watch_from_window").await {
        cache_ready(&e.a).await;
        let rs = cms(&e.a);
        let first = rv_of(&create(&e.a, &e.cluster, "default", "w0", json!({})).await);
        create(&e.a, &e.cluster, "default", "w1", json!({})).await;
        create(&e.a, &e.other, "default", "elsewhere", json!({})).await;
        create(&e.a, &e.cluster, "default", "w2", json!({})).await;
        // Storage no longer has that history: the window must serve it.
        let current = e.store.current_revision().await.expect("revision");
        e.store.compact(current).await.expect("compact");
        let opts = ListOptions {
            resource_version: Some(first.to_string()),
            ..Default::default()
        };
        let mut w = rs
            .watch(&one(&e.cluster), Some("default"), &opts)
            .await
            .expect("watch");
        for want in ["w1", "w2"] {
            match next(&mut w).await {
                WatchEvent::Added(o) => assert_eq!(o["metadata"]["name"], want, "{}", e.name),
                other => panic!("{}: {other:?}", e.name),
            }
        }
        create(&e.a, &e.cluster, "default", "w3", json!({})).await;
        match next(&mut w).await {
            WatchEvent::Added(o) => assert_eq!(o["metadata"]["name"], "w3", "{}", e.name),
            other => panic!("{}: {other:?}", e.name),
        }
        // A wildcard watch shares the cache and names each workspace.
        let mut all = rs
            .watch(
                &ClusterScope::All,
                None,
                &ListOptions {
                    resource_version: Some(first.to_string()),
                    ..Default::default()
                },
            )
            .await
            .expect("wildcard watch");
        let mut paths = Vec::new();
        for _ in 0..4 {
            if let WatchEvent::Added(o) = next(&mut all).await {
                assert_eq!(
                    o["metadata"]["annotations"]["kcp.io/cluster"],
                    o["metadata"]["annotations"]["tenancy.wsgate.io/path"]
                );
                paths.push(
                    o["metadata"]["annotations"]["tenancy.wsgate.io/path"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                );
            }
        }
        assert_eq!(paths, ["acme", "other", "acme", "acme"], "{}", e.name);
        let listed = rs
            .list_json(&ClusterScope::All, None, &ListOptions::default())
            .await
            .expect("wildcard list");
        let doc: Value = serde_json::from_slice(&listed).expect("json");
        let items = doc["items"].as_array().cloned().unwrap_or_default();
        assert!(!items.is_empty(), "{}", e.name);
        for o in &items {
            assert_eq!(
                o["metadata"]["annotations"]["kcp.io/cluster"],
                o["metadata"]["annotations"]["tenancy.wsgate.io/path"],
                "{}: {o}",
                e.name
            );
        }
    }
}

#[tokio::test]
async fn expired_after_compaction() {
    for e in engines("expired_after_compaction").await {
        let rs = cms(&e.a);
        let old = rv_of(&create(&e.a, &e.cluster, "default", "x0", json!({})).await);
        create(&e.a, &e.cluster, "default", "x1", json!({})).await;
        // The cache loads after these writes: `old` is before its window.
        cache_ready(&e.a).await;
        create(&e.a, &e.cluster, "default", "x2", json!({})).await;
        let current = e.store.current_revision().await.expect("revision");
        e.store.compact(current).await.expect("compact");
        let opts = ListOptions {
            resource_version: Some(old.to_string()),
            ..Default::default()
        };
        let mut w = rs
            .watch(&one(&e.cluster), Some("default"), &opts)
            .await
            .expect("watch starts");
        match next(&mut w).await {
            WatchEvent::Error(s) => {
                assert_eq!(s["code"], 410, "{}: {s}", e.name);
                assert_eq!(s["reason"], "Expired", "{}: {s}", e.name);
            }
            other => panic!("{}: expected 410, got {other:?}", e.name),
        }
    }
}

#[tokio::test]
async fn slow_watcher_is_cut_off_while_a_fast_one_keeps_receiving() {
    for e in engines("slow_watcher").await {
        cache_ready(&e.a).await;
        let rs = cms(&e.a);
        let opts = ListOptions {
            resource_version: Some("0".into()),
            ..Default::default()
        };
        let mut slow = rs
            .watch(&one(&e.cluster), Some("default"), &opts)
            .await
            .expect("slow watch");
        let mut fast = rs
            .watch(&one(&e.cluster), Some("default"), &opts)
            .await
            .expect("fast watch");
        const N: usize = 1_300;
        let reader = tokio::spawn(async move {
            let mut seen = 0;
            while seen < N {
                match tokio::time::timeout(Duration::from_secs(20), fast.next()).await {
                    Ok(Some(WatchEvent::Added(_))) => seen += 1,
                    Ok(Some(other)) => panic!("fast watcher got {other:?}"),
                    Ok(None) | Err(_) => break,
                }
            }
            seen
        });
        let writer = cms(&e.a);
        let cluster = e.cluster.clone();
        futures::stream::iter(0..N)
            .map(|i| {
                let rs = writer.clone();
                let c = cluster.clone();
                async move {
                    rs.create(
                        &c,
                        Some("default"),
                        obj(json!({"metadata": {"name": format!("s{i:05}")}})),
                        &WriteOptions::default(),
                    )
                    .await
                    .expect("create");
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
        assert_eq!(reader.await.expect("reader"), N, "{}: fast watcher", e.name);
        let mut got = 0;
        let end = loop {
            match next(&mut slow).await {
                WatchEvent::Added(_) => got += 1,
                other => break other,
            }
        };
        assert!(got < N, "{}: slow watcher got all {got}", e.name);
        match end {
            WatchEvent::Error(s) => {
                assert_eq!(s["code"], 410, "{}: {s}", e.name);
                assert!(
                    s["message"].as_str().unwrap_or("").contains("too slow"),
                    "{}: {s}",
                    e.name
                );
            }
            other => panic!("{}: {other:?}", e.name),
        }
        assert!(
            slow.next().await.is_none(),
            "{}: ends after the error",
            e.name
        );
    }
}

#[tokio::test]
async fn consistent_reads_see_writes_of_another_replica() {
    for e in engines("consistent_reads").await {
        cache_ready(&e.a).await;
        let rs = cms(&e.a);
        // Other prefixes move the store's revision too.
        let secrets = e.a.resource("", "v1", "secrets").expect("secrets").clone();
        for i in 0..20 {
            let name = format!("r{i}");
            let written = create(&e.b, &e.cluster, "default", &name, json!({})).await;
            secrets
                .create(
                    &e.cluster,
                    Some("default"),
                    obj(json!({"metadata": {"name": name}})),
                    &WriteOptions::default(),
                )
                .await
                .expect("secret");
            let page = rs
                .list(&one(&e.cluster), Some("default"), &ListOptions::default())
                .await
                .expect("list");
            assert!(
                page.items
                    .iter()
                    .any(|o| o["metadata"]["name"] == name.as_str()),
                "{}: consistent list misses {name}",
                e.name
            );
            assert!(page.resource_version >= rv_of(&written), "{}", e.name);
            // A watch without a resourceVersion starts from the same state.
            let mut w = rs
                .watch(
                    &one(&e.cluster),
                    Some("default"),
                    &ListOptions {
                        field_selector: Some(format!("metadata.name={name}")),
                        ..Default::default()
                    },
                )
                .await
                .expect("watch");
            match next(&mut w).await {
                WatchEvent::Added(o) => assert_eq!(o["metadata"]["name"], name.as_str()),
                other => panic!("{}: {other:?}", e.name),
            }
        }
    }
}

#[tokio::test]
async fn bookmarks_carry_the_cache_revision() {
    for e in engines("bookmarks").await {
        cache_ready(&e.a).await;
        let rs = cms(&e.a);
        create(&e.a, &e.cluster, "default", "b0", json!({})).await;
        let opts = ListOptions {
            send_initial_events: Some(true),
            resource_version_match: Some("NotOlderThan".into()),
            allow_watch_bookmarks: true,
            ..Default::default()
        };
        let mut w = rs
            .watch(&one(&e.cluster), Some("default"), &opts)
            .await
            .expect("watch-list");
        match next(&mut w).await {
            WatchEvent::Added(o) => assert_eq!(o["metadata"]["name"], "b0"),
            other => panic!("{}: {other:?}", e.name),
        }
        match next(&mut w).await {
            WatchEvent::Bookmark(o) => assert_eq!(
                o["metadata"]["annotations"]["k8s.io/initial-events-end"], "true",
                "{}",
                e.name
            ),
            other => panic!("{}: {other:?}", e.name),
        }
        // A write this watcher does not see still moves its bookmark.
        let elsewhere = rv_of(&create(&e.a, &e.other, "default", "b1", json!({})).await);
        match next(&mut w).await {
            WatchEvent::Bookmark(o) => {
                assert!(rv_of(&o) >= elsewhere, "{}: {o}", e.name);
                assert!(o["metadata"].get("annotations").is_none(), "{}", e.name);
            }
            other => panic!("{}: {other:?}", e.name),
        }
    }
}
