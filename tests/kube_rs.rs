//! End-to-end tests driving the real `wsgate` binary with kube-rs, on the
//! embedded store and (when installed) etcd. Each test runs its body once
//! per engine.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use kube::{Client, Config};
use serde_json::{Value, json};
use wsgate_e2e::{Server, servers_for};

fn client(server: &Server, workspace: &str) -> Result<Client> {
    let uri: http::Uri = server.workspace_url(workspace).parse()?;
    Ok(Client::try_from(Config::new(uri))?)
}

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "data": data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
    }))
    .expect("valid ConfigMap")
}

fn api_code(e: &kube::Error) -> Option<(u16, String)> {
    match e {
        kube::Error::Api(s) => Some((s.code, s.reason.clone())),
        _ => None,
    }
}

fn rv(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn crud_is_isolated_between_workspaces() -> Result<()> {
    for (engine, server) in servers_for("crud_is_isolated_between_workspaces")? {
        server.create_workspace("acme")?;
        server.create_workspace("beta")?;
        let acme: Api<ConfigMap> = Api::namespaced(client(&server, "acme")?, "default");
        let beta: Api<ConfigMap> = Api::namespaced(client(&server, "beta")?, "default");

        let created = acme
            .create(&PostParams::default(), &cm("c1", &[("k", "v")]))
            .await?;
        assert!(rv(&created.metadata) > 0, "{engine}: RV set on create");
        assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
        let got = acme.get("c1").await?;
        assert_eq!(
            got.data
                .as_ref()
                .and_then(|d| d.get("k"))
                .map(String::as_str),
            Some("v")
        );
        assert_eq!(acme.list(&ListParams::default()).await?.items.len(), 1);
        assert!(
            beta.list(&ListParams::default()).await?.items.is_empty(),
            "{engine}: beta sees acme's object"
        );
        assert_eq!(
            api_code(&beta.get("c1").await.unwrap_err()).map(|c| c.0),
            Some(404)
        );
        let root_all: Api<ConfigMap> = Api::all(client(&server, "root")?);
        assert!(
            root_all
                .list(&ListParams::default())
                .await?
                .items
                .is_empty(),
            "{engine}: root sees acme's object"
        );

        // AlreadyExists, then optimistic concurrency.
        let dup = acme
            .create(&PostParams::default(), &cm("c1", &[]))
            .await
            .unwrap_err();
        assert_eq!(api_code(&dup), Some((409, "AlreadyExists".into())));
        let patched = acme
            .patch(
                "c1",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"k2": "v2"}})),
            )
            .await?;
        assert!(rv(&patched.metadata) > rv(&created.metadata));
        let mut stale = created.clone();
        stale.data = Some(BTreeMap::from([("x".into(), "y".into())]));
        let conflict = acme
            .replace("c1", &PostParams::default(), &stale)
            .await
            .unwrap_err();
        assert_eq!(api_code(&conflict), Some((409, "Conflict".into())));
        // Without a resourceVersion an update of a built-in is unconditional.
        stale.metadata.resource_version = None;
        let replaced = acme.replace("c1", &PostParams::default(), &stale).await?;
        assert_eq!(
            replaced
                .data
                .as_ref()
                .and_then(|d| d.get("x"))
                .map(String::as_str),
            Some("y")
        );

        // JSON patch with a failing test op is rejected.
        let failed = acme
            .patch(
                "c1",
                &PatchParams::default(),
                &Patch::<Value>::Json(serde_json::from_value(
                    json!([{"op": "test", "path": "/data/x", "value": "nope"}]),
                )?),
            )
            .await
            .unwrap_err();
        assert_eq!(api_code(&failed).map(|c| c.0), Some(422));

        // A missing namespace is a 404 on create.
        let missing: Api<ConfigMap> = Api::namespaced(client(&server, "acme")?, "nope");
        let e = missing
            .create(&PostParams::default(), &cm("x", &[]))
            .await
            .unwrap_err();
        assert_eq!(api_code(&e), Some((404, "NotFound".into())));

        acme.delete("c1", &DeleteParams::default()).await?;
        assert_eq!(
            api_code(&acme.get("c1").await.unwrap_err()).map(|c| c.0),
            Some(404)
        );

        // generateName and dryRun.
        let mut g = cm("", &[]);
        g.metadata.name = None;
        g.metadata.generate_name = Some("gen-".into());
        let dry = acme
            .create(
                &PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &g,
            )
            .await?;
        assert!(
            dry.metadata
                .name
                .as_deref()
                .unwrap_or("")
                .starts_with("gen-")
        );
        assert!(
            acme.list(&ListParams::default()).await?.items.is_empty(),
            "{engine}: dryRun stored"
        );
        let made = acme.create(&PostParams::default(), &g).await?;
        assert_eq!(made.metadata.name.as_deref().map(str::len), Some(9));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_from_list_resource_version_sees_only_later_changes() -> Result<()> {
    for (engine, server) in servers_for("watch_from_list_resource_version")? {
        server.create_workspace("acme")?;
        let api: Api<ConfigMap> = Api::namespaced(client(&server, "acme")?, "default");
        for i in 0..3 {
            api.create(&PostParams::default(), &cm(&format!("old-{i}"), &[]))
                .await?;
        }
        let list = api.list(&ListParams::default()).await?;
        let list_rv = list.metadata.resource_version.clone().context("list RV")?;
        let mut stream = api
            .watch(&WatchParams::default().timeout(10), &list_rv)
            .await?
            .boxed();
        api.create(&PostParams::default(), &cm("new", &[])).await?;
        api.patch(
            "new",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "b"}})),
        )
        .await?;
        api.delete("new", &DeleteParams::default()).await?;
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let ev = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
                .await
                .context("watch stalled")??
                .context("watch ended early")?;
            match ev {
                WatchEvent::Added(o) => seen.push((
                    "ADDED",
                    o.metadata.name.clone().unwrap_or_default(),
                    rv(&o.metadata),
                )),
                WatchEvent::Modified(o) => seen.push((
                    "MODIFIED",
                    o.metadata.name.clone().unwrap_or_default(),
                    rv(&o.metadata),
                )),
                WatchEvent::Deleted(o) => seen.push((
                    "DELETED",
                    o.metadata.name.clone().unwrap_or_default(),
                    rv(&o.metadata),
                )),
                WatchEvent::Bookmark(_) => {}
                WatchEvent::Error(e) => bail!("{engine}: watch error {e:?}"),
            }
        }
        let kinds: Vec<_> = seen.iter().map(|(t, n, _)| (*t, n.as_str())).collect();
        assert_eq!(
            kinds,
            [("ADDED", "new"), ("MODIFIED", "new"), ("DELETED", "new")],
            "{engine}"
        );
        assert!(
            seen.windows(2).all(|w| w[0].2 < w[1].2),
            "{engine}: event RVs ordered: {seen:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn pagination_is_consistent_and_ends_without_continue() -> Result<()> {
    for (engine, server) in servers_for("pagination")? {
        server.create_workspace("acme")?;
        let api: Api<ConfigMap> = Api::namespaced(client(&server, "acme")?, "default");
        let mut last = 0;
        for i in 0..5 {
            let o = api
                .create(&PostParams::default(), &cm(&format!("p{i}"), &[]))
                .await?;
            let r = rv(&o.metadata);
            assert!(
                r > last,
                "{engine}: resourceVersions grow: {r} after {last}"
            );
            last = r;
        }
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        let mut rvs = Vec::new();
        let mut pages = 0;
        loop {
            let mut lp = ListParams::default().limit(2);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = api.list(&lp).await?;
            pages += 1;
            rvs.push(page.metadata.resource_version.clone().unwrap_or_default());
            names.extend(page.items.iter().filter_map(|o| o.metadata.name.clone()));
            // Another write between pages must not show up.
            api.create(&PostParams::default(), &cm(&format!("z-late-{pages}"), &[]))
                .await?;
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(c) => token = Some(c),
                None => break,
            }
        }
        assert_eq!(names, ["p0", "p1", "p2", "p3", "p4"], "{engine}");
        assert_eq!(pages, 3, "{engine}");
        assert!(
            rvs.iter().all(|r| r == &rvs[0]) && rvs[0] != "0",
            "{engine}: {rvs:?}"
        );
        // A token is bound to its workspace.
        server.create_workspace("beta")?;
        let first = api.list(&ListParams::default().limit(1)).await?;
        let beta: Api<ConfigMap> = Api::namespaced(client(&server, "beta")?, "default");
        let e = beta
            .list(
                &ListParams::default()
                    .limit(1)
                    .continue_token(first.metadata.continue_.as_deref().unwrap_or("")),
            )
            .await
            .unwrap_err();
        assert_eq!(api_code(&e).map(|c| c.0), Some(400), "{engine}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn streaming_list_sends_the_initial_events_end_marker() -> Result<()> {
    for (engine, server) in servers_for("streaming_list")? {
        server.create_workspace("acme")?;
        let api: Api<ConfigMap> = Api::namespaced(client(&server, "acme")?, "default");
        api.create(&PostParams::default(), &cm("a", &[])).await?;
        // Wire level: ADDED, then the bookmark carrying the annotation.
        let r = server.request(
            "GET",
            "/clusters/acme/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=2",
            &[],
            None,
        )?;
        assert_eq!(r.status, 200);
        let lines: Vec<Value> = r
            .text()
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        assert_eq!(lines[0]["type"], "ADDED", "{engine}");
        assert_eq!(lines[1]["type"], "BOOKMARK", "{engine}");
        assert_eq!(
            lines[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
            "true"
        );
        assert_ne!(lines[1]["object"]["metadata"]["resourceVersion"], "0");
        // The stream ends at timeoutSeconds with a last, non-zero bookmark.
        let last = lines.last().context("events")?;
        assert_eq!(last["type"], "BOOKMARK", "{engine}");
        assert!(last["object"]["metadata"]["annotations"].is_null());
        assert_ne!(last["object"]["metadata"]["resourceVersion"], "0");
        // kube-rs's streaming-list watcher reaches InitDone.
        let mut w = watcher(api.clone(), watcher::Config::default().streaming_lists()).boxed();
        let mut init_done = false;
        while let Some(ev) = tokio::time::timeout(Duration::from_secs(10), w.try_next())
            .await
            .context("watcher stalled")??
        {
            if matches!(ev, watcher::Event::InitDone) {
                init_done = true;
                break;
            }
        }
        assert!(init_done, "{engine}");
    }
    Ok(())
}

fn resource_key(group: &str, version: &str, r: &Value) -> (String, String) {
    let mut verbs: Vec<String> = r["verbs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    verbs.sort();
    (
        format!(
            "{group}/{version}/{}",
            r["name"].as_str().or(r["resource"].as_str()).unwrap_or("")
        ),
        json!({
            "kind": r["kind"].as_str().or(r["responseKind"]["kind"].as_str()),
            "namespaced": r["namespaced"].as_bool().unwrap_or(r["scope"] == "Namespaced"),
            "singular": r["singularName"].as_str().or(r["singularResource"].as_str()),
            "verbs": verbs,
            "shortNames": r["shortNames"],
            "categories": r["categories"],
        })
        .to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_and_aggregated_discovery_agree_and_serve_every_group_version() -> Result<()> {
    const AGG: &str =
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    for (engine, server) in servers_for("discovery_parity")? {
        server.create_workspace("acme")?;
        let p = "/clusters/acme";
        let mut legacy = BTreeMap::new();
        let mut aggregated = BTreeMap::new();
        let (_, api) = server.get_json(&format!("{p}/api"), None)?;
        let (_, apis) = server.get_json(&format!("{p}/apis"), None)?;
        let mut gvs: Vec<(String, String)> = api["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| (String::new(), v.as_str().unwrap_or("").to_owned()))
            .collect();
        for g in apis["groups"].as_array().into_iter().flatten() {
            for v in g["versions"].as_array().into_iter().flatten() {
                gvs.push((
                    g["name"].as_str().unwrap_or("").to_owned(),
                    v["version"].as_str().unwrap_or("").to_owned(),
                ));
            }
        }
        for (g, v) in &gvs {
            let path = if g.is_empty() {
                format!("{p}/api/{v}")
            } else {
                format!("{p}/apis/{g}/{v}")
            };
            let (code, list) = server.get_json(&path, None)?;
            assert_eq!(code, 200, "{engine}: {path} advertised but not served");
            for r in list["resources"].as_array().into_iter().flatten() {
                let name = r["name"].as_str().unwrap_or("");
                if name.contains('/') {
                    continue;
                }
                let (k, v2) = resource_key(g, v, r);
                legacy.insert(k, v2);
                // No phantom resources: every listable one answers a list.
                if r["verbs"]
                    .as_array()
                    .is_some_and(|vs| vs.iter().any(|x| x == "list"))
                {
                    let (code, body) = server.get_json(&format!("{path}/{name}?limit=1"), None)?;
                    assert_eq!(code, 200, "{engine}: list {path}/{name}: {body}");
                    assert!(
                        body["items"].is_array(),
                        "{engine}: list {path}/{name}: {body}"
                    );
                    // componentstatuses is computed, not stored: like upstream
                    // its list carries no resourceVersion.
                    assert!(
                        name == "componentstatuses"
                            || body["metadata"]["resourceVersion"].is_string(),
                        "{engine}: list {path}/{name} has no resourceVersion: {body}"
                    );
                }
            }
        }
        for root in ["api", "apis"] {
            let r = server.request("GET", &format!("{p}/{root}"), &[("Accept", AGG)], None)?;
            assert_eq!(
                r.header("Content-Type"),
                Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
            );
            let doc: Value = serde_json::from_slice(&r.body)?;
            for item in doc["items"].as_array().into_iter().flatten() {
                let g = item["metadata"]["name"].as_str().unwrap_or("");
                for v in item["versions"].as_array().into_iter().flatten() {
                    for res in v["resources"].as_array().into_iter().flatten() {
                        let (k, v2) = resource_key(g, v["version"].as_str().unwrap_or(""), res);
                        aggregated.insert(k, v2);
                    }
                }
            }
        }
        assert!(legacy.len() > 40, "{engine}: {}", legacy.len());
        assert_eq!(
            legacy, aggregated,
            "{engine}: legacy and aggregated discovery differ"
        );
        // Discovery answers If-None-Match with 304.
        let r = server.request("GET", &format!("{p}/apis"), &[("Accept", AGG)], None)?;
        let etag = r.header("ETag").context("ETag")?.to_owned();
        let r = server.request(
            "GET",
            &format!("{p}/apis"),
            &[("Accept", AGG), ("If-None-Match", &etag)],
            None,
        )?;
        assert_eq!(r.status, 304, "{engine}");
        // OpenAPI v3 under the workspace prefix: prefix-free serverRelativeURLs
        // whose documents give PATCH the fieldValidation parameter and the GVK.
        let (_, root) = server.get_json(&format!("{p}/openapi/v3"), None)?;
        let url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .context("apps/v1")?;
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
        let (code, doc) = server.get_json(&format!("{p}{url}"), None)?;
        assert_eq!(code, 200);
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(
            patch["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == "fieldValidation")
        );
        // kube-rs discovery works both ways.
        let c = client(&server, "acme")?;
        let d = kube::Discovery::new(c.clone()).run().await?;
        assert!(d.has_group("apps"));
        let d = kube::Discovery::new(c).run_aggregated().await?;
        assert!(d.has_group("apps"));
        // Unknown workspaces are a clean 404 Status.
        let (code, body) = server.get_json("/clusters/nope/api", None)?;
        assert_eq!((code, body["reason"].as_str()), (404, Some("NotFound")));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaces_exist_implicitly_and_delete_in_the_background() -> Result<()> {
    for (engine, server) in servers_for("namespace_lifecycle")? {
        server.create_workspace("acme")?;
        let c = client(&server, "acme")?;
        let ns: Api<Namespace> = Api::all(c.clone());
        let names: Vec<String> = ns
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        assert_eq!(
            names,
            ["default", "kube-node-lease", "kube-public", "kube-system"],
            "{engine}"
        );
        let e = ns
            .delete("default", &DeleteParams::default())
            .await
            .unwrap_err();
        assert_eq!(api_code(&e), Some((403, "Forbidden".into())), "{engine}");

        ns.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "team"}}))?,
        )
        .await?;
        let team: Api<ConfigMap> = Api::namespaced(c.clone(), "team");
        team.create(&PostParams::default(), &cm("inside", &[]))
            .await?;
        let deleted = ns.delete("team", &DeleteParams::default()).await?;
        let terminating = deleted
            .left()
            .context("the namespace comes back while terminating")?;
        assert_eq!(
            terminating.status.and_then(|s| s.phase).as_deref(),
            Some("Terminating")
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            match ns.get("team").await {
                Err(e) if api_code(&e).map(|c| c.0) == Some(404) => break,
                _ if tokio::time::Instant::now() > deadline => {
                    bail!("{engine}: namespace not purged")
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        assert!(team.list(&ListParams::default()).await?.items.is_empty());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn status_scale_and_owner_garbage_collection() -> Result<()> {
    for (engine, server) in servers_for("status_scale_gc")? {
        server.create_workspace("acme")?;
        let c = client(&server, "acme")?;
        let deploys: Api<Deployment> = Api::namespaced(c.clone(), "default");
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
            },
        }))?;
        let created = deploys.create(&PostParams::default(), &d).await?;
        assert_eq!(created.metadata.generation, Some(1));
        let st = deploys
            .patch_status(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"replicas": 1}})),
            )
            .await?;
        assert_eq!(
            st.metadata.generation,
            Some(1),
            "{engine}: status writes keep generation"
        );
        assert_eq!(st.status.and_then(|s| s.replicas), Some(1));
        let scale = deploys.get_scale("web").await?;
        assert_eq!(scale.spec.and_then(|s| s.replicas), Some(1));
        assert_eq!(
            scale.status.and_then(|s| s.selector).as_deref(),
            Some("app=web")
        );
        deploys
            .patch_scale(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 4}})),
            )
            .await?;
        let after = deploys.get("web").await?;
        assert_eq!(after.spec.and_then(|s| s.replicas), Some(4));
        assert_eq!(
            after.metadata.generation,
            Some(2),
            "{engine}: a spec change bumps generation"
        );

        // Background deletion collects dependents.
        let cms: Api<ConfigMap> = Api::namespaced(c, "default");
        let mut dep = cm("dependent", &[]);
        dep.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: "web".into(),
                uid: after.metadata.uid.clone().unwrap_or_default(),
                ..Default::default()
            },
        ]);
        cms.create(&PostParams::default(), &dep).await?;
        deploys.delete("web", &DeleteParams::background()).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while cms.get_opt("dependent").await?.is_some() {
            if tokio::time::Instant::now() > deadline {
                bail!("{engine}: dependent not collected");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn wire_details_match_kubernetes() -> Result<()> {
    for (engine, server) in servers_for("wire_details")? {
        server.create_workspace("acme")?;
        let p = "/clusters/acme/api/v1/namespaces/default/configmaps";
        // No Content-Type means JSON; YAML bodies work too.
        let r = server.request("POST", p, &[], Some(br#"{"metadata":{"name":"a"}}"#))?;
        assert_eq!(r.status, 201, "{engine}: {}", r.text());
        let r = server.request(
            "POST",
            p,
            &[("Content-Type", "application/yaml")],
            Some(b"metadata:\n  name: b\n"),
        )?;
        assert_eq!(r.status, 201, "{engine}: {}", r.text());
        // Malformed JSON is a 400 Status; oversized bodies 413; unknown types 415.
        let r = server.request(
            "POST",
            p,
            &[("Content-Type", "application/json")],
            Some(b"{nope"),
        )?;
        let s: Value = serde_json::from_slice(&r.body)?;
        assert_eq!((r.status, s["reason"].as_str()), (400, Some("BadRequest")));
        let big = vec![b' '; 3 * 1024 * 1024 + 10];
        let r = server.request(
            "POST",
            p,
            &[("Content-Type", "application/json")],
            Some(&big),
        )?;
        assert_eq!(r.status, 413, "{engine}");
        let r = server.request("POST", p, &[("Content-Type", "text/plain")], Some(b"x"))?;
        assert_eq!(r.status, 415, "{engine}");
        // fieldValidation: Strict rejects unknown fields, Warn (the default) drops them with a warning.
        let body = br#"{"metadata":{"name":"fv"},"data":{"a":"b"},"bogus":1}"#;
        let r = server.request(
            "POST",
            &format!("{p}?fieldValidation=Strict"),
            &[],
            Some(body),
        )?;
        let s: Value = serde_json::from_slice(&r.body)?;
        assert_eq!(r.status, 400, "{engine}: {}", r.text());
        assert_eq!(
            s["message"],
            "strict decoding error: unknown field \"bogus\""
        );
        let r = server.request("POST", p, &[], Some(body))?;
        assert_eq!(r.status, 201, "{engine}: {}", r.text());
        assert_eq!(
            r.header("Warning"),
            Some("299 - \"unknown field \\\"bogus\\\"\"")
        );
        assert!(
            serde_json::from_slice::<Value>(&r.body)?
                .get("bogus")
                .is_none()
        );
        // Table and PartialObjectMetadataList with exact Content-Types.
        let r = server.request(
            "GET",
            p,
            &[(
                "Accept",
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
            )],
            None,
        )?;
        assert_eq!(
            r.header("Content-Type"),
            Some("application/json;as=Table;v=v1;g=meta.k8s.io")
        );
        let t: Value = serde_json::from_slice(&r.body)?;
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["rows"].as_array().map(Vec::len), Some(3));
        let r = server.request(
            "GET",
            p,
            &[(
                "Accept",
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
            )],
            None,
        )?;
        assert_eq!(
            r.header("Content-Type"),
            Some("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1")
        );
        let l: Value = serde_json::from_slice(&r.body)?;
        assert_eq!(l["items"][0]["kind"], "PartialObjectMetadata");
        // Bad paths are Status errors, never guesses.
        for (path, code) in [
            ("/clusters/acme/api//v1", 400),
            ("/clusters/acme/api/v1/namespaces/a%2Fb/configmaps", 400),
            (
                "/clusters/acme/api/v1/namespaces/default/configmaps/..",
                400,
            ),
            ("/clusters/acme/api/v1/nothings", 404),
            ("/clusters/acme/apis/nothing.example/v1", 404),
        ] {
            let r = server.request("GET", path, &[], None)?;
            let s: Value = serde_json::from_slice(&r.body)?;
            assert_eq!(
                (r.status, s["kind"].as_str()),
                (code, Some("Status")),
                "{engine}: {path}"
            );
        }
        // Every list has items and a resourceVersion; /version has its nine fields.
        let (_, l) = server.get_json("/clusters/acme/api/v1/namespaces/default/secrets", None)?;
        assert!(
            l["items"].as_array().is_some_and(Vec::is_empty)
                && l["metadata"]["resourceVersion"]
                    .as_str()
                    .is_some_and(|r| r != "0")
        );
        for path in ["/version", "/version/", "/clusters/acme/version"] {
            let (_, v) = server.get_json(path, None)?;
            assert_eq!(
                (v["major"].as_str(), v["minor"].as_str()),
                (Some("1"), Some("32"))
            );
            assert_eq!(v.as_object().map(|o| o.len()), Some(9));
        }
        // The kubernetes Service exists in every workspace without a write.
        let (code, svc) = server.get_json(
            "/clusters/acme/api/v1/namespaces/default/services/kubernetes",
            None,
        )?;
        assert_eq!(
            (code, svc["spec"]["ports"][0]["port"].as_i64()),
            (200, Some(443))
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_release_secret_pattern() -> Result<()> {
    use k8s_openapi::api::core::v1::Secret;
    for (engine, server) in servers_for("helm_release_secret_pattern")? {
        server.create_workspace("acme")?;
        let c = client(&server, "acme")?;
        let ns: Api<Namespace> = Api::all(c.clone());
        ns.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "apps"}}))?,
        )
        .await?;
        let secrets: Api<Secret> = Api::namespaced(c.clone(), "apps");
        let release: Secret = serde_json::from_value(json!({
            "metadata": {"name": "sh.helm.release.v1.web.v1", "labels": {"name": "web", "owner": "helm", "status": "pending-install", "version": "1"}},
            "type": "helm.sh/release.v1",
            "data": {"release": "SDRzSUFBQUFBQUFBLw=="},
        }))?;
        secrets.create(&PostParams::default(), &release).await?;
        let mine = secrets
            .list(&ListParams::default().labels("name=web,owner=helm"))
            .await?;
        assert_eq!(mine.items.len(), 1, "{engine}");
        // helm PUTs the release without a resourceVersion.
        let mut deployed = release.clone();
        deployed
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("status".into(), "deployed".into());
        secrets
            .replace(
                "sh.helm.release.v1.web.v1",
                &PostParams::default(),
                &deployed,
            )
            .await?;
        // `helm list -A`: every namespace, by label, and the type field selector.
        let all: Api<Secret> = Api::all(c);
        let listed = all
            .list(
                &ListParams::default()
                    .labels("owner=helm,status=deployed")
                    .fields("type=helm.sh/release.v1"),
            )
            .await?;
        assert_eq!(listed.items.len(), 1, "{engine}");
        assert_eq!(listed.items[0].metadata.namespace.as_deref(), Some("apps"));
        let none = all
            .list(&ListParams::default().labels("owner=helm,status=superseded"))
            .await?;
        assert!(none.items.is_empty());
        let bad = all
            .list(&ListParams::default().labels("owner in (helm"))
            .await
            .unwrap_err();
        assert_eq!(api_code(&bad).map(|c| c.0), Some(400), "{engine}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn server_side_apply_and_managed_fields() -> Result<()> {
    for (engine, server) in servers_for("server_side_apply")? {
        server.create_workspace("acme")?;
        let c = client(&server, "acme")?;
        let deploys: Api<Deployment> = Api::namespaced(c.clone(), "default");
        let applied = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
            },
        });
        // Apply creates, and records the applier's fields.
        let made = deploys
            .patch("web", &PatchParams::apply("ops"), &Patch::Apply(&applied))
            .await?;
        let mf = made.metadata.managed_fields.clone().unwrap_or_default();
        assert!(
            mf.iter()
                .any(|m| m.manager.as_deref() == Some("ops")
                    && m.operation.as_deref() == Some("Apply")),
            "{engine}: {mf:?}"
        );
        // Another manager changing an owned field conflicts; force takes it.
        let mut other = applied.clone();
        other["spec"]["replicas"] = json!(5);
        let e = deploys
            .patch(
                "web",
                &PatchParams::apply("autoscaler"),
                &Patch::Apply(&other),
            )
            .await
            .unwrap_err();
        let kube::Error::Api(s) = &e else {
            bail!("{engine}: {e}")
        };
        assert_eq!(
            (s.code, s.reason.as_str()),
            (409, "Conflict"),
            "{engine}: {s:?}"
        );
        assert!(
            s.message.contains("Apply failed with 1 conflict"),
            "{engine}: {}",
            s.message
        );
        let forced = deploys
            .patch(
                "web",
                &PatchParams::apply("autoscaler").force(),
                &Patch::Apply(&other),
            )
            .await?;
        assert_eq!(forced.spec.and_then(|s| s.replicas), Some(5));
        // A plain update is recorded as an Update by its field manager.
        let cms: Api<ConfigMap> = Api::namespaced(c, "default");
        let pp = PostParams {
            field_manager: Some("writer".into()),
            ..Default::default()
        };
        let cm1 = cms.create(&pp, &cm("tracked", &[("a", "b")])).await?;
        let mf = cm1.metadata.managed_fields.unwrap_or_default();
        assert!(
            mf.iter().any(|m| m.manager.as_deref() == Some("writer")
                && m.operation.as_deref() == Some("Update")),
            "{engine}: {mf:?}"
        );
        // Without fieldManager an apply is rejected.
        let e = server.request(
            "PATCH",
            "/clusters/acme/api/v1/namespaces/default/configmaps/tracked",
            &[("Content-Type", "application/apply-patch+yaml")],
            Some(b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tracked\n"),
        )?;
        assert_eq!(e.status, 422, "{engine}: {}", e.text());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn default_service_accounts_and_pod_eviction() -> Result<()> {
    use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
    use kube::api::EvictParams;
    for (engine, server) in servers_for("default_service_accounts_and_pod_eviction")? {
        server.create_workspace("acme")?;
        let c = client(&server, "acme")?;
        let sas: Api<ServiceAccount> = Api::all(c.clone());
        let names: Vec<String> = sas
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|s| s.metadata.namespace)
            .collect();
        assert_eq!(
            names,
            ["default", "kube-node-lease", "kube-public", "kube-system"],
            "{engine}"
        );
        let ns: Api<Namespace> = Api::all(c.clone());
        ns.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "team"}}))?,
        )
        .await?;
        let team_sa: Api<ServiceAccount> = Api::namespaced(c.clone(), "team");
        assert!(
            team_sa.get_opt("default").await?.is_some(),
            "{engine}: no default SA in a new namespace"
        );

        let pods: Api<Pod> = Api::namespaced(c, "team");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]},
        }))?;
        let made = pods.create(&PostParams::default(), &pod).await?;
        let spec = made.spec.context("spec")?;
        assert_eq!(spec.service_account_name.as_deref(), Some("default"));
        assert_eq!(
            made.status.and_then(|s| s.phase).as_deref(),
            Some("Pending")
        );
        pods.evict("p", &EvictParams::default()).await?;
        assert!(
            pods.get_opt("p").await?.is_none(),
            "{engine}: evicted pod still there"
        );
    }
    Ok(())
}

