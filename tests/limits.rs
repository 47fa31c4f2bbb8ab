//! Per-workspace limits through the real binary over HTTP: the object-count
//! quota (403 at the limit, recovery after a delete, a per-workspace
//! override, custom resources of every kind counted together), the object size limit (413 on create and on a patch that
//! grows an object), the configured body limit (413), and the per-user watch
//! limit (429 with Retry-After, freed when a watch ends), and fair
//! admission of reads (a noisy workspace gets 429 with Retry-After while a
//! quiet workspace's requests all succeed).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use wsgate_e2e::{Engine, RawResponse, Server, etcd_or_skip};

const DEFAULT_QUOTA: u64 = 25;
const ROOMY_QUOTA: u64 = 40;
/// `limits.max_body_bytes` in the test config: below the 3 MiB default, so
/// a 413 for a body between the two proves the configured value is used.
const BODY_LIMIT: u64 = 256 << 10;

fn config_file(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let path = dir.join("limits.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[limits]
default_object_quota = {DEFAULT_QUOTA}
max_object_bytes = "64KiB"
max_body_bytes = "{BODY_LIMIT}"
max_watches_per_user = 2
max_watches_per_workspace = 100

[limits.workspaces."roomy"]
object_quota = {ROOMY_QUOTA}
"#
        ),
    )?;
    Ok(path)
}

fn start(engine: Engine, dir: &std::path::Path) -> Result<Server> {
    let config = config_file(dir)?;
    let config = config.to_str().context("utf-8 path")?;
    Server::start_with(engine, &["--config", config])
}

fn json_of(r: &RawResponse) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

fn expect_status(r: &RawResponse, code: u16, reason: &str) -> Result<Value> {
    let v = json_of(r);
    ensure!(
        r.status == code && v["kind"] == "Status" && v["reason"] == reason,
        "expected {code} {reason}, got {} {}",
        r.status,
        r.text()
    );
    Ok(v)
}

fn post(s: &Server, path: &str, body: &Value) -> Result<RawResponse> {
    s.request(
        "POST",
        path,
        &[("Content-Type", "application/json")],
        Some(body.to_string().as_bytes()),
    )
}

fn configmap(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
}

/// Creates ConfigMaps in `ws` until the quota refuses one; returns how
/// many were created and the refusal.
fn fill(s: &Server, ws: &str, max: u64) -> Result<(u64, RawResponse)> {
    let path = format!("/clusters/{ws}/api/v1/namespaces/default/configmaps");
    for i in 0..=max {
        let r = post(s, &path, &configmap(&format!("cm-{i}")))?;
        match r.status {
            201 => {}
            403 => return Ok((i, r)),
            _ => bail!("creating cm-{i} in {ws}: {} {}", r.status, r.text()),
        }
    }
    bail!("{ws}: {} creates were all accepted (quota {max})", max + 1)
}

