//! `/metrics`: Prometheus metrics (OpenMetrics text, `prometheus-client`).
//!
//! No family has a per-workspace label: at a million workspaces that is a
//! million series. The busiest workspaces are reported instead by
//! [`TopWorkspaces`], a bounded top-N over a sliding window. Group and
//! resource labels are bounded too (custom resources live in every
//! workspace): past [`MAX_RESOURCE_LABELS`] distinct pairs, new ones are
//! reported as `other`.
//!
//! Wiring: wrap the router in [`MetricsLayer`] and have the handler put a
//! [`RequestLabels`] into the response's extensions (the response, because
//! the layer no longer sees the request once the handler owns it).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::http::{Method, Request, Response};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Distinct (group, resource) label pairs before new ones become `other`.
pub const MAX_RESOURCE_LABELS: usize = 2000;

/// Request latency buckets (seconds), a subset of kube-apiserver's.
const REQUEST_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
];
/// Storage latency buckets (seconds): storage is mostly sub-millisecond.
const STORAGE_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];

/// What the router knows about a request; put it in the response's
/// extensions. Requests without it are counted by HTTP method only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestLabels {
    /// Kubernetes verb (`get`, `list`, `watch`, ...).
    pub verb: &'static str,
    /// `""` for the core group.
    pub group: String,
    /// Plural resource, with `/subresource` if any; `""` for discovery.
    pub resource: String,
    /// Workspace path; only for the top-N view and logs, never a label.
    pub workspace: Option<String>,
    /// User name, for logs only.
    pub user: Option<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestKey {
    verb: &'static str,
    group: Arc<str>,
    resource: Arc<str>,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyKey {
    verb: &'static str,
    group: Arc<str>,
    resource: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindKey {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceKey {
    group: Arc<str>,
    resource: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StorageKey {
    op: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpKey {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseKey {
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonKey {
    reason: RejectReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkspaceKey {
    workspace: String,
}

/// Why a request was refused before reaching the registry.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RejectReason {
    /// The workspace's fair queue was full.
    QueueFull,
    /// The request waited too long in the fair queue.
    QueueTimeout,
    BodyTooLarge,
    ObjectTooLarge,
    ObjectQuota,
    WatchLimit,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::QueueFull => "queue_full",
            RejectReason::QueueTimeout => "queue_timeout",
            RejectReason::BodyTooLarge => "body_too_large",
            RejectReason::ObjectTooLarge => "object_too_large",
            RejectReason::ObjectQuota => "object_quota",
            RejectReason::WatchLimit => "watch_limit",
        }
    }
}

impl EncodeLabelValue for RejectReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

type HistogramFamily<K> = Family<K, Histogram, fn() -> Histogram>;

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

fn storage_histogram() -> Histogram {
    Histogram::new(STORAGE_BUCKETS)
}

/// Every metric family of the server.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestKey, Counter>,
    request_duration: HistogramFamily<LatencyKey>,
    in_flight: Family<KindKey, Gauge>,
    watches: Family<ResourceKey, Gauge>,
    watch_cache_objects: Family<ResourceKey, Gauge>,
    watch_cache_lag: Family<ResourceKey, Gauge>,
    storage_ops: Family<StorageKey, Counter>,
    storage_duration: HistogramFamily<OpKey>,
    workspaces: Family<PhaseKey, Gauge>,
    deletions_pending: Gauge,
    deletion_prefixes_remaining: Gauge,
    deletion_objects_deleted: Counter,
    rejected: Family<ReasonKey, Counter>,
    audit_dropped: Counter,
    fairness_in_flight: Gauge,
    fairness_waiting: Gauge,
    top_requests: Family<WorkspaceKey, Gauge>,
    top: TopWorkspaces,
    /// The (group, resource) label values seen, group -> resources, shared
    /// by every series that carries them: building a request's keys costs
    /// refcounts, not string copies.
    resource_labels: RwLock<ResourceLabels>,
    /// Serialises the top-N refresh with the encoding that reads it.
    encode_lock: Mutex<()>,
}

/// Interned (group, resource) label values, bounded by
/// [`MAX_RESOURCE_LABELS`] pairs.
struct ResourceLabels {
    by_group: HashMap<Arc<str>, HashSet<Arc<str>>>,
    len: usize,
    other: Arc<str>,
}

impl Default for ResourceLabels {
    fn default() -> Self {
        ResourceLabels {
            by_group: HashMap::new(),
            len: 0,
            other: Arc::from("other"),
        }
    }
}

impl ResourceLabels {
    fn get(&self, group: &str, resource: &str) -> Option<(Arc<str>, Arc<str>)> {
        let (g, resources) = self.by_group.get_key_value(group)?;
        let r = resources.get(resource)?;
        Some((g.clone(), r.clone()))
    }

    fn insert(&mut self, group: &str, resource: &str) -> (Arc<str>, Arc<str>) {
        let g = match self.by_group.get_key_value(group) {
            Some((g, _)) => g.clone(),
            None => Arc::from(group),
        };
        let resources = self.by_group.entry(g.clone()).or_default();
        let r: Arc<str> = Arc::from(resource);
        if resources.insert(r.clone()) {
            self.len += 1;
        }
        (g, r)
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(10, Duration::from_secs(60))
    }
}

impl Metrics {
    /// `top_workspaces` busiest workspaces over `top_window` get a series.
    pub fn new(top_workspaces: usize, top_window: Duration) -> Self {
        let mut registry = Registry::with_prefix("wsgate");
        let m = Metrics {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(request_histogram),
            in_flight: Family::default(),
            watches: Family::default(),
            watch_cache_objects: Family::default(),
            watch_cache_lag: Family::default(),
            storage_ops: Family::default(),
            storage_duration: Family::new_with_constructor(storage_histogram),
            workspaces: Family::default(),
            deletions_pending: Gauge::default(),
            deletion_prefixes_remaining: Gauge::default(),
            deletion_objects_deleted: Counter::default(),
            rejected: Family::default(),
            audit_dropped: Counter::default(),
            fairness_in_flight: Gauge::default(),
            fairness_waiting: Gauge::default(),
            top_requests: Family::default(),
            top: TopWorkspaces::new(top_workspaces, top_window),
            resource_labels: RwLock::new(ResourceLabels::default()),
            encode_lock: Mutex::new(()),
            registry: Registry::default(),
        };
        // Present from the first scrape, so dashboards see zeros.
        for kind in ["readonly", "mutating"] {
            m.in_flight.get_or_create_owned(&KindKey { kind });
        }
        let r = &mut registry;
        r.register(
            "requests",
            "API requests by verb, group, resource and HTTP code",
            m.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time to the response headers, by verb, group and resource (watches excluded)",
            m.request_duration.clone(),
        );
        r.register(
            "requests_in_flight",
            "Requests being served, by kind (readonly or mutating; watches excluded)",
            m.in_flight.clone(),
        );
        r.register(
            "watches_open",
            "Open watches by group and resource",
            m.watches.clone(),
        );
        r.register(
            "watch_cache_objects",
            "Objects held by the watch cache, by group and resource",
            m.watch_cache_objects.clone(),
        );
        r.register(
            "watch_cache_lag_revisions",
            "Revisions the watch cache is behind storage, by group and resource",
            m.watch_cache_lag.clone(),
        );
        r.register(
            "storage_operations",
            "Storage operations by operation and result (ok or an error kind)",
            m.storage_ops.clone(),
        );
        r.register(
            "storage_operation_duration_seconds",
            "Storage operation latency by operation",
            m.storage_duration.clone(),
        );
        r.register("workspaces", "Workspaces by phase", m.workspaces.clone());
        r.register(
            "workspace_deletions_pending",
            "Workspaces whose data is still being deleted in the background",
            m.deletions_pending.clone(),
        );
        r.register(
            "workspace_deletion_prefixes_remaining",
            "Resource prefixes still to sweep, summed over pending deletions",
            m.deletion_prefixes_remaining.clone(),
        );
        r.register(
            "workspace_deletion_objects_deleted",
            "Objects deleted by background workspace deletion",
            m.deletion_objects_deleted.clone(),
        );
        r.register(
            "requests_rejected",
            "Requests refused before the registry, by reason",
            m.rejected.clone(),
        );
        r.register(
            "audit_events_dropped",
            "Audit events dropped because the audit writer fell behind",
            m.audit_dropped.clone(),
        );
        r.register(
            "fairness_in_flight",
            "Requests holding a fair-admission slot",
            m.fairness_in_flight.clone(),
        );
        r.register(
            "fairness_waiting",
            "Requests waiting in a workspace's fair queue",
            m.fairness_waiting.clone(),
        );
        r.register(
            "top_workspace_requests",
            "Requests of the busiest workspaces over the top-N window (only those workspaces)",
            m.top_requests.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The exposition, OpenMetrics text (serve with [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let _serial = self.encode_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.top_requests.clear();
        for (ws, n) in self.top.top() {
            self.top_requests
                .get_or_create(&WorkspaceKey { workspace: ws })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The `/metrics` answer: [`Self::encode`] with its content type.
    pub fn response(&self) -> axum::response::Response {
        use axum::response::IntoResponse;
        (
            [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)],
            self.encode(),
        )
            .into_response()
    }

    /// Bounds the (group, resource) label space; see [`MAX_RESOURCE_LABELS`].
    fn resource_label(&self, group: &str, resource: &str) -> (Arc<str>, Arc<str>) {
        {
            let seen = self
                .resource_labels
                .read()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(pair) = seen.get(group, resource) {
                return pair;
            }
            if seen.len >= MAX_RESOURCE_LABELS {
                return (seen.other.clone(), seen.other.clone());
            }
        }
        let mut seen = self
            .resource_labels
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(pair) = seen.get(group, resource) {
            return pair;
        }
        if seen.len >= MAX_RESOURCE_LABELS {
            return (seen.other.clone(), seen.other.clone());
        }
        seen.insert(group, resource)
    }

    /// Records one finished request (the middleware calls this).
    pub fn observe_request(&self, labels: &RequestLabels, code: u16, elapsed: Duration) {
        let (group, resource) = self.resource_label(&labels.group, &labels.resource);
        let verb = labels.verb;
        if verb != "watch" {
            self.request_duration
                .get_or_create(&LatencyKey {
                    verb,
                    group: group.clone(),
                    resource: resource.clone(),
                })
                .observe(elapsed.as_secs_f64());
        }
        self.requests
            .get_or_create(&RequestKey {
                verb,
                group,
                resource,
                code,
            })
            .inc();
        if let Some(ws) = &labels.workspace {
            self.top.record(ws);
        }
    }

    /// Counts an open watch until the guard is dropped.
    pub fn watch_opened(&self, group: &str, resource: &str) -> WatchGuard {
        let (group, resource) = self.resource_label(group, resource);
        let gauge = self
            .watches
            .get_or_create_owned(&ResourceKey { group, resource });
        gauge.inc();
        WatchGuard(gauge)
    }

    pub fn set_watch_cache(&self, group: &str, resource: &str, objects: i64, lag_revisions: i64) {
        let key = ResourceKey {
            group: group.into(),
            resource: resource.into(),
        };
        self.watch_cache_objects.get_or_create(&key).set(objects);
        self.watch_cache_lag.get_or_create(&key).set(lag_revisions);
    }

    /// `result` is `ok` or a short error kind (`not_found`, `conflict`,
    /// `compacted`, `unavailable`, ...).
    pub fn observe_storage(&self, op: &'static str, result: &'static str, elapsed: Duration) {
        self.storage_ops
            .get_or_create(&StorageKey { op, result })
            .inc();
        self.storage_duration
            .get_or_create(&OpKey { op })
            .observe(elapsed.as_secs_f64());
    }

    /// `phase` is `Ready`, `Terminating`, ...
    pub fn set_workspaces(&self, phase: &'static str, count: i64) {
        self.workspaces
            .get_or_create(&PhaseKey { phase })
            .set(count);
    }

    pub fn set_deletions(&self, pending: i64, prefixes_remaining: i64) {
        self.deletions_pending.set(pending);
        self.deletion_prefixes_remaining.set(prefixes_remaining);
    }

    pub fn deleted_objects(&self, n: u64) {
        self.deletion_objects_deleted.inc_by(n);
    }

    pub fn rejected(&self, reason: RejectReason) {
        self.rejected.get_or_create(&ReasonKey { reason }).inc();
    }

    /// The counter [`crate::audit::AuditLog`] increments on each drop.
    pub fn audit_dropped_counter(&self) -> Counter {
        self.audit_dropped.clone()
    }

    /// Gauges [`crate::fairness::FairAdmission`] keeps current.
    pub fn fairness_gauges(&self) -> (Gauge, Gauge) {
        (
            self.fairness_in_flight.clone(),
            self.fairness_waiting.clone(),
        )
    }

    pub fn top_workspaces(&self) -> &TopWorkspaces {
        &self.top
    }

    fn in_flight(&self, kind: &'static str) -> Gauge {
        self.in_flight.get_or_create_owned(&KindKey { kind })
    }
}

/// How often [`spawn_workspace_gauges`] refreshes the workspace gauges.
pub const WORKSPACE_GAUGE_INTERVAL: Duration = Duration::from_secs(10);

/// Keeps `wsgate_workspaces{phase}` and `wsgate_workspace_deletions_pending`
/// current from the workspace index, every [`WORKSPACE_GAUGE_INTERVAL`].
/// Both are O(1) reads of the index (no walk over a million records): a
/// workspace is `Terminating` exactly while its deletion is pending, and
/// every other indexed workspace (root included) is `Ready`.
pub fn spawn_workspace_gauges(metrics: Arc<Metrics>, registry: Arc<registry::Registry>) {
    let weak = Arc::downgrade(&registry);
    drop(registry);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(WORKSPACE_GAUGE_INTERVAL);
        // The deleter keeps a running total; the counter gets the increase.
        let mut deleted_seen = 0u64;
        loop {
            tick.tick().await;
            let Some(registry) = weak.upgrade() else {
                return;
            };
            let deleter = registry.workspace_deleter();
            let deleted = deleter.objects_deleted();
            metrics.deleted_objects(deleted.saturating_sub(deleted_seen));
            deleted_seen = deleted;
            metrics
                .deletion_prefixes_remaining
                .set(i64::try_from(deleter.prefixes_remaining()).unwrap_or(i64::MAX));
            let index = registry.workspaces();
            let total = i64::try_from(index.len()).unwrap_or(i64::MAX);
            let pending = i64::try_from(index.pending_deletions()).unwrap_or(i64::MAX);
            metrics.set_workspaces("Ready", (total - pending).max(0));
            metrics.set_workspaces("Terminating", pending);
            metrics.deletions_pending.set(pending);
            for c in registry.watch_caches().stats().await {
                let objects = i64::try_from(c.objects).unwrap_or(i64::MAX);
                metrics.set_watch_cache(&c.group, &c.resource, objects, c.lag);
            }
        }
    });
}

/// Decrements the open-watch gauge when the watch ends.
#[derive(Debug)]
pub struct WatchGuard(Gauge);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

// ---------------------------------------------------------------------------
// Top-N busiest workspaces.

const SKETCH_DEPTH: usize = 4;
const SKETCH_WIDTH: usize = 2048;

/// The busiest workspaces over a sliding window, in bounded memory.
///
/// A count-min sketch (4 x 2048 counters) estimates every workspace's
/// requests without storing names; at most `n` candidates are kept by name,
/// and a workspace whose estimate passes the smallest candidate's takes its
/// place. Estimates never undercount, so a truly noisy workspace is never
/// missed. The window slides in halves: two sketches, the older dropped
/// every `window / 2`. Each request costs one hash and a short lock; memory
/// is 64 KiB plus `n` names, whatever the number of workspaces.
#[derive(Debug)]
pub struct TopWorkspaces {
    n: usize,
    half: Duration,
    hasher: RandomState,
    inner: Mutex<TopInner>,
}

#[derive(Debug)]
struct TopInner {
    current: Box<[u32]>,
    previous: Box<[u32]>,
    started: Instant,
    /// Candidate names with their sketch cells (hashed once).
    candidates: HashMap<Box<str>, [usize; SKETCH_DEPTH]>,
    /// The smallest candidate estimate when last computed; estimates only
    /// grow within a half-window, so below it nothing can qualify.
    threshold: u32,
}

impl TopWorkspaces {
    pub fn new(n: usize, window: Duration) -> Self {
        TopWorkspaces {
            n,
            half: (window / 2).max(Duration::from_millis(1)),
            hasher: RandomState::new(),
            inner: Mutex::new(TopInner {
                current: vec![0; SKETCH_DEPTH * SKETCH_WIDTH].into_boxed_slice(),
                previous: vec![0; SKETCH_DEPTH * SKETCH_WIDTH].into_boxed_slice(),
                started: Instant::now(),
                candidates: HashMap::with_capacity(n + 1),
                threshold: 0,
            }),
        }
    }

    pub fn record(&self, workspace: &str) {
        self.record_at(workspace, Instant::now());
    }

    /// The busiest workspaces, most requests first, with their estimates.
    pub fn top(&self) -> Vec<(String, u64)> {
        self.top_at(Instant::now())
    }

    /// How many workspace names are held (at most `n`).
    pub fn tracked(&self) -> usize {
        self.lock().candidates.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TopInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cells(&self, workspace: &str) -> [usize; SKETCH_DEPTH] {
        let x = self.hasher.hash_one(workspace);
        // Double hashing: row i uses h1 + i * h2.
        let (h1, h2) = (x as u32 as usize, ((x >> 32) as usize) | 1);
        std::array::from_fn(|i| {
            i * SKETCH_WIDTH + h1.wrapping_add(i.wrapping_mul(h2)) % SKETCH_WIDTH
        })
    }

    fn estimate(inner: &TopInner, cells: &[usize; SKETCH_DEPTH]) -> u32 {
        cells
            .iter()
            .map(|&c| inner.current[c].saturating_add(inner.previous[c]))
            .min()
            .unwrap_or(0)
    }

    fn rotate(&self, inner: &mut TopInner, now: Instant) {
        let elapsed = now.saturating_duration_since(inner.started);
        if elapsed < self.half {
            return;
        }
        if elapsed >= self.half * 2 {
            // Idle for a whole window: nothing is recent.
            inner.previous.fill(0);
            inner.current.fill(0);
            inner.started = now;
        } else {
            std::mem::swap(&mut inner.previous, &mut inner.current);
            inner.current.fill(0);
            inner.started += self.half;
        }
        let sketch: &TopInner = inner;
        let stale: Vec<Box<str>> = sketch
            .candidates
            .iter()
            .filter(|(_, cells)| Self::estimate(sketch, cells) == 0)
            .map(|(ws, _)| ws.clone())
            .collect();
        for ws in stale {
            inner.candidates.remove(&ws);
        }
        inner.threshold = 0;
    }

    fn record_at(&self, workspace: &str, now: Instant) {
        if self.n == 0 {
            return;
        }
        let cells = self.cells(workspace);
        let mut inner = self.lock();
        self.rotate(&mut inner, now);
        for &c in &cells {
            inner.current[c] = inner.current[c].saturating_add(1);
        }
        let estimate = Self::estimate(&inner, &cells);
        if estimate <= inner.threshold || inner.candidates.contains_key(workspace) {
            return;
        }
        if inner.candidates.len() < self.n {
            inner.candidates.insert(workspace.into(), cells);
            return;
        }
        let sketch: &TopInner = &inner;
        let smallest = sketch
            .candidates
            .iter()
            .map(|(ws, c)| (Self::estimate(sketch, c), ws))
            .min_by_key(|(e, _)| *e)
            .map(|(e, ws)| (e, ws.clone()));
        if let Some((min, ws)) = smallest {
            if estimate > min {
                inner.candidates.remove(&ws);
                inner.candidates.insert(workspace.into(), cells);
            } else {
                inner.threshold = min;
            }
        }
    }

    fn top_at(&self, now: Instant) -> Vec<(String, u64)> {
        let mut inner = self.lock();
        self.rotate(&mut inner, now);
        let sketch: &TopInner = &inner;
        let mut out: Vec<(String, u64)> = sketch
            .candidates
            .iter()
            .map(|(ws, cells)| (ws.to_string(), u64::from(Self::estimate(sketch, cells))))
            .filter(|(_, e)| *e > 0)
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }
}

// ---------------------------------------------------------------------------
// The middleware.

/// Records request count, latency and in-flight for every request.
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    metrics: Arc<Metrics>,
}

impl MetricsLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        MetricsLayer { metrics }
    }
}

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// Lowers the in-flight gauge even when the request future is dropped
/// (client gone).
struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn method_verb(m: &Method) -> &'static str {
    match *m {
        Method::GET => "get",
        Method::HEAD => "head",
        Method::POST => "post",
        Method::PUT => "put",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        Method::OPTIONS => "options",
        _ => "other",
    }
}

impl<S, B, R> tower::Service<Request<B>> for MetricsService<S>
where
    S: tower::Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let metrics = self.metrics.clone();
        let readonly = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        let method = method_verb(req.method());
        let gauge = metrics.in_flight(if readonly { "readonly" } else { "mutating" });
        gauge.inc();
        let guard = InFlight(gauge);
        let start = Instant::now();
        // The clone that was polled ready serves this call (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let result = inner.call(req).await;
            let elapsed = start.elapsed();
            drop(guard);
            if let Ok(resp) = &result {
                let code = resp.status().as_u16();
                match resp.extensions().get::<RequestLabels>() {
                    Some(labels) => metrics.observe_request(labels, code, elapsed),
                    None => metrics.observe_request(
                        &RequestLabels {
                            verb: method,
                            ..RequestLabels::default()
                        },
                        code,
                        elapsed,
                    ),
                }
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::{Layer, ServiceExt};

    fn in_flight_value(m: &Metrics, kind: &'static str) -> i64 {
        m.in_flight(kind).get()
    }

    #[test]
    fn encode_lists_every_family() {
        let m = Metrics::default();
        let labels = RequestLabels {
            verb: "list",
            group: "".into(),
            resource: "configmaps".into(),
            workspace: Some("acme".into()),
            user: None,
        };
        m.observe_request(&labels, 200, Duration::from_millis(3));
        let _w = m.watch_opened("apps", "deployments");
        m.set_watch_cache("", "configmaps", 10, 0);
        m.observe_storage("range", "ok", Duration::from_micros(300));
        m.set_workspaces("Ready", 3);
        m.set_deletions(1, 12);
        m.deleted_objects(5);
        m.rejected(RejectReason::QueueFull);
        let text = m.encode();
        for family in [
            "wsgate_requests_total{verb=\"list\",group=\"\",resource=\"configmaps\",code=\"200\"} 1",
            "wsgate_request_duration_seconds_bucket{",
            "wsgate_requests_in_flight",
            "wsgate_watches_open{group=\"apps\",resource=\"deployments\"} 1",
            "wsgate_watch_cache_objects{",
            "wsgate_watch_cache_lag_revisions{",
            "wsgate_storage_operations_total{op=\"range\",result=\"ok\"} 1",
            "wsgate_storage_operation_duration_seconds_bucket{",
            "wsgate_workspaces{phase=\"Ready\"} 3",
            "wsgate_workspace_deletions_pending 1",
            "wsgate_workspace_deletion_prefixes_remaining 12",
            "wsgate_workspace_deletion_objects_deleted_total 5",
            "wsgate_requests_rejected_total{reason=\"queue_full\"} 1",
            "wsgate_audit_events_dropped_total 0",
            "wsgate_fairness_waiting",
            "wsgate_top_workspace_requests{workspace=\"acme\"} 1",
            "# EOF",
        ] {
            assert!(text.contains(family), "missing {family} in\n{text}");
        }
        // No other family carries a workspace label.
        for line in text.lines().filter(|l| l.contains("workspace=")) {
            assert!(line.starts_with("wsgate_top_workspace_requests"), "{line}");
        }
        drop(_w);
        let resp = m.response();
        assert_eq!(
            resp.headers().get("content-type").map(|v| v.as_bytes()),
            Some(CONTENT_TYPE.as_bytes())
        );
        assert!(
            m.encode()
                .contains("wsgate_watches_open{group=\"apps\",resource=\"deployments\"} 0")
        );
    }

    #[test]
    fn resource_labels_are_bounded() {
        let m = Metrics::default();
        for i in 0..MAX_RESOURCE_LABELS + 10 {
            let l = RequestLabels {
                verb: "get",
                group: format!("g{i}.example.com"),
                resource: "things".into(),
                ..RequestLabels::default()
            };
            m.observe_request(&l, 200, Duration::ZERO);
        }
        let text = m.encode();
        assert!(text.contains("group=\"other\",resource=\"other\",code=\"200\"} 10"));
    }

    #[test]
    fn top_n_keeps_the_noisy_workspace_in_bounded_memory() {
        let top = TopWorkspaces::new(5, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..100_000u32 {
            // 100,000 quiet workspaces, one request each, and one noisy one.
            top.record_at(&format!("quiet-{i}"), t0);
            if i % 20 == 0 {
                top.record_at("noisy", t0);
            }
            assert!(top.tracked() <= 5);
        }
        let list = top.top_at(t0);
        assert_eq!(
            list.first().map(|(w, _)| w.as_str()),
            Some("noisy"),
            "{list:?}"
        );
        assert!(list[0].1 >= 5000, "never undercounts: {list:?}");
        assert!(list.len() <= 5);

        // Half a window later the old counts still show; a window later not.
        let later = t0 + Duration::from_secs(31);
        assert_eq!(
            top.top_at(later).first().map(|(w, _)| w.clone()),
            Some("noisy".into())
        );
        let much_later = t0 + Duration::from_secs(125);
        assert!(top.top_at(much_later).is_empty());
        assert_eq!(top.tracked(), 0);
    }

    #[test]
    fn a_new_noisy_workspace_displaces_an_old_one() {
        let top = TopWorkspaces::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..10 {
            top.record_at("a", t0);
            top.record_at("b", t0);
        }
        for _ in 0..50 {
            top.record_at("c", t0);
        }
        let names: Vec<String> = top.top_at(t0).into_iter().map(|(w, _)| w).collect();
        assert_eq!(names.first().map(String::as_str), Some("c"));
        assert_eq!(names.len(), 2);
    }

    #[tokio::test]
    async fn the_layer_records_requests() {
        let m = Arc::new(Metrics::default());
        let svc = tower::service_fn(|_req: Request<Body>| async {
            let mut resp = Response::new(Body::empty());
            resp.extensions_mut().insert(RequestLabels {
                verb: "create",
                group: "apps".into(),
                resource: "deployments".into(),
                workspace: Some("acme".into()),
                user: Some("alice".into()),
            });
            *resp.status_mut() = axum::http::StatusCode::CREATED;
            Ok::<_, std::convert::Infallible>(resp)
        });
        let svc = MetricsLayer::new(m.clone()).layer(svc);
        let req = Request::post("/clusters/acme/apis/apps/v1/namespaces/d/deployments")
            .body(Body::empty())
            .expect("request");
        let resp = svc.clone().oneshot(req).await.expect("infallible");
        assert_eq!(resp.status(), 201);
        let text = m.encode();
        assert!(
            text.contains("wsgate_requests_total{verb=\"create\",group=\"apps\",resource=\"deployments\",code=\"201\"} 1"),
            "{text}"
        );
        assert_eq!(in_flight_value(&m, "mutating"), 0);

        // Without labels: counted by method.
        let plain =
            MetricsLayer::new(m.clone()).layer(tower::service_fn(|_r: Request<Body>| async {
                Ok::<_, std::convert::Infallible>(Response::new(Body::empty()))
            }));
        let _ = plain
            .oneshot(
                Request::get("/healthz")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await;
        assert!(
            m.encode()
                .contains("verb=\"get\",group=\"\",resource=\"\",code=\"200\"} 1")
        );
    }
}
