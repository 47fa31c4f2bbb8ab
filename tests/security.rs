//! Security end to end, over HTTPS only: the generated admin kubeconfig,
//! user tokens from `wsgate token create`, workspace scopes, RBAC (with
//! resourceNames and subresources), escalation checks, `kubectl auth
//! can-i|whoami`, `kubectl create token` and ServiceAccount tokens, forged
//! and broken tokens, anonymous access. Plus operations: `/metrics`,
//! `Audit-Id`, the audit log, SIGTERM and restart.
//!
//! The RBAC, token and ServiceAccount cases run on both engines (etcd
//! cases skip loudly when etcd is missing). kubectl parts skip loudly when
//! kubectl is missing (a failure under `CI`).

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine as _;
use serde_json::{Value, json};
use wsgate_e2e::{Engine, Kubectl, RawResponse, Server, etcd_or_skip, kubectl_or_skip};

const JSON: (&str, &str) = ("Content-Type", "application/json");

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn json_of(r: &RawResponse) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

/// POST a JSON body with `token`.
fn post(s: &Server, path: &str, body: &Value, token: &str) -> Result<RawResponse> {
    s.https(
        "POST",
        path,
        &[JSON],
        Some(body.to_string().as_bytes()),
        Some(token),
    )
}

fn get(s: &Server, path: &str, token: Option<&str>) -> Result<RawResponse> {
    s.https("GET", path, &[], None, token)
}

fn admin(s: &Server) -> String {
    s.tls().map(|t| t.admin_token.clone()).unwrap_or_default()
}

fn create_workspace(s: &Server, parent: &str, name: &str) -> Result<()> {
    let body = json!({"apiVersion": "tenancy.wsgate.io/v1alpha1", "kind": "Workspace", "metadata": {"name": name}});
    let r = post(
        s,
        &format!("/clusters/{parent}/apis/tenancy.wsgate.io/v1alpha1/workspaces"),
        &body,
        &admin(s),
    )?;
    ensure!(
        r.status == 201,
        "creating {parent}:{name}: {} {}",
        r.status,
        r.text()
    );
    Ok(())
}

fn user_token(s: &Server, user: &str, scope: &[&str]) -> Result<String> {
    let mut args = vec!["token", "create", "--user", user, "--ttl", "1h"];
    for w in scope {
        args.extend(["--workspace", w]);
    }
    s.wsgate(&args)
}

fn expect_status(r: &RawResponse, code: u16, reason: &str) -> Result<()> {
    let v = json_of(r);
    ensure!(
        r.status == code && v["kind"] == "Status" && v["reason"] == reason,
        "expected {code} {reason}, got {} {}",
        r.status,
        r.text()
    );
    Ok(())
}

#[test]
fn admin_kubeconfig_works_out_of_the_box() -> Result<()> {
    let Some(kubectl) = kubectl_or_skip("admin_kubeconfig_works_out_of_the_box") else {
        return Ok(());
    };
    let s = Server::start_tls(Engine::Embedded)?;
    let path = s.data_dir().join("admin.kubeconfig");
    let text = std::fs::read_to_string(&path)?;
    ensure!(text.contains("certificate-authority-data"), "{text}");
    ensure!(
        text.contains(&format!("https://127.0.0.1:{}/clusters/root", s.port)),
        "{text}"
    );
    let k = Kubectl::with_kubeconfig(kubectl, path)?;
    let ns = k.ok(&["get", "ns"])?;
    ensure!(ns.contains("default"), "{ns}");
    let who = k.ok(&["auth", "whoami"])?;
    ensure!(
        who.contains("wsgate-admin") && who.contains("system:masters"),
        "{who}"
    );
    // `wsgate kubeconfig` prints an equivalent kubeconfig for a workspace.
    create_workspace(&s, "root", "acme")?;
    let printed = s.wsgate(&["kubeconfig", "--workspace", "acme", "--server", &s.url()])?;
    ensure!(printed.contains("/clusters/acme"), "{printed}");
    let file = s.data_dir().join("printed.kubeconfig");
    std::fs::write(&file, printed)?;
    let k = Kubectl::with_kubeconfig(k_bin()?, file)?;
    k.ok(&["create", "configmap", "hello", "--from-literal=a=b"])?;
    ensure!(k.ok(&["get", "cm"])?.contains("hello"));
    Ok(())
}

