//! Security end to end, part two (issue 6), over HTTPS on both engines:
//! a workspace you cannot access and one that does not exist answer alike
//! (every verb, namespaced, cluster-scoped and discovery), the bootstrap
//! roles served in every workspace, SubjectAccessReview /
//! LocalSubjectAccessReview / TokenReview in a workspace, kube-rs clients
//! from the generated admin kubeconfig, a token kubeconfig and a
//! client-certificate kubeconfig (CRUD and watch), kubectl with a client
//! certificate, and the audit log at `requestresponse` (bodies, source IPs,
//! no Secret values).
//!
//! One server per engine runs every scenario, so the file stays short. etcd
//! and kubectl parts skip loudly when missing (a failure under `CI`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{Value, json};
use wsgate_e2e::{Engine, Kubectl, RawResponse, Server, etcd_or_skip, kubectl_or_skip};

const JSON: (&str, &str) = ("Content-Type", "application/json");
const MERGE: (&str, &str) = ("Content-Type", "application/merge-patch+json");
/// A Secret value that must never reach the audit log.
const SECRET_VALUE: &str = "czNjcjN0LXZhbHVlLTQyCg==";

fn json_of(r: &RawResponse) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

fn admin(s: &Server) -> String {
    s.tls().map(|t| t.admin_token.clone()).unwrap_or_default()
}

fn send(
    s: &Server,
    method: &str,
    path: &str,
    header: Option<(&str, &str)>,
    body: Option<&Value>,
    token: &str,
) -> Result<RawResponse> {
    let headers: Vec<(&str, &str)> = header.into_iter().collect();
    let bytes = body.map(Value::to_string);
    s.https(
        method,
        path,
        &headers,
        bytes.as_deref().map(str::as_bytes),
        Some(token),
    )
}

fn created(r: &RawResponse, what: &str) -> Result<()> {
    ensure!(
        r.status == 201 || r.status == 200,
        "{what}: {} {}",
        r.status,
        r.text()
    );
    Ok(())
}

fn create_workspace(s: &Server, parent: &str, name: &str) -> Result<()> {
    let body = json!({"apiVersion": "tenancy.wsgate.io/v1alpha1", "kind": "Workspace", "metadata": {"name": name}});
    let path = format!("/clusters/{parent}/apis/tenancy.wsgate.io/v1alpha1/workspaces");
    created(
        &send(s, "POST", &path, Some(JSON), Some(&body), &admin(s))?,
        &format!("workspace {parent}:{name}"),
    )
}

fn user_token(s: &Server, user: &str, scope: &[&str]) -> Result<String> {
    let mut args = vec!["token", "create", "--user", user, "--ttl", "1h"];
    for w in scope {
        args.extend(["--workspace", w]);
    }
    s.wsgate(&args)
}

fn bind(s: &Server, ws: &str, name: &str, role: &str, subject: Value) -> Result<()> {
    let body = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": "default"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [subject],
    });
    let path =
        format!("/clusters/{ws}/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings");
    created(
        &send(s, "POST", &path, Some(JSON), Some(&body), &admin(s))?,
        name,
    )
}

/// One request: method, path after the workspace, content type, body.
type Probe = (
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
    Option<Value>,
);

/// Every verb, on a namespaced and a cluster-scoped resource, plus
/// discovery, OpenAPI and a review: (method, path after the workspace,
/// content type, body).
fn probes() -> Vec<Probe> {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "default"}});
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}});
    let patch = json!({"metadata": {"labels": {"a": "b"}}});
    let ssar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}}});
    let cms = "/api/v1/namespaces/default/configmaps";
    vec![
        ("GET", "/api/v1/namespaces/default/configmaps/x", None, None),
        ("GET", cms, None, None),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps?watch=true",
            None,
            None,
        ),
        ("POST", cms, Some(JSON), Some(cm.clone())),
        (
            "PUT",
            "/api/v1/namespaces/default/configmaps/x",
            Some(JSON),
            Some(cm),
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/configmaps/x",
            Some(MERGE),
            Some(patch.clone()),
        ),
        (
            "DELETE",
            "/api/v1/namespaces/default/configmaps/x",
            None,
            None,
        ),
        ("DELETE", cms, None, None),
        ("GET", "/api/v1/configmaps", None, None),
        ("GET", "/api/v1/namespaces/x", None, None),
        ("GET", "/api/v1/namespaces", None, None),
        ("POST", "/api/v1/namespaces", Some(JSON), Some(ns.clone())),
        ("PUT", "/api/v1/namespaces/x", Some(JSON), Some(ns)),
        ("PATCH", "/api/v1/namespaces/x", Some(MERGE), Some(patch)),
        ("DELETE", "/api/v1/namespaces/x", None, None),
        (
            "DELETE",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            None,
            None,
        ),
        (
            "GET",
            "/apis/apps/v1/namespaces/default/deployments/x/scale",
            None,
            None,
        ),
        ("GET", "/api", None, None),
        ("GET", "/apis", None, None),
        ("GET", "/apis/apps/v1", None, None),
        ("GET", "/openapi/v2", None, None),
        ("GET", "/", None, None),
        (
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            Some(JSON),
            Some(ssar),
        ),
    ]
}

