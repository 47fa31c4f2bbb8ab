//! ResourceStore and Registry behaviour against the real embedded engine.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use registry::cluster::{ClusterId, ClusterScope, WorkspacePath};
use registry::options::{DeleteOptions, ListOptions, Propagation, WriteOptions};
use registry::resource::Object;
use registry::store::{DeleteOutcome, PatchKind, ResourceStore, Subresource};
use registry::watch::WatchEvent;
use registry::{Registry, RegistryConfig};
use serde_json::{Value, json};
use storage::{EmbeddedConfig, StorageConfig};

struct Fixture {
    registry: Arc<Registry>,
    store: Arc<dyn storage::Store>,
    cluster: ClusterId,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = storage::open(&StorageConfig::Embedded(EmbeddedConfig::new(dir.path())))
        .await
        .expect("embedded store");
    let registry = Registry::open(
        store.clone(),
        RegistryConfig {
            key_root: "/registry".into(),
            advertise_address: "127.0.0.1:6443".into(),
        },
    )
    .await
    .expect("registry");
    // A workspace, created like any object in root.
    let ws = registry
        .resource("tenancy.wsgate.io", "v1alpha1", "workspaces")
        .expect("workspaces")
        .clone();
    registry
        .create(
            &ws,
            &ClusterId::root(),
            None,
            obj(json!({"metadata": {"name": "acme"}})),
            &WriteOptions::default(),
        )
        .await
        .expect("workspace");
    let cluster = registry
        .resolve(&WorkspacePath::parse("acme").expect("path"))
        .expect("resolves at once");
    Fixture {
        registry,
        store,
        cluster,
        _dir: dir,
    }
}

fn obj(v: Value) -> Object {
    match v {
        Value::Object(o) => o,
        _ => panic!("not an object"),
    }
}

