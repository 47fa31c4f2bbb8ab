//! Two `wsgate` replicas on one real etcd (same key root) serve the same
//! data consistently: a workspace and objects created through A are read,
//! listed and watched through B (B's watch sees A's writes), optimistic
//! concurrency holds across replicas (a stale resourceVersion is 409 on
//! either), and a workspace deleted through B disappears from A.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use wsgate_e2e::{RawResponse, etcd_or_skip, raw_request, wsgate_binary};

/// One `wsgate serve --insecure-http` on a shared etcd and key root.
struct Replica {
    name: &'static str,
    child: Child,
    port: u16,
    _data: tempfile::TempDir,
}

impl Replica {
    fn start(name: &'static str, etcd: &str, root: &str) -> Result<Replica> {
        let data = tempfile::tempdir()?;
        let port = storage::testing::free_port()?;
        let child = Command::new(wsgate_binary()?)
            .args(["serve", "--insecure-http", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data.path())
            .args(["--etcd-endpoints", etcd, "--storage-root", root])
            .env(
                "WSGATE_LOG_LEVEL",
                std::env::var("WSGATE_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("spawning wsgate")?;
        let mut r = Replica {
            name,
            child,
            port,
            _data: data,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = r.child.try_wait()? {
                bail!("replica {name} exited during start-up: {status}");
            }
            if let Ok(resp) = r.request("GET", "/readyz", None)
                && resp.status == 200
            {
                return Ok(r);
            }
            ensure!(
                Instant::now() < deadline,
                "replica {name} never became ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<RawResponse> {
        let bytes = body.map(|b| b.to_string().into_bytes());
        raw_request(
            self.port,
            method,
            path,
            &[("Content-Type", "application/json")],
            bytes.as_deref(),
        )
    }

    fn json(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let r = self.request(method, path, body)?;
        let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        Ok((r.status, v))
    }

    /// Polls GET `path` until it answers `code` (other replicas learn of
    /// changes through their storage watches, within moments).
    fn wait_for(&self, path: &str, code: u16) -> Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, v) = self.json("GET", path, None)?;
            if status == code {
                return Ok(v);
            }
            ensure!(
                Instant::now() < deadline,
                "{}: GET {path} stayed {status}, wanted {code}: {v}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CMS: &str = "/clusters/shared/api/v1/namespaces/default/configmaps";
const WORKSPACES: &str = "/apis/tenancy.wsgate.io/v1alpha1/workspaces";

fn configmap(name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": value}})
}

#[test]
fn two_replicas_on_one_etcd() -> Result<()> {
    let Some(etcd) = etcd_or_skip("two_replicas_on_one_etcd") else {
        return Ok(());
    };
    let root = storage::testing::unique_root("replicas");
    let root = root.trim_end_matches('/');
    let a = Replica::start("A", etcd.endpoint(), root)?;
    let b = Replica::start("B", etcd.endpoint(), root)?;

    // A workspace created through A becomes usable through B.
    let ws = json!({"apiVersion": "tenancy.wsgate.io/v1alpha1", "kind": "Workspace", "metadata": {"name": "shared"}});
    let (code, v) = a.json("POST", WORKSPACES, Some(&ws))?;
    ensure!(code == 201, "create workspace on A: {code} {v}");
    b.wait_for("/clusters/shared/api/v1/namespaces/default", 200)?;

    // Objects written through A are read and listed through B.
    let (code, created) = a.json("POST", CMS, Some(&configmap("one", "a")))?;
    ensure!(code == 201, "create on A: {code} {created}");
    let got = b.wait_for(&format!("{CMS}/one"), 200)?;
    ensure!(
        got["data"]["k"] == "a"
            && got["metadata"]["uid"] == created["metadata"]["uid"]
            && got["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"],
        "B read {got}, A created {created}"
    );
    let (code, list) = b.json("GET", CMS, None)?;
    ensure!(code == 200, "list on B: {code} {list}");
    let names: Vec<&str> = list["items"]
        .as_array()
        .map(|i| {
            i.iter()
                .filter_map(|o| o["metadata"]["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    ensure!(names == ["one"], "list on B: {names:?}");
    let list_rv = list["metadata"]["resourceVersion"]
        .as_str()
        .context("list resourceVersion")?
        .to_owned();

    // A watch on B sees writes made through A while it is open.
    let watch_port = b.port;
    let watcher = std::thread::spawn(move || {
        raw_request(
            watch_port,
            "GET",
            &format!("{CMS}?watch=1&resourceVersion={list_rv}&timeoutSeconds=4"),
            &[],
            None,
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    let (code, v) = a.json("POST", CMS, Some(&configmap("two", "a")))?;
    ensure!(code == 201, "second create on A: {code} {v}");
    let mut changed = created.clone();
    changed["data"]["k"] = json!("b");
    let (code, updated) = a.json("PUT", &format!("{CMS}/one"), Some(&changed))?;
    ensure!(code == 200, "update on A: {code} {updated}");
    let watched = watcher
        .join()
        .map_err(|_| anyhow::anyhow!("watch thread panicked"))??;
    let events: Vec<(String, String)> = watched
        .text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|e| {
            (
                e["type"].as_str().unwrap_or("").to_owned(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .filter(|(t, _)| t != "BOOKMARK")
        .collect();
    ensure!(
        events
            == [
                ("ADDED".to_owned(), "two".to_owned()),
                ("MODIFIED".to_owned(), "one".to_owned())
            ],
        "B's watch saw {events:?}: {}",
        watched.text()
    );

    // Optimistic concurrency across replicas: B updates from the current
    // version; A's write from the version before is a conflict.
    let mut from_b = updated.clone();
    from_b["data"]["k"] = json!("from-b");
    let (code, v) = b.json("PUT", &format!("{CMS}/one"), Some(&from_b))?;
    ensure!(code == 200, "update on B: {code} {v}");
    let mut stale = updated.clone();
    stale["data"]["k"] = json!("stale");
    let (code, v) = a.json("PUT", &format!("{CMS}/one"), Some(&stale))?;
    ensure!(
        code == 409 && v["reason"] == "Conflict",
        "a stale update on A: {code} {v}"
    );
    let (code, v) = a.json("GET", &format!("{CMS}/one"), None)?;
    ensure!(
        code == 200 && v["data"]["k"] == "from-b",
        "A reads {code} {v}"
    );
    // Creating the same name on both: exactly one wins.
    let (ca, _) = a.json("POST", CMS, Some(&configmap("race", "a")))?;
    let (cb, vb) = b.json("POST", CMS, Some(&configmap("race", "b")))?;
    ensure!(
        ca == 201 && cb == 409 && vb["reason"] == "AlreadyExists",
        "create race: A {ca}, B {cb} {vb}"
    );

    // Deleted through B, the workspace goes away on A too.
    let (code, v) = b.json("DELETE", &format!("{WORKSPACES}/shared"), None)?;
    ensure!(code == 200 || code == 202, "delete on B: {code} {v}");
    a.wait_for(&format!("{WORKSPACES}/shared"), 404)?;
    a.wait_for(&format!("{CMS}/one"), 404)?;
    // The name is free again, on either replica, with none of the old data.
    let (code, v) = a.json("POST", WORKSPACES, Some(&ws))?;
    ensure!(code == 201, "recreate on A: {code} {v}");
    b.wait_for("/clusters/shared/api/v1/namespaces/default", 200)?;
    let (code, list) = b.json("GET", CMS, None)?;
    ensure!(
        code == 200 && list["items"].as_array().is_some_and(Vec::is_empty),
        "the new workspace shows old data on B: {code} {list}"
    );
    Ok(())
}