/// A namespace whose spec.finalizers holds another finalizer besides
/// `kubernetes` (set through `/finalize`) stays Terminating once its content
/// is gone, and is removed when `/finalize` clears the last one.
#[tokio::test(flavor = "multi_thread")]
async fn namespace_stays_terminating_until_every_spec_finalizer_is_cleared() -> Result<()> {
    for (engine, server) in
        servers_for("namespace_stays_terminating_until_every_spec_finalizer_is_cleared")?
    {
        server.create_workspace("acme")?;
        let c = client(&server, "acme")?;
        let nss: Api<Namespace> = Api::all(c.clone());
        nss.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "held"}}))?,
        )
        .await?;
        let finalize = |finalizers: Value| -> Result<u16> {
            let body = json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "held"}, "spec": {"finalizers": finalizers}});
            let r = server.request(
                "PUT",
                "/clusters/acme/api/v1/namespaces/held/finalize",
                &[("Content-Type", "application/json")],
                Some(&serde_json::to_vec(&body)?),
            )?;
            Ok(r.status)
        };
        assert_eq!(
            finalize(json!(["kubernetes", "example.com/x"]))?,
            200,
            "{engine}"
        );
        let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "held");
        cms.create(&PostParams::default(), &cm("content", &[]))
            .await?;
        nss.delete("held", &DeleteParams::default()).await?;
        // The purge removes the content, then only its own finalizer.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ns = nss
                .get_opt("held")
                .await?
                .with_context(|| format!("{engine}: the namespace went with example.com/x left"))?;
            let finalizers = ns.spec.and_then(|s| s.finalizers).unwrap_or_default();
            if cms.get_opt("content").await?.is_none() && finalizers == ["example.com/x"] {
                assert!(ns.metadata.deletion_timestamp.is_some(), "{engine}");
                assert_eq!(
                    ns.status.and_then(|s| s.phase).as_deref(),
                    Some("Terminating"),
                    "{engine}"
                );
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{engine}: the purge did not finish: {finalizers:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A metadata write does not remove it either.
        nss.patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"still": "here"}}})),
        )
        .await?;
        assert!(
            nss.get_opt("held").await?.is_some(),
            "{engine}: a label write removed a namespace with spec finalizers"
        );
        assert_eq!(finalize(json!([]))?, 200, "{engine}");
        assert!(
            nss.get_opt("held").await?.is_none(),
            "{engine}: finalize cleared the last finalizer but the namespace stays"
        );
    }
    Ok(())
}
