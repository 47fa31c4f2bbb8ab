//! Garbage collection beyond DELETE, on the embedded engine and (when
//! installed) etcd: an owner removed by dropping its last finalizer has its
//! dependents collected; dependents whose owners are absent (or present
//! with another uid) are collected, unless an owner's kind is unknown; a
//! namespace with another spec finalizer stays Terminating until
//! `/finalize` clears it.

use std::sync::Arc;
use std::time::Duration;

use registry::cluster::{ClusterId, WorkspacePath};
use registry::options::{DeleteOptions, WriteOptions};
use registry::resource::Object;
use registry::store::{PatchKind, ResourceStore, Subresource};
use registry::{Registry, RegistryConfig};
use serde_json::{Value, json};

use storage::testing::{TestEngine as Engine, engines};

async fn open(e: &Engine) -> (Arc<Registry>, ClusterId) {
    let r = Registry::open(
        e.store.clone(),
        RegistryConfig {
            key_root: e.root.clone(),
            advertise_address: "127.0.0.1:6443".into(),
        },
    )
    .await
    .expect("registry");
    let ws = r
        .resource("tenancy.wsgate.io", "v1alpha1", "workspaces")
        .expect("workspaces")
        .clone();
    r.create(
        &ws,
        &ClusterId::root(),
        None,
        obj(json!({"metadata": {"name": "gc"}})),
        &WriteOptions::default(),
    )
    .await
    .expect("workspace");
    let cluster = r
        .resolve(&WorkspacePath::parse("gc").expect("path"))
        .expect("resolves");
    (r, cluster)
}

