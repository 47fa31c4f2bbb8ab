//! Workspaces end to end, on the embedded store and (when installed) etcd:
//! the `tenancy.wsgate.io/v1alpha1` Workspace API (create in the parent,
//! nested paths, status, labels, table columns), termination (writes
//! refused, reads allowed, content swept, the name reusable), the
//! `/clusters/*` wildcard, and isolation between workspaces for every verb,
//! through kube-rs and through raw requests with malformed paths.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::{Client, Config};
use serde_json::{Value, json};
use wsgate_e2e::{Engine, Server, etcd_or_skip};

const WS: &str = "/apis/tenancy.wsgate.io/v1alpha1/workspaces";
const MARKER: &str = "victim-secret-marker";

fn servers(test: &str, args: &[&str]) -> Result<Vec<(&'static str, Server)>> {
    let mut out = vec![("embedded", Server::start_with(Engine::Embedded, args)?)];
    if let Some(etcd) = etcd_or_skip(test) {
        out.push(("etcd", Server::start_with(Engine::Etcd(etcd), args)?));
    }
    Ok(out)
}

fn client(server: &Server, workspace: &str) -> Result<Client> {
    let uri: http::Uri = server.workspace_url(workspace).parse()?;
    Ok(Client::try_from(Config::new(uri))?)
}

fn json_req(s: &Server, method: &str, path: &str, body: &Value) -> Result<(u16, Value)> {
    let ct = if method == "PATCH" {
        "application/merge-patch+json"
    } else {
        "application/json"
    };
    let r = s.request(
        method,
        path,
        &[("Content-Type", ct)],
        Some(body.to_string().as_bytes()),
    )?;
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    Ok((r.status, v))
}

/// Creates workspace `name` inside `parent` (a path; "root" for top level).
fn create_ws(s: &Server, parent: &str, name: &str, labels: Value) -> Result<Value> {
    let (code, v) = json_req(
        s,
        "POST",
        &format!("/clusters/{parent}{WS}"),
        &json!({"apiVersion": "tenancy.wsgate.io/v1alpha1", "kind": "Workspace",
                "metadata": {"name": name, "labels": labels}}),
    )?;
    if code != 201 {
        bail!("creating workspace {name} in {parent}: {code} {v}");
    }
    Ok(v)
}

fn put_cm(s: &Server, ws: &str, ns: &str, name: &str, value: &str) -> Result<()> {
    let (code, v) = json_req(
        s,
        "POST",
        &format!("/clusters/{ws}/api/v1/namespaces/{ns}/configmaps"),
        &json!({"metadata": {"name": name}, "data": {"v": value}}),
    )?;
    if code != 201 {
        bail!("creating configmap {ws}/{ns}/{name}: {code} {v}");
    }
    Ok(())
}

fn wait_for(what: &str, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if f()? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("timed out waiting for {what}")
}

