//! OpenAPI end to end: the documents on the wire (caching headers, v2
//! protobuf) and what the real kubectl 1.32 does with them in a workspace:
//! `explain` (v3 and v2), server-side field validation on `apply`, and
//! OpenAPI URLs that keep the `/clusters/<ws>` prefix (contract §14).
//! Skipped loudly when kubectl is missing (a failure under `CI`).

use anyhow::{Context, Result, bail, ensure};
use wsgate_e2e::{Engine, Kubectl, Server, kubectl_or_skip};

/// What kubectl asks for, and the (parseable) type upstream answers with.
const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
const V2_PROTOBUF_REPLY: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

fn started() -> Result<Server> {
    let s = Server::start(Engine::Embedded)?;
    s.create_workspace("acme")?;
    Ok(s)
}

#[test]
fn documents_and_caching_headers_on_the_wire() -> Result<()> {
    let s = started()?;
    let (code, root) = s.get_json("/clusters/acme/openapi/v3", None)?;
    ensure!(code == 200, "root: {code}");
    let paths = root["paths"].as_object().context("root paths")?;
    for gv in [
        "api/v1",
        "apis/apps/v1",
        "apis/rbac.authorization.k8s.io/v1",
    ] {
        ensure!(paths.contains_key(gv), "{gv} missing from the v3 root");
    }
    let url = paths["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .context("serverRelativeURL")?;
    ensure!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
    let hash = url.rsplit('=').next().unwrap_or_default();

    // Clients put the prefix back in front of serverRelativeURL.
    let fresh = s.request("GET", &format!("/clusters/acme{url}"), &[], None)?;
    ensure!(fresh.status == 200, "{}", fresh.status);
    ensure!(fresh.header("cache-control") == Some("public, immutable"));
    ensure!(fresh.header("expires").is_some(), "no Expires");
    ensure!(fresh.header("vary") == Some("Accept"));
    let etag = fresh.header("etag").context("no ETag")?.to_owned();
    ensure!(etag == format!("\"{hash}\""), "{etag}");
    let doc: serde_json::Value = serde_json::from_slice(&fresh.body)?;
    ensure!(
        doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"]
            == serde_json::json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );

    // A stale hash: the current document, no redirect, not immutable.
    let stale = s.request(
        "GET",
        "/clusters/acme/openapi/v3/apis/apps/v1?hash=0BAD",
        &[],
        None,
    )?;
    ensure!(stale.status == 200, "stale hash: {}", stale.status);
    ensure!(stale.header("location").is_none());
    ensure!(stale.header("cache-control") != Some("public, immutable"));
    ensure!(stale.body == fresh.body);

    let again = s.request(
        "GET",
        &format!("/clusters/acme{url}"),
        &[("If-None-Match", &etag)],
        None,
    )?;
    ensure!(again.status == 304, "If-None-Match: {}", again.status);

    let v2 = s.request(
        "GET",
        "/clusters/acme/openapi/v2",
        &[("Accept", V2_PROTOBUF)],
        None,
    )?;
    ensure!(v2.status == 200, "v2 protobuf: {}", v2.status);
    ensure!(v2.header("content-type") == Some(V2_PROTOBUF_REPLY));
    ensure!(v2.body.len() > 100_000, "{} bytes", v2.body.len());
    let (code, v2json) = s.get_json("/clusters/acme/openapi/v2", Some("application/json"))?;
    ensure!(code == 200 && v2json["swagger"] == "2.0");
    ensure!(v2json["definitions"]["io.k8s.api.core.v1.ConfigMap"].is_object());

    let (code, _) = s.get_json("/clusters/nowhere/openapi/v3", None)?;
    ensure!(code == 404, "unknown workspace: {code}");
    Ok(())
}

/// kubectl's request log lines (`-v=6`): `GET http://... 200 OK in 2 milliseconds`.
fn request_urls(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter_map(|l| {
            let i = l.find("http://")?;
            l[i..].split_whitespace().next()
        })
        .collect()
}

const BAD_DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  bogusField: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
"#;

#[test]
fn kubectl_explain_and_validation_use_the_workspace_openapi() -> Result<()> {
    let Some(bin) = kubectl_or_skip("kubectl_explain_and_validation_use_the_workspace_openapi")
    else {
        return Ok(());
    };
    let s = started()?;
    let k = Kubectl::new(bin, s.workspace_url("acme"))?;

    let out = k.ok(&["explain", "deployment.spec.replicas"])?;
    ensure!(
        out.contains("replicas") && out.contains("<integer>"),
        "{out}"
    );
    ensure!(out.contains("Number of desired pods"), "{out}");

    let out = k.ok(&["explain", "configmap"])?;
    ensure!(
        out.contains("ConfigMap holds configuration data for pods to consume."),
        "{out}"
    );
    ensure!(
        out.contains("binaryData") && out.contains("immutable"),
        "{out}"
    );

    // Through /openapi/v2 as gnostic protobuf.
    let out = k.ok(&[
        "explain",
        "--output=plaintext-openapiv2",
        "deployment.spec.replicas",
    ])?;
    ensure!(out.contains("Number of desired pods"), "v2 explain: {out}");
    let out = k.ok(&["explain", "--output=plaintext-openapiv2", "configmap"])?;
    ensure!(
        out.contains("ConfigMap holds configuration data for pods to consume."),
        "v2 explain: {out}"
    );

    // An unknown field: kubectl must delegate validation to the server
    // (fieldValidation=Strict), which rejects it.
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, BAD_DEPLOYMENT)?;
    let bad = bad.to_string_lossy().into_owned();
    let o = k.run(&["apply", "-n", "default", "-f", &bad, "-v=6"])?;
    let urls = request_urls(&o.stderr);
    ensure!(
        urls.iter().any(|u| u.contains("fieldValidation=Strict")),
        "kubectl did not send fieldValidation=Strict (client-side validation?): {urls:#?}"
    );
    ensure!(
        !o.success,
        "apply with an unknown field succeeded: {}",
        o.stdout
    );
    ensure!(
        o.stderr.contains("strict decoding error: unknown field"),
        "{}",
        o.stderr
    );

    // The OpenAPI URLs kubectl followed kept the workspace prefix.
    let openapi: Vec<&&str> = urls.iter().filter(|u| u.contains("/openapi/")).collect();
    ensure!(!openapi.is_empty(), "kubectl fetched no OpenAPI: {urls:#?}");
    for u in &openapi {
        ensure!(u.contains("/clusters/acme/openapi/"), "prefix lost: {u}");
    }
    ensure!(
        openapi
            .iter()
            .any(|u| u.contains("/clusters/acme/openapi/v3/apis/apps/v1?hash=")),
        "no hashed GV document fetched: {openapi:#?}"
    );

    // A valid manifest applies, and re-applying patches it (client-side
    // apply builds a strategic merge patch from the v3 schema).
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, BAD_DEPLOYMENT.replace("  bogusField: 3\n", ""))?;
    let good_path = good.to_string_lossy().into_owned();
    let out = k.ok(&["apply", "-n", "default", "-f", &good_path])?;
    ensure!(out.contains("created"), "{out}");
    std::fs::write(
        &good,
        BAD_DEPLOYMENT
            .replace("  bogusField: 3\n", "")
            .replace("replicas: 1", "replicas: 3"),
    )?;
    let o = k.run(&["apply", "-n", "default", "-f", &good_path, "-v=8"])?;
    if !o.success {
        bail!("re-apply: {}{}", o.stderr, o.stdout);
    }
    ensure!(o.stdout.contains("configured"), "{}", o.stdout);
    ensure!(
        o.stderr.contains("application/strategic-merge-patch+json"),
        "re-apply did not use strategic merge patch"
    );
    let replicas = k.ok(&[
        "get",
        "deployment",
        "web",
        "-n",
        "default",
        "-o",
        "jsonpath={.spec.replicas}",
    ])?;
    ensure!(replicas.trim() == "3", "{replicas}");
    Ok(())
}
