//! CRDs per workspace end to end: the real binary on both engines, driven by
//! kube-rs (discovery, `DynamicObject`, watch, server-side apply, status and
//! scale) and by kubectl (apply, short names, categories, explain, wait,
//! --server-side, strict validation, delete crd), with a second workspace
//! that never sees the first one's API.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::discovery::{ApiResource, Discovery};
use kube::{Client, Config};
use serde_json::{Value, json};
use wsgate_e2e::{Kubectl, Server, kubectl_or_skip, servers_for};

const GROUP: &str = "stable.example.com";

fn client(server: &Server, workspace: &str) -> Result<Client> {
    let uri: http::Uri = server.workspace_url(workspace).parse()?;
    Ok(Client::try_from(Config::new(uri))?)
}

fn crd_json() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab",
                      "shortNames": ["ct"], "categories": ["all"]},
            "versions": [
                {"name": "v1beta1", "served": true, "storage": false, "deprecated": true,
                 "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                {"name": "v1", "served": true, "storage": true,
                 "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                 "additionalPrinterColumns": [
                    {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
                    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}],
                 "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "CronTab runs a command on a schedule.",
                    "properties": {
                        "spec": {"type": "object", "description": "The desired schedule.", "properties": {
                            "cronSpec": {"type": "string", "description": "The cron expression."},
                            "image": {"type": "string"},
                            "replicas": {"type": "integer"}}},
                        "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}}}}
            ]
        }
    })
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !f()? {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn condition(crd: &CustomResourceDefinition, type_: &str) -> Option<String> {
    crd.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn crds_serve_per_workspace_through_kube_rs() -> Result<()> {
    for (engine, server) in servers_for("crds_serve_per_workspace_through_kube_rs")? {
        server.create_workspace("acme")?;
        server.create_workspace("beta")?;
        let acme = client(&server, "acme")?;
        let beta = client(&server, "beta")?;
        let (_, root_before) = server.get_json("/clusters/acme/openapi/v3", None)?;

        let crds: Api<CustomResourceDefinition> = Api::all(acme.clone());
        let crd: CustomResourceDefinition = serde_json::from_value(crd_json())?;
        let created = crds.create(&PostParams::default(), &crd).await?;
        assert_eq!(
            condition(&created, "Established").as_deref(),
            Some("True"),
            "{engine}"
        );
        assert_eq!(
            condition(&created, "NamesAccepted").as_deref(),
            Some("True")
        );
        assert_eq!(
            created
                .status
                .as_ref()
                .and_then(|s| s.stored_versions.clone()),
            Some(vec!["v1".to_owned()])
        );

        // Discovery lists it at once (legacy and aggregated), in acme only.
        let d = Discovery::new(acme.clone()).run().await?;
        let (ar, caps) = d
            .groups()
            .find(|g| g.name() == GROUP)
            .context("group in legacy discovery")?
            .recommended_kind("CronTab")
            .context("CronTab")?;
        assert_eq!(ar.version, "v1", "{engine}: v1 preferred over v1beta1");
        assert_eq!(ar.plural, "crontabs");
        assert!(
            caps.subresources
                .iter()
                .any(|(s, _)| s.plural.ends_with("scale")),
            "{engine}: {:?}",
            caps.subresources
        );
        let agg = Discovery::new(acme.clone()).run_aggregated().await?;
        assert!(agg.has_group(GROUP), "{engine}: aggregated discovery");
        let agg_beta = Discovery::new(beta.clone()).run_aggregated().await?;
        assert!(!agg_beta.has_group(GROUP));
        let (code, _) = server.get_json("/clusters/beta/apis/stable.example.com", None)?;
        assert_eq!(code, 404);
        let (_, list) = server.get_json("/clusters/acme/apis/stable.example.com/v1", None)?;
        let res = &list["resources"][0];
        assert_eq!(res["shortNames"], json!(["ct"]));
        assert_eq!(res["categories"], json!(["all"]));
        assert!(
            res["storageVersionHash"]
                .as_str()
                .is_some_and(|h| h.len() == 12)
        );

        // OpenAPI v3: the GV appears in acme's index, whose hashes changed.
        let (_, root_after) = server.get_json("/clusters/acme/openapi/v3", None)?;
        let url = root_after["paths"]["apis/stable.example.com/v1"]["serverRelativeURL"]
            .as_str()
            .context("CRD GV in the v3 index")?;
        assert!(url.starts_with("/openapi/v3/apis/stable.example.com/v1?hash="));
        assert!(root_before["paths"]["apis/stable.example.com/v1"].is_null());
        let (_, doc) = server.get_json(&format!("/clusters/acme{url}"), None)?;
        let schema = &doc["components"]["schemas"]["com.example.stable.v1.CronTab"];
        assert_eq!(
            schema["properties"]["spec"]["properties"]["cronSpec"]["description"],
            "The cron expression."
        );
        let (_, beta_root) = server.get_json("/clusters/beta/openapi/v3", None)?;
        assert!(beta_root["paths"]["apis/stable.example.com/v1"].is_null());

        // Custom objects through DynamicObject, in both versions.
        let v1 = ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk(GROUP, "v1", "CronTab"),
            "crontabs",
        );
        let cts: Api<DynamicObject> = Api::namespaced_with(acme.clone(), "default", &v1);
        let mut watch = cts.watch(&WatchParams::default(), "0").await?.boxed();
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "stable.example.com/v1", "kind": "CronTab",
            "metadata": {"name": "nightly"},
            "spec": {"cronSpec": "0 3 * * *", "replicas": 1},
            "status": {"replicas": 7}
        }))?;
        let made = cts.create(&PostParams::default(), &obj).await?;
        assert!(
            made.data.get("status").is_none(),
            "{engine}: status ignored"
        );
        match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
            Ok(Some(Ok(WatchEvent::Added(o)))) => {
                assert_eq!(o.metadata.name.as_deref(), Some("nightly"))
            }
            other => bail!("{engine}: expected ADDED, got {other:?}"),
        }
        let status = cts
            .patch_status(
                "nightly",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"replicas": 1}, "spec": {"replicas": 50}})),
            )
            .await?;
        assert_eq!(status.data["status"]["replicas"], 1);
        assert_eq!(
            status.data["spec"]["replicas"], 1,
            "spec ignored on /status"
        );
        let scale = cts
            .patch_scale(
                "nightly",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 3}})),
            )
            .await?;
        assert_eq!(scale.spec.and_then(|s| s.replicas), Some(3));
        let applied = cts
            .patch(
                "nightly",
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(json!({
                    "apiVersion": "stable.example.com/v1", "kind": "CronTab",
                    "metadata": {"name": "nightly"},
                    "spec": {"image": "busybox"}
                })),
            )
            .await?;
        assert_eq!(applied.data["spec"]["image"], "busybox");
        assert_eq!(applied.data["spec"]["replicas"], 3);
        assert_eq!(applied.metadata.generation, Some(3));
        assert!(
            applied
                .metadata
                .managed_fields
                .unwrap_or_default()
                .iter()
                .any(|m| m.manager.as_deref() == Some("e2e")
                    && m.operation.as_deref() == Some("Apply"))
        );
        let beta_ar = ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk(GROUP, "v1beta1", "CronTab"),
            "crontabs",
        );
        let via_beta: Api<DynamicObject> = Api::namespaced_with(acme.clone(), "default", &beta_ar);
        let old = via_beta.get("nightly").await?;
        assert_eq!(
            old.types.as_ref().map(|t| t.api_version.as_str()),
            Some("stable.example.com/v1beta1")
        );
        let listed = via_beta.list(&ListParams::default()).await?;
        assert_eq!(listed.items.len(), 1);
        let r = server.request(
            "GET",
            "/clusters/acme/apis/stable.example.com/v1beta1/namespaces/default/crontabs/nightly",
            &[],
            None,
        )?;
        assert_eq!(r.status, 200);
        assert!(
            r.header("Warning")
                .is_some_and(|w| w.contains("stable.example.com/v1beta1 CronTab is deprecated")),
            "{engine}: {:?}",
            r.headers
        );
        let (_, beta_item) = server.get_json(
            "/clusters/acme/apis/stable.example.com/v1beta1/namespaces/default/crontabs",
            None,
        )?;
        assert_eq!(
            beta_item["items"][0]["apiVersion"],
            "stable.example.com/v1beta1"
        );

        // Unknown fields: Strict is a 400, the default warns and prunes.
        let body = br#"{"apiVersion":"stable.example.com/v1","kind":"CronTab","metadata":{"name":"strict"},"spec":{"foo":1}}"#;
        let path = "/clusters/acme/apis/stable.example.com/v1/namespaces/default/crontabs";
        let json_ct = [("Content-Type", "application/json")];
        let r = server.request(
            "POST",
            &format!("{path}?fieldValidation=Strict"),
            &json_ct,
            Some(body),
        )?;
        assert_eq!(r.status, 400, "{engine}: {}", r.text());
        assert!(
            r.text()
                .contains(r#"strict decoding error: unknown field \"spec.foo\""#),
            "{}",
            r.text()
        );
        let r = server.request("POST", path, &json_ct, Some(body))?;
        assert_eq!(r.status, 201, "{}", r.text());
        assert!(r.header("Warning").is_some_and(|w| w.contains("spec.foo")));
        // Strategic merge patch is not for custom resources.
        let r = server.request(
            "PATCH",
            &format!("{path}/strict"),
            &[("Content-Type", "application/strategic-merge-patch+json")],
            Some(br#"{"spec":{"image":"x"}}"#),
        )?;
        assert_eq!(r.status, 415, "{}", r.text());

        // Workspace beta cannot reach acme's API.
        let beta_cts: Api<DynamicObject> = Api::namespaced_with(beta.clone(), "default", &v1);
        match beta_cts.list(&ListParams::default()).await {
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            other => bail!("{engine}: beta listed acme's CronTabs: {other:?}"),
        }

        // Deleting the CRD deletes its objects, then the API goes.
        crds.delete("crontabs.stable.example.com", &DeleteParams::default())
            .await?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match crds.get_opt("crontabs.stable.example.com").await? {
                None => break,
                Some(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Some(c) => bail!("{engine}: CRD still there: {:?}", c.status),
            }
        }
        let (code, _) = server.get_json("/clusters/acme/apis/stable.example.com/v1", None)?;
        assert_eq!(code, 404);
        let d = Discovery::new(acme.clone()).run().await?;
        assert!(!d.has_group(GROUP));
        // Re-creating it serves an empty collection (the objects went).
        crds.create(&PostParams::default(), &crd).await?;
        assert!(cts.list(&ListParams::default()).await?.items.is_empty());
    }
    Ok(())
}