fn quota(s: &Server, engine: &str) -> Result<()> {
    s.create_workspace("acme")?;
    s.create_workspace("roomy")?;
    let (created, refused) = fill(s, "acme", DEFAULT_QUOTA)?;
    ensure!(created > 0, "[{engine}] the new workspace was full already");
    let v = expect_status(&refused, 403, "Forbidden")?;
    let msg = v["message"].as_str().unwrap_or("");
    let want = format!(
        "exceeded quota: objects in workspace acme: limit {DEFAULT_QUOTA}, used {DEFAULT_QUOTA}"
    );
    ensure!(
        msg.contains(&want),
        "[{engine}] message {msg:?} lacks {want:?}"
    );
    ensure!(
        msg.starts_with(&format!("configmaps \"cm-{created}\" is forbidden")),
        "[{engine}] message {msg:?}"
    );

    // Every resource counts against the same quota.
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}});
    let r = post(
        s,
        "/clusters/acme/api/v1/namespaces/default/secrets",
        &secret,
    )?;
    expect_status(&r, 403, "Forbidden")?;

    // A delete frees one place, exactly one.
    let r = s.request(
        "DELETE",
        "/clusters/acme/api/v1/namespaces/default/configmaps/cm-0",
        &[],
        None,
    )?;
    ensure!(
        r.status == 200,
        "[{engine}] delete: {} {}",
        r.status,
        r.text()
    );
    let r = post(
        s,
        "/clusters/acme/api/v1/namespaces/default/secrets",
        &secret,
    )?;
    ensure!(
        r.status == 201,
        "[{engine}] after a delete: {} {}",
        r.status,
        r.text()
    );
    let r = post(
        s,
        "/clusters/acme/api/v1/namespaces/default/configmaps",
        &configmap("one-too-many"),
    )?;
    expect_status(&r, 403, "Forbidden")?;

    // A create by PUT or by server-side apply takes a place like a POST,
    // while updates of existing objects go on in a full workspace.
    creates_by_put_and_apply_count(s, engine)?;

    // The override: "roomy" holds ROOMY_QUOTA objects.
    let (roomy, refused) = fill(s, "roomy", ROOMY_QUOTA)?;
    ensure!(
        roomy == created + (ROOMY_QUOTA - DEFAULT_QUOTA),
        "[{engine}] roomy took {roomy} objects, acme {created}: the override should add {}",
        ROOMY_QUOTA - DEFAULT_QUOTA
    );
    let v = expect_status(&refused, 403, "Forbidden")?;
    ensure!(
        v["message"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("workspace roomy: limit {ROOMY_QUOTA}")),
        "[{engine}] {v}"
    );
    Ok(())
}

/// `acme` is full: PUT and apply of a new object are refused with the
/// quota message (no object appears), PUT and apply of an existing one
/// succeed, and a dry-run create is refused too.
fn creates_by_put_and_apply_count(s: &Server, engine: &str) -> Result<()> {
    let base = "/clusters/acme/api/v1/namespaces/default/configmaps";
    let send = |method: &str, path: &str, content_type: &str, body: &Value| {
        s.request(
            method,
            path,
            &[("Content-Type", content_type)],
            Some(body.to_string().as_bytes()),
        )
    };
    let configmap = |name: &str, value: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name}, "data": {"k": value}})
    };
    let apply = |name: &str, value: &str| {
        send(
            "PATCH",
            &format!("{base}/{name}?fieldManager=quota-test&force=true"),
            "application/apply-patch+yaml",
            &configmap(name, value),
        )
    };
    let put = |name: &str, value: &str| {
        send(
            "PUT",
            &format!("{base}/{name}"),
            "application/json",
            &configmap(name, value),
        )
    };
    // ConfigMaps are not created by PUT (upstream's AllowCreateOnUpdate is
    // false for them); Leases are.
    let leases = "/clusters/acme/apis/coordination.k8s.io/v1/namespaces/default/leases";
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "by-put"}, "spec": {"holderIdentity": "a"}});
    let put_lease = send(
        "PUT",
        &format!("{leases}/by-put"),
        "application/json",
        &lease,
    )?;
    for (how, r) in [("PUT", put_lease), ("apply", apply("by-apply", "v")?)] {
        let v = expect_status(&r, 403, "Forbidden")
            .with_context(|| format!("[{engine}] create by {how} in a full workspace"))?;
        ensure!(
            v["message"]
                .as_str()
                .unwrap_or("")
                .contains("exceeded quota: objects in workspace acme"),
            "[{engine}] {how}: {v}"
        );
    }
    for path in [format!("{leases}/by-put"), format!("{base}/by-apply")] {
        let r = s.request("GET", &path, &[], None)?;
        ensure!(
            r.status == 404,
            "[{engine}] a refused create left {path}: {} {}",
            r.status,
            r.text()
        );
    }
    let r = send(
        "PATCH",
        &format!("{base}/by-apply-dry?fieldManager=quota-test&dryRun=All"),
        "application/apply-patch+yaml",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "by-apply-dry"}}),
    )?;
    expect_status(&r, 403, "Forbidden").with_context(|| format!("[{engine}] dry-run apply"))?;
    for (how, r) in [
        ("PUT", put("cm-1", "updated")?),
        ("apply", apply("cm-2", "applied")?),
    ] {
        ensure!(
            r.status == 200 && json_of(&r)["data"]["k"] != "v",
            "[{engine}] {how} of an existing object in a full workspace: {} {}",
            r.status,
            r.text()
        );
    }
    Ok(())
}