fn k_bin() -> Result<std::path::PathBuf> {
    kubectl_or_skip("kubectl").context("kubectl")
}

#[test]
fn user_tokens_scopes_rbac_and_escalation() -> Result<()> {
    user_tokens_scopes_rbac_and_escalation_on(Engine::Embedded)
}

#[test]
fn user_tokens_scopes_rbac_and_escalation_etcd() -> Result<()> {
    match etcd_or_skip("user_tokens_scopes_rbac_and_escalation_etcd") {
        Some(etcd) => user_tokens_scopes_rbac_and_escalation_on(Engine::Etcd(etcd)),
        None => Ok(()),
    }
}

fn user_tokens_scopes_rbac_and_escalation_on(engine: Engine) -> Result<()> {
    let Some(kubectl) = kubectl_or_skip("user_tokens_scopes_rbac_and_escalation") else {
        return Ok(());
    };
    let s = Server::start_tls(engine)?;
    create_workspace(&s, "root", "acme")?;
    create_workspace(&s, "root", "acme2")?;
    create_workspace(&s, "acme", "child")?;
    let alice = user_token(&s, "alice", &["acme"])?;
    let as_admin = Kubectl::with_kubeconfig(kubectl.clone(), s.kubeconfig("acme", None)?)?;
    let as_alice = Kubectl::with_kubeconfig(kubectl.clone(), s.kubeconfig("acme", Some(&alice))?)?;

    // Forbidden until a RoleBinding grants edit: without any grant in the
    // workspace even discovery is refused (no access grant).
    let denied = as_alice.run(&["get", "configmaps", "-n", "default"])?;
    ensure!(
        !denied.success && denied.stderr.to_lowercase().contains("forbidden"),
        "{denied:?}"
    );
    let r = get(
        &s,
        "/clusters/acme/api/v1/namespaces/default/configmaps",
        Some(&alice),
    )?;
    expect_status(&r, 403, "Forbidden")?;
    ensure!(
        json_of(&r)["message"]
            == "configmaps is forbidden: User \"alice\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\": no access grant in workspace \"acme\"",
        "{}",
        r.text()
    );
    let no = as_alice.run(&["auth", "can-i", "list", "configmaps", "-n", "default"])?;
    ensure!(!no.success, "{no:?}");

    as_admin.ok(&[
        "create",
        "rolebinding",
        "alice-edit",
        "--clusterrole=edit",
        "--user=alice",
        "-n",
        "default",
    ])?;
    as_alice.ok(&[
        "create",
        "configmap",
        "mine",
        "--from-literal=k=v",
        "-n",
        "default",
    ])?;
    ensure!(
        as_alice
            .ok(&["get", "configmaps", "-n", "default"])?
            .contains("mine")
    );
    let yes = as_alice.run(&["auth", "can-i", "create", "configmaps", "-n", "default"])?;
    ensure!(yes.code == Some(0) && yes.stdout.trim() == "yes", "{yes:?}");
    let other = as_alice.run(&["auth", "can-i", "create", "configmaps", "-n", "other"])?;
    ensure!(other.code == Some(1), "{other:?}");
    let list = as_alice.ok(&["auth", "can-i", "--list", "-n", "default"])?;
    ensure!(list.contains("configmaps"), "{list}");
    let who = as_alice.ok(&["auth", "whoami", "-o", "json"])?;
    let who: Value = serde_json::from_str(&who)?;
    ensure!(who["status"]["userInfo"]["username"] == "alice", "{who}");

    // The same token elsewhere: refused, and an unknown workspace looks the same.
    let refused: Vec<RawResponse> = ["acme2", "acme:child", "does-not-exist"]
        .iter()
        .map(|w| {
            get(
                &s,
                &format!("/clusters/{w}/api/v1/namespaces/default/configmaps"),
                Some(&alice),
            )
        })
        .collect::<Result<_>>()?;
    for r in &refused {
        expect_status(r, 401, "Unauthorized")?;
        ensure!(
            r.body == refused[0].body,
            "{} vs {}",
            r.text(),
            refused[0].text()
        );
    }
    let k2 = Kubectl::with_kubeconfig(kubectl.clone(), s.kubeconfig("acme2", Some(&alice))?)?;
    let o = k2.run(&["get", "configmaps"])?;
    ensure!(
        !o.success && o.stderr.contains("must be logged in"),
        "{o:?}"
    );

    // Escalation: edit cannot write RBAC at all; admin in a namespace can
    // write Roles only within what it holds.
    let star_role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "everything", "namespace": "default"},
        "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]});
    let roles = "/clusters/acme/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles";
    expect_status(&post(&s, roles, &star_role, &alice)?, 403, "Forbidden")?;
    as_admin.ok(&[
        "create",
        "rolebinding",
        "alice-admin",
        "--clusterrole=admin",
        "--user=alice",
        "-n",
        "default",
    ])?;
    let r = post(&s, roles, &star_role, &alice)?;
    expect_status(&r, 403, "Forbidden")?;
    ensure!(
        r.text()
            .contains("attempting to grant RBAC permissions not currently held"),
        "{}",
        r.text()
    );
    let small_role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "cm-reader", "namespace": "default"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]});
    let r = post(&s, roles, &small_role, &alice)?;
    ensure!(r.status == 201, "{} {}", r.status, r.text());
    // Binding cluster-admin is escalation too.
    let bind_admin = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "grab", "namespace": "default"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]});
    expect_status(
        &post(
            &s,
            "/clusters/acme/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
            &bind_admin,
            &alice,
        )?,
        403,
        "Forbidden",
    )?;

    // resourceNames and subresources through HTTP, for bob.
    let bob = user_token(&s, "bob", &["acme"])?;
    let adm = admin(&s);
    for (path, body) in [
        (
            "/clusters/acme/api/v1/namespaces/default/configmaps",
            json!({"metadata": {"name": "two"}, "data": {"x": "y"}}),
        ),
        (
            "/clusters/acme/apis/apps/v1/namespaces/default/deployments",
            json!({"metadata": {"name": "web"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
           "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
        ),
        (
            "/clusters/acme/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles",
            json!({"metadata": {"name": "narrow"}, "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["mine"], "verbs": ["get"]},
            {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get"]}]}),
        ),
        (
            "/clusters/acme/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
            json!({"metadata": {"name": "bob-narrow"},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "narrow"},
           "subjects": [{"kind": "User", "name": "bob", "apiGroup": "rbac.authorization.k8s.io"}]}),
        ),
    ] {
        let r = post(&s, path, &body, &adm)?;
        ensure!(r.status == 201, "{path}: {} {}", r.status, r.text());
    }
    let ns = "/clusters/acme/api/v1/namespaces/default";
    ensure!(get(&s, &format!("{ns}/configmaps/mine"), Some(&bob))?.status == 200);
    expect_status(
        &get(&s, &format!("{ns}/configmaps/two"), Some(&bob))?,
        403,
        "Forbidden",
    )?;
    expect_status(
        &get(&s, &format!("{ns}/configmaps"), Some(&bob))?,
        403,
        "Forbidden",
    )?;
    let deploy = "/clusters/acme/apis/apps/v1/namespaces/default/deployments/web";
    ensure!(get(&s, &format!("{deploy}/scale"), Some(&bob))?.status == 200);
    expect_status(&get(&s, deploy, Some(&bob))?, 403, "Forbidden")?;
    Ok(())
}

/// A token signed with the server's own key but with chosen claims.
fn forge(s: &Server, valid: &str, claims: &Value) -> Result<String> {
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(valid.split('.').next().context("no header")?)?,
    )?;
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = header["kid"].as_str().map(str::to_owned);
    let pem = std::fs::read(s.data_dir().join("pki").join("token-signing.key"))?;
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&pem)?;
    Ok(jsonwebtoken::encode(&h, claims, &key)?)
}

#[test]
fn broken_tokens_and_anonymous_requests() -> Result<()> {
    broken_tokens_and_anonymous_requests_on(Engine::Embedded)
}

#[test]
fn broken_tokens_and_anonymous_requests_etcd() -> Result<()> {
    match etcd_or_skip("broken_tokens_and_anonymous_requests_etcd") {
        Some(etcd) => broken_tokens_and_anonymous_requests_on(Engine::Etcd(etcd)),
        None => Ok(()),
    }
}

fn broken_tokens_and_anonymous_requests_on(engine: Engine) -> Result<()> {
    let s = Server::start_tls(engine)?;
    create_workspace(&s, "root", "acme")?;
    let valid = user_token(&s, "carol", &["*"])?;
    let payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(valid.split('.').nth(1).context("no payload")?)?,
    )?;
    let now = chrono_now();
    let with = |k: &str, v: Value| {
        let mut c = payload.clone();
        c[k] = v;
        c
    };
    let expired = forge(&s, &valid, &with("exp", json!(now - 3600)))?;
    let issuer = forge(&s, &valid, &with("iss", json!("https://evil.example")))?;
    let audience = forge(&s, &valid, &with("aud", json!(["https://other.example"])))?;
    let control = forge(&s, &valid, &payload)?;
    let none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        valid.split('.').nth(1).unwrap_or_default()
    );
    let mut tampered_payload = payload.clone();
    tampered_payload["groups"] = json!(["system:masters"]);
    let parts: Vec<&str> = valid.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64url(tampered_payload.to_string().as_bytes()),
        parts[2]
    );
    let path = "/clusters/acme/api/v1/namespaces";
    // The forging itself works: same claims, fresh signature, accepted
    // (403: carol has no RBAC, but she is authenticated).
    expect_status(&get(&s, path, Some(&control))?, 403, "Forbidden")?;
    for (what, t) in [
        ("expired", expired.as_str()),
        ("wrong issuer", &issuer),
        ("wrong audience", &audience),
        ("alg none", &none),
        ("tampered", &tampered),
        ("garbage", "not-a-jwt"),
    ] {
        let r = get(&s, path, Some(t))?;
        expect_status(&r, 401, "Unauthorized").with_context(|| what.to_owned())?;
        ensure!(
            json_of(&r)["message"] == "Unauthorized",
            "{what}: {}",
            r.text()
        );
    }
    // Anonymous access is off: /version and health are open; everything
    // else is 401, in root as in any workspace (nothing about which
    // workspaces exist).
    ensure!(get(&s, "/version", None)?.status == 200);
    ensure!(get(&s, "/readyz", None)?.status == 200);
    let verbose = get(&s, "/readyz?verbose", None)?;
    ensure!(
        verbose.status == 200 && verbose.text().contains("[+]storage ok"),
        "{}",
        verbose.text()
    );
    expect_status(&get(&s, "/api/v1/namespaces", None)?, 401, "Unauthorized")?;
    expect_status(&get(&s, "/apis", None)?, 401, "Unauthorized")?;
    expect_status(&get(&s, "/openapi/v2", None)?, 401, "Unauthorized")?;
    expect_status(
        &get(&s, "/clusters/acme/api/v1/namespaces", None)?,
        401,
        "Unauthorized",
    )?;
    expect_status(
        &get(&s, "/clusters/nope/api/v1/namespaces", None)?,
        401,
        "Unauthorized",
    )?;
    // Without an access grant in the workspace not even discovery.
    expect_status(
        &get(&s, "/clusters/acme/apis", Some(&valid))?,
        403,
        "Forbidden",
    )?;
    // /clusters/* is for system:masters only.
    let w = get(&s, "/clusters/*/api/v1/configmaps", Some(&valid))?;
    ensure!(w.status == 403, "{} {}", w.status, w.text());
    Ok(())
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