#[test]
fn kubectl_applies_explains_and_deletes_crds() -> Result<()> {
    let Some(bin) = kubectl_or_skip("kubectl_applies_explains_and_deletes_crds") else {
        return Ok(());
    };
    for (engine, server) in servers_for("kubectl_applies_explains_and_deletes_crds")? {
        server.create_workspace("acme")?;
        server.create_workspace("beta")?;
        let k = Kubectl::new(bin.clone(), server.workspace_url("acme"))?;
        let other = Kubectl::new(bin.clone(), server.workspace_url("beta"))?;
        let dir = tempfile::tempdir()?;
        let crd_file = dir.path().join("crd.json");
        std::fs::write(&crd_file, serde_json::to_vec(&crd_json())?)?;
        let cr_file = dir.path().join("ct.yaml");
        std::fs::write(
            &cr_file,
            "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: my-cron\n  namespace: default\nspec:\n  cronSpec: \"* * * * */5\"\n  image: my-image\n  replicas: 2\n",
        )?;
        let crd_path = crd_file.to_str().context("path")?;
        let cr_path = cr_file.to_str().context("path")?;
        k.ok(&["apply", "-f", crd_path])?;
        k.ok(&[
            "wait",
            "--for=condition=Established",
            "crd/crontabs.stable.example.com",
            "--timeout=10s",
        ])?;
        // The custom resource right after its CRD (helm v4 does this).
        k.ok(&["apply", "-f", cr_path])?;
        let got = k.ok(&["get", "ct"])?;
        assert!(
            got.contains("my-cron") && got.contains("* * * * */5") && got.contains("REPLICAS"),
            "{engine}: {got}"
        );
        let all = k.ok(&["get", "all"])?;
        assert!(all.contains("crontab.stable.example.com/my-cron"), "{all}");
        let explained = k.ok(&["explain", "crontab.spec"])?;
        assert!(explained.contains("The cron expression."), "{explained}");
        let resources = k.ok(&["api-resources", "--api-group", GROUP])?;
        assert!(
            resources.contains("crontabs") && resources.contains("ct"),
            "{resources}"
        );
        // Server-side apply, then a field owned by another manager conflicts.
        k.ok(&["apply", "--server-side", "-f", cr_path])?;
        k.ok(&["scale", "ct", "my-cron", "--replicas=4"])?;
        let conflict = k.run(&["apply", "--server-side", "-f", cr_path])?;
        assert!(
            !conflict.success && conflict.stderr.contains("conflict"),
            "{engine}: {conflict:?}"
        );
        k.ok(&["apply", "--server-side", "--force-conflicts", "-f", cr_path])?;
        // kubectl validates strictly through the server.
        let bad = dir.path().join("bad.yaml");
        std::fs::write(
            &bad,
            std::fs::read_to_string(&cr_file)?
                .replace("image: my-image", "image: my-image\n  bogus: 1"),
        )?;
        let strict = k.run(&["apply", "-f", bad.to_str().context("path")?])?;
        assert!(
            !strict.success && strict.stderr.contains(r#"unknown field "spec.bogus""#),
            "{engine}: {strict:?}"
        );
        // The other workspace has no such type.
        let missing = other.run(&["get", "ct"])?;
        assert!(!missing.success, "{engine}: beta resolved ct");
        // Delete: the CRD waits for its objects, then both are gone.
        k.ok(&[
            "delete",
            "crd",
            "crontabs.stable.example.com",
            "--timeout=20s",
        ])?;
        wait_until("the CRD gone", Duration::from_secs(20), || {
            Ok(!k
                .run(&["get", "crd", "crontabs.stable.example.com"])?
                .success)
        })?;
        let gone = k.run(&["get", "ct"])?;
        assert!(!gone.success, "{engine}: {gone:?}");
    }
    Ok(())
}

/// Owner references to custom resources, as kube-rs controllers set them:
/// deleting a CronTab (background, then foreground) collects the ConfigMap
/// it owns; deleting a ConfigMap collects the CronTab it owns.
#[tokio::test(flavor = "multi_thread")]
async fn garbage_collection_follows_custom_owners() -> Result<()> {
    use k8s_openapi::api::core::v1::ConfigMap;
    for (engine, server) in servers_for("garbage_collection_follows_custom_owners")? {
        server.create_workspace("gc")?;
        let c = client(&server, "gc")?;
        let crds: Api<CustomResourceDefinition> = Api::all(c.clone());
        crds.create(&PostParams::default(), &serde_json::from_value(crd_json())?)
            .await?;
        let ar = ApiResource {
            group: GROUP.into(),
            version: "v1".into(),
            api_version: format!("{GROUP}/v1"),
            kind: "CronTab".into(),
            plural: "crontabs".into(),
        };
        let tabs: Api<DynamicObject> = Api::namespaced_with(c.clone(), "default", &ar);
        let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
        let gone = async |name: &str| -> Result<bool> { Ok(cms.get_opt(name).await?.is_none()) };
        for (name, dp) in [
            ("bg", DeleteParams::background()),
            ("fg", DeleteParams::foreground()),
        ] {
            let owner: DynamicObject = serde_json::from_value(json!({
                "apiVersion": format!("{GROUP}/v1"), "kind": "CronTab",
                "metadata": {"name": name}, "spec": {"cronSpec": "* * * * *"}}))?;
            let owner = tabs.create(&PostParams::default(), &owner).await?;
            let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name,
                "ownerReferences": [{"apiVersion": format!("{GROUP}/v1"), "kind": "CronTab",
                    "name": name, "uid": owner.metadata.uid, "controller": true,
                    "blockOwnerDeletion": true}]}}))?;
            cms.create(&PostParams::default(), &cm).await?;
            tabs.delete(name, &dp).await?;
            let deadline = Instant::now() + Duration::from_secs(20);
            while !(gone(name).await? && tabs.get_opt(name).await?.is_none()) {
                if Instant::now() > deadline {
                    bail!("{engine}: {name}: the CronTab's ConfigMap was not collected");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let owner = cms
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "owner"}}))?,
            )
            .await?;
        let tab: DynamicObject = serde_json::from_value(json!({
            "apiVersion": format!("{GROUP}/v1"), "kind": "CronTab",
            "metadata": {"name": "owned", "ownerReferences": [{"apiVersion": "v1",
                "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}]}}))?;
        tabs.create(&PostParams::default(), &tab).await?;
        cms.delete("owner", &DeleteParams::default()).await?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while tabs.get_opt("owned").await?.is_some() {
            if Instant::now() > deadline {
                bail!("{engine}: the ConfigMap's CronTab was not collected");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// The kube-rs finalizer pattern: a CronTab with its controller's finalizer
/// owns a ConfigMap; deleting the CronTab leaves it Terminating, and the
/// JSON patch that removes the finalizer (the one `kube::runtime::finalizer`
/// sends) removes it, which collects the ConfigMap. A ConfigMap naming a
/// CronTab that does not exist is collected too.
#[tokio::test(flavor = "multi_thread")]
async fn removing_the_last_finalizer_collects_owned_objects() -> Result<()> {
    use k8s_openapi::api::core::v1::ConfigMap;
    for (engine, server) in servers_for("removing_the_last_finalizer_collects_owned_objects")? {
        server.create_workspace("gc")?;
        let c = client(&server, "gc")?;
        let crds: Api<CustomResourceDefinition> = Api::all(c.clone());
        crds.create(&PostParams::default(), &serde_json::from_value(crd_json())?)
            .await?;
        let ar = ApiResource {
            group: GROUP.into(),
            version: "v1".into(),
            api_version: format!("{GROUP}/v1"),
            kind: "CronTab".into(),
            plural: "crontabs".into(),
        };
        let tabs: Api<DynamicObject> = Api::namespaced_with(c.clone(), "default", &ar);
        let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
        let owner: DynamicObject = serde_json::from_value(json!({
            "apiVersion": format!("{GROUP}/v1"), "kind": "CronTab",
            "metadata": {"name": "tab", "finalizers": ["crontabs.stable.example.com/cleanup"]},
            "spec": {"cronSpec": "* * * * *"}}))?;
        let owner = tabs.create(&PostParams::default(), &owner).await?;
        let owned = |name: &str, uid: Option<String>| -> Result<ConfigMap> {
            Ok(serde_json::from_value(json!({"metadata": {"name": name,
                "ownerReferences": [{"apiVersion": format!("{GROUP}/v1"), "kind": "CronTab",
                    "name": "tab", "uid": uid, "controller": true,
                    "blockOwnerDeletion": true}]}}))?)
        };
        cms.create(
            &PostParams::default(),
            &owned("tab", owner.metadata.uid.clone())?,
        )
        .await?;
        tabs.delete("tab", &DeleteParams::default()).await?;
        let terminating = tabs.get("tab").await?;
        assert!(
            terminating.metadata.deletion_timestamp.is_some(),
            "{engine}: the finalizer holds the CronTab"
        );
        assert!(
            cms.get_opt("tab").await?.is_some(),
            "{engine}: the ConfigMap stays while its owner is there"
        );
        let remove = json!([
            {"op": "test", "path": "/metadata/finalizers/0",
             "value": "crontabs.stable.example.com/cleanup"},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ]);
        let r = server.request(
            "PATCH",
            &format!("/clusters/gc/apis/{GROUP}/v1/namespaces/default/crontabs/tab"),
            &[("Content-Type", "application/json-patch+json")],
            Some(&serde_json::to_vec(&remove)?),
        )?;
        assert_eq!(r.status, 200, "{engine}: {}", r.text());
        assert!(
            tabs.get_opt("tab").await?.is_none(),
            "{engine}: removing the last finalizer removes the CronTab"
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while cms.get_opt("tab").await?.is_some() {
            if Instant::now() > deadline {
                bail!("{engine}: the finalized CronTab's ConfigMap was not collected");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // An owner that never existed (the uid of no object).
        cms.create(
            &PostParams::default(),
            &owned("stray", Some("0b7e1f40-0000-4000-8000-00000000abcd".into()))?,
        )
        .await?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while cms.get_opt("stray").await?.is_some() {
            if Instant::now() > deadline {
                bail!("{engine}: a ConfigMap with an absent owner was not collected");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}