/// A workspace without an access grant and a missing one give the same
/// status and body (up to the name the client itself sent).
fn indistinguishable(s: &Server, label: &str) -> Result<()> {
    let carol = user_token(s, "carol", &["*"])?;
    for (exists, missing) in [("acme", "ghost"), ("acme:kid", "acme:nokid")] {
        for (method, suffix, ct, body) in probes() {
            let a = send(
                s,
                method,
                &format!("/clusters/{exists}{suffix}"),
                ct,
                body.as_ref(),
                &carol,
            )?;
            let b = send(
                s,
                method,
                &format!("/clusters/{missing}{suffix}"),
                ct,
                body.as_ref(),
                &carol,
            )?;
            let what = format!("{label}: {method} {suffix} in {exists} vs {missing}");
            ensure!(a.status == 403, "{what}: {} {}", a.status, a.text());
            ensure!(a.status == b.status, "{what}: {} vs {}", a.status, b.status);
            ensure!(
                a.text().replace(exists, missing) == b.text(),
                "{what}:\n{}\n{}",
                a.text(),
                b.text()
            );
            ensure!(
                json_of(&a)["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("carol") && m.contains(&format!("{exists:?}"))),
                "{what}: the denial names user and workspace: {}",
                a.text()
            );
        }
    }
    // system:masters may enter any workspace, so it is told the truth.
    let r = send(
        s,
        "GET",
        "/clusters/ghost/api/v1/namespaces",
        None,
        None,
        &admin(s),
    )?;
    ensure!(
        r.status == 404,
        "{label}: admin in a missing workspace: {}",
        r.status
    );
    // One grant, anywhere in the workspace, lets carol in; RBAC decides the rest.
    bind(
        s,
        "acme",
        "carol-view",
        "view",
        json!({"kind": "User", "name": "carol", "apiGroup": "rbac.authorization.k8s.io"}),
    )?;
    let r = send(
        s,
        "GET",
        "/clusters/acme/api/v1/namespaces/default/configmaps",
        None,
        None,
        &carol,
    )?;
    ensure!(
        r.status == 200,
        "{label}: carol after the grant: {} {}",
        r.status,
        r.text()
    );
    let r = send(s, "GET", "/clusters/acme/apis", None, None, &carol)?;
    ensure!(
        r.status == 200,
        "{label}: discovery after the grant: {}",
        r.status
    );
    let r = send(
        s,
        "GET",
        "/clusters/acme/api/v1/namespaces/kube-system/configmaps",
        None,
        None,
        &carol,
    )?;
    ensure!(r.status == 403, "{label}: outside the grant: {}", r.status);
    Ok(())
}

/// SubjectAccessReview, LocalSubjectAccessReview and TokenReview in acme.
fn reviews(s: &Server, label: &str, alice_acme: &str, alice_acme2: &str) -> Result<()> {
    let sar = |ns: &str| {
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {
            "user": "alice",
            "resourceAttributes": {"namespace": ns, "verb": "create", "resource": "configmaps"}}})
    };
    let path = "/clusters/acme/apis/authorization.k8s.io/v1/subjectaccessreviews";
    for (ns, allowed) in [("default", true), ("kube-system", false)] {
        let r = send(s, "POST", path, Some(JSON), Some(&sar(ns)), &admin(s))?;
        ensure!(
            r.status == 201 && json_of(&r)["status"]["allowed"] == allowed,
            "{label}: SAR in {ns}: {} {}",
            r.status,
            r.text()
        );
    }
    // The same question in acme2, where alice has nothing: no.
    let r = send(
        s,
        "POST",
        "/clusters/acme2/apis/authorization.k8s.io/v1/subjectaccessreviews",
        Some(JSON),
        Some(&sar("default")),
        &admin(s),
    )?;
    ensure!(
        json_of(&r)["status"]["allowed"] == false,
        "{label}: SAR in acme2: {}",
        r.text()
    );
    let local = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview",
        "metadata": {"namespace": "default"},
        "spec": {"user": "alice", "resourceAttributes": {"namespace": "default", "verb": "delete", "resource": "configmaps"}}});
    let r = send(
        s,
        "POST",
        "/clusters/acme/apis/authorization.k8s.io/v1/namespaces/default/localsubjectaccessreviews",
        Some(JSON),
        Some(&local),
        &admin(s),
    )?;
    ensure!(
        r.status == 201 && json_of(&r)["status"]["allowed"] == true,
        "{label}: LSAR: {} {}",
        r.status,
        r.text()
    );
    // Plain users may not ask about others.
    let r = send(
        s,
        "POST",
        path,
        Some(JSON),
        Some(&sar("default")),
        alice_acme,
    )?;
    ensure!(r.status == 403, "{label}: alice's SAR: {}", r.status);

    let tr = |t: &str| json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": t}});
    let path = "/clusters/acme/apis/authentication.k8s.io/v1/tokenreviews";
    let r = send(
        s,
        "POST",
        path,
        Some(JSON),
        Some(&tr(alice_acme)),
        &admin(s),
    )?;
    let v = json_of(&r);
    ensure!(
        r.status == 201
            && v["status"]["authenticated"] == true
            && v["status"]["user"]["username"] == "alice",
        "{label}: TokenReview: {} {}",
        r.status,
        r.text()
    );
    // A token scoped to acme2 is no credential in acme.
    let r = send(
        s,
        "POST",
        path,
        Some(JSON),
        Some(&tr(alice_acme2)),
        &admin(s),
    )?;
    ensure!(
        json_of(&r)["status"]["authenticated"] == false,
        "{label}: TokenReview of an acme2 token in acme: {}",
        r.text()
    );
    let r = send(s, "POST", path, Some(JSON), Some(&tr("garbage")), &admin(s))?;
    ensure!(
        json_of(&r)["status"]["authenticated"] == false,
        "{label}: garbage: {}",
        r.text()
    );
    Ok(())
}

