//! CRDs in the registry, on the embedded engine and (when installed) etcd:
//! validation, status written in the create, per-workspace API sets shared
//! by content, custom objects (status subresource, versions), names
//! conflicts, deletion with the cleanup finalizer, and a second replica
//! following through the watch.

use std::sync::Arc;
use std::time::Duration;

use registry::cluster::{ClusterId, ClusterScope};
use registry::options::{DeleteOptions, ListOptions, WriteOptions};
use registry::resource::Object;
use registry::store::{ResourceStore, Subresource};
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

fn crd_store(r: &Registry) -> Arc<ResourceStore> {
    r.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .expect("crds")
        .clone()
}

async fn workspace(r: &Registry, name: &str) -> ClusterId {
    let ws = r
        .resource("tenancy.wsgate.io", "v1alpha1", "workspaces")
        .expect("workspaces")
        .clone();
    let created = r
        .create(
            &ws,
            &ClusterId::root(),
            None,
            obj(json!({"metadata": {"name": name}})),
            &WriteOptions::default(),
        )
        .await
        .expect("workspace");
    ClusterId::parse(created["spec"]["cluster"].as_str().expect("id")).expect("id")
}

fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"], "categories": ["all"]},
            "versions": [
                {"name": "v1beta1", "served": true, "storage": false,
                 "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                {"name": "v1", "served": true, "storage": true,
                 "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"}},
                 "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                 "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}, "color": {"type": "string"}}},
                    "status": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}
            ]
        }
    })
}

async fn create_crd(r: &Registry, cluster: &ClusterId, crd: Value) -> Object {
    r.create(
        &crd_store(r),
        cluster,
        None,
        obj(crd),
        &WriteOptions::default(),
    )
    .await
    .expect("crd created")
}