#[test]
fn token_request_and_service_account_tokens() -> Result<()> {
    token_request_and_service_account_tokens_on(Engine::Embedded)
}

#[test]
fn token_request_and_service_account_tokens_etcd() -> Result<()> {
    match etcd_or_skip("token_request_and_service_account_tokens_etcd") {
        Some(etcd) => token_request_and_service_account_tokens_on(Engine::Etcd(etcd)),
        None => Ok(()),
    }
}

fn token_request_and_service_account_tokens_on(engine: Engine) -> Result<()> {
    let Some(kubectl) = kubectl_or_skip("token_request_and_service_account_tokens") else {
        return Ok(());
    };
    let s = Server::start_tls(engine)?;
    create_workspace(&s, "root", "acme")?;
    create_workspace(&s, "root", "acme2")?;
    let as_admin = Kubectl::with_kubeconfig(kubectl, s.kubeconfig("acme", None)?)?;
    as_admin.ok(&[
        "create",
        "configmap",
        "in-acme",
        "--from-literal=a=b",
        "-n",
        "default",
    ])?;
    as_admin.ok(&[
        "create",
        "rolebinding",
        "sa-view",
        "--clusterrole=view",
        "--serviceaccount=default:default",
        "-n",
        "default",
    ])?;
    let token = as_admin.ok(&["create", "token", "default", "-n", "default"])?;
    let token = token.trim();
    ensure!(token.split('.').count() == 3, "{token}");

    let in_acme = get(
        &s,
        "/clusters/acme/api/v1/namespaces/default/configmaps",
        Some(token),
    )?;
    ensure!(
        in_acme.status == 200,
        "{} {}",
        in_acme.status,
        in_acme.text()
    );
    ensure!(in_acme.text().contains("in-acme"));
    expect_status(
        &get(
            &s,
            "/clusters/acme2/api/v1/namespaces/default/configmaps",
            Some(token),
        )?,
        401,
        "Unauthorized",
    )?;
    // Without /clusters/: its own workspace, never root.
    let bare = get(&s, "/api/v1/namespaces/default/configmaps", Some(token))?;
    ensure!(
        bare.status == 200 && bare.text().contains("in-acme"),
        "{} {}",
        bare.status,
        bare.text()
    );
    let me = post(
        &s,
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
        token,
    )?;
    ensure!(me.status == 201, "{}", me.text());
    ensure!(
        json_of(&me)["status"]["userInfo"]["username"] == "system:serviceaccount:default:default"
    );

    // TokenRequest errors: unknown ServiceAccount 404, expiry under 600 s 422.
    let adm = admin(&s);
    let tr = |secs: i64| json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": secs}});
    expect_status(
        &post(
            &s,
            "/clusters/acme/api/v1/namespaces/default/serviceaccounts/ghost/token",
            &tr(3600),
            &adm,
        )?,
        404,
        "NotFound",
    )?;
    expect_status(
        &post(
            &s,
            "/clusters/acme/api/v1/namespaces/default/serviceaccounts/default/token",
            &tr(60),
            &adm,
        )?,
        422,
        "Invalid",
    )?;
    // Deleting the ServiceAccount invalidates its tokens.
    as_admin.ok(&["create", "serviceaccount", "robot", "-n", "default"])?;
    as_admin.ok(&[
        "create",
        "rolebinding",
        "robot-view",
        "--clusterrole=view",
        "--serviceaccount=default:robot",
        "-n",
        "default",
    ])?;
    let robot = as_admin.ok(&["create", "token", "robot", "-n", "default"])?;
    let robot = robot.trim();
    let cms = "/clusters/acme/api/v1/namespaces/default/configmaps";
    ensure!(get(&s, cms, Some(robot))?.status == 200);
    as_admin.ok(&[
        "delete",
        "serviceaccount",
        "robot",
        "-n",
        "default",
        "--wait=false",
    ])?;
    // Lookups are cached for a few seconds.
    std::thread::sleep(Duration::from_secs(6));
    let after = get(&s, cms, Some(robot))?;
    if after.status != 401 {
        bail!(
            "token of a deleted ServiceAccount still works: {}",
            after.status
        );
    }
    Ok(())
}