/// The bootstrap roles in a workspace that never wrote them.
fn bootstrap_roles(s: &Server, label: &str) -> Result<()> {
    let base = "/clusters/acme2/apis/rbac.authorization.k8s.io/v1/clusterroles";
    let r = send(s, "GET", base, None, None, &admin(s))?;
    let names: Vec<String> = json_of(&r)["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for want in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:discovery",
        "system:basic-user",
    ] {
        ensure!(
            names.iter().any(|n| n == want),
            "{label}: {want} not in {names:?}"
        );
    }
    let r = send(s, "GET", &format!("{base}/admin"), None, None, &admin(s))?;
    let v = json_of(&r);
    ensure!(
        r.status == 200
            && v["aggregationRule"].is_object()
            && v["rules"].as_array().is_some_and(|r| !r.is_empty()),
        "{label}: admin: {}",
        r.text()
    );
    let crbs =
        "/clusters/acme2/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/cluster-admin";
    ensure!(send(s, "GET", crbs, None, None, &admin(s))?.status == 200);
    // Writing one is refused (what is served is what is evaluated) ...
    let body = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "admin"}, "rules": []});
    let r = send(s, "POST", base, Some(JSON), Some(&body), &admin(s))?;
    ensure!(
        r.status == 422,
        "{label}: writing admin: {} {}",
        r.status,
        r.text()
    );
    let r = send(
        s,
        "PUT",
        &format!("{base}/view"),
        Some(JSON),
        Some(
            &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "view"}, "rules": []}),
        ),
        &admin(s),
    )?;
    ensure!(
        r.status == 422,
        "{label}: replacing view: {} {}",
        r.status,
        r.text()
    );
    // ... and deleting one changes nothing (upstream re-creates it).
    let r = send(s, "DELETE", &format!("{base}/edit"), None, None, &admin(s))?;
    ensure!(r.status == 200, "{label}: deleting edit: {}", r.status);
    ensure!(send(s, "GET", &format!("{base}/edit"), None, None, &admin(s))?.status == 200);
    Ok(())
}

