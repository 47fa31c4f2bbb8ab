//! Workspace lifecycle in the registry, on the embedded engine and (when
//! installed) etcd: records, Terminating, background deletion across every
//! ResourcePrefix including nested workspaces, resumption after a restart,
//! immediate name reuse, and two replicas agreeing through the watch.

use std::sync::Arc;
use std::time::Duration;

use registry::cluster::{ClusterId, ClusterScope, WorkspacePath};
use registry::keys::KeyRoot;
use registry::options::{DeleteOptions, ListOptions, WriteOptions};
use registry::resource::Object;
use registry::store::ResourceStore;
use registry::workspace::{DeletionRecord, Phase};
use registry::{Reason, Registry, RegistryConfig};
use serde_json::{Value, json};

use storage::testing::{TestEngine as Engine, engines};

async fn open(e: &Engine) -> Arc<Registry> {
    Registry::open(
        e.store.clone(),
        RegistryConfig {
            key_root: e.root.clone(),
            advertise_address: "127.0.0.1:6443".into(),
        },
    )
    .await
    .expect("registry")
}

fn obj(v: Value) -> Object {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn path(s: &str) -> WorkspacePath {
    WorkspacePath::parse(s).expect("valid path")
}

fn ws_store(r: &Registry) -> Arc<ResourceStore> {
    r.resource("tenancy.wsgate.io", "v1alpha1", "workspaces")
        .expect("workspaces")
        .clone()
}

fn cm_store(r: &Registry) -> Arc<ResourceStore> {
    r.resource("", "v1", "configmaps")
        .expect("configmaps")
        .clone()
}

async fn create_ws(r: &Registry, parent: &ClusterId, name: &str, user: Option<&str>) -> Object {
    let opts = WriteOptions {
        user: user.map(str::to_owned),
        ..Default::default()
    };
    r.create(
        &ws_store(r),
        parent,
        None,
        obj(json!({"metadata": {"name": name}})),
        &opts,
    )
    .await
    .expect("workspace created")
}

async fn put_cm(r: &Registry, cluster: &ClusterId, name: &str) {
    r.create(
        &cm_store(r),
        cluster,
        Some("default"),
        obj(json!({"metadata": {"name": name}, "data": {"k": "v"}})),
        &WriteOptions::default(),
    )
    .await
    .expect("configmap created");
}

async fn count_cms(r: &Registry, cluster: &ClusterId) -> usize {
    cm_store(r)
        .list(
            &ClusterScope::One(cluster.clone()),
            Some("default"),
            &ListOptions::default(),
        )
        .await
        .expect("list")
        .items
        .len()
}

async fn wait_until<F: AsyncFnMut() -> bool>(what: &str, mut f: F) {
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn records_owner_phase_and_one_write() {
    for e in engines("records_owner_phase_and_one_write").await {
        let r = open(&e).await;
        let before = e.store.current_revision().await.expect("rev");
        let created = create_ws(&r, &ClusterId::root(), "acme", Some("alice")).await;
        let after = e.store.current_revision().await.expect("rev");
        assert_eq!(
            after - before,
            1,
            "{}: creating a workspace is one write",
            e.name
        );
        assert_eq!(created["status"]["phase"], "Ready");
        assert_eq!(
            created["status"]["url"],
            "http://127.0.0.1:6443/clusters/acme"
        );
        let rec = r.workspace(&path("acme")).expect("known");
        assert_eq!(rec.owner(), Some("alice"));
        assert_eq!(rec.phase(), Phase::Ready);
        assert_eq!(rec.parent(), Some(&ClusterId::root()));
        assert_eq!(rec.shard(), "default");
        assert!(rec.created_at() > 0);
        assert_eq!(created["spec"]["cluster"].as_str(), Some(rec.id().as_str()));
        // Nested, and prefix-named siblings are distinct workspaces.
        create_ws(&r, rec.id(), "team-a", None).await;
        create_ws(&r, &ClusterId::root(), "acme2", None).await;
        let team = r.workspace(&path("acme:team-a")).expect("nested");
        assert_eq!(team.parent(), Some(rec.id()));
        assert_ne!(r.resolve(&path("acme2")).expect("acme2"), *rec.id());
        let err = r.resolve(&path("nope")).expect_err("unknown");
        assert_eq!(err.reason, Reason::NotFound);
        // spec.cluster and spec.owner are immutable.
        let (updated, _) = r
            .patch(
                &ws_store(&r),
                &ClusterId::root(),
                None,
                "acme",
                registry::store::PatchKind::Merge,
                &json!({"spec": {"cluster": "other", "owner": "mallory"}}),
                registry::store::Subresource::Main,
                &WriteOptions::default(),
            )
            .await
            .expect("patch");
        assert_eq!(updated["spec"]["cluster"].as_str(), Some(rec.id().as_str()));
        assert_eq!(updated["spec"]["owner"], "alice");
        // A second replica on the same storage loads the same index.
        let r2 = open(&e).await;
        assert_eq!(
            r2.resolve(&path("acme:team-a")).expect("loaded"),
            *team.id()
        );
        assert_eq!(
            r2.workspace(&path("acme")).expect("loaded").owner(),
            Some("alice")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deletion_sweeps_content_and_nested_workspaces() {
    for e in engines("deletion_sweeps_content_and_nested_workspaces").await {
        let r = open(&e).await;
        let other = open(&e).await; // a second replica
        create_ws(&r, &ClusterId::root(), "acme", Some("alice")).await;
        create_ws(&r, &ClusterId::root(), "acme2", None).await;
        let acme = r.resolve(&path("acme")).expect("acme");
        let acme2 = r.resolve(&path("acme2")).expect("acme2");
        create_ws(&r, &acme, "team-a", None).await;
        let team = r.resolve(&path("acme:team-a")).expect("team-a");
        for i in 0..5 {
            put_cm(&r, &acme, &format!("c{i}")).await;
            put_cm(&r, &team, &format!("t{i}")).await;
        }
        put_cm(&r, &acme2, "keep").await;
        wait_until("the other replica to see acme:team-a", async || {
            other.resolve(&path("acme:team-a")).is_ok()
        })
        .await;

        let resp = r
            .delete(
                &ws_store(&r),
                &ClusterId::root(),
                None,
                "acme",
                &DeleteOptions::default(),
            )
            .await
            .expect("delete");
        assert!(resp.pending);
        assert_eq!(resp.body["status"]["phase"], "Terminating");
        assert!(resp.body["status"]["deletedAt"].is_string());
        // Every replica refuses writes into the terminating workspace and its
        // nested ones, with a clear Status.
        wait_until("the other replica to see Terminating", async || {
            other
                .workspace(&path("acme"))
                .is_ok_and(|w| w.is_terminating())
                || other.resolve(&path("acme")).is_err()
        })
        .await;
        let refused = r
            .create(
                &cm_store(&r),
                &team,
                Some("default"),
                obj(json!({"metadata": {"name": "late"}})),
                &WriteOptions::default(),
            )
            .await;
        if let Err(err) = refused {
            assert_eq!(err.reason, Reason::Forbidden, "{}", err.message);
            // Terminating, or already swept and gone.
            assert!(
                err.message.contains("being terminated")
                    || err.message.contains("no longer exists"),
                "{}",
                err.message
            );
        }
        // The sweep finishes: content gone, objects removed, records kept.
        wait_until("acme to be gone", async || {
            r.resolve(&path("acme")).is_err()
        })
        .await;
        assert!(r.resolve(&path("acme:team-a")).is_err());
        assert_eq!(count_cms(&r, &acme).await, 0, "{}", e.name);
        assert_eq!(count_cms(&r, &team).await, 0, "{}", e.name);
        assert_eq!(
            count_cms(&r, &acme2).await,
            1,
            "{}: sibling untouched",
            e.name
        );
        for id in [&acme, &team] {
            let rec: DeletionRecord = r
                .workspace_deleter()
                .record(id)
                .await
                .expect("read")
                .expect("record kept");
            assert!(rec.delete_completed_at.is_some(), "{}: {rec:?}", e.name);
            assert!(!rec.deleted_at.is_empty());
        }
        let acme_rec = r
            .workspace_deleter()
            .record(&acme)
            .await
            .expect("r")
            .expect("r");
        // team-a's object went with team-a's own completion.
        assert_eq!(acme_rec.objects_deleted, 5, "{}: 5 configmaps", e.name);
        assert_eq!(acme_rec.owner.as_deref(), Some("alice"));
        wait_until("the other replica to forget acme", async || {
            other.resolve(&path("acme")).is_err() && other.resolve(&path("acme:team-a")).is_err()
        })
        .await;
        // Same name again: a new id, none of the old data.
        create_ws(&r, &ClusterId::root(), "acme", None).await;
        let again = r.resolve(&path("acme")).expect("recreated");
        assert_ne!(again, acme);
        assert_eq!(count_cms(&r, &again).await, 0);
        assert!(r.resolve(&path("acme:team-a")).is_err());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn name_reuse_while_terminating_gets_a_new_id() {
    for e in engines("name_reuse_while_terminating_gets_a_new_id").await {
        let r = open(&e).await;
        create_ws(&r, &ClusterId::root(), "acme", None).await;
        let old = r.resolve(&path("acme")).expect("acme");
        put_cm(&r, &old, "old").await;
        r.delete(
            &ws_store(&r),
            &ClusterId::root(),
            None,
            "acme",
            &DeleteOptions::default(),
        )
        .await
        .expect("delete");
        // Immediately, without waiting for the sweep.
        create_ws(&r, &ClusterId::root(), "acme", None).await;
        let new = r.resolve(&path("acme")).expect("new acme");
        assert_ne!(new, old, "{}", e.name);
        assert_eq!(count_cms(&r, &new).await, 0, "{}", e.name);
        put_cm(&r, &new, "new").await;
        wait_until("the old content to be swept", async || {
            r.workspace_deleter()
                .record(&old)
                .await
                .ok()
                .flatten()
                .is_some_and(|d| d.delete_completed_at.is_some())
        })
        .await;
        assert_eq!(count_cms(&r, &old).await, 0);
        assert_eq!(
            count_cms(&r, &new).await,
            1,
            "{}: the new workspace keeps its data",
            e.name
        );
        assert_eq!(r.resolve(&path("acme")).expect("still there"), new);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deletion_resumes_after_a_restart() {
    for e in engines("deletion_resumes_after_a_restart").await {
        let id = {
            let r = open(&e).await;
            create_ws(&r, &ClusterId::root(), "acme", None).await;
            let id = r.resolve(&path("acme")).expect("acme");
            for i in 0..3 {
                put_cm(&r, &id, &format!("c{i}")).await;
            }
            id
        };
        // A crash right after deletion started: the record exists (written
        // first) but no sweep ran.
        let rec = DeletionRecord {
            cluster: id.to_string(),
            path: "acme".into(),
            parent: "root".into(),
            name: "acme".into(),
            owner: None,
            shard: "default".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            deleted_at: "2026-01-01T00:00:01Z".into(),
            delete_completed_at: None,
            swept_through: None,
            resources_done: 0,
            resources_total: 0,
            objects_deleted: 0,
        };
        let key = KeyRoot::new(&e.root).workspace_deletions().key(&id);
        e.store
            .create(&key, serde_json::to_vec(&rec).expect("json").into(), None)
            .await
            .expect("record written");
        // The restarted replica resumes it.
        let r = open(&e).await;
        assert!(
            !r.workspaces().id_is_free(&id),
            "{}: an id awaiting deletion is never handed out",
            e.name
        );
        wait_until("the resumed deletion to complete", async || {
            r.workspace_deleter()
                .record(&id)
                .await
                .ok()
                .flatten()
                .is_some_and(|d| d.delete_completed_at.is_some())
        })
        .await;
        assert_eq!(count_cms(&r, &id).await, 0, "{}", e.name);
        wait_until("the Workspace object to go", async || {
            r.resolve(&path("acme")).is_err()
        })
        .await;
    }
}
