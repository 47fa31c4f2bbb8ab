//! What is measured, and how: closed-loop phases (each worker owns one
//! keep-alive connection and sends its next request when the previous one
//! is answered, like wrk), the open-loop watch-delivery phase, and the
//! controller-style mixed workload. Every response's status is checked;
//! anything else is an error, counted and shown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use hyper::{Method, StatusCode};
use serde::Deserialize;

use super::client::{Conn, Endpoint, H2Conn, Pool, Req, Resp, WatchStream};
use super::histogram::Latencies;
use super::process::{CpuSnapshot, Pids, rss_bytes};
use super::progress::Progress;
use super::report::{Row, WatchMemory};

/// The annotation carrying a write's send time (ns since the run's base
/// instant) for the watch-delivery phase.
const SENT_ANNOTATION: &str = "bench.wsgate.io/sent-ns";
/// The data value of every ConfigMap written: objects of ~150 bytes.
const VALUE: &str = "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv";
const JSON: &str = "application/json";
const MERGE_PATCH: &str = "application/merge-patch+json";
/// Distinct errors kept per row.
const ERROR_SAMPLES: usize = 3;
/// Objects the GET phase cycles through.
const GET_OBJECTS: usize = 100;
/// Objects each controller of the mixed workload owns.
const CONTROLLER_OBJECTS: usize = 20;
/// Objects the DELETE phase may delete (the phase ends early when they
/// are gone). Sized for warm-up plus a 5 s window at >10k deletes/s: a
/// pool emptied during warm-up would measure nothing.
const DELETE_POOL: usize = 60_000;

/// The result of one operation.
pub enum Outcome {
    Ok,
    Err(String),
    /// Nothing left to do (the DELETE pool is empty).
    Done,
}

/// One closed-loop worker: `op` is called again as soon as it returns.
pub trait Worker: Send + 'static {
    fn op(&mut self, seq: u64) -> impl Future<Output = Outcome> + Send;
}

/// A worker sending HTTP requests on its own connection: `make` builds the
/// next request from the worker's state, `check` looks at a response with
/// the expected status (e.g. keeps the new resourceVersion).
pub struct Http<S> {
    conn: Conn,
    state: S,
    make: fn(&mut S, u64) -> Option<Req>,
    check: fn(&mut S, &Req, &Resp) -> Result<(), String>,
}

fn no_check<S>(_: &mut S, _: &Req, _: &Resp) -> Result<(), String> {
    Ok(())
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(200)]);
    s.replace('\n', " ")
}

impl<S: Send + 'static> Worker for Http<S> {
    async fn op(&mut self, seq: u64) -> Outcome {
        let Some(req) = (self.make)(&mut self.state, seq) else {
            return Outcome::Done;
        };
        match self.conn.send(&req).await {
            Err(e) => Outcome::Err(format!("{} {}: {e:#}", req.method, req.path)),
            Ok(resp) if resp.status != req.expect => Outcome::Err(format!(
                "{} {} -> {} (expected {}): {}",
                req.method,
                req.path,
                resp.status.as_u16(),
                req.expect.as_u16(),
                snippet(&resp.body)
            )),
            Ok(resp) => match (self.check)(&mut self.state, &req, &resp) {
                Ok(()) => Outcome::Ok,
                Err(e) => Outcome::Err(format!("{} {}: {e}", req.method, req.path)),
            },
        }
    }
}

/// A GET worker for the bare hyper handler (any path gets the ConfigMap).
pub async fn bare_get_worker(endpoint: &Endpoint) -> anyhow::Result<Http<()>> {
    Ok(Http {
        conn: Conn::connect(endpoint).await?,
        state: (),
        make: |_, _| Some(Req::get("/api/v1/namespaces/get/configmaps/g-1")),
        check: |_, _, resp| {
            if contains(&resp.body, br#""name":"g-1""#) {
                Ok(())
            } else {
                Err(format!("unexpected body: {}", snippet(&resp.body)))
            }
        },
    })
}

/// What one worker saw.
struct WorkerResult {
    lat: Latencies,
    ok: u64,
    errors: u64,
    samples: Vec<String>,
    done_at: Option<Instant>,
}

fn keep_sample(samples: &mut Vec<String>, e: String) {
    // Errors differing only in a name or number are one kind.
    let kind = |s: &str| -> String { s.chars().filter(|c| !c.is_ascii_digit()).collect() };
    if samples.len() < ERROR_SAMPLES && !samples.iter().any(|s| kind(s) == kind(&e)) {
        samples.push(e);
    }
}

/// Timing shared by every phase.
#[derive(Clone, Copy)]
pub struct Runner {
    pub progress: Progress,
    pub warmup: Duration,
    pub duration: Duration,
    pub pids: Pids,
}

impl Runner {
    /// Waits (up to 5 s) until the server is idle, so background work left
    /// by the previous phase (e.g. garbage collection after deletes) is not
    /// billed to the next one.
    pub async fn quiesce(&self) {
        let Some(pid) = self.pids.server else { return };
        for _ in 0..20 {
            let a = CpuSnapshot::take(Pids {
                server: Some(pid),
                etcd: None,
            });
            tokio::time::sleep(Duration::from_millis(250)).await;
            let b = CpuSnapshot::take(Pids {
                server: Some(pid),
                etcd: None,
            });
            if a.cores_until(&b)[1].is_none_or(|c| c < 0.1) {
                return;
            }
        }
    }