#[test]
fn metrics_audit_and_graceful_restart() -> Result<()> {
    let audit_dir = tempfile::tempdir()?;
    let audit = audit_dir.path().join("audit.log");
    let audit_arg = audit.display().to_string();
    let mut s = Server::start_tls_with(Engine::Embedded, &["--audit-log", &audit_arg])?;
    let adm = admin(&s);
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
        "stringData": {"password": "hunter2-very-secret"}});
    let r = post(&s, "/api/v1/namespaces/default/secrets", &secret, &adm)?;
    ensure!(r.status == 201, "{}", r.text());
    ensure!(
        r.header("Audit-Id").is_some_and(|v| v.len() >= 16),
        "{:?}",
        r.headers
    );
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keep"}, "data": {"a": "b"}});
    ensure!(post(&s, "/api/v1/namespaces/default/configmaps", &cm, &adm)?.status == 201);

    let m = get(&s, "/metrics", Some(&adm))?;
    ensure!(m.status == 200, "{} {}", m.status, m.text());
    let text = m.text();
    ensure!(
        text.lines().any(|l| l.starts_with("wsgate_requests_total{")
            && l.contains("resource=\"secrets\"")
            && l.contains("code=\"201\"")),
        "{text}"
    );
    expect_status(&get(&s, "/metrics", None)?, 403, "Forbidden")?;
    let alice = user_token(&s, "alice", &["*"])?;
    expect_status(&get(&s, "/metrics", Some(&alice))?, 403, "Forbidden")?;

    let status = s.terminate(Duration::from_secs(20))?;
    ensure!(status.success(), "exit status after SIGTERM: {status}");
    let log = std::fs::read_to_string(&audit)?;
    ensure!(log.lines().count() >= 2, "{log}");
    ensure!(
        log.contains("\"secrets\"") && log.contains("wsgate-admin"),
        "{log}"
    );
    ensure!(
        !log.contains("hunter2"),
        "the audit log holds a Secret value"
    );
    for line in log.lines() {
        serde_json::from_str::<Value>(line).with_context(|| line.to_owned())?;
    }

    s.restart()?;
    let adm = admin(&s);
    let r = get(&s, "/api/v1/namespaces/default/configmaps/keep", Some(&adm))?;
    ensure!(r.status == 200, "after restart: {} {}", r.status, r.text());
    Ok(())
}