fn obj(v: Value) -> Object {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn store(r: &Registry, plural: &str) -> Arc<ResourceStore> {
    r.resource("", "v1", plural).expect("built-in").clone()
}

fn owner_ref(api_version: &str, kind: &str, name: &str, uid: &str) -> Value {
    json!([{"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": true}])
}

async fn create_cm(r: &Registry, cluster: &ClusterId, ns: &str, metadata: Value) -> Object {
    r.create(
        &store(r, "configmaps"),
        cluster,
        Some(ns),
        obj(json!({"metadata": metadata})),
        &WriteOptions::default(),
    )
    .await
    .expect("configmap created")
}

async fn exists(r: &Registry, cluster: &ClusterId, ns: &str, name: &str) -> bool {
    match store(r, "configmaps").get(cluster, Some(ns), name).await {
        Ok(_) => true,
        Err(e) if e.code() == 404 => false,
        Err(e) => panic!("get {name}: {e}"),
    }
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

fn uid(o: &Object) -> String {
    o["metadata"]["uid"].as_str().expect("uid").to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn owner_removed_by_its_last_finalizer_has_its_dependents_collected() {
    for e in engines("owner_removed_by_its_last_finalizer_has_its_dependents_collected").await {
        let (r, c) = open(&e).await;
        let name = e.name;
        let cms = store(&r, "configmaps");
        // Once by PATCH, once by PUT: both writes remove the owner.
        for by_put in [false, true] {
            let owner_name = format!("owner-{by_put}");
            let dep_name = format!("dep-{by_put}");
            let owner = create_cm(
                &r,
                &c,
                "default",
                json!({"name": owner_name, "finalizers": ["example.com/cleanup"]}),
            )
            .await;
            create_cm(
                &r,
                &c,
                "default",
                json!({"name": dep_name, "ownerReferences": owner_ref("v1", "ConfigMap", &owner_name, &uid(&owner))}),
            )
            .await;
            let resp = r
                .delete(
                    &cms,
                    &c,
                    Some("default"),
                    &owner_name,
                    &DeleteOptions::default(),
                )
                .await
                .expect("delete");
            assert!(resp.pending, "{name}: the finalizer holds the owner");
            // The collector has nothing to do while the owner is live.
            wait_until("the collector to go idle", async || r.gc_idle()).await;
            assert!(
                exists(&r, &c, "default", &dep_name).await,
                "{name}: the dependent stays while its owner is terminating"
            );
            let wo = WriteOptions::default();
            if by_put {
                let mut current = cms
                    .get(&c, Some("default"), &owner_name)
                    .await
                    .expect("owner");
                current["metadata"]
                    .as_object_mut()
                    .expect("metadata")
                    .remove("finalizers");
                r.update(
                    &cms,
                    &c,
                    Some("default"),
                    &owner_name,
                    current,
                    Subresource::Main,
                    &wo,
                )
                .await
                .expect("put without the finalizer");
            } else {
                r.patch(
                    &cms,
                    &c,
                    Some("default"),
                    &owner_name,
                    PatchKind::Merge,
                    &json!({"metadata": {"finalizers": null}}),
                    Subresource::Main,
                    &wo,
                )
                .await
                .expect("patch without the finalizer");
            }
            assert!(
                !exists(&r, &c, "default", &owner_name).await,
                "{name}: the owner is gone"
            );
            wait_until(&format!("{name}: {dep_name} to be collected"), async || {
                !exists(&r, &c, "default", &dep_name).await
            })
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dependents_of_absent_owners_are_collected() {
    for e in engines("dependents_of_absent_owners_are_collected").await {
        let (r, c) = open(&e).await;
        let name = e.name;
        let owner = create_cm(&r, &c, "default", json!({"name": "live"})).await;
        let live_uid = uid(&owner);
        let cases = [
            (
                "absent",
                owner_ref(
                    "v1",
                    "ConfigMap",
                    "nope",
                    "6c1e2b47-0000-4000-8000-000000000001",
                ),
                false,
            ),
            (
                "right-uid",
                owner_ref("v1", "ConfigMap", "live", &live_uid),
                true,
            ),
            (
                "other-uid",
                owner_ref(
                    "v1",
                    "ConfigMap",
                    "live",
                    "6c1e2b47-0000-4000-8000-000000000002",
                ),
                false,
            ),
            (
                "unknown-kind",
                owner_ref(
                    "example.com/v1",
                    "Widget",
                    "w",
                    "6c1e2b47-0000-4000-8000-000000000003",
                ),
                true,
            ),
            // One live owner among absent ones keeps it.
            (
                "one-live",
                json!([
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "nope", "uid": "6c1e2b47-0000-4000-8000-000000000004"},
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "live", "uid": live_uid},
                ]),
                true,
            ),
            // A cluster-scoped owner, looked up without a namespace.
            (
                "absent-namespace",
                owner_ref(
                    "v1",
                    "Namespace",
                    "nowhere",
                    "6c1e2b47-0000-4000-8000-000000000005",
                ),
                false,
            ),
        ];
        for (dep, refs, _) in &cases {
            create_cm(
                &r,
                &c,
                "default",
                json!({"name": dep, "ownerReferences": refs}),
            )
            .await;
        }
        for (dep, _, stays) in &cases {
            if !stays {
                wait_until(&format!("{name}: {dep} to be collected"), async || {
                    !exists(&r, &c, "default", dep).await
                })
                .await;
            }
        }
        // Every queued check has run: the others were judged and kept.
        wait_until("the collector to go idle", async || r.gc_idle()).await;
        for (dep, _, stays) in &cases {
            if *stays {
                assert!(exists(&r, &c, "default", dep).await, "{name}: {dep} stays");
            }
        }
        // An update that points a kept dependent at an absent owner is
        // checked too.
        r.patch(
            &store(&r, "configmaps"),
            &c,
            Some("default"),
            "right-uid",
            PatchKind::Merge,
            &json!({"metadata": {"ownerReferences": owner_ref("v1", "ConfigMap", "gone", "6c1e2b47-0000-4000-8000-000000000006")}}),
            Subresource::Main,
            &WriteOptions::default(),
        )
        .await
        .expect("patch");
        wait_until(
            &format!("{name}: right-uid to be collected after its update"),
            async || !exists(&r, &c, "default", "right-uid").await,
        )
        .await;
        assert!(
            exists(&r, &c, "default", "live").await,
            "{name}: the owner itself stays"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn namespace_waits_for_every_spec_finalizer() {
    for e in engines("namespace_waits_for_every_spec_finalizer").await {
        let (r, c) = open(&e).await;
        let name = e.name;
        let nss = store(&r, "namespaces");
        let wo = WriteOptions::default();
        r.create(
            &nss,
            &c,
            None,
            obj(json!({"metadata": {"name": "held"}})),
            &wo,
        )
        .await
        .expect("namespace");
        let finalized = r
            .finalize_namespace(
                &c,
                "held",
                &obj(json!({"spec": {"finalizers": ["kubernetes", "example.com/x"]}})),
            )
            .await
            .expect("finalize");
        assert_eq!(
            finalized["spec"]["finalizers"],
            json!(["kubernetes", "example.com/x"])
        );
        create_cm(&r, &c, "held", json!({"name": "content"})).await;
        r.delete(&nss, &c, None, "held", &DeleteOptions::default())
            .await
            .expect("delete");
        // The purge removes the content, then only its own finalizer.
        wait_until(&format!("{name}: the purge to finish"), async || {
            !exists(&r, &c, "held", "content").await
                && nss
                    .get(&c, None, "held")
                    .await
                    .is_ok_and(|ns| ns["spec"]["finalizers"] == json!(["example.com/x"]))
        })
        .await;
        // Still there, Terminating; a label write does not remove it either.
        let (labeled, _) = r
            .patch(
                &nss,
                &c,
                None,
                "held",
                PatchKind::Merge,
                &json!({"metadata": {"labels": {"still": "here"}}}),
                Subresource::Main,
                &wo,
            )
            .await
            .expect("label a terminating namespace");
        assert_eq!(labeled["status"]["phase"], "Terminating", "{name}");
        let ns = nss.get(&c, None, "held").await.expect("still Terminating");
        assert!(ns["metadata"]["deletionTimestamp"].is_string(), "{name}");
        assert_eq!(ns["metadata"]["labels"]["still"], "here", "{name}");
        // Clearing the last spec finalizer removes it.
        r.finalize_namespace(&c, "held", &obj(json!({"spec": {"finalizers": []}})))
            .await
            .expect("finalize");
        assert_eq!(
            nss.get(&c, None, "held").await.expect_err("gone").code(),
            404,
            "{name}"
        );
    }
}