async fn client_from(path: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(path)?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

fn configmap(name: &str) -> Result<ConfigMap> {
    Ok(serde_json::from_value(
        json!({"metadata": {"name": name}, "data": {"k": "v"}}),
    )?)
}

/// Create, get, list, watch and delete ConfigMaps in `default` through a
/// kube-rs client built from a kubeconfig.
async fn kube_crud(client: Client, prefix: &str) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let first = api
        .create(&PostParams::default(), &configmap(&format!("{prefix}-1"))?)
        .await?;
    let rv = first
        .metadata
        .resource_version
        .clone()
        .context("no resourceVersion")?;
    let got = api.get(&format!("{prefix}-1")).await?;
    ensure!(got.data == first.data);
    let mut events = api
        .watch(&WatchParams::default().timeout(20), &rv)
        .await?
        .boxed();
    api.create(&PostParams::default(), &configmap(&format!("{prefix}-2"))?)
        .await?;
    let added = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(e) = events.try_next().await? {
            if let WatchEvent::Added(cm) = e
                && cm.metadata.name.as_deref() == Some(&format!("{prefix}-2"))
            {
                return Ok::<_, anyhow::Error>(true);
            }
        }
        Ok(false)
    })
    .await
    .context("no watch event in 15 s")??;
    ensure!(added, "the watch ended without the ADDED event");
    let names: Vec<String> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    ensure!(
        names.iter().any(|n| *n == format!("{prefix}-2")),
        "{names:?}"
    );
    for n in [1, 2] {
        api.delete(&format!("{prefix}-{n}"), &DeleteParams::default())
            .await?;
    }
    Ok(())
}

/// kube-rs with the admin kubeconfig, a token kubeconfig and a client
/// certificate kubeconfig.
async fn kube_clients(s: &Server, label: &str, alice_acme: &str) -> Result<()> {
    let admin_kc = s.data_dir().join("admin.kubeconfig");
    kube_crud(client_from(&admin_kc).await?, "admin")
        .await
        .with_context(|| format!("{label}: admin kubeconfig"))?;
    let token_kc = s.kubeconfig("acme", Some(alice_acme))?;
    kube_crud(client_from(&token_kc).await?, "alice")
        .await
        .with_context(|| format!("{label}: token kubeconfig"))?;

    let cert_kc = cert_kubeconfig(s, "bob", "dev")?;
    let bob = client_from(&cert_kc).await?;
    let api: Api<ConfigMap> = Api::namespaced(bob.clone(), "default");
    let denied = api.list(&ListParams::default()).await;
    ensure!(
        matches!(&denied, Err(kube::Error::Api(e)) if e.code == 403),
        "{label}: bob before a grant: {denied:?}"
    );
    // Bind the certificate's O (group dev): bob is in.
    bind(
        s,
        "acme",
        "dev-edit",
        "edit",
        json!({"kind": "Group", "name": "dev", "apiGroup": "rbac.authorization.k8s.io"}),
    )?;
    kube_crud(bob, "bob")
        .await
        .with_context(|| format!("{label}: client certificate kubeconfig"))?;
    Ok(())
}

/// `wsgate kubeconfig --client-cert` for `user` in group `group`, in acme.
fn cert_kubeconfig(s: &Server, user: &str, group: &str) -> Result<PathBuf> {
    let yaml = s.wsgate(&[
        "kubeconfig",
        "--workspace",
        "acme",
        "--user",
        user,
        "--group",
        group,
        "--client-cert",
        "--ttl",
        "1h",
    ])?;
    ensure!(
        yaml.contains("client-certificate-data") && !yaml.contains("token"),
        "{yaml}"
    );
    let path = s.data_dir().join(format!("{user}-cert.kubeconfig"));
    std::fs::write(&path, yaml)?;
    Ok(path)
}