    /// Runs `workers` for warm-up + duration; latencies and successes count
    /// for operations that end inside the measured window.
    pub async fn closed_loop<W: Worker>(
        &self,
        scenario: &str,
        target: &str,
        workers: Vec<W>,
    ) -> Row {
        self.quiesce().await;
        let mut row = Row::new(scenario, target, workers.len());
        let bar = self.progress.timed(
            &format!("{scenario} [{target}]"),
            self.warmup + self.duration,
        );
        let t0 = Instant::now();
        let (ws, we) = (t0 + self.warmup, t0 + self.warmup + self.duration);
        let tasks: Vec<_> = workers
            .into_iter()
            .map(|mut w| {
                let ops = bar.ops.clone();
                tokio::spawn(async move {
                    let mut r = WorkerResult {
                        lat: Latencies::new(),
                        ok: 0,
                        errors: 0,
                        samples: Vec::new(),
                        done_at: None,
                    };
                    let mut seq = 0u64;
                    loop {
                        let start = Instant::now();
                        if start >= we {
                            break;
                        }
                        match w.op(seq).await {
                            Outcome::Ok => {
                                let end = Instant::now();
                                if end >= ws && end <= we {
                                    r.lat.record(end - start);
                                    r.ok += 1;
                                }
                                ops.fetch_add(1, Ordering::Relaxed);
                            }
                            Outcome::Err(e) => {
                                r.errors += 1;
                                keep_sample(&mut r.samples, e);
                                // A dead server must not turn this into a spin.
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                            Outcome::Done => {
                                r.done_at = Some(Instant::now());
                                break;
                            }
                        }
                        seq += 1;
                    }
                    r
                })
            })
            .collect();
        tokio::time::sleep_until(ws.into()).await;
        let cpu0 = CpuSnapshot::take(self.pids);
        let mut lat = Latencies::new();
        let mut last_done: Option<Instant> = None;
        for t in tasks {
            match t.await {
                Ok(r) => {
                    lat.merge(&r.lat);
                    row.ops += r.ok;
                    row.errors += r.errors;
                    for s in r.samples {
                        keep_sample(&mut row.error_samples, s);
                    }
                    if let Some(d) = r.done_at {
                        last_done = Some(last_done.map_or(d, |l| l.max(d)));
                    }
                }
                Err(e) => {
                    row.errors += 1;
                    keep_sample(&mut row.error_samples, format!("worker failed: {e}"));
                }
            }
        }
        let cpu1 = CpuSnapshot::take(self.pids);
        [row.client_cpu, row.server_cpu, row.etcd_cpu] = cpu0.cores_until(&cpu1);
        bar.finish();
        // A phase that ran out of work ends when its last worker did.
        let end = last_done.map_or(we, |d| d.min(we)).max(ws);
        let secs = end.duration_since(ws).as_secs_f64();
        row.ops_per_sec = if secs > 0.0 {
            row.ops as f64 / secs
        } else {
            0.0
        };
        row.latencies(&lat);
        row
    }
}

/// The `metadata.resourceVersion` of a JSON object response (the first
/// `resourceVersion` in it: metadata comes before any nested one).
pub fn rv_of(body: &[u8]) -> Option<u64> {
    const NEEDLE: &[u8] = b"\"resourceVersion\":\"";
    let at = body.windows(NEEDLE.len()).position(|w| w == NEEDLE)? + NEEDLE.len();
    let rest = &body[at..];
    let end = rest.iter().position(|b| *b == b'"')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

fn contains(body: &[u8], needle: &[u8]) -> bool {
    body.windows(needle.len()).any(|w| w == needle)
}

fn configmap(name: &str, rv: Option<u64>, annotations: &str, value: &str) -> String {
    let rv = rv.map_or(String::new(), |rv| format!(r#","resourceVersion":"{rv}""#));
    let ann = if annotations.is_empty() {
        String::new()
    } else {
        format!(r#","annotations":{{{annotations}}}"#)
    };
    format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"{rv}{ann}}},"data":{{"k":"{value}"}}}}"#
    )
}

/// A watch event, only the parts the benchmark reads.
#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    object: EventObject,
}

#[derive(Default, Deserialize)]
struct EventObject {
    #[serde(default)]
    metadata: EventMeta,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Default, Deserialize)]
struct EventMeta {
    #[serde(default)]
    name: String,
    #[serde(default, rename = "resourceVersion")]
    resource_version: String,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

/// One target (a server) and the workspace the phases run in.
pub struct Bench {
    pub endpoint: Endpoint,
    pub runner: Runner,
    pub target: String,
    pub run_id: String,
    /// The workspace of every phase but the watch phase.
    pub workspace: String,
    pub connections: usize,
    pub list_connections: usize,
    pub controllers: usize,
    pub watches: usize,
    pub watch_rate: u64,
    /// Size of one ConfigMap as the server returns it (for raw etcd puts).
    pub object_bytes: Arc<AtomicUsize>,
    /// The etcd the server stores in, when known: the watch phase then
    /// also watches it directly, to split delivery latency into stages.
    pub etcd_url: Option<String>,
    /// Watches per HTTP/2 connection in the watch phase; 1 = one HTTP/1.1
    /// connection per watch.
    pub watch_streams: usize,
    /// Shared by set-up steps.
    pool: Arc<Pool>,
}

impl Bench {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        endpoint: Endpoint,
        runner: Runner,
        target: &str,
        run_id: &str,
        connections: usize,
        list_connections: usize,
        controllers: usize,
        watches: usize,
        watch_rate: u64,
    ) -> Bench {
        Bench {
            pool: Arc::new(Pool::new(&endpoint, 32)),
            endpoint,
            runner,
            target: target.into(),
            run_id: run_id.into(),
            workspace: format!("bench-{run_id}"),
            connections,
            list_connections,
            controllers,
            watches,
            watch_rate,
            object_bytes: Arc::default(),
            etcd_url: None,
            watch_streams: 1,
        }
    }

    fn configmaps(&self, ns: &str) -> String {
        format!(
            "/clusters/{}/api/v1/namespaces/{ns}/configmaps",
            self.workspace
        )
    }

    async fn conns(&self, n: usize) -> anyhow::Result<Vec<Conn>> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(Conn::connect(&self.endpoint).await?);
        }
        Ok(v)
    }