fn rv(o: &Object) -> i64 {
    o["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

impl Fixture {
    fn rs(&self, group: &str, version: &str, plural: &str) -> Arc<ResourceStore> {
        self.registry
            .resource(group, version, plural)
            .expect("resource")
            .clone()
    }

    fn cms(&self) -> Arc<ResourceStore> {
        self.rs("", "v1", "configmaps")
    }

    async fn cm(&self, name: &str, labels: Value) -> Object {
        self.cms()
            .create(
                &self.cluster,
                Some("default"),
                obj(json!({"metadata": {"name": name, "labels": labels}})),
                &WriteOptions::default(),
            )
            .await
            .expect("create")
    }
}

async fn next(events: &mut registry::watch::WatchEvents) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("event in time")
        .expect("stream open")
}

#[tokio::test]
async fn compacted_reads_are_expired() {
    let f = fixture().await;
    // Storage semantics: the watch cache's window would still answer these
    // (tests/watch_cache.rs covers that).
    f.registry.watch_caches().set_enabled(false);
    let first_rv = rv(&f.cm("c0", json!({})).await);
    for i in 1..4 {
        f.cm(&format!("c{i}"), json!({})).await;
    }
    let scope = ClusterScope::One(f.cluster.clone());
    let first = f
        .cms()
        .list(
            &scope,
            Some("default"),
            &ListOptions {
                limit: Some(2),
                ..Default::default()
            },
        )
        .await
        .expect("page");
    let token = first.continue_token.clone().expect("more pages");
    let old = first.resource_version;
    f.cm("later", json!({})).await;
    let now = f.store.current_revision().await.expect("rev");
    f.store.compact(now).await.expect("compact");

    let e = f
        .cms()
        .list(
            &scope,
            Some("default"),
            &ListOptions {
                limit: Some(2),
                continue_token: Some(token),
                ..Default::default()
            },
        )
        .await
        .expect_err("compacted continue");
    assert_eq!((e.code(), e.reason.as_str()), (410, "Expired"));

    let e = f
        .cms()
        .list(
            &scope,
            Some("default"),
            &ListOptions {
                resource_version: Some(old.to_string()),
                resource_version_match: Some("Exact".into()),
                ..Default::default()
            },
        )
        .await
        .expect_err("compacted exact read");
    assert_eq!(e.code(), 410);

    // A compacted watch start is an in-stream ERROR 410, then the end.
    let mut w = f
        .cms()
        .watch(
            &scope,
            Some("default"),
            &ListOptions {
                resource_version: Some(first_rv.to_string()),
                ..Default::default()
            },
        )
        .await
        .expect("watch starts");
    match next(&mut w).await {
        WatchEvent::Error(s) => {
            assert_eq!(s["code"], 410);
            assert_eq!(s["reason"], "Expired");
            assert!(
                s["message"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("too old resource version")
            );
        }
        other => panic!("expected ERROR, got {other:?}"),
    }
    assert!(w.next().await.is_none());
}

#[tokio::test]
async fn watch_reports_selector_transitions() {
    let f = fixture().await;
    let scope = ClusterScope::One(f.cluster.clone());
    let c = f.cm("c", json!({"team": "a"})).await;
    let mut w = f
        .cms()
        .watch(
            &scope,
            Some("default"),
            &ListOptions {
                label_selector: Some("team=a".into()),
                resource_version: Some(rv(&c).to_string()),
                ..Default::default()
            },
        )
        .await
        .expect("watch");
    let wo = WriteOptions::default();
    let patch = |team: &str| json!({"metadata": {"labels": {"team": team}}});
    let left = f
        .cms()
        .patch(
            &f.cluster,
            Some("default"),
            "c",
            PatchKind::Merge,
            &patch("b"),
            Subresource::Main,
            &wo,
        )
        .await
        .expect("patch")
        .0;
    match next(&mut w).await {
        WatchEvent::Deleted(o) => {
            assert_eq!(o["metadata"]["labels"]["team"], "a", "old content");
            assert_eq!(
                o["metadata"]["resourceVersion"],
                rv(&left).to_string(),
                "new RV"
            );
        }
        other => panic!("expected DELETED, got {other:?}"),
    }
    f.cms()
        .patch(
            &f.cluster,
            Some("default"),
            "c",
            PatchKind::Merge,
            &patch("a"),
            Subresource::Main,
            &wo,
        )
        .await
        .expect("patch");
    assert!(matches!(next(&mut w).await, WatchEvent::Added(_)));
}

#[tokio::test]
async fn unsupported_field_selectors_are_rejected() {
    let f = fixture().await;
    let scope = ClusterScope::One(f.cluster.clone());
    let e = f
        .cms()
        .list(
            &scope,
            None,
            &ListOptions {
                field_selector: Some("spec.foo=x".into()),
                ..Default::default()
            },
        )
        .await
        .expect_err("unsupported");
    assert_eq!(e.code(), 400);
    assert_eq!(e.message, "field label not supported: spec.foo");
    let secrets = f.rs("", "v1", "secrets");
    secrets
        .create(
            &f.cluster,
            Some("default"),
            obj(json!({"metadata": {"name": "s"}, "stringData": {"a": "b"}})),
            &WriteOptions::default(),
        )
        .await
        .expect("secret");
    let l = secrets
        .list(
            &scope,
            None,
            &ListOptions {
                field_selector: Some("type=Opaque".into()),
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(l.items.len(), 1);
    assert_eq!(
        l.items[0]["data"]["a"], "Yg==",
        "stringData folded into data"
    );
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let f = fixture().await;
    let cms = f.cms();
    cms.create(
        &f.cluster,
        Some("default"),
        obj(json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})),
        &WriteOptions::default(),
    )
    .await
    .expect("create");
    let pending = match cms
        .delete(
            &f.cluster,
            Some("default"),
            "held",
            &DeleteOptions::default(),
        )
        .await
    {
        Ok(DeleteOutcome::Pending(o)) => o,
        other => panic!("expected pending, got {other:?}"),
    };
    assert!(pending["metadata"]["deletionTimestamp"].is_string());
    let wo = WriteOptions::default();
    let add = json!({"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}});
    let e = cms
        .patch(
            &f.cluster,
            Some("default"),
            "held",
            PatchKind::Merge,
            &add,
            Subresource::Main,
            &wo,
        )
        .await
        .expect_err("no new finalizers");
    assert_eq!(e.code(), 422);
    let clear = json!({"metadata": {"finalizers": null}});
    cms.patch(
        &f.cluster,
        Some("default"),
        "held",
        PatchKind::Merge,
        &clear,
        Subresource::Main,
        &wo,
    )
    .await
    .expect("last finalizer removed");
    assert_eq!(
        cms.get(&f.cluster, Some("default"), "held")
            .await
            .expect_err("gone")
            .code(),
        404
    );
}

#[tokio::test]
async fn orphan_and_foreground_propagation() {
    let f = fixture().await;
    let owner = f.cm("owner", json!({})).await;
    let owner_ref = |o: &Object| json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": o["metadata"]["name"], "uid": o["metadata"]["uid"], "blockOwnerDeletion": true}]);
    let cms = f.cms();
    let wo = WriteOptions::default();
    cms.create(
        &f.cluster,
        Some("default"),
        obj(json!({"metadata": {"name": "kept", "ownerReferences": owner_ref(&owner)}})),
        &wo,
    )
    .await
    .expect("dependent");
    let opts = DeleteOptions {
        propagation: Some(Propagation::Orphan),
        ..Default::default()
    };
    f.registry
        .delete(&cms, &f.cluster, Some("default"), "owner", &opts)
        .await
        .expect("orphan delete");
    wait_gone(&cms, &f.cluster, "owner").await;
    let kept = cms
        .get(&f.cluster, Some("default"), "kept")
        .await
        .expect("orphaned dependent stays");
    assert!(
        kept["metadata"].get("ownerReferences").is_none(),
        "references stripped"
    );

    let owner = f.cm("owner2", json!({})).await;
    cms.create(
        &f.cluster,
        Some("default"),
        obj(json!({"metadata": {"name": "dep2", "ownerReferences": owner_ref(&owner)}})),
        &wo,
    )
    .await
    .expect("dependent");
    let opts = DeleteOptions {
        propagation: Some(Propagation::Foreground),
        ..Default::default()
    };
    let resp = f
        .registry
        .delete(&cms, &f.cluster, Some("default"), "owner2", &opts)
        .await
        .expect("foreground");
    assert!(resp.pending);
    wait_gone(&cms, &f.cluster, "dep2").await;
    wait_gone(&cms, &f.cluster, "owner2").await;
}

async fn wait_gone(rs: &ResourceStore, cluster: &ClusterId, name: &str) {
    for _ in 0..100 {
        if rs.get(cluster, Some("default"), name).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} was not deleted");
}

#[tokio::test]
async fn generation_and_no_op_updates() {
    let f = fixture().await;
    let deploys = f.rs("apps", "v1", "deployments");
    let wo = WriteOptions::default();
    let d = deploys
        .create(
            &f.cluster,
            Some("default"),
            obj(json!({"metadata": {"name": "d"}, "spec": {
                "selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
            }})),
            &wo,
        )
        .await
        .expect("create");
    assert_eq!(d["metadata"]["generation"], 1);
    assert_eq!(d["spec"]["replicas"], 1, "defaulted");
    let (same, _) = deploys
        .update(
            &f.cluster,
            Some("default"),
            "d",
            d.clone(),
            Subresource::Main,
            &wo,
        )
        .await
        .expect("no-op update");
    assert_eq!(rv(&same), rv(&d), "a no-op update writes nothing");
    let labels = json!({"metadata": {"labels": {"x": "y"}}});
    let (l, _) = deploys
        .patch(
            &f.cluster,
            Some("default"),
            "d",
            PatchKind::Merge,
            &labels,
            Subresource::Main,
            &wo,
        )
        .await
        .expect("labels");
    assert_eq!(l["metadata"]["generation"], 1, "metadata-only change");
    let ann = json!({"metadata": {"annotations": {"x": "y"}}});
    let (a, _) = deploys
        .patch(
            &f.cluster,
            Some("default"),
            "d",
            PatchKind::Merge,
            &ann,
            Subresource::Main,
            &wo,
        )
        .await
        .expect("annotations");
    assert_eq!(
        a["metadata"]["generation"], 2,
        "deployments count annotation changes"
    );
    let bad = json!({"spec": {"template": {"metadata": {"labels": {"a": "other"}}}}});
    let e = deploys
        .patch(
            &f.cluster,
            Some("default"),
            "d",
            PatchKind::Merge,
            &bad,
            Subresource::Main,
            &wo,
        )
        .await
        .expect_err("selector mismatch");
    assert_eq!(e.code(), 422);
    assert_eq!(
        e.details.as_ref().and_then(|d| d.kind.as_deref()),
        Some("Deployment")
    );
}

#[tokio::test]
async fn workspace_index_loads_from_storage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = StorageConfig::Embedded(EmbeddedConfig::new(dir.path()));
    let store = storage::open(&cfg).await.expect("store");
    let id = {
        let reg = Registry::open(
            store.clone(),
            RegistryConfig {
                key_root: "/r".into(),
                advertise_address: "127.0.0.1:1".into(),
            },
        )
        .await
        .expect("registry");
        let ws = reg
            .resource("tenancy.wsgate.io", "v1alpha1", "workspaces")
            .expect("ws")
            .clone();
        reg.create(
            &ws,
            &ClusterId::root(),
            None,
            obj(json!({"metadata": {"name": "acme"}})),
            &WriteOptions::default(),
        )
        .await
        .expect("acme");
        let acme = reg
            .resolve(&WorkspacePath::parse("acme").expect("p"))
            .expect("acme id");
        reg.create(
            &ws,
            &acme,
            None,
            obj(json!({"metadata": {"name": "team"}})),
            &WriteOptions::default(),
        )
        .await
        .expect("nested");
        reg.resolve(&WorkspacePath::parse("acme:team").expect("p"))
            .expect("nested id")
    };
    // A second registry (another replica, or a restart) loads the index.
    let reg = Registry::open(
        store,
        RegistryConfig {
            key_root: "/r".into(),
            advertise_address: "127.0.0.1:1".into(),
        },
    )
    .await
    .expect("registry");
    assert_eq!(
        reg.resolve(&WorkspacePath::parse("acme:team").expect("p"))
            .expect("loaded"),
        id
    );
    assert_eq!(
        reg.resolve(&WorkspacePath::parse("nope").expect("p"))
            .expect_err("unknown")
            .code(),
        404
    );
}

#[tokio::test]
async fn both_event_apis_share_one_store() {
    let f = fixture().await;
    let v1 = f.rs("events.k8s.io", "v1", "events");
    let core = f.rs("", "v1", "events");
    let created = v1
        .create(
            &f.cluster,
            Some("default"),
            obj(json!({
                "metadata": {"name": "e1"},
                "eventTime": "2024-01-01T00:00:00.000000Z",
                "reportingController": "ctl",
                "reportingInstance": "ctl-1",
                "action": "Start",
                "reason": "Started",
                "regarding": {"kind": "Pod", "name": "web", "namespace": "default"},
                "note": "started",
                "type": "Normal",
            })),
            &WriteOptions::default(),
        )
        .await
        .expect("events.k8s.io create");
    assert_eq!(created["apiVersion"], "events.k8s.io/v1");
    let scope = ClusterScope::One(f.cluster.clone());
    let seen = core
        .list(
            &scope,
            Some("default"),
            &ListOptions {
                field_selector: Some("involvedObject.name=web".into()),
                ..Default::default()
            },
        )
        .await
        .expect("core list");
    assert_eq!(seen.items.len(), 1);
    assert_eq!(seen.items[0]["apiVersion"], "v1");
    assert_eq!(seen.items[0]["message"], "started");
    assert_eq!(seen.items[0]["reportingComponent"], "ctl");
    let back = v1
        .get(&f.cluster, Some("default"), "e1")
        .await
        .expect("v1 get");
    assert_eq!(back["note"], "started");
    assert_eq!(back["regarding"]["name"], "web");
}

#[tokio::test]
async fn terminating_namespaces_refuse_new_content_until_purged() {
    let f = fixture().await;
    let nss = f.rs("", "v1", "namespaces");
    let wo = WriteOptions::default();
    nss.create(
        &f.cluster,
        None,
        obj(json!({"metadata": {"name": "team"}})),
        &wo,
    )
    .await
    .expect("namespace");
    let cms = f.cms();
    cms.create(
        &f.cluster,
        Some("team"),
        obj(json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})),
        &wo,
    )
    .await
    .expect("held object");
    let resp = f
        .registry
        .delete(&nss, &f.cluster, None, "team", &DeleteOptions::default())
        .await
        .expect("delete namespace");
    assert_eq!(resp.body["status"]["phase"], "Terminating");
    // Give the purge a moment to mark the held object.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let e = cms
        .create(
            &f.cluster,
            Some("team"),
            obj(json!({"metadata": {"name": "new"}})),
            &wo,
        )
        .await
        .expect_err("terminating");
    assert_eq!(e.code(), 403);
    let cause = &e.details.as_ref().expect("details").causes[0];
    assert_eq!(cause["reason"], "NamespaceTerminating");
    let again = f
        .registry
        .delete(&nss, &f.cluster, None, "team", &DeleteOptions::default())
        .await
        .expect_err("repeat");
    assert_eq!(again.code(), 409);
    assert!(
        again
            .message
            .contains("The system is ensuring all content is removed from this namespace")
    );
    let held = cms
        .get(&f.cluster, Some("team"), "held")
        .await
        .expect("still held");
    assert!(held["metadata"]["deletionTimestamp"].is_string());
    let ns = nss
        .get(&f.cluster, None, "team")
        .await
        .expect("terminating namespace");
    let conditions = ns["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let find = |t: &str| {
        conditions
            .iter()
            .find(|c| c["type"] == t)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(find("NamespaceContentRemaining")["status"], "True");
    assert_eq!(
        find("NamespaceContentRemaining")["message"],
        "Some resources are remaining: configmaps has 1 resource instances"
    );
    assert_eq!(
        find("NamespaceFinalizersRemaining")["message"],
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
    );
    assert_eq!(ns["status"]["phase"], "Terminating");
    let clear = json!({"metadata": {"finalizers": null}});
    cms.patch(
        &f.cluster,
        Some("team"),
        "held",
        PatchKind::Merge,
        &clear,
        Subresource::Main,
        &wo,
    )
    .await
    .expect("release");
    for _ in 0..100 {
        if nss.get(&f.cluster, None, "team").await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("namespace was not purged");
}

#[tokio::test]
async fn events_carry_a_ttl_lease_that_updates_keep() {
    let f = fixture().await;
    let core = f.rs("", "v1", "events");
    let wo = WriteOptions::default();
    for name in ["e1", "e2"] {
        core.create(
            &f.cluster,
            Some("default"),
            obj(json!({"metadata": {"name": name}, "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "R", "message": "m"})),
            &wo,
        )
        .await
        .expect("event");
    }
    core.patch(
        &f.cluster,
        Some("default"),
        "e1",
        PatchKind::Merge,
        &json!({"count": 2}),
        Subresource::Main,
        &wo,
    )
    .await
    .expect("series update");
    let kvs = f
        .store
        .range(storage::RangeRequest::prefix(
            core.descriptor.prefix.as_bytes().to_vec(),
        ))
        .await
        .expect("range")
        .kvs;
    assert_eq!(kvs.len(), 2);
    let leases: Vec<_> = kvs.iter().map(|kv| kv.lease).collect();
    assert!(leases.iter().all(Option::is_some), "{leases:?}");
    assert_eq!(
        leases[0], leases[1],
        "events created together share a lease"
    );
    // Other types have none.
    f.cm("plain", json!({})).await;
    let cm = f
        .store
        .range(storage::RangeRequest::prefix(
            f.cms().descriptor.prefix.as_bytes().to_vec(),
        ))
        .await
        .expect("range")
        .kvs;
    assert!(cm.iter().all(|kv| kv.lease.is_none()));
}

#[tokio::test]
async fn filtered_pages_hold_exactly_the_matches() {
    let f = fixture().await;
    for i in 0..10 {
        let labels = if i % 3 == 0 {
            json!({"pick": "yes"})
        } else {
            json!({})
        };
        f.cm(&format!("c{i}"), labels).await;
    }
    let scope = ClusterScope::One(f.cluster.clone());
    let mut token = None;
    let mut names = Vec::new();
    let mut rvs = Vec::new();
    loop {
        let page = f
            .cms()
            .list(
                &scope,
                Some("default"),
                &ListOptions {
                    label_selector: Some("pick=yes".into()),
                    limit: Some(1),
                    continue_token: token.clone(),
                    ..Default::default()
                },
            )
            .await
            .expect("page");
        assert!(
            page.remaining_item_count.is_none(),
            "not exact with selectors"
        );
        rvs.push(page.resource_version);
        names.extend(
            page.items
                .iter()
                .map(|o| o["metadata"]["name"].as_str().unwrap_or("").to_owned()),
        );
        match page.continue_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(names, ["c0", "c3", "c6", "c9"]);
    assert!(rvs.iter().all(|r| *r == rvs[0]));
}

#[tokio::test]
async fn deletecollection_collects_dependents_of_every_deleted_owner() {
    let f = fixture().await;
    let cms = f.cms();
    let wo = WriteOptions::default();
    let a = f.cm("owner-a", json!({"role": "owner"})).await;
    let b = f.cm("owner-b", json!({"role": "owner"})).await;
    let keep = f.cm("keeper", json!({})).await;
    let oref = |o: &Object| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": o["metadata"]["name"], "uid": o["metadata"]["uid"]});
    for (name, owners) in [
        ("dep-a", json!([oref(&a)])),
        ("dep-b", json!([oref(&b)])),
        ("dep-shared", json!([oref(&a), oref(&keep)])),
    ] {
        cms.create(
            &f.cluster,
            Some("default"),
            obj(json!({"metadata": {"name": name, "ownerReferences": owners}})),
            &wo,
        )
        .await
        .expect("dependent");
    }
    f.registry
        .delete_collection(
            &cms,
            &f.cluster,
            Some("default"),
            &ListOptions {
                label_selector: Some("role=owner".into()),
                ..Default::default()
            },
            &DeleteOptions::default(),
        )
        .await
        .expect("deletecollection");
    wait_gone(&cms, &f.cluster, "dep-a").await;
    wait_gone(&cms, &f.cluster, "dep-b").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    cms.get(&f.cluster, Some("default"), "dep-shared")
        .await
        .expect("a dependent with a live owner stays");
}

/// A burst of single deletes (what `helm uninstall` or a controller sends)
/// is coalesced into few dependents scans, and every dependent is still
/// collected.
#[tokio::test]
async fn a_burst_of_owner_deletes_collects_every_dependent() {
    let f = fixture().await;
    let cms = f.cms();
    let wo = WriteOptions::default();
    let mut owners = Vec::new();
    for i in 0..40 {
        let owner = f.cm(&format!("burst-owner-{i}"), json!({})).await;
        let oref = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"]});
        cms.create(
            &f.cluster,
            Some("default"),
            obj(json!({"metadata": {"name": format!("burst-dep-{i}"), "ownerReferences": [oref]}})),
            &wo,
        )
        .await
        .expect("dependent");
        owners.push(format!("burst-owner-{i}"));
    }
    for name in &owners {
        f.registry
            .delete(
                &cms,
                &f.cluster,
                Some("default"),
                name,
                &DeleteOptions::default(),
            )
            .await
            .expect("delete owner");
    }
    for i in 0..40 {
        wait_gone(&cms, &f.cluster, &format!("burst-dep-{i}")).await;
    }
}

#[tokio::test]
async fn both_hpa_versions_share_one_store() {
    let f = fixture().await;
    let v1 = f.rs("autoscaling", "v1", "horizontalpodautoscalers");
    let v2 = f.rs("autoscaling", "v2", "horizontalpodautoscalers");
    let wo = WriteOptions::default();
    v1.create(
        &f.cluster,
        Some("default"),
        obj(json!({"metadata": {"name": "h"}, "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "maxReplicas": 4,
            "targetCPUUtilizationPercentage": 70,
        }})),
        &wo,
    )
    .await
    .expect("v1 create");
    let seen = v2
        .get(&f.cluster, Some("default"), "h")
        .await
        .expect("v2 get");
    assert_eq!(seen["apiVersion"], "autoscaling/v2");
    assert_eq!(
        seen["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        70
    );
    // A v2-only field survives a v1 read-modify-write.
    let behavior = json!({"spec": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 30}}}});
    v2.patch(
        &f.cluster,
        Some("default"),
        "h",
        PatchKind::Merge,
        &behavior,
        Subresource::Main,
        &wo,
    )
    .await
    .expect("v2 patch");
    let mut as_v1 = v1
        .get(&f.cluster, Some("default"), "h")
        .await
        .expect("v1 get");
    as_v1.insert("spec".into(), {
        let mut spec = as_v1["spec"].clone();
        spec["maxReplicas"] = json!(6);
        spec
    });
    v1.update(
        &f.cluster,
        Some("default"),
        "h",
        as_v1,
        Subresource::Main,
        &wo,
    )
    .await
    .expect("v1 update");
    let after = v2
        .get(&f.cluster, Some("default"), "h")
        .await
        .expect("v2 get");
    assert_eq!(after["spec"]["maxReplicas"], 6);
    assert_eq!(
        after["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
        30
    );
    assert!(
        after["metadata"].get("annotations").is_none(),
        "no stash left in storage"
    );
}

#[tokio::test]
async fn workloads_get_upstream_defaults() {
    let f = fixture().await;
    let wo = WriteOptions::default();
    let template = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}});
    let sts = f
        .rs("apps", "v1", "statefulsets")
        .create(
            &f.cluster,
            Some("default"),
            obj(json!({"metadata": {"name": "s"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "serviceName": "s", "template": template}})),
            &wo,
        )
        .await
        .expect("statefulset");
    assert_eq!(sts["spec"]["updateStrategy"]["type"], "RollingUpdate");
    assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
    assert_eq!(sts["spec"]["template"]["spec"]["restartPolicy"], "Always");
    assert_eq!(
        sts["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    let cj = f
        .rs("batch", "v1", "cronjobs")
        .create(
            &f.cluster,
            Some("default"),
            // Jobs need an explicit OnFailure/Never restart policy (upstream rejects Always).
            obj(json!({"metadata": {"name": "c"}, "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "nginx:1.27"}]}}}}}})),
            &wo,
        )
        .await
        .expect("cronjob");
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
    assert_eq!(cj["spec"]["jobTemplate"]["spec"]["backoffLimit"], 6);
    assert_eq!(
        cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"],
        "ClusterFirst"
    );
}

/// Empty ObjectMeta maps, lists and `generateName` are dropped as
/// upstream's round trip through the Go type drops them (`omitempty`):
/// on create, and when a patch leaves them empty; a patch that only adds
/// an empty map writes nothing.
#[tokio::test]
async fn empty_metadata_fields_are_dropped() {
    let f = fixture().await;
    let cms = f.rs("", "v1", "configmaps");
    let wo = WriteOptions::default();
    let created = cms
        .create(
            &f.cluster,
            Some("default"),
            obj(
                json!({"metadata": {"name": "e", "labels": {}, "annotations": null,
                "finalizers": [], "ownerReferences": [], "generateName": ""}}),
            ),
            &wo,
        )
        .await
        .expect("create");
    let keys = |o: &Object| -> Vec<String> {
        let mut k: Vec<String> = o["metadata"]
            .as_object()
            .expect("metadata")
            .keys()
            .cloned()
            .collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&created),
        [
            "creationTimestamp",
            "name",
            "namespace",
            "resourceVersion",
            "uid"
        ]
    );
    // What `kubectl diff` sends for an object without annotations.
    let (same, _) = cms
        .patch(
            &f.cluster,
            Some("default"),
            "e",
            PatchKind::Strategic,
            &json!({"metadata": {"annotations": {}}}),
            Subresource::Main,
            &wo,
        )
        .await
        .expect("patch");
    assert_eq!(keys(&same), keys(&created));
    assert_eq!(rv(&same), rv(&created), "an empty map changes nothing");
    // Removing the last label leaves no `labels: {}` behind.
    let (labelled, _) = cms
        .patch(
            &f.cluster,
            Some("default"),
            "e",
            PatchKind::Merge,
            &json!({"metadata": {"labels": {"a": "b"}}}),
            Subresource::Main,
            &wo,
        )
        .await
        .expect("label");
    assert_eq!(labelled["metadata"]["labels"]["a"], "b");
    let (unlabelled, _) = cms
        .patch(
            &f.cluster,
            Some("default"),
            "e",
            PatchKind::Merge,
            &json!({"metadata": {"labels": {"a": null}}}),
            Subresource::Main,
            &wo,
        )
        .await
        .expect("unlabel");
    assert_eq!(keys(&unlabelled), keys(&created));
}