fn kubectl_with_cert(s: &Server, label: &str) -> Result<()> {
    let Some(bin) = kubectl_or_skip("kubectl_with_client_certificate") else {
        return Ok(());
    };
    let k = Kubectl::with_kubeconfig(bin, cert_kubeconfig(s, "dave", "dev")?)?;
    let who = k.ok(&["auth", "whoami", "-o", "json"])?;
    let v: Value = serde_json::from_str(&who)?;
    let groups = v["status"]["userInfo"]["groups"].to_string();
    ensure!(
        v["status"]["userInfo"]["username"] == "dave" && groups.contains("\"dev\""),
        "{label}: {who}"
    );
    k.ok(&[
        "create",
        "configmap",
        "from-kubectl",
        "-n",
        "default",
        "--from-literal=a=b",
    ])?;
    let out = k.ok(&["get", "configmaps", "-n", "default", "-o", "name"])?;
    ensure!(out.contains("configmap/from-kubectl"), "{label}: {out}");
    // The bootstrap roles as kubectl shows them.
    let roles = k.run(&["get", "clusterroles"])?;
    ensure!(
        !roles.success,
        "{label}: dev may not list clusterroles: {roles:?}"
    );
    let admin_k = Kubectl::with_kubeconfig(
        kubectl_or_skip("kubectl_with_client_certificate").context("kubectl")?,
        s.kubeconfig("acme", None)?,
    )?;
    let roles = admin_k.ok(&["get", "clusterroles"])?;
    for want in ["cluster-admin", "admin", "edit", "view"] {
        ensure!(
            roles.lines().any(|l| l.starts_with(&format!("{want} "))),
            "{label}: {roles}"
        );
    }
    let yaml = admin_k.ok(&["get", "clusterrole", "admin", "-o", "yaml"])?;
    ensure!(
        yaml.contains("aggregationRule") && yaml.contains("rules:"),
        "{label}: {yaml}"
    );
    Ok(())
}

/// The audit log at `requestresponse`: bodies, source IPs, no Secret value.
fn audit(s: &Server, label: &str, log: &Path) -> Result<()> {
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"},
        "data": {"password": SECRET_VALUE}});
    let path = "/clusters/acme/api/v1/namespaces/default/secrets";
    created(
        &send(s, "POST", path, Some(JSON), Some(&secret), &admin(s))?,
        "secret",
    )?;
    ensure!(send(s, "GET", &format!("{path}/s1"), None, None, &admin(s))?.status == 200);
    ensure!(send(s, "GET", path, None, None, &admin(s))?.status == 200);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "audited"}, "data": {"k": "visible"}});
    let cms = "/clusters/acme/api/v1/namespaces/default/configmaps";
    created(
        &send(s, "POST", cms, Some(JSON), Some(&cm), &admin(s))?,
        "configmap",
    )?;
    // The writer flushes each batch; give it a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("\"audited\"") || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    ensure!(
        !text.contains(SECRET_VALUE),
        "{label}: a Secret value is in the audit log"
    );
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let create = events
        .iter()
        .find(|e| {
            e["verb"] == "create"
                && (e["objectRef"]["name"] == "audited"
                    || e["requestObject"]["metadata"]["name"] == "audited")
        })
        .with_context(|| format!("{label}: no event for the ConfigMap create"))?;
    ensure!(create["level"] == "RequestResponse", "{label}: {create}");
    ensure!(
        create["requestObject"]["data"]["k"] == "visible",
        "{label}: {create}"
    );
    ensure!(
        create["responseObject"]["metadata"]["uid"].is_string(),
        "{label}: {create}"
    );
    ensure!(
        create["sourceIPs"] == json!(["127.0.0.1"]),
        "{label}: {create}"
    );
    let secret_get = events
        .iter()
        .find(|e| e["verb"] == "get" && e["objectRef"]["resource"] == "secrets")
        .with_context(|| format!("{label}: no event for the Secret get"))?;
    ensure!(
        secret_get["responseObject"]["data"]["password"] == "<redacted>",
        "{label}: {secret_get}"
    );
    Ok(())
}

async fn scenario(engine: Engine, label: &str) -> Result<()> {
    let audit_dir = tempfile::tempdir()?;
    let log = audit_dir.path().join("audit.log");
    let log_arg = log.display().to_string();
    let s = Server::start_tls_with(
        engine,
        &["--audit-log", &log_arg, "--audit-level", "requestresponse"],
    )?;
    create_workspace(&s, "root", "acme")?;
    create_workspace(&s, "root", "acme2")?;
    create_workspace(&s, "acme", "kid")?;
    let alice_acme = user_token(&s, "alice", &["acme"])?;
    let alice_acme2 = user_token(&s, "alice", &["acme2"])?;
    bind(
        &s,
        "acme",
        "alice-edit",
        "edit",
        json!({"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}),
    )?;

    indistinguishable(&s, label)?;
    reviews(&s, label, &alice_acme, &alice_acme2)?;
    bootstrap_roles(&s, label)?;
    kube_clients(&s, label, &alice_acme).await?;
    kubectl_with_cert(&s, label)?;
    audit(&s, label, &log)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_embedded() -> Result<()> {
    scenario(Engine::Embedded, "embedded").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_etcd() -> Result<()> {
    let Some(etcd) = etcd_or_skip("security_etcd") else {
        return Ok(());
    };
    scenario(Engine::Etcd(etcd), "etcd").await
}