    /// Creates a top-level workspace; returns the revision of its creation
    /// (None when it already existed).
    pub async fn create_workspace(pool: &Pool, name: &str) -> anyhow::Result<Option<u64>> {
        let body = format!(
            r#"{{"apiVersion":"tenancy.wsgate.io/v1alpha1","kind":"Workspace","metadata":{{"name":"{name}"}}}}"#
        );
        let req = Req::with_body(
            Method::POST,
            "/clusters/root/apis/tenancy.wsgate.io/v1alpha1/workspaces",
            JSON,
            body,
            StatusCode::CREATED,
        );
        let r = pool.send(&req).await?;
        match r.status {
            StatusCode::CREATED => Ok(rv_of(&r.body)),
            StatusCode::CONFLICT => Ok(None),
            s => bail!(
                "creating workspace {name}: {} {}",
                s.as_u16(),
                snippet(&r.body)
            ),
        }
    }

    /// Waits until the server resolves a new workspace (its index follows
    /// a watch, so it may lag the create by a moment).
    async fn wait_workspace(&self, name: &str) -> anyhow::Result<()> {
        let req = Req::get(format!("/clusters/{name}/api/v1/namespaces/default"));
        for _ in 0..200 {
            let r = self.pool.send(&req).await?;
            if r.status == StatusCode::OK {
                return Ok(());
            }
            if r.status != StatusCode::NOT_FOUND {
                bail!(
                    "workspace {name}: GET namespace default -> {} {}",
                    r.status.as_u16(),
                    snippet(&r.body)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("workspace {name} did not become resolvable within 10s")
    }

    pub async fn setup(&self) -> anyhow::Result<()> {
        Self::create_workspace(&self.pool, &self.workspace).await?;
        self.wait_workspace(&self.workspace).await
    }

    async fn namespace(&self, ns: &str) -> anyhow::Result<()> {
        let body =
            format!(r#"{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"{ns}"}}}}"#);
        let req = Req::with_body(
            Method::POST,
            format!("/clusters/{}/api/v1/namespaces", self.workspace),
            JSON,
            body,
            StatusCode::CREATED,
        );
        let r = self.pool.send(&req).await?;
        match r.status {
            StatusCode::CREATED | StatusCode::CONFLICT => Ok(()),
            s => bail!(
                "creating namespace {ns}: {} {}",
                s.as_u16(),
                snippet(&r.body)
            ),
        }
    }

    /// Creates ConfigMaps (untimed set-up); returns their resourceVersions.
    async fn create_configmaps(&self, ns: &str, names: Vec<String>) -> anyhow::Result<Vec<u64>> {
        self.namespace(ns).await?;
        let bar = self.runner.progress.counted(
            &format!("set-up: {ns} [{}]", self.target),
            names.len() as u64,
        );
        let path = self.configmaps(ns);
        let rvs = futures::stream::iter(names)
            .map(|name| {
                let (pool, path, bar) = (self.pool.clone(), path.clone(), bar.clone());
                async move {
                    let req = Req::with_body(
                        Method::POST,
                        path,
                        JSON,
                        configmap(&name, None, "", VALUE),
                        StatusCode::CREATED,
                    );
                    let r = pool.send(&req).await?;
                    bar.inc(1);
                    match (r.status, rv_of(&r.body)) {
                        (StatusCode::CREATED, Some(rv)) => Ok(rv),
                        (s, _) => bail!(
                            "set-up: creating {ns}/{name}: {} {}",
                            s.as_u16(),
                            snippet(&r.body)
                        ),
                    }
                }
            })
            .buffered(32)
            .try_collect()
            .await;
        bar.finish_and_clear();
        rvs
    }

    pub async fn get(&self) -> anyhow::Result<Row> {
        let names: Vec<String> = (0..GET_OBJECTS).map(|i| format!("g-{i}")).collect();
        self.create_configmaps("get", names).await?;
        self.get_loop("GET 1 object", "").await
    }

    /// GET of the same objects (run after [`Bench::get`]) with
    /// `resourceVersion=0`: from the watch cache instead of storage.
    pub async fn get_cached(&self) -> anyhow::Result<Row> {
        self.get_loop("GET 1 object, rv=0", "?resourceVersion=0")
            .await
    }

    async fn get_loop(&self, label: &str, query: &'static str) -> anyhow::Result<Row> {
        // One response, checked in full, gives the object size.
        let first = self
            .pool
            .send(&Req::get(format!("{}/g-0{query}", self.configmaps("get"))))
            .await?;
        let v: serde_json::Value =
            serde_json::from_slice(&first.body).context("GET g-0: response is not JSON")?;
        if first.status != StatusCode::OK || v["metadata"]["name"] != "g-0" {
            bail!("GET g-0: {} {}", first.status, snippet(&first.body));
        }
        self.object_bytes.store(first.body.len(), Ordering::Relaxed);
        struct S {
            base: String,
            offset: u64,
            query: &'static str,
        }
        let workers = self
            .conns(self.connections)
            .await?
            .into_iter()
            .enumerate()
            .map(|(w, conn)| Http {
                conn,
                state: S {
                    base: self.configmaps("get"),
                    offset: w as u64 * 7,
                    query,
                },
                make: |s: &mut S, seq| {
                    let i = (s.offset + seq) % GET_OBJECTS as u64;
                    Some(Req::get(format!("{}/g-{i}{}", s.base, s.query)))
                },
                check: |_, req, resp| {
                    // The object asked for, not some other answer with 200.
                    let path = req.path.split('?').next().unwrap_or("");
                    let name = path.rsplit('/').next().unwrap_or("");
                    if contains(&resp.body, format!(r#""name":"{name}""#).as_bytes()) {
                        Ok(())
                    } else {
                        Err(format!("response is not {name}: {}", snippet(&resp.body)))
                    }
                },
            })
            .collect();
        Ok(self.runner.closed_loop(label, &self.target, workers).await)
    }

    pub async fn list(&self, n: usize) -> anyhow::Result<Row> {
        let ns = format!("list-{n}");
        let names: Vec<String> = (0..n).map(|i| format!("l-{i}")).collect();
        self.create_configmaps(&ns, names).await?;
        let path = self.configmaps(&ns);
        let first = self.pool.send(&Req::get(path.clone())).await?;
        let v: serde_json::Value =
            serde_json::from_slice(&first.body).context("LIST: response is not JSON")?;
        let items = v["items"].as_array().map_or(0, Vec::len);
        if first.status != StatusCode::OK || items != n {
            bail!(
                "LIST {ns}: {} with {items} items, expected {n}",
                first.status
            );
        }
        struct S {
            path: String,
            min_len: usize,
        }
        let min_len = first.body.len() * 9 / 10;
        let workers = self
            .conns(self.list_connections)
            .await?
            .into_iter()
            .map(|conn| Http {
                conn,
                state: S {
                    path: path.clone(),
                    min_len,
                },
                make: |s: &mut S, _| Some(Req::get(s.path.clone())),
                check: |s, _, resp| {
                    if resp.body.len() >= s.min_len {
                        Ok(())
                    } else {
                        Err(format!("short list: {} bytes", resp.body.len()))
                    }
                },
            })
            .collect();
        let label = match n {
            1 => "LIST 1 object".to_string(),
            1000 => "LIST 1,000 objects".to_string(),
            n => format!("LIST {n} objects"),
        };
        Ok(self.runner.closed_loop(&label, &self.target, workers).await)
    }

    pub async fn create(&self) -> anyhow::Result<Row> {
        self.namespace("create").await?;
        struct S {
            path: String,
            worker: usize,
        }
        let workers = self
            .conns(self.connections)
            .await?
            .into_iter()
            .enumerate()
            .map(|(worker, conn)| Http {
                conn,
                state: S {
                    path: self.configmaps("create"),
                    worker,
                },
                make: |s: &mut S, seq| {
                    let name = format!("c-{}-{seq}", s.worker);
                    Some(Req::with_body(
                        Method::POST,
                        s.path.clone(),
                        JSON,
                        configmap(&name, None, "", VALUE),
                        StatusCode::CREATED,
                    ))
                },
                check: no_check,
            })
            .collect();
        Ok(self
            .runner
            .closed_loop("CREATE", &self.target, workers)
            .await)
    }

    /// Objects for UPDATE/PATCH: one per worker, so no two writers race.
    async fn owned_objects(&self, ns: &str, prefix: &str) -> anyhow::Result<Vec<(String, u64)>> {
        let names: Vec<String> = (0..self.connections)
            .map(|w| format!("{prefix}-{w}"))
            .collect();
        let rvs = self.create_configmaps(ns, names.clone()).await?;
        Ok(names.into_iter().zip(rvs).collect())
    }

    pub async fn update(&self) -> anyhow::Result<Row> {
        let objects = self.owned_objects("update", "u").await?;
        struct S {
            path: String,
            name: String,
            rv: u64,
        }
        let workers = self
            .conns(self.connections)
            .await?
            .into_iter()
            .zip(objects)
            .map(|(conn, (name, rv))| Http {
                conn,
                state: S {
                    path: format!("{}/{name}", self.configmaps("update")),
                    name,
                    rv,
                },
                make: |s: &mut S, seq| {
                    Some(Req::with_body(
                        Method::PUT,
                        s.path.clone(),
                        JSON,
                        configmap(&s.name, Some(s.rv), "", &format!("{VALUE}-{seq}")),
                        StatusCode::OK,
                    ))
                },
                check: |s, _, resp| {
                    let rv = rv_of(&resp.body).ok_or("no resourceVersion in the response")?;
                    if rv <= s.rv {
                        return Err(format!("resourceVersion went from {} to {rv}", s.rv));
                    }
                    s.rv = rv;
                    Ok(())
                },
            })
            .collect();
        Ok(self
            .runner
            .closed_loop("UPDATE (PUT)", &self.target, workers)
            .await)
    }

    pub async fn patch(&self) -> anyhow::Result<Row> {
        let objects = self.owned_objects("patch", "p").await?;
        let workers = self
            .conns(self.connections)
            .await?
            .into_iter()
            .zip(objects)
            .map(|(conn, (name, _))| Http {
                conn,
                state: format!("{}/{name}", self.configmaps("patch")),
                make: |path: &mut String, seq| {
                    Some(Req::with_body(
                        Method::PATCH,
                        path.clone(),
                        MERGE_PATCH,
                        format!(r#"{{"data":{{"k":"{VALUE}-{seq}"}}}}"#),
                        StatusCode::OK,
                    ))
                },
                check: |_, req, resp| {
                    // The patched value must be in the answer.
                    let body = std::str::from_utf8(&req.body).unwrap_or("");
                    let value = body.split(r#""k":""#).nth(1).unwrap_or("");
                    let value = value.split('"').next().unwrap_or("");
                    if contains(&resp.body, value.as_bytes()) {
                        Ok(())
                    } else {
                        Err(format!("patch not applied: {}", snippet(&resp.body)))
                    }
                },
            })
            .collect();
        Ok(self
            .runner
            .closed_loop("PATCH (merge)", &self.target, workers)
            .await)
    }

    /// Deletes objects of a namespace filled for it (untimed): a fixed
    /// size, because the server's cost of a delete may grow with it.
    pub async fn delete(&self) -> anyhow::Result<Row> {
        let names: Vec<String> = (0..DELETE_POOL).map(|i| format!("d-{i}")).collect();
        self.create_configmaps("delete", names.clone()).await?;
        let pool = Arc::new(names);
        let next = Arc::new(AtomicUsize::new(0));
        struct S {
            path: String,
            names: Arc<Vec<String>>,
            next: Arc<AtomicUsize>,
        }
        let workers = self
            .conns(self.connections)
            .await?
            .into_iter()
            .map(|conn| Http {
                conn,
                state: S {
                    path: self.configmaps("delete"),
                    names: pool.clone(),
                    next: next.clone(),
                },
                make: |s: &mut S, _| {
                    let i = s.next.fetch_add(1, Ordering::Relaxed);
                    let name = s.names.get(i)?;
                    Some(Req {
                        method: Method::DELETE,
                        path: format!("{}/{name}", s.path),
                        content_type: None,
                        body: Bytes::new(),
                        expect: StatusCode::OK,
                    })
                },
                check: no_check,
            })
            .collect();
        let row = self
            .runner
            .closed_loop("DELETE", &self.target, workers)
            .await;
        Ok(row)
    }

    /// Controllers: each lists its namespace, watches it from the list's
    /// resourceVersion, then updates its objects one after another, each
    /// time waiting until its own watch shows the update (what an informer
    /// based controller does). One operation = update + seen on the watch.
    pub async fn mixed(&self) -> anyhow::Result<Row> {
        let mut workers = Vec::with_capacity(self.controllers);
        for k in 0..self.controllers {
            let ns = format!("mix-{k}");
            let names: Vec<String> = (0..CONTROLLER_OBJECTS).map(|i| format!("m-{i}")).collect();
            self.create_configmaps(&ns, names).await?;
            let path = self.configmaps(&ns);
            let mut conn = Conn::connect(&self.endpoint).await?;
            let list = conn.send(&Req::get(path.clone())).await?;
            let v: serde_json::Value =
                serde_json::from_slice(&list.body).context("LIST: not JSON")?;
            let rv: u64 = v["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("LIST {ns}: no resourceVersion"))?;
            let objects: Vec<(String, u64)> = v["items"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|o| {
                            let m = &o["metadata"];
                            Some((
                                m["name"].as_str()?.to_string(),
                                m["resourceVersion"].as_str()?.parse().ok()?,
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            if objects.len() != CONTROLLER_OBJECTS {
                bail!("LIST {ns}: {} objects", objects.len());
            }
            let (status, watch) = Conn::connect(&self.endpoint)
                .await?
                .stream(&format!(
                    "{path}?watch=1&resourceVersion={rv}&allowWatchBookmarks=true"
                ))
                .await?;
            if status != StatusCode::OK {
                bail!("WATCH {ns}: {status}");
            }
            workers.push(Controller {
                conn,
                watch,
                path,
                objects,
            });
        }
        Ok(self
            .runner
            .closed_loop("controller: update, seen on watch", &self.target, workers)
            .await)
    }

    /// 10,000 watches (by default), one per workspace; writes at a fixed
    /// rate into random workspaces carry their send time in an annotation;
    /// each watcher records now - sent on receipt. Also the server's RSS
    /// before and after the watches exist.
    pub async fn watch_delivery(
        &self,
        server_pid: Option<u32>,
    ) -> anyhow::Result<(Vec<Row>, Option<WatchMemory>)> {
        let n = self.watches;
        let names: Vec<String> = (0..n).map(|i| format!("bw{}-{i}", self.run_id)).collect();
        // Workspaces.
        let bar = self.runner.progress.counted(
            &format!("set-up: {n} workspaces [{}]", self.target),
            n as u64,
        );
        let pool = Arc::new(Pool::new(&self.endpoint, 64));
        let revs: Vec<Option<u64>> = futures::stream::iter(names.clone())
            .map(|name| {
                let (pool, bar) = (pool.clone(), bar.clone());
                async move {
                    let r = Self::create_workspace(&pool, &name).await;
                    bar.inc(1);
                    r
                }
            })
            .buffer_unordered(64)
            .try_collect()
            .await?;
        bar.finish_and_clear();
        let Some(start_rv) = revs.into_iter().flatten().max() else {
            bail!("no workspace was created (all existed already?)");
        };
        if let Some(last) = names.last() {
            self.wait_workspace(last).await?;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss = || server_pid.and_then(rss_bytes).map(|b| b as f64 / 1048576.0);
        let rss_before = rss();
        // One LIST per workspace first (what an informer does before it
        // watches): the server's per-workspace state (authorization
        // policy, API set) then exists before the watches, which are
        // measured on their own.
        let bar = self.runner.progress.counted(
            &format!(
                "set-up: one LIST in each of {n} workspaces [{}]",
                self.target
            ),
            n as u64,
        );
        futures::stream::iter(names.clone())
            .map(|name| {
                let (pool, bar) = (pool.clone(), bar.clone());
                async move {
                    let path =
                        format!("/clusters/{name}/api/v1/namespaces/default/configmaps?limit=1");
                    let r = pool.send(&Req::get(path)).await;
                    bar.inc(1);
                    match r {
                        Ok(resp) if resp.status == StatusCode::OK => Ok(()),
                        Ok(resp) => Err(anyhow::anyhow!("LIST in {name}: {}", resp.status)),
                        Err(e) => Err(e),
                    }
                }
            })
            .buffer_unordered(64)
            .try_collect::<Vec<()>>()
            .await?;
        bar.finish_and_clear();
        let rss_touched = rss();

        // Watches, all from the same revision: no event can be missed
        // between a watch's start and the first write.
        let base = Instant::now();
        let shared = Arc::new(WatchShared::default());
        let bar = self
            .runner
            .progress
            .counted(&format!("set-up: {n} watches [{}]", self.target), n as u64);
        // HTTP/2: every `watch_streams` watches share one connection.
        let h2: Vec<H2Conn> = if self.watch_streams > 1 {
            let mut conns = Vec::new();
            for _ in 0..n.div_ceil(self.watch_streams) {
                conns.push(H2Conn::connect(&self.endpoint).await?);
            }
            conns
        } else {
            Vec::new()
        };
        let opened: Vec<anyhow::Result<tokio::task::JoinHandle<()>>> =
            futures::stream::iter(names.clone().into_iter().enumerate())
                .map(|(i, name)| {
                    let (endpoint, shared, bar) =
                        (self.endpoint.clone(), shared.clone(), bar.clone());
                    let via = h2.get(i / self.watch_streams.max(1)).cloned();
                    async move {
                        let path = format!(
                            "/clusters/{name}/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={start_rv}"
                        );
                        let stream = open_watch(&endpoint, via.as_ref(), &path).await;
                        bar.inc(1);
                        let stream = stream?;
                        Ok(tokio::spawn(read_watch(stream, base, shared)))
                    }
                })
                .buffer_unordered(128)
                .collect()
                .await;
        bar.finish_and_clear();
        let mut readers = Vec::with_capacity(n);
        let mut row = Row::new("watch delivery", &self.target, n);
        for o in opened {
            match o {
                Ok(h) => readers.push(h),
                Err(e) => {
                    row.errors += 1;
                    keep_sample(&mut row.error_samples, format!("opening a watch: {e:#}"));
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_with = rss();

        // Writes at a fixed rate (open loop: a slow answer does not delay
        // the next write), into workspaces spread over all of them.
        let rate = self.watch_rate.max(1);
        let total = (self.runner.warmup + self.runner.duration).as_secs_f64() * rate as f64;
        let total = total as u64;
        let measure_from = base.elapsed() + self.runner.warmup;
        shared
            .measure_from_ns
            .store(measure_from.as_nanos() as u64, Ordering::Relaxed);
        let writers = Arc::new(Pool::new(&self.endpoint, self.connections));
        // Stages of the delivery latency: send -> the create's answer, and
        // send -> a plain etcd watch on the same etcd sees the write (what
        // etcd itself adds); the HTTP watch row is send -> the watcher.
        let acks = Arc::new(Mutex::new(Latencies::new()));
        let raw_watch = match &self.etcd_url {
            Some(url) => Some(raw_etcd_watch(url, base, shared.clone()).await?),
            None => None,
        };
        let written = Arc::new(AtomicU64::new(0));
        let write_errors = Arc::new(Mutex::new((0u64, Vec::<String>::new())));
        let bar = self.runner.progress.timed(
            &format!("watch delivery [{}]", self.target),
            self.runner.warmup + self.runner.duration,
        );
        let started = Instant::now();
        let cpu0 = CpuSnapshot::take(self.runner.pids);
        let mut sends = Vec::with_capacity(total as usize);
        for i in 0..total {
            let at = started + Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep_until(at.into()).await;
            let ws = &names[(i as usize * 7919) % n];
            let path = format!("/clusters/{ws}/api/v1/namespaces/default/configmaps");
            let (writers, written, errs, ops, acks, measured) = (
                writers.clone(),
                written.clone(),
                write_errors.clone(),
                bar.ops.clone(),
                acks.clone(),
                shared.measure_from_ns.load(Ordering::Relaxed),
            );
            sends.push(tokio::spawn(async move {
                let name = format!("e-{i}");
                let mut sent_at = Duration::ZERO;
                let r = writers
                    .send_with(|| {
                        sent_at = base.elapsed();
                        let sent = sent_at.as_nanos();
                        let ann = format!(r#""{SENT_ANNOTATION}":"{sent}""#);
                        Req::with_body(
                            Method::POST,
                            path,
                            JSON,
                            configmap(&name, None, &ann, VALUE),
                            StatusCode::CREATED,
                        )
                    })
                    .await;
                if sent_at.as_nanos() >= u128::from(measured)
                    && let Ok(mut a) = acks.lock()
                {
                    a.record(base.elapsed().saturating_sub(sent_at));
                }
                let err = match r {
                    Ok(r) if r.status == StatusCode::CREATED => None,
                    Ok(r) => Some(format!(
                        "write {name}: {} {}",
                        r.status.as_u16(),
                        snippet(&r.body)
                    )),
                    Err(e) => Some(format!("write {name}: {e:#}")),
                };
                match err {
                    None => {
                        written.fetch_add(1, Ordering::Relaxed);
                        ops.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(e) => {
                        if let Ok(mut g) = errs.lock() {
                            g.0 += 1;
                            keep_sample(&mut g.1, e);
                        }
                    }
                }
            }));
        }
        let behind = started
            .elapsed()
            .saturating_sub(self.runner.warmup + self.runner.duration);
        for s in sends {
            let _ = s.await;
        }
        bar.finish();
        // Let the last events arrive.
        let written = written.load(Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(10);
        while shared.delivered.load(Ordering::Relaxed) < written && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let cpu1 = CpuSnapshot::take(self.runner.pids);
        [row.client_cpu, row.server_cpu, row.etcd_cpu] = cpu0.cores_until(&cpu1);
        let rss_after = rss();
        for r in &readers {
            r.abort();
        }
        let delivered = shared.delivered.load(Ordering::Relaxed);
        if delivered < written {
            row.errors += written - delivered;
            keep_sample(
                &mut row.error_samples,
                format!(
                    "{} of {written} written events never reached their watch",
                    written - delivered
                ),
            );
        } else if delivered > written {
            keep_sample(
                &mut row.error_samples,
                format!("{delivered} events delivered for {written} writes"),
            );
            row.errors += delivered - written;
        }
        if let Ok(g) = write_errors.lock() {
            row.errors += g.0;
            for s in &g.1 {
                keep_sample(&mut row.error_samples, s.clone());
            }
        }
        row.errors += shared.errors.load(Ordering::Relaxed);
        if let Ok(s) = shared.samples.lock() {
            for e in s.iter() {
                keep_sample(&mut row.error_samples, e.clone());
            }
        }
        if behind > Duration::from_millis(100) {
            keep_sample(
                &mut row.error_samples,
                format!("the writer fell {behind:?} behind its {rate}/s schedule"),
            );
        }
        if let Ok(lat) = shared.lat.lock() {
            row.ops = lat.count();
            row.latencies(&lat);
        }
        row.ops_per_sec = row.ops as f64 / self.runner.duration.as_secs_f64();
        let mut rows = vec![row];
        let mut ack_row = Row::new(
            "watch phase: create answered",
            &self.target,
            self.connections,
        );
        if let Ok(a) = acks.lock() {
            ack_row.ops = a.count();
            ack_row.latencies(&a);
        }
        ack_row.ops_per_sec = ack_row.ops as f64 / self.runner.duration.as_secs_f64();
        rows.push(ack_row);
        if let Some(task) = raw_watch {
            task.abort();
            let mut raw_row = Row::new("watch phase: raw etcd watch saw it", &self.target, 1);
            if let Ok(l) = shared.raw_lat.lock() {
                raw_row.ops = l.count();
                raw_row.latencies(&l);
            }
            raw_row.ops_per_sec = raw_row.ops as f64 / self.runner.duration.as_secs_f64();
            rows.push(raw_row);
        }
        let memory = match (rss_before, rss_with, rss_after) {
            (Some(b), Some(w), Some(a)) => Some(WatchMemory {
                target: self.target.clone(),
                watches: readers.len(),
                transport: if self.watch_streams > 1 {
                    format!("HTTP/2, {} per connection", self.watch_streams)
                } else {
                    "HTTP/1.1".to_owned()
                },
                rss_workspaces_listed_mib: rss_touched.unwrap_or(b),
                rss_before_mib: b,
                rss_with_watches_mib: w,
                rss_after_writes_mib: a,
            }),
            _ => None,
        };
        Ok((rows, memory))
    }
}

/// Watches all of etcd from now on with a plain `etcd-client` watch and
/// records send -> seen for every value carrying the send annotation.
async fn raw_etcd_watch(
    url: &str,
    base: Instant,
    shared: Arc<WatchShared>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut client = etcd_client::Client::connect([url], None)
        .await
        .with_context(|| format!("connecting to etcd at {url}"))?;
    let mut stream = client
        .watch(
            vec![0u8],
            Some(etcd_client::WatchOptions::new().with_from_key()),
        )
        .await
        .context("raw etcd watch")?;
    Ok(tokio::spawn(async move {
        let needle = format!("{SENT_ANNOTATION}\":\"");
        while let Ok(Some(resp)) = stream.message().await {
            let received = base.elapsed();
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let Some(sent) = sent_ns(kv.value(), needle.as_bytes()) else {
                    continue;
                };
                if sent >= shared.measure_from_ns.load(Ordering::Relaxed)
                    && let Ok(mut lat) = shared.raw_lat.lock()
                {
                    lat.record(received.saturating_sub(Duration::from_nanos(sent)));
                }
            }
        }
    }))
}

/// The number after `needle` in a stored object, if any.
fn sent_ns(value: &[u8], needle: &[u8]) -> Option<u64> {
    let at = value.windows(needle.len()).position(|w| w == needle)? + needle.len();
    let digits = value[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&value[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// Opens one watch, retrying while its workspace is not resolvable yet.
/// Opens a watch on its own HTTP/1.1 connection, or as a stream of `h2`.
async fn open_watch(
    endpoint: &Endpoint,
    h2: Option<&H2Conn>,
    path: &str,
) -> anyhow::Result<WatchStream> {
    for _ in 0..100 {
        let (status, stream) = match h2 {
            Some(c) => c.stream(path).await?,
            None => Conn::connect(endpoint).await?.stream(path).await?,
        };
        match status {
            StatusCode::OK => return Ok(stream),
            StatusCode::NOT_FOUND => tokio::time::sleep(Duration::from_millis(100)).await,
            s => bail!("WATCH {path}: {}", s.as_u16()),
        }
    }
    bail!("WATCH {path}: still 404 after 10s")
}

#[derive(Default)]
struct WatchShared {
    lat: Mutex<Latencies>,
    /// Events carrying a send time, warm-up included.
    delivered: AtomicU64,
    errors: AtomicU64,
    samples: Mutex<Vec<String>>,
    /// Only events sent after this (ns since base) count in the latencies.
    measure_from_ns: AtomicU64,
    /// Send -> seen by a plain etcd watch (etcd targets only).
    raw_lat: Mutex<Latencies>,
}

impl WatchShared {
    fn error(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut s) = self.samples.lock() {
            keep_sample(&mut s, e);
        }
    }
}

async fn read_watch(mut stream: WatchStream, base: Instant, shared: Arc<WatchShared>) {
    loop {
        match stream.next_line().await {
            Ok(Some(line)) => {
                let received = base.elapsed();
                let ev: Event = match serde_json::from_slice(&line) {
                    Ok(ev) => ev,
                    Err(e) => {
                        shared.error(format!("undecodable watch event: {e}"));
                        continue;
                    }
                };
                if ev.kind == "ERROR" {
                    shared.error(format!(
                        "watch ERROR event: {}",
                        ev.object.message.unwrap_or_default()
                    ));
                    continue;
                }
                let Some(sent) = ev
                    .object
                    .metadata
                    .annotations
                    .get(SENT_ANNOTATION)
                    .and_then(|s| s.parse::<u64>().ok())
                else {
                    continue;
                };
                shared.delivered.fetch_add(1, Ordering::Relaxed);
                if sent >= shared.measure_from_ns.load(Ordering::Relaxed)
                    && let Ok(mut lat) = shared.lat.lock()
                {
                    lat.record(received.saturating_sub(Duration::from_nanos(sent)));
                }
            }
            Ok(None) => {
                shared.error("a watch ended".into());
                return;
            }
            Err(e) => {
                shared.error(format!("reading a watch: {e:#}"));
                return;
            }
        }
    }
}

/// One controller of the mixed workload.
struct Controller {
    conn: Conn,
    watch: WatchStream,
    path: String,
    /// Its objects and their latest resourceVersions (from the watch).
    objects: Vec<(String, u64)>,
}

impl Controller {
    /// Reads the watch until it shows `name` at `rv` or later, updating the
    /// cache from every event on the way.
    async fn observe(&mut self, name: &str, rv: u64) -> Result<(), String> {
        loop {
            let line = match self.watch.next_line().await {
                Ok(Some(l)) => l,
                Ok(None) => return Err("the controller's watch ended".into()),
                Err(e) => return Err(format!("reading the controller's watch: {e:#}")),
            };
            let ev: Event =
                serde_json::from_slice(&line).map_err(|e| format!("undecodable event: {e}"))?;
            match ev.kind.as_str() {
                "ERROR" => {
                    return Err(format!(
                        "watch ERROR: {}",
                        ev.object.message.unwrap_or_default()
                    ));
                }
                "BOOKMARK" => continue,
                _ => {}
            }
            let m = ev.object.metadata;
            let Ok(ev_rv) = m.resource_version.parse::<u64>() else {
                continue;
            };
            if let Some(o) = self.objects.iter_mut().find(|o| o.0 == m.name) {
                o.1 = o.1.max(ev_rv);
            }
            if m.name == name && ev_rv >= rv {
                return Ok(());
            }
        }
    }
}

impl Worker for Controller {
    async fn op(&mut self, seq: u64) -> Outcome {
        let i = seq as usize % self.objects.len();
        let (name, rv) = self.objects[i].clone();
        let req = Req::with_body(
            Method::PUT,
            format!("{}/{name}", self.path),
            JSON,
            configmap(&name, Some(rv), "", &format!("{VALUE}-{seq}")),
            StatusCode::OK,
        );
        let resp = match self.conn.send(&req).await {
            Ok(r) => r,
            Err(e) => return Outcome::Err(format!("PUT {}: {e:#}", req.path)),
        };
        if resp.status != StatusCode::OK {
            return Outcome::Err(format!(
                "PUT {} -> {}: {}",
                req.path,
                resp.status.as_u16(),
                snippet(&resp.body)
            ));
        }
        let Some(new_rv) = rv_of(&resp.body) else {
            return Outcome::Err("no resourceVersion in the PUT response".into());
        };
        match tokio::time::timeout(Duration::from_secs(5), self.observe(&name, new_rv)).await {
            Ok(Ok(())) => Outcome::Ok,
            Ok(Err(e)) => Outcome::Err(e),
            Err(_) => Outcome::Err(format!(
                "update of {name} to {new_rv} not seen on the watch within 5s"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_version_of_a_response() {
        let body = br#"{"kind":"ConfigMap","metadata":{"name":"a","resourceVersion":"42","managedFields":[]}}"#;
        assert_eq!(rv_of(body), Some(42));
        assert_eq!(rv_of(b"{}"), None);
    }

    #[test]
    fn configmap_bodies_are_json() {
        let s = configmap("x", Some(7), r#""a":"1""#, VALUE);
        let v: serde_json::Value = serde_json::from_str(&s).expect("valid JSON");
        assert_eq!(v["metadata"]["resourceVersion"], "7");
        assert_eq!(v["metadata"]["annotations"]["a"], "1");
        assert!(s.len() < 200, "{} bytes", s.len());
    }

    #[test]
    fn error_samples_are_distinct_kinds() {
        let mut v = Vec::new();
        keep_sample(&mut v, "GET /a/1 -> 404".into());
        keep_sample(&mut v, "GET /a/2 -> 404".into());
        keep_sample(&mut v, "PUT /a/2 -> 409".into());
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn send_time_is_read_from_a_stored_object() {
        let needle = format!("{SENT_ANNOTATION}\":\"");
        let doc = configmap("e-1", None, &format!(r#""{SENT_ANNOTATION}":"12345""#), "v");
        assert_eq!(sent_ns(doc.as_bytes(), needle.as_bytes()), Some(12345));
        assert_eq!(sent_ns(b"{}", needle.as_bytes()), None);
    }
}