#[tokio::test(flavor = "multi_thread")]
async fn workspace_api_and_lifecycle() -> Result<()> {
    for (engine, s) in servers("workspace_api_and_lifecycle", &[])? {
        let created = create_ws(&s, "root", "acme", json!({"tier": "gold"}))?;
        assert_eq!(created["status"]["phase"], "Ready", "{engine}");
        let url = created["status"]["url"].as_str().unwrap_or_default();
        assert!(url.ends_with("/clusters/acme"), "{engine}: {url}");
        let old_id = created["spec"]["cluster"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert_eq!(old_id.len(), 16, "{engine}: a short random id");
        create_ws(&s, "root", "beta", json!({"tier": "silver"}))?;
        // `/` and `/clusters/root` are the same workspace.
        let (code, list) = s.get_json(
            &format!("/clusters/root{WS}?labelSelector=tier%3Dgold"),
            None,
        )?;
        assert_eq!(code, 200);
        let names: Vec<_> = list["items"]
            .as_array()
            .context("items")?
            .iter()
            .map(|i| i["metadata"]["name"].clone())
            .collect();
        assert_eq!(names, vec![json!("acme")], "{engine}: label selectors");
        // kubectl get workspaces columns.
        let (code, table) = s.get_json(WS, Some("application/json;as=Table;v=v1;g=meta.k8s.io"))?;
        assert_eq!(code, 200);
        let cols: Vec<_> = table["columnDefinitions"]
            .as_array()
            .context("columns")?
            .iter()
            .map(|c| c["name"].as_str().unwrap_or("").to_owned())
            .collect();
        assert_eq!(cols, ["Name", "Phase", "URL", "Age"], "{engine}");

        // Nested: a Workspace created inside acme is acme:team-a.
        create_ws(&s, "acme", "team-a", json!({}))?;
        put_cm(&s, "acme", "default", "top", "1")?;
        put_cm(&s, "acme:team-a", "default", "nested", "1")?;
        let (code, _) = s.get_json(
            "/clusters/acme:team-a/api/v1/namespaces/default/configmaps/nested",
            None,
        )?;
        assert_eq!(code, 200, "{engine}");

        // Unknown workspace: a 404 Status.
        let (code, st) = s.get_json("/clusters/nope/api/v1/namespaces", None)?;
        assert_eq!(
            (code, st["kind"].as_str(), st["reason"].as_str()),
            (404, Some("Status"), Some("NotFound")),
            "{engine}"
        );

        // Delete: Terminating at once, then gone.
        let (code, body) = json_req(&s, "DELETE", &format!("{WS}/acme"), &json!({}))?;
        assert!(code == 200 || code == 202, "{engine}: {code} {body}");
        assert_eq!(body["status"]["phase"], "Terminating", "{engine}");
        assert!(body["status"]["deletedAt"].is_string());
        let (code, st) = json_req(
            &s,
            "POST",
            "/clusters/acme/api/v1/namespaces/default/configmaps",
            &json!({"metadata": {"name": "late"}}),
        )?;
        // Refused while terminating (403), or the workspace is already gone (404).
        assert!(code == 403 || code == 404, "{engine}: {code} {st}");
        if code == 403 {
            assert!(
                st["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("being terminated"),
                "{st}"
            );
        }
        let (code, _) = json_req(
            &s,
            "POST",
            "/clusters/acme:team-a/api/v1/namespaces/default/configmaps",
            &json!({"metadata": {"name": "late"}}),
        )?;
        assert!(
            code == 403 || code == 404,
            "{engine}: nested writes refused: {code}"
        );
        wait_for("acme to be gone", || {
            Ok(
                s.get_json("/clusters/acme/api/v1/namespaces/default/configmaps", None)?
                    .0
                    == 404,
            )
        })?;
        assert_eq!(
            s.get_json("/clusters/acme:team-a/api/v1/namespaces", None)?
                .0,
            404
        );
        wait_for("the Workspace object to go", || {
            Ok(s.get_json(&format!("{WS}/acme"), None)?.0 == 404)
        })?;

        // The same name again: a new id, none of the old data.
        let again = create_ws(&s, "root", "acme", json!({}))?;
        assert_ne!(
            again["spec"]["cluster"].as_str(),
            Some(old_id.as_str()),
            "{engine}"
        );
        let (code, list) =
            s.get_json("/clusters/acme/api/v1/namespaces/default/configmaps", None)?;
        assert_eq!(code, 200);
        assert_eq!(
            list["items"].as_array().map(Vec::len),
            Some(0),
            "{engine}: no old data"
        );
        assert_eq!(
            s.get_json("/clusters/acme:team-a/api/v1/namespaces", None)?
                .0,
            404
        );

        // Reuse while still terminating: immediate.
        put_cm(&s, "acme", "default", "old", MARKER)?;
        json_req(&s, "DELETE", &format!("{WS}/acme"), &json!({}))?;
        create_ws(&s, "root", "acme", json!({}))?;
        let (code, list) =
            s.get_json("/clusters/acme/api/v1/namespaces/default/configmaps", None)?;
        assert_eq!(code, 200);
        assert!(!list.to_string().contains(MARKER), "{engine}: {list}");
    }
    Ok(())
}

/// Every verb, from `attacker` towards objects of `victim`, through kube-rs.
async fn verbs_stay_inside(s: &Server, attacker: &str, victim: &str, engine: &str) -> Result<()> {
    let mine: Api<ConfigMap> = Api::namespaced(client(s, attacker)?, "default");
    let theirs: Api<ConfigMap> = Api::namespaced(client(s, victim)?, "default");
    let ctx = format!("{engine}: {attacker} -> {victim}");
    // get / list / watch
    match mine.get("victim-cm").await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 404, "{ctx}"),
        other => bail!("{ctx}: get saw {other:?}"),
    }
    let listed = mine.list(&ListParams::default()).await?;
    assert!(
        listed
            .items
            .iter()
            .all(|c| c.metadata.name.as_deref() != Some("victim-cm")),
        "{ctx}"
    );
    let all_ns: Api<ConfigMap> = Api::all(client(s, attacker)?);
    let listed = all_ns.list(&ListParams::default()).await?;
    assert!(
        !serde_json::to_string(&listed.items)?.contains(MARKER),
        "{ctx}"
    );
    let mut events = mine
        .watch(&WatchParams::default().timeout(2), "0")
        .await?
        .boxed();
    theirs
        .patch(
            "victim-cm",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await?;
    while let Some(ev) = events.try_next().await? {
        if let WatchEvent::Added(c) | WatchEvent::Modified(c) | WatchEvent::Deleted(c) = ev {
            assert_ne!(
                c.metadata.name.as_deref(),
                Some("victim-cm"),
                "{ctx}: watch leaked"
            );
        }
    }
    // patch / replace / delete / deletecollection
    let r = mine
        .patch(
            "victim-cm",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": "pwned"}})),
        )
        .await;
    assert!(
        matches!(r, Err(kube::Error::Api(ref e)) if e.code == 404),
        "{ctx}: patch {r:?}"
    );
    let r = mine.delete("victim-cm", &DeleteParams::default()).await;
    assert!(
        matches!(r, Err(kube::Error::Api(ref e)) if e.code == 404),
        "{ctx}: delete {r:?}"
    );
    mine.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    let mut replacement: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "victim-cm"}, "data": {"v": "pwned"}}))?;
    // A replace in the attacker's workspace creates its own object (or
    // fails); it never touches the victim's.
    let _ = mine
        .replace("victim-cm", &PostParams::default(), &replacement)
        .await;
    replacement.metadata.name = Some("victim-cm".into());
    let _ = mine.create(&PostParams::default(), &replacement).await;
    let still = theirs.get("victim-cm").await?;
    assert_eq!(
        still
            .data
            .as_ref()
            .and_then(|d| d.get("v"))
            .map(String::as_str),
        Some(MARKER),
        "{ctx}"
    );
    // Clean up the attacker's copy so the next round starts clean.
    let _ = mine.delete("victim-cm", &DeleteParams::default()).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_verb_is_isolated_between_workspaces() -> Result<()> {
    for (engine, s) in servers("every_verb_is_isolated_between_workspaces", &[])? {
        // Names that are prefixes of each other, and a nested workspace.
        for n in ["acme", "acme2", "a"] {
            create_ws(&s, "root", n, json!({}))?;
        }
        create_ws(&s, "a", "b", json!({}))?;
        for victim in ["acme", "acme2", "a", "a:b"] {
            put_cm(&s, victim, "default", "victim-cm", MARKER)?;
        }
        for (attacker, victim) in [
            ("acme", "acme2"),
            ("acme2", "acme"),
            ("a", "a:b"),
            ("a:b", "a"),
            ("root", "acme"),
        ] {
            // The attacker's own copy of the name must not exist for the get check.
            let _ = json_req(
                &s,
                "DELETE",
                &format!("/clusters/{attacker}/api/v1/namespaces/default/configmaps/victim-cm"),
                &json!({}),
            )?;
            verbs_stay_inside(&s, attacker, victim, engine).await?;
            put_cm(&s, attacker, "default", "victim-cm", MARKER).ok();
        }
        // A namespace named like another workspace's cluster id, and
        // object names that look like key separators, stay local.
        let (_, acme2) = s.get_json(&format!("{WS}/acme2"), None)?;
        let victim_id = acme2["spec"]["cluster"].as_str().context("id")?.to_owned();
        let nss: Api<Namespace> = Api::all(client(&s, "acme")?);
        nss.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": victim_id}}))?,
        )
        .await?;
        put_cm(&s, "acme", &victim_id, "default", "attacker")?;
        let (_, victim_list) = s.get_json("/clusters/acme2/api/v1/configmaps", None)?;
        assert!(
            !victim_list.to_string().contains("attacker"),
            "{engine}: {victim_list}"
        );
        for bad in ["..", "a%2Fb", "default%2Fvictim-cm", "%2e%2e"] {
            let (code, _) = json_req(
                &s,
                "POST",
                "/clusters/acme/api/v1/namespaces/default/configmaps",
                &json!({"metadata": {"name": bad}}),
            )?;
            assert!(
                (400..500).contains(&code),
                "{engine}: name {bad:?} accepted ({code})"
            );
        }
        let _ = BTreeMap::<String, String>::new();
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_paths_never_reach_another_workspace() -> Result<()> {
    for (engine, s) in servers("malformed_paths_never_reach_another_workspace", &[])? {
        for n in ["acme", "acme2", "a"] {
            create_ws(&s, "root", n, json!({}))?;
        }
        create_ws(&s, "a", "b", json!({}))?;
        for victim in ["acme2", "a:b"] {
            put_cm(&s, victim, "default", "victim-cm", MARKER)?;
        }
        // A continue token from the victim's list.
        let (_, page) = s.get_json(
            "/clusters/acme2/api/v1/namespaces/default/configmaps?limit=1",
            None,
        )?;
        let _ = page;
        put_cm(&s, "acme2", "default", "victim-cm2", MARKER)?;
        let (_, page) = s.get_json(
            "/clusters/acme2/api/v1/namespaces/default/configmaps?limit=1",
            None,
        )?;
        let token = page["metadata"]["continue"]
            .as_str()
            .context("continue token")?
            .to_owned();
        let long = "x".repeat(300);
        let cm = "api/v1/namespaces/default/configmaps";
        let paths = vec![
            format!("/clusters/acme/../acme2/{cm}"),
            format!("/clusters/acme/%2e%2e/acme2/{cm}"),
            format!("/clusters/acme/%2E%2E/acme2/{cm}/victim-cm"),
            format!("/clusters/acme%2F..%2Facme2/{cm}"),
            format!("/clusters/acme%2facme2/{cm}"),
            format!("/clusters/acme%3Aacme2/{cm}"),
            format!("/clusters/acme//{cm}"),
            format!("/clusters//acme2/{cm}"),
            format!("/clusters/acme/{cm}/..%2F..%2F..%2Facme2%2Fdefault%2Fvictim-cm"),
            format!("/clusters/acme/api/v1/namespaces/..%2F..%2Facme2%2Fdefault/configmaps"),
            format!(
                "/clusters/acme/api/v1/namespaces/default%2F..%2F..%2Facme2/configmaps/victim-cm"
            ),
            format!("/clusters/acme/api/v1/namespaces/default/configmaps/%2e%2e%2f%2e%2e%2facme2"),
            format!("/clusters/acme:..:acme2/{cm}"),
            format!("/clusters/acme:/{cm}"),
            format!("/clusters/acm/{cm}"),
            format!("/clusters/ACME2/{cm}"),
            format!("/clusters/acme2%00/{cm}"),
            format!("/clusters/{long}/{cm}"),
            format!("/clusters/acme:{long}/{cm}"),
            format!("/clusters/acme/{cm}/{long}"),
            format!("/clusters/a/{cm}/victim-cm"),
            format!("/clusters/a:b:../{cm}"),
            format!("/clusters/*/{cm}"),
            format!("/clusters/acme/{cm}?continue={token}"),
            format!("/clusters/acme/api/v1/configmaps?continue={token}"),
            format!("/clusters/acme/{cm}?watch=1&timeoutSeconds=1&resourceVersion=0"),
        ];
        for p in &paths {
            for method in ["GET", "DELETE", "PATCH", "PUT"] {
                let body = json!({"metadata": {"name": "victim-cm"}, "data": {"v": "pwned"}});
                let (code, v) = json_req(&s, method, p, &body)?;
                let text = v.to_string();
                assert!(
                    !text.contains(MARKER),
                    "{engine}: {method} {p} leaked ({code}): {text}"
                );
            }
        }
        // The victims are untouched.
        for victim in ["acme2", "a:b"] {
            let (code, v) = s.get_json(&format!("/clusters/{victim}/{cm}/victim-cm"), None)?;
            assert_eq!(code, 200, "{engine}: {victim}");
            assert_eq!(v["data"]["v"], MARKER, "{engine}: {victim} changed");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn wildcard_lists_and_watches_every_workspace() -> Result<()> {
    // Off by default.
    let plain = Server::start(Engine::Embedded)?;
    let (code, st) = plain.get_json("/clusters/*/api/v1/configmaps", None)?;
    assert_eq!(
        (code, st["reason"].as_str()),
        (403, Some("Forbidden")),
        "{st}"
    );

    for (engine, s) in servers(
        "wildcard_lists_and_watches_every_workspace",
        &["--allow-wildcard"],
    )? {
        create_ws(&s, "root", "acme", json!({}))?;
        create_ws(&s, "acme", "team-a", json!({}))?;
        put_cm(&s, "acme", "default", "one", "1")?;
        put_cm(&s, "acme:team-a", "default", "two", "2")?;
        let (code, list) = s.get_json("/clusters/*/api/v1/configmaps", None)?;
        assert_eq!(code, 200, "{engine}: {list}");
        let mut seen = BTreeMap::new();
        for item in list["items"].as_array().context("items")? {
            let path = item["metadata"]["annotations"]["tenancy.wsgate.io/path"]
                .as_str()
                .context("path annotation")?;
            assert!(item["metadata"]["annotations"]["tenancy.wsgate.io/cluster"].is_string());
            assert_eq!(
                item["metadata"]["annotations"]["kcp.io/cluster"].as_str(),
                Some(path),
                "kcp's annotation names the addressable path"
            );
            seen.insert(
                item["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                path.to_owned(),
            );
        }
        assert_eq!(
            seen.get("one").map(String::as_str),
            Some("acme"),
            "{engine}: {seen:?}"
        );
        assert_eq!(
            seen.get("two").map(String::as_str),
            Some("acme:team-a"),
            "{engine}"
        );
        // Writes across all workspaces are refused.
        let (code, _) = json_req(
            &s,
            "POST",
            "/clusters/*/api/v1/namespaces/default/configmaps",
            &json!({"metadata": {"name": "x"}}),
        )?;
        assert!((400..500).contains(&code), "{engine}: {code}");
        // A watch sees a new object in any workspace, annotated.
        let all: Api<ConfigMap> = Api::all(Client::try_from(Config::new(
            format!("{}/clusters/*", s.url()).parse()?,
        ))?);
        let rv = list["metadata"]["resourceVersion"]
            .as_str()
            .context("rv")?
            .to_owned();
        let mut events = all
            .watch(&WatchParams::default().timeout(5), &rv)
            .await?
            .boxed();
        put_cm(&s, "acme:team-a", "default", "three", "3")?;
        let mut found = None;
        while let Some(ev) = events.next().await {
            if let WatchEvent::Added(c) = ev?
                && c.metadata.name.as_deref() == Some("three")
            {
                found = c
                    .metadata
                    .annotations
                    .and_then(|a| a.get("tenancy.wsgate.io/path").cloned());
                break;
            }
        }
        assert_eq!(found.as_deref(), Some("acme:team-a"), "{engine}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_and_the_wsgate_workspace_cli() -> Result<()> {
    let s = Server::start(Engine::Embedded)?;
    // `wsgate workspace ...` against the running server.
    let url = s.url();
    let cli = |args: &[&str]| -> Result<String> {
        let mut a = vec!["workspace", "--server", url.as_str()];
        a.extend_from_slice(args);
        s.wsgate(&a)
    };
    cli(&["create", "acme", "-l", "tier=gold"])?;
    cli(&["create", "acme:team-a"])?;
    let got = cli(&["get", "acme:team-a"])?;
    assert!(got.contains("phase:     Ready"), "{got}");
    assert!(got.contains("/clusters/acme:team-a"), "{got}");
    let listed = cli(&["list", "acme"])?;
    assert!(listed.contains("acme:team-a"), "{listed}");
    let json_out = cli(&["get", "acme", "-o", "json"])?;
    let v: Value = serde_json::from_str(&json_out)?;
    assert_eq!(v["metadata"]["labels"]["tier"], "gold");
    cli(&["delete", "acme:team-a", "--wait"])?;
    assert_eq!(
        s.get_json("/clusters/acme:team-a/api/v1/namespaces", None)?
            .0,
        404
    );

    // kubectl: create a Workspace from a file in root, then use it.
    let Some(bin) = wsgate_e2e::kubectl_or_skip("kubectl_and_the_wsgate_workspace_cli") else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("beta.yaml");
    std::fs::write(
        &file,
        "apiVersion: tenancy.wsgate.io/v1alpha1\nkind: Workspace\nmetadata:\n  name: beta\n",
    )?;
    let root = wsgate_e2e::Kubectl::new(bin.clone(), s.workspace_url("root"))?;
    root.ok(&["create", "-f", &file.to_string_lossy()])?;
    let table = root.ok(&["get", "workspaces"])?;
    let header = table.lines().next().unwrap_or("");
    for col in ["NAME", "PHASE", "URL", "AGE"] {
        assert!(header.contains(col), "{table}");
    }
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("beta") && l.contains("Ready")),
        "{table}"
    );
    let beta = wsgate_e2e::Kubectl::new(bin, s.workspace_url("beta"))?;
    beta.ok(&["create", "configmap", "c", "--from-literal=k=v"])?;
    assert!(beta.ok(&["get", "configmaps"])?.contains('c'));
    Ok(())
}