const KINDS_GROUP: &str = "kinds.example.com";

fn crd(plural: &str, kind: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{KINDS_GROUP}")},
        "spec": {
            "group": KINDS_GROUP,
            "scope": "Namespaced",
            "names": {"plural": plural, "kind": kind},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    })
}

/// The quota counts custom resources of every kind the workspace serves:
/// a workspace filled with one kind refuses a create of another kind.
fn custom_kinds(s: &Server, engine: &str) -> Result<()> {
    s.create_workspace("kinds")?;
    for (plural, kind) in [("widgets", "Widget"), ("gadgets", "Gadget")] {
        let r = post(
            s,
            "/clusters/kinds/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            &crd(plural, kind),
        )?;
        ensure!(
            r.status == 201,
            "[{engine}] CRD {plural}: {} {}",
            r.status,
            r.text()
        );
    }
    let base = format!("/clusters/kinds/apis/{KINDS_GROUP}/v1/namespaces/default");
    let object = |kind: &str, name: &str| json!({"apiVersion": format!("{KINDS_GROUP}/v1"), "kind": kind, "metadata": {"name": name}});
    let mut widgets = 0;
    loop {
        ensure!(
            widgets <= DEFAULT_QUOTA,
            "[{engine}] {widgets} widgets created under a quota of {DEFAULT_QUOTA}"
        );
        let r = post(
            s,
            &format!("{base}/widgets"),
            &object("Widget", &format!("w-{widgets}")),
        )?;
        match r.status {
            201 => widgets += 1,
            403 => break,
            _ => bail!("[{engine}] widget w-{widgets}: {} {}", r.status, r.text()),
        }
    }
    ensure!(widgets > 0, "[{engine}] no widget fitted");
    // Full of widgets: a gadget is refused with the quota's message.
    let r = post(s, &format!("{base}/gadgets"), &object("Gadget", "g-0"))?;
    let v = expect_status(&r, 403, "Forbidden")?;
    let msg = v["message"].as_str().unwrap_or("");
    ensure!(
        msg.starts_with(&format!("gadgets.{KINDS_GROUP} \"g-0\" is forbidden"))
            && msg.contains(&format!(
                "exceeded quota: objects in workspace kinds: limit {DEFAULT_QUOTA}, used {DEFAULT_QUOTA}"
            )),
        "[{engine}] {msg}"
    );
    // Deleting a widget makes room for exactly one gadget.
    let r = s.request("DELETE", &format!("{base}/widgets/w-0"), &[], None)?;
    ensure!(
        r.status == 200,
        "[{engine}] delete w-0: {} {}",
        r.status,
        r.text()
    );
    let r = post(s, &format!("{base}/gadgets"), &object("Gadget", "g-0"))?;
    ensure!(
        r.status == 201,
        "[{engine}] a gadget after the delete: {} {}",
        r.status,
        r.text()
    );
    let r = post(s, &format!("{base}/gadgets"), &object("Gadget", "g-1"))?;
    expect_status(&r, 403, "Forbidden")?;
    Ok(())
}