fn condition<'a>(o: &'a Object, type_: &str) -> Option<&'a Value> {
    o.get("status")?
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
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
async fn create_establishes_and_serves_in_that_workspace_only() {
    for e in engines("create_establishes_and_serves_in_that_workspace_only").await {
        let r = open(&e).await;
        let a = workspace(&r, "a").await;
        let b = workspace(&r, "b").await;
        let created = create_crd(&r, &a, widget_crd()).await;
        let name = e.name;
        for t in ["NamesAccepted", "Established"] {
            assert_eq!(
                condition(&created, t).map(|c| &c["status"]),
                Some(&json!("True")),
                "{name}: {t}"
            );
        }
        assert_eq!(created["status"]["acceptedNames"]["kind"], "Widget");
        assert_eq!(created["status"]["acceptedNames"]["listKind"], "WidgetList");
        assert_eq!(created["status"]["storedVersions"], json!(["v1"]));
        assert_eq!(
            created["metadata"]["finalizers"],
            json!(["customresourcecleanup.apiextensions.k8s.io"])
        );
        // Served before the create returned, in `a` only.
        let api_a = r.api_set(&a);
        assert!(api_a.serves("example.com", "v1") && api_a.serves("example.com", "v1beta1"));
        let d = api_a
            .resource("example.com", "v1", "widgets")
            .expect("descriptor");
        assert_eq!(d.short_names, ["wd"]);
        assert!(d.has_status() && d.has_subresource("scale"));
        assert!(!r.api_set(&b).has_group("example.com"));
        assert!(r.resource_in(&b, "example.com", "v1", "widgets").is_none());
        assert!(
            api_a
                .custom_schemas
                .iter()
                .any(|s| s.gvk.kind == "Widget" && s.gvk.version == "v1")
        );
        // Discovery lists the storage version hash of v1 for both versions.
        let v1 = api_a.resource("example.com", "v1", "widgets").expect("v1");
        let beta = api_a
            .resource("example.com", "v1beta1", "widgets")
            .expect("v1beta1");
        assert_eq!(v1.storage_version_hash(), beta.storage_version_hash());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_crds_are_422_with_paths() {
    for e in engines("invalid_crds_are_422_with_paths").await {
        let r = open(&e).await;
        let a = workspace(&r, "a").await;
        let mut bad = widget_crd();
        bad["metadata"]["name"] = json!("wrong.example.com");
        bad["spec"]["versions"][0]["storage"] = json!(true);
        bad["spec"]["versions"][0]["schema"] = Value::Null;
        let err = r
            .create(&crd_store(&r), &a, None, obj(bad), &WriteOptions::default())
            .await
            .expect_err("invalid");
        assert_eq!(err.reason, Reason::Invalid, "{}: {}", e.name, err.message);
        for needle in [
            "metadata.name",
            "spec.versions[0].schema.openAPIV3Schema",
            "must have exactly one version marked as storage version",
        ] {
            assert!(err.message.contains(needle), "{}: {}", needle, err.message);
        }
        let mut nodot = widget_crd();
        nodot["spec"]["group"] = json!("example");
        nodot["metadata"]["name"] = json!("widgets.example");
        let err = r
            .create(
                &crd_store(&r),
                &a,
                None,
                obj(nodot),
                &WriteOptions::default(),
            )
            .await
            .expect_err("invalid");
        assert!(
            err.message.contains(
                "spec.group: Invalid value: \"example\": should be a domain with at least one dot"
            ),
            "{}",
            err.message
        );
        assert!(!r.api_set(&a).has_group("example"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn name_conflicts_are_reported_and_not_served() {
    for e in engines("name_conflicts_are_reported_and_not_served").await {
        let r = open(&e).await;
        let a = workspace(&r, "a").await;
        create_crd(&r, &a, widget_crd()).await;
        let mut gadget = widget_crd();
        gadget["metadata"]["name"] = json!("gadgets.example.com");
        gadget["spec"]["names"] =
            json!({"plural": "gadgets", "kind": "Gadget", "shortNames": ["wd"]});
        let created = create_crd(&r, &a, gadget).await;
        let c = condition(&created, "NamesAccepted").expect("condition");
        assert_eq!(c["status"], "False", "{}", e.name);
        assert_eq!(c["reason"], "ShortNamesConflict");
        assert_eq!(
            condition(&created, "Established").map(|c| &c["status"]),
            Some(&json!("False"))
        );
        assert!(
            r.api_set(&a)
                .resource("example.com", "v1", "gadgets")
                .is_none()
        );
        // A built-in's names in its own group conflict too.
        let mut ingress = widget_crd();
        ingress["metadata"]["name"] = json!("ingresses.networking.k8s.io");
        ingress["spec"]["group"] = json!("networking.k8s.io");
        ingress["spec"]["names"] = json!({"plural": "ingresses", "kind": "Ingress2"});
        let created = create_crd(&r, &a, ingress).await;
        assert_eq!(
            condition(&created, "NamesAccepted").map(|c| &c["reason"]),
            Some(&json!("PluralConflict"))
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn identical_crds_share_one_api_set_and_one_store() {
    for e in engines("identical_crds_share_one_api_set_and_one_store").await {
        let r = open(&e).await;
        let mut ids = Vec::new();
        for i in 0..5 {
            let id = workspace(&r, &format!("w{i}")).await;
            create_crd(&r, &id, widget_crd()).await;
            ids.push(id);
        }
        let first = r.api_set(&ids[0]);
        let store = r
            .resource_in(&ids[0], "example.com", "v1", "widgets")
            .expect("store");
        for id in &ids[1..] {
            assert!(Arc::ptr_eq(&first, &r.api_set(id)), "{}", e.name);
            let s = r
                .resource_in(id, "example.com", "v1", "widgets")
                .expect("store");
            assert!(Arc::ptr_eq(&store, &s));
        }
        // v1 and v1beta1: two stores, one API set, for five workspaces.
        assert_eq!(r.crds().distinct_stores(), 2);
        assert_eq!(r.crds().distinct_api_sets(), 1);
        // Objects stay in their workspace.
        let opts = WriteOptions::default();
        r.create(
            &store,
            &ids[0],
            Some("default"),
            obj(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}})),
            &opts,
        )
        .await
        .expect("widget");
        let list = store
            .list(
                &ClusterScope::One(ids[1].clone()),
                None,
                &ListOptions::default(),
            )
            .await
            .expect("list");
        assert!(list.items.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_objects_status_scale_and_versions() {
    for e in engines("custom_objects_status_scale_and_versions").await {
        let r = open(&e).await;
        let a = workspace(&r, "a").await;
        create_crd(&r, &a, widget_crd()).await;
        let v1 = r
            .resource_in(&a, "example.com", "v1", "widgets")
            .expect("v1");
        let beta = r
            .resource_in(&a, "example.com", "v1beta1", "widgets")
            .expect("v1beta1");
        let opts = WriteOptions::default();
        // Status is ignored on the main resource; generation starts at 1.
        let created = r
            .create(
                &v1,
                &a,
                Some("default"),
                obj(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 2}, "status": {"size": 9}})),
                &opts,
            )
            .await
            .expect("created");
        assert!(created.get("status").is_none(), "{}", e.name);
        assert_eq!(created["metadata"]["generation"], 1);
        // A status write changes only status, and not the generation.
        let mut st = created.clone();
        st.insert("status".into(), json!({"size": 2}));
        st.insert("spec".into(), json!({"size": 100}));
        let (after, _) = r
            .update(
                &v1,
                &a,
                Some("default"),
                "w",
                st,
                Subresource::Status,
                &opts,
            )
            .await
            .expect("status");
        assert_eq!(after["status"]["size"], 2);
        assert_eq!(after["spec"]["size"], 2);
        assert_eq!(after["metadata"]["generation"], 1);
        // Scale maps to the CRD's paths.
        let scale = v1.scale_of(&after).expect("scale");
        assert_eq!(scale["spec"]["replicas"], 2);
        assert_eq!(scale["status"]["replicas"], 2);
        // An update needs a resourceVersion (CRs are not unconditional).
        let mut unconditional = after.clone();
        unconditional
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .expect("meta")
            .remove("resourceVersion");
        let err = r
            .update(
                &v1,
                &a,
                Some("default"),
                "w",
                unconditional,
                Subresource::Main,
                &opts,
            )
            .await
            .expect_err("needs rv");
        assert_eq!(err.code(), 422);
        // Read through the other version: only apiVersion differs.
        let via_beta = beta.get(&a, Some("default"), "w").await.expect("beta get");
        assert_eq!(via_beta["apiVersion"], "example.com/v1beta1");
        assert_eq!(via_beta["spec"]["size"], 2);
        let raw = e
            .store
            .get(
                format!(
                    "{}/example.com/widgets/{}/default/w",
                    e.root.trim_end_matches('/'),
                    a.as_str()
                )
                .as_bytes(),
                None,
            )
            .await
            .expect("raw")
            .kv
            .unwrap_or_else(|| {
                panic!(
                    "stored under {}/example.com/widgets/{}/default/w",
                    e.root,
                    a.as_str()
                )
            });
        let stored: Value = serde_json::from_slice(&raw.value).expect("json");
        assert_eq!(stored["apiVersion"], "example.com/v1");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_crd_cleans_its_objects_then_goes() {
    for e in engines("deleting_a_crd_cleans_its_objects_then_goes").await {
        let r = open(&e).await;
        let a = workspace(&r, "a").await;
        let b = workspace(&r, "b").await;
        create_crd(&r, &a, widget_crd()).await;
        create_crd(&r, &b, widget_crd()).await;
        let v1 = r
            .resource_in(&a, "example.com", "v1", "widgets")
            .expect("v1");
        let opts = WriteOptions::default();
        let cm = r.resource("", "v1", "configmaps").expect("cm").clone();
        for (ws, name, finalizers) in [
            (&a, "held", json!(["example.com/hold"])),
            (&a, "free", json!([])),
            (&b, "other", json!([])),
        ] {
            let owner = r.create(
                &v1,
                ws,
                Some("default"),
                obj(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name, "finalizers": finalizers}, "spec": {"size": 1}})),
                &opts,
            )
            .await
            .expect("widget");
            // A dependent of each Widget: collected once its owner goes
            // with the CRD, as upstream's collector does.
            let refs = json!([{"apiVersion": "example.com/v1", "kind": "Widget", "name": name, "uid": owner["metadata"]["uid"]}]);
            r.create(
                &cm,
                ws,
                Some("default"),
                obj(json!({"metadata": {"name": format!("of-{name}"), "ownerReferences": refs}})),
                &opts,
            )
            .await
            .expect("dependent");
        }
        let resp = r
            .delete(
                &crd_store(&r),
                &a,
                None,
                "widgets.example.com",
                &DeleteOptions::default(),
            )
            .await
            .expect("delete");
        assert!(resp.pending, "{}", e.name);
        let crds = crd_store(&r);
        wait_until("Terminating and the held object marked", async || {
            let Ok(crd) = crds.get(&a, None, "widgets.example.com").await else {
                return false;
            };
            let held = v1.get(&a, Some("default"), "held").await;
            condition(&crd, "Terminating").is_some_and(|c| c["status"] == "True")
                && held.is_ok_and(|h| h["metadata"]["deletionTimestamp"].is_string())
        })
        .await;
        // New objects are refused while terminating.
        let err = r
            .create(
                &v1,
                &a,
                Some("default"),
                obj(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "late"}})),
                &opts,
            )
            .await
            .expect_err("terminating");
        assert_eq!(err.code(), 405, "{}", err.message);
        assert!(r.api_set(&a).has_group("example.com"));
        // Releasing the object's finalizer lets the cleanup finish.
        r.patch(
            &v1,
            &a,
            Some("default"),
            "held",
            registry::store::PatchKind::Merge,
            &json!({"metadata": {"finalizers": null}}),
            Subresource::Main,
            &opts,
        )
        .await
        .expect("release");
        wait_until("the CRD gone", async || {
            crds.get(&a, None, "widgets.example.com").await.is_err()
        })
        .await;
        assert!(!r.api_set(&a).has_group("example.com"));
        assert!(r.resource_in(&a, "example.com", "v1", "widgets").is_none());
        wait_until("the deleted Widgets' dependents collected", async || {
            cm.get(&a, Some("default"), "of-free").await.is_err()
                && cm.get(&a, Some("default"), "of-held").await.is_err()
        })
        .await;
        // Workspace b is untouched.
        assert!(r.api_set(&b).has_group("example.com"));
        v1.get(&b, Some("default"), "other")
            .await
            .expect("b's object");
        cm.get(&b, Some("default"), "of-other")
            .await
            .expect("b's dependent");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_replica_follows_through_the_watch_and_at_start() {
    for e in engines("a_second_replica_follows_through_the_watch_and_at_start").await {
        let r1 = open(&e).await;
        let a = workspace(&r1, "a").await;
        create_crd(&r1, &a, widget_crd()).await;
        // Loaded at start-up.
        let r2 = open(&e).await;
        assert!(r2.api_set(&a).has_group("example.com"), "{}", e.name);
        // Followed through the watch.
        let mut gadget = widget_crd();
        gadget["metadata"]["name"] = json!("gadgets.example.com");
        gadget["spec"]["names"] = json!({"plural": "gadgets", "kind": "Gadget"});
        create_crd(&r1, &a, gadget).await;
        wait_until("r2 serves gadgets", async || {
            r2.resource_in(&a, "example.com", "v1", "gadgets").is_some()
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn namespace_and_workspace_deletion_remove_custom_objects() {
    for e in engines("namespace_and_workspace_deletion_remove_custom_objects").await {
        let r = open(&e).await;
        let a = workspace(&r, "a").await;
        create_crd(&r, &a, widget_crd()).await;
        let v1 = r
            .resource_in(&a, "example.com", "v1", "widgets")
            .expect("v1");
        let ns = r.resource("", "v1", "namespaces").expect("ns").clone();
        let opts = WriteOptions::default();
        r.create(
            &ns,
            &a,
            None,
            obj(json!({"metadata": {"name": "team"}})),
            &opts,
        )
        .await
        .expect("namespace");
        for (namespace, name) in [("team", "t"), ("default", "d")] {
            r.create(
                &v1,
                &a,
                Some(namespace),
                obj(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}})),
                &opts,
            )
            .await
            .expect("widget");
        }
        r.delete(&ns, &a, None, "team", &DeleteOptions::default())
            .await
            .expect("delete namespace");
        wait_until("the namespace's widget gone", async || {
            v1.get(&a, Some("team"), "t").await.is_err()
        })
        .await;
        v1.get(&a, Some("default"), "d")
            .await
            .expect("other namespace kept");
        // Deleting the workspace sweeps its custom objects too.
        let ws = r
            .resource("tenancy.wsgate.io", "v1alpha1", "workspaces")
            .expect("workspaces")
            .clone();
        r.delete(
            &ws,
            &ClusterId::root(),
            None,
            "a",
            &DeleteOptions::default(),
        )
        .await
        .expect("delete workspace");
        let root = e.root.trim_end_matches('/').to_owned();
        let store = e.store.clone();
        let prefix = format!("{root}/example.com/widgets/{}/", a.as_str());
        wait_until("the workspace's widgets swept", async || {
            store
                .range(storage::RangeRequest::prefix(prefix.as_bytes().to_vec()))
                .await
                .is_ok_and(|r| r.kvs.is_empty())
        })
        .await;
        assert!(!r.api_set(&a).has_group("example.com"), "{}", e.name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn server_side_apply_merges_by_the_crd_schema() {
    for e in engines("server_side_apply_merges_by_the_crd_schema").await {
        let r = open(&e).await;
        let a = workspace(&r, "a").await;
        let mut crd = widget_crd();
        crd["spec"]["versions"][1]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["ports"] = json!({
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "port": {"type": "integer"}}}
        });
        create_crd(&r, &a, crd).await;
        let v1 = r
            .resource_in(&a, "example.com", "v1", "widgets")
            .expect("v1");
        let apply = |manager: &str, port: Value| {
            let opts = WriteOptions {
                field_manager: Some(manager.to_owned()),
                ..Default::default()
            };
            let r = r.clone();
            let v1 = v1.clone();
            let a = a.clone();
            async move {
                r.patch(
                    &v1,
                    &a,
                    Some("default"),
                    "w",
                    registry::store::PatchKind::Apply,
                    &json!({"apiVersion": "example.com/v1", "kind": "Widget",
                            "metadata": {"name": "w"}, "spec": {"ports": [port]}}),
                    Subresource::Main,
                    &opts,
                )
                .await
                .expect("apply")
                .0
            }
        };
        apply("one", json!({"name": "http", "port": 80})).await;
        let both = apply("two", json!({"name": "https", "port": 443})).await;
        // A map-typed list merges by key: each manager keeps its entry.
        let ports = both["spec"]["ports"].as_array().expect("ports");
        assert_eq!(ports.len(), 2, "{}: {ports:?}", e.name);
    }
}

/// Owner references to and from custom resources: a deleted Widget takes
/// its ConfigMap and Widget dependents (background and foreground), orphan
/// strips the reference, and a ConfigMap owner takes its Widget.
#[tokio::test(flavor = "multi_thread")]
async fn garbage_collection_to_and_from_custom_resources() {
    for e in engines("garbage_collection_to_and_from_custom_resources").await {
        let r = open(&e).await;
        let a = workspace(&r, "a").await;
        create_crd(&r, &a, widget_crd()).await;
        let w = r
            .resource_in(&a, "example.com", "v1", "widgets")
            .expect("v1");
        let cm = r.resource("", "v1", "configmaps").expect("cm").clone();
        let opts = WriteOptions::default();
        let ns = Some("default");
        let owner_ref = |o: &Object, block: bool| {
            json!([{"apiVersion": o["apiVersion"], "kind": o["kind"], "name": o["metadata"]["name"],
                    "uid": o["metadata"]["uid"], "blockOwnerDeletion": block}])
        };
        for (propagation, label) in [
            (registry::options::Propagation::Background, "bg"),
            (registry::options::Propagation::Foreground, "fg"),
            (registry::options::Propagation::Orphan, "or"),
        ] {
            let owner = r
                .create(&w, &a, ns, obj(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": format!("{label}-owner")}})), &opts)
                .await
                .expect("owner");
            let refs = owner_ref(&owner, true);
            r.create(
                &cm,
                &a,
                ns,
                obj(json!({"metadata": {"name": format!("{label}-cm"), "ownerReferences": refs}})),
                &opts,
            )
            .await
            .expect("cm dependent");
            r.create(&w, &a, ns, obj(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": format!("{label}-w"), "ownerReferences": refs}})), &opts)
                .await
                .expect("widget dependent");
            let del = DeleteOptions {
                propagation: Some(propagation),
                ..Default::default()
            };
            r.delete(&w, &a, ns, &format!("{label}-owner"), &del)
                .await
                .expect("delete owner");
            let (cm_name, w_name) = (format!("{label}-cm"), format!("{label}-w"));
            if propagation == registry::options::Propagation::Orphan {
                wait_until("the owner gone", async || {
                    w.get(&a, ns, &format!("{label}-owner")).await.is_err()
                })
                .await;
                let kept = cm.get(&a, ns, &cm_name).await.expect("orphaned cm kept");
                assert!(
                    kept["metadata"].get("ownerReferences").is_none(),
                    "{}",
                    e.name
                );
                let kept = w.get(&a, ns, &w_name).await.expect("orphaned widget kept");
                assert!(
                    kept["metadata"].get("ownerReferences").is_none(),
                    "{}",
                    e.name
                );
            } else {
                wait_until("the dependents collected", async || {
                    cm.get(&a, ns, &cm_name).await.is_err() && w.get(&a, ns, &w_name).await.is_err()
                })
                .await;
                wait_until("the owner gone", async || {
                    w.get(&a, ns, &format!("{label}-owner")).await.is_err()
                })
                .await;
            }
        }
        // A built-in owner collects a custom dependent.
        let owner = r
            .create(&cm, &a, ns, obj(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm-owner"}})), &opts)
            .await
            .expect("cm owner");
        r.create(&w, &a, ns, obj(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "of-cm", "ownerReferences": owner_ref(&owner, false)}})), &opts)
            .await
            .expect("widget of cm");
        r.delete(&cm, &a, ns, "cm-owner", &DeleteOptions::default())
            .await
            .expect("delete cm owner");
        wait_until("the widget owned by a ConfigMap collected", async || {
            w.get(&a, ns, "of-cm").await.is_err()
        })
        .await;
    }
}

/// The workspace deleter's sweep of custom objects reads the CRD records
/// from storage (no index involved): every object of every CRD of that
/// workspace goes, by spec and accepted plural, other workspaces' stay.
#[tokio::test(flavor = "multi_thread")]
async fn custom_object_sweep_reads_crd_records_from_storage() {
    for e in engines("custom_object_sweep_reads_crd_records_from_storage").await {
        let root = registry::keys::KeyRoot::new(&e.root);
        let (a, b) = (
            ClusterId::parse("sweepa").expect("id"),
            ClusterId::parse("sweepb").expect("id"),
        );
        let put = async |k: String, v: Value| {
            e.store
                .create(
                    k.as_bytes(),
                    serde_json::to_vec(&v).expect("json").into(),
                    None,
                )
                .await
                .expect("put");
        };
        let r = format!("/{}", e.root.trim_matches('/'));
        for c in [&a, &b] {
            let c = c.as_str();
            put(
                format!(
                    "{r}/apiextensions.k8s.io/customresourcedefinitions/{c}/gadgets.example.com"
                ),
                json!({"spec": {"group": "example.com", "names": {"plural": "gadgets"}},
                       "status": {"acceptedNames": {"plural": "gizmos"}}}),
            )
            .await;
            for (plural, n) in [("gadgets", 3), ("gizmos", 2)] {
                for i in 0..n {
                    put(
                        format!("{r}/example.com/{plural}/{c}/default/o{i}"),
                        json!({}),
                    )
                    .await;
                }
            }
        }
        let deleted = registry::crd::sweep_custom_objects(e.store.as_ref(), &root, &a)
            .await
            .expect("sweep");
        assert_eq!(deleted, 5, "{}", e.name);
        let count = async |prefix: String| {
            e.store
                .range(storage::RangeRequest::prefix(prefix.into_bytes()))
                .await
                .expect("range")
                .kvs
                .len()
        };
        for plural in ["gadgets", "gizmos"] {
            assert_eq!(
                count(format!("{r}/example.com/{plural}/{}/", a.as_str())).await,
                0,
                "{}",
                e.name
            );
        }
        assert_eq!(
            count(format!("{r}/example.com/gadgets/{}/", b.as_str())).await,
            3,
            "{}",
            e.name
        );
        assert_eq!(
            count(format!("{r}/example.com/gizmos/{}/", b.as_str())).await,
            2,
            "{}",
            e.name
        );
    }
}