/// `kubectl --as` / `--as-group`: the request runs as the impersonated
/// identity when the workspace's RBAC grants `impersonate` on it, never as
/// the caller; without that grant it is 403; groups without a user are 400;
/// a token bound to one workspace stays bound when impersonating; the
/// audit event names both identities.
#[test]
fn impersonation_runs_as_the_other_user_only_when_allowed() -> Result<()> {
    let Some(kubectl) = kubectl_or_skip("impersonation_runs_as_the_other_user_only_when_allowed")
    else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let audit = dir.path().join("audit.log");
    let audit_arg = audit.to_str().context("path")?.to_owned();
    let s = Server::start_tls_with(
        Engine::Embedded,
        &["--audit-log", &audit_arg, "--allow-wildcard"],
    )?;
    create_workspace(&s, "root", "imp")?;
    create_workspace(&s, "root", "other")?;
    let admin_k = Kubectl::with_kubeconfig(kubectl.clone(), s.kubeconfig("imp", None)?)?;
    admin_k.ok(&["create", "role", "reader", "--verb=get", "--resource=pods"])?;
    admin_k.ok(&[
        "create",
        "rolebinding",
        "bob-reads",
        "--role=reader",
        "--user=bob",
    ])?;

    // The admin (system:masters) may impersonate anybody: bob's rights, not
    // the admin's, decide.
    let can = |k: &Kubectl, args: &[&str]| -> Result<String> {
        let o = k.run(&[&["auth", "can-i"], args].concat())?;
        Ok(o.stdout.trim().to_owned())
    };
    ensure!(can(&admin_k, &["get", "pods", "--as=bob"])? == "yes");
    ensure!(can(&admin_k, &["list", "pods", "--as=bob"])? == "no");
    ensure!(can(&admin_k, &["list", "pods"])? == "yes");
    let o = admin_k.run(&["get", "pods", "--as=bob"])?;
    ensure!(
        !o.success
            && o.stderr
                .contains("User \"bob\" cannot list resource \"pods\""),
        "{} {}",
        o.stdout,
        o.stderr
    );
    let who = admin_k.ok(&["auth", "whoami", "--as=bob", "--as-group=dev", "-o", "json"])?;
    let who: Value = serde_json::from_str(&who)?;
    ensure!(
        who["status"]["userInfo"]["username"] == "bob"
            && who["status"]["userInfo"]["groups"] == json!(["dev", "system:authenticated"]),
        "{who}"
    );
    // A service account: its groups come with it. (It needs an access
    // grant in the workspace like any identity.)
    admin_k.ok(&[
        "create",
        "rolebinding",
        "robot-reads",
        "--role=reader",
        "--serviceaccount=default:robot",
    ])?;
    let who = admin_k.ok(&[
        "auth",
        "whoami",
        "--as=system:serviceaccount:default:robot",
        "-o",
        "json",
    ])?;
    let who: Value = serde_json::from_str(&who)?;
    ensure!(
        who["status"]["userInfo"]["groups"]
            == json!([
                "system:serviceaccounts",
                "system:serviceaccounts:default",
                "system:authenticated"
            ]),
        "{who}"
    );

    // alice, with access to the workspace but no impersonate grant: 403.
    let alice = user_token(&s, "alice", &["imp"])?;
    admin_k.ok(&[
        "create",
        "rolebinding",
        "alice-reads",
        "--role=reader",
        "--user=alice",
    ])?;
    let alice_k = Kubectl::with_kubeconfig(kubectl.clone(), s.kubeconfig("imp", Some(&alice))?)?;
    let o = alice_k.run(&["get", "pods", "--as=bob"])?;
    ensure!(
        !o.success && o.stderr.contains("Forbidden"),
        "{} {}",
        o.stdout,
        o.stderr
    );
    // (kubectl's discovery client prints such a 403 as "unknown"; the
    // Status itself names what is missing.)
    let pods = "/clusters/imp/api/v1/namespaces/default/pods";
    let as_ = |user: &str, group: Option<&str>| -> Result<RawResponse> {
        let mut h = vec![("Impersonate-User", user)];
        if let Some(g) = group {
            h.push(("Impersonate-Group", g));
        }
        s.https("GET", pods, &h, None, Some(&alice))
    };
    let r = as_("bob", None)?;
    expect_status(&r, 403, "Forbidden")?;
    ensure!(
        json_of(&r)["message"]
            == "users \"bob\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope",
        "{}",
        r.text()
    );
    // Users are cluster-scoped: a namespaced Role cannot grant it; a
    // ClusterRole limited to bob (resourceNames) lets her act as bob and
    // nobody else.
    for (kind, binding, role) in [
        ("role", "rolebinding", "--role=as-bob"),
        ("clusterrole", "clusterrolebinding", "--clusterrole=as-bob"),
    ] {
        admin_k.ok(&[
            "create",
            kind,
            "as-bob",
            "--verb=impersonate",
            "--resource=users",
            "--resource-name=bob",
        ])?;
        admin_k.ok(&["create", binding, "alice-as-bob", role, "--user=alice"])?;
        if kind == "role" {
            expect_status(&as_("bob", None)?, 403, "Forbidden")?;
        }
    }
    ensure!(can(&alice_k, &["get", "pods", "--as=bob"])? == "yes");
    ensure!(can(&alice_k, &["list", "pods", "--as=bob"])? == "no");
    // As bob she gets bob's answer (403 on list), not the impersonation's.
    let r = as_("bob", None)?;
    expect_status(&r, 403, "Forbidden")?;
    ensure!(
        json_of(&r)["message"]
            .as_str()
            .is_some_and(|m| m.contains("User \"bob\" cannot list resource \"pods\"")),
        "{}",
        r.text()
    );
    let r = as_("carol", None)?;
    ensure!(
        json_of(&r)["message"]
            .as_str()
            .unwrap_or("")
            .contains("cannot impersonate resource \"users\""),
        "{}",
        r.text()
    );
    // ... and not as bob in a group she may not impersonate.
    let r = as_("bob", Some("system:masters"))?;
    expect_status(&r, 403, "Forbidden")?;
    ensure!(
        json_of(&r)["message"]
            .as_str()
            .unwrap_or("")
            .contains("cannot impersonate resource \"groups\""),
        "{}",
        r.text()
    );

    // Her token is bound to `imp`: impersonating does not open `other`.
    let r = s.https(
        "GET",
        "/clusters/other/api/v1/namespaces/default/configmaps",
        &[("Impersonate-User", "bob")],
        None,
        Some(&alice),
    )?;
    ensure!(r.status == 401, "{} {}", r.status, r.text());

    // /clusters/* is system:masters' only, also when they impersonate:
    // bob may list configmaps in root, yet not in every workspace.
    let root_k = Kubectl::with_kubeconfig(kubectl.clone(), s.kubeconfig("root", None)?)?;
    root_k.ok(&[
        "create",
        "clusterrole",
        "cm-lister",
        "--verb=list",
        "--resource=configmaps",
    ])?;
    root_k.ok(&[
        "create",
        "clusterrolebinding",
        "bob-lists",
        "--clusterrole=cm-lister",
        "--user=bob",
    ])?;
    let r = s.https(
        "GET",
        "/clusters/root/api/v1/configmaps",
        &[("Impersonate-User", "bob")],
        None,
        Some(&admin(&s)),
    )?;
    ensure!(
        r.status == 200,
        "bob lists in root: {} {}",
        r.status,
        r.text()
    );
    let every = "/clusters/*/api/v1/configmaps";
    let r = s.https("GET", every, &[], None, Some(&admin(&s)))?;
    ensure!(r.status == 200, "{} {}", r.status, r.text());
    let r = s.https(
        "GET",
        every,
        &[("Impersonate-User", "bob")],
        None,
        Some(&admin(&s)),
    )?;
    expect_status(&r, 403, "Forbidden")?;

    // Groups without a user: the client's mistake, 400.
    let r = s.https(
        "GET",
        "/clusters/imp/api/v1/namespaces/default/pods",
        &[("Impersonate-Group", "dev")],
        None,
        Some(&admin(&s)),
    )?;
    expect_status(&r, 400, "BadRequest")?;

    // The audit event carries the caller and the impersonated user.
    let mut s = s;
    s.terminate(Duration::from_secs(20))?;
    let log = std::fs::read_to_string(&audit)?;
    let seen = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .any(|e| {
            e["user"]["username"] == "alice"
                && e["impersonatedUser"]["username"] == "bob"
                && e["objectRef"]["resource"] == "pods"
        });
    ensure!(seen, "no audit event of alice acting as bob:\n{log}");
    Ok(())
}