fn sizes(s: &Server, engine: &str) -> Result<()> {
    s.create_workspace("sizes")?;
    let base = "/clusters/sizes/api/v1/namespaces/default/configmaps";
    // 100 KiB of data: a small body, but over the 64 KiB object limit.
    let big = "x".repeat(100 << 10);
    let mut cm = configmap("big");
    cm["data"]["k"] = json!(big);
    let r = post(s, base, &cm)?;
    let v = expect_status(&r, 413, "RequestEntityTooLarge")?;
    ensure!(v["code"] == 413, "[{engine}] Status code field: {v}");
    let r = s.request("GET", &format!("{base}/big"), &[], None)?;
    ensure!(r.status == 404, "[{engine}] the big object was stored");

    // A patch that grows an object past the limit is refused, and the
    // object stays as it was.
    let r = post(s, base, &configmap("grows"))?;
    ensure!(
        r.status == 201,
        "[{engine}] create: {} {}",
        r.status,
        r.text()
    );
    let patch = json!({"data": {"k": big}});
    let r = s.request(
        "PATCH",
        &format!("{base}/grows"),
        &[("Content-Type", "application/merge-patch+json")],
        Some(patch.to_string().as_bytes()),
    )?;
    expect_status(&r, 413, "RequestEntityTooLarge")?;
    let r = s.request("GET", &format!("{base}/grows"), &[], None)?;
    ensure!(
        json_of(&r)["data"]["k"] == "v",
        "[{engine}] the patch was applied: {}",
        r.text()
    );
    // An update too.
    let mut grown = json_of(&r);
    grown["data"]["k"] = json!(big);
    let r = s.request(
        "PUT",
        &format!("{base}/grows"),
        &[("Content-Type", "application/json")],
        Some(grown.to_string().as_bytes()),
    )?;
    expect_status(&r, 413, "RequestEntityTooLarge")?;

    // The request body limit from the config (256 KiB, not the 3 MiB
    // default): a 300 KiB body is refused for its size as a body, before it
    // is decoded, and the message names the configured limit.
    let mut huge = configmap("huge");
    huge["data"]["k"] = json!("y".repeat(300 << 10));
    let r = post(s, base, &huge)?;
    let v = expect_status(&r, 413, "RequestEntityTooLarge")?;
    let msg = v["message"].as_str().unwrap_or_default();
    ensure!(
        msg.contains("request body") && msg.contains(&BODY_LIMIT.to_string()),
        "[{engine}] expected the body limit of {BODY_LIMIT} bytes: {msg}"
    );
    // A body under the body limit but over the object limit reaches the
    // object check instead.
    let mut mid = configmap("mid");
    mid["data"]["k"] = json!("z".repeat(200 << 10));
    let r = post(s, base, &mid)?;
    let v = expect_status(&r, 413, "RequestEntityTooLarge")?;
    let msg = v["message"].as_str().unwrap_or_default();
    ensure!(
        !msg.contains("request body"),
        "[{engine}] a body under the limit was refused as a body: {msg}"
    );
    Ok(())
}

/// An open watch: the connection stays open while this lives.
struct OpenWatch {
    status: u16,
    retry_after: Option<String>,
    _conn: TcpStream,
}

fn open_watch(port: u16, path: &str, token: Option<&str>) -> Result<OpenWatch> {
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Accept: application/json\r\n\r\n"
    )?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("status line {line:?}"))?;
    let mut retry_after = None;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("retry-after")
        {
            retry_after = Some(v.trim().to_owned());
        }
    }
    Ok(OpenWatch {
        status,
        retry_after,
        _conn: conn,
    })
}

fn watches(s: &Server, engine: &str) -> Result<()> {
    s.create_workspace("watchers")?;
    let path = "/clusters/watchers/api/v1/namespaces/default/configmaps?watch=1";
    // The first watch ends by itself after 2 s.
    let first = open_watch(s.port, &format!("{path}&timeoutSeconds=2"), None)?;
    let second = open_watch(s.port, path, None)?;
    ensure!(
        first.status == 200 && second.status == 200,
        "[{engine}] watches: {} {}",
        first.status,
        second.status
    );
    let third = open_watch(s.port, path, None)?;
    ensure!(
        third.status == 429,
        "[{engine}] a third watch of one user: {}",
        third.status
    );
    ensure!(
        third.retry_after.is_some(),
        "[{engine}] 429 without Retry-After"
    );

    // Another user is not affected.
    let token = s.wsgate(&["token", "create", "--user", "alice", "--ttl", "1h"])?;
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "alice-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}],
    });
    let r = post(
        s,
        "/clusters/watchers/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        &binding,
    )?;
    ensure!(
        r.status == 201,
        "[{engine}] binding: {} {}",
        r.status,
        r.text()
    );
    let mut alice = None;
    for _ in 0..50 {
        let w = open_watch(s.port, path, Some(&token))?;
        if w.status == 200 {
            alice = Some(w);
            break;
        }
        // RBAC follows the binding within moments.
        ensure!(w.status == 403, "[{engine}] alice's watch: {}", w.status);
        std::thread::sleep(Duration::from_millis(100));
    }
    ensure!(alice.is_some(), "[{engine}] alice never got her watch");

    // When the first watch ends, its place is free again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let again = open_watch(s.port, path, None)?;
        if again.status == 200 {
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "[{engine}] the ended watch never gave its place back"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop((first, second));
    Ok(())
}

#[test]
fn limits_on_the_embedded_store() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let s = start(Engine::Embedded, dir.path())?;
    quota(&s, "embedded")?;
    custom_kinds(&s, "embedded")?;
    sizes(&s, "embedded")?;
    watches(&s, "embedded")?;
    Ok(())
}

#[test]
fn quota_and_size_on_etcd() -> Result<()> {
    let Some(etcd) = etcd_or_skip("quota_and_size_on_etcd") else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let s = start(Engine::Etcd(etcd), dir.path())?;
    quota(&s, "etcd")?;
    custom_kinds(&s, "etcd")?;
    sizes(&s, "etcd")?;
    Ok(())
}

/// Fair admission through real HTTP: a read pool of 2 seats, 1 per
/// workspace, a queue of 1. Sixteen clients listing in one workspace
/// cannot all be seated or queued, so some get 429 with Retry-After; the
/// quiet workspace, one request at a time, always finds the seat the
/// noisy one may not take. Outcomes are asserted, not timings.
///
/// Why a quiet request cannot get 429 however slow the machine: the noisy
/// workspace never holds more than its 1 seat (granted waiters included),
/// and the quiet client sends its next request only after the previous
/// answer, whose seat was freed when the handler returned. So a quiet
/// request always finds a free seat, its own workspace idle and its queue
/// empty: it is admitted at once and never queues (no queue timeout, no
/// full queue, no push-out, which only acts inside one workspace).
#[test]
fn a_noisy_workspace_is_refused_while_a_quiet_one_is_served() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("fair.toml");
    std::fs::write(
        &path,
        "[limits.fairness]\nread_max_in_flight = 2\nread_workspace_max_in_flight = 1\nqueue_length = 1\n",
    )?;
    let config = path.to_str().context("utf-8 path")?;
    let s = Server::start_with(Engine::Embedded, &["--config", config])?;
    s.create_workspace("noisy")?;
    s.create_workspace("quiet")?;
    let noisy_path = "/clusters/noisy/api/v1/namespaces/default/configmaps";
    let quiet_path = "/clusters/quiet/api/v1/namespaces/default/configmaps";
    let stop = std::sync::atomic::AtomicBool::new(false);
    let refused = std::sync::atomic::AtomicUsize::new(0);
    let (quiet_ok, quiet_other) = std::thread::scope(|scope| -> Result<(usize, Vec<String>)> {
        let mut noisy = Vec::new();
        for _ in 0..16 {
            noisy.push(scope.spawn(|| -> Result<()> {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 3000 {
                    n += 1;
                    let r = s.request("GET", noisy_path, &[], None)?;
                    match r.status {
                        200 => {}
                        429 => {
                            expect_status(&r, 429, "TooManyRequests")?;
                            let retry = r
                                .headers
                                .iter()
                                .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"));
                            ensure!(retry.is_some(), "429 without Retry-After");
                            refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        other => bail!("noisy LIST: {other} {}", r.text()),
                    }
                }
                Ok(())
            }));
        }
        // The quiet workspace reads while the noisy one is refused.
        let mut ok = 0;
        let mut other = Vec::new();
        for _ in 0..3000 {
            let r = s.request("GET", quiet_path, &[], None)?;
            if r.status == 200 {
                ok += 1;
            } else {
                other.push(format!("{} {}", r.status, r.text()));
            }
            if refused.load(std::sync::atomic::Ordering::Relaxed) > 0 && ok >= 100 {
                break;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for h in noisy {
            h.join()
                .map_err(|_| anyhow::anyhow!("noisy client panicked"))??;
        }
        Ok((ok, other))
    })?;
    let refused = refused.into_inner();
    println!("fairness e2e: noisy refused {refused} times, quiet served {quiet_ok}");
    ensure!(
        quiet_other.is_empty(),
        "quiet requests failed: {quiet_other:?}"
    );
    ensure!(quiet_ok >= 100, "quiet served {quiet_ok}");
    ensure!(refused > 0, "the noisy workspace was never refused");
    Ok(())
}
