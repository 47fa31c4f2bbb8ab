//! The audit log: who did what in which workspace, and the answer.
//!
//! One JSON line per request in the shape of kube-apiserver's
//! `audit.k8s.io/v1` `Event` at stage `ResponseComplete`, with the
//! workspace in the `wsgate.io/workspace` annotation. Level `metadata`
//! records who, what, where and the code; `request` adds the request body;
//! `requestresponse` the response body too (when it was not streamed).
//! [`AuditRule`]s pick the level per user, group, verb and resource (first
//! match wins; `none` records nothing), else `audit.level` applies.
//! `sourceIPs` is the peer address, preceded by the `X-Forwarded-For`
//! chain only when the peer is a configured trusted proxy.
//!
//! What is never written: headers (the bearer token travels in
//! `Authorization`), Secret values (`data`, `stringData`, and the
//! `last-applied-configuration` annotation that copies them, anywhere in a
//! request or response about secrets; a JSON patch to a Secret has every
//! `value` redacted), tokens (a TokenRequest's `status`, a TokenReview's
//! `spec.token`), and bodies that are not JSON.
//!
//! A file log rotates when it would pass `max_size_mb`: `audit.log` becomes
//! `audit.log.1` (older ones shift up to `max_backups`, the oldest is
//! removed), like kube-apiserver's `--audit-log-maxsize/--audit-log-maxbackup`
//! (which names backups by timestamp instead).
//!
//! The request path only does a `try_send` into a bounded channel; parsing,
//! redaction, serialisation and I/O happen on the writer task. A full
//! channel drops the event and counts it (`wsgate_audit_events_dropped`)
//! rather than slowing requests.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::HeaderMap;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::{AuditLevel, AuditSection};

/// Annotation holding the workspace path.
pub const WORKSPACE_ANNOTATION: &str = "wsgate.io/workspace";
/// Annotation saying why a request body is missing or altered.
pub const REQUEST_OBJECT_ANNOTATION: &str = "wsgate.io/request-object";
/// Annotation saying why a response body is missing or altered.
pub const RESPONSE_OBJECT_ANNOTATION: &str = "wsgate.io/response-object";
const REDACTED: &str = "<redacted>";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("opening the audit log {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the audit log: {0}")]
    Write(#[source] std::io::Error),
    #[error("the audit writer task failed: {0}")]
    Task(String),
}

/// Who made the request.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct AuditUser {
    pub username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

impl AuditUser {
    pub fn of(user: &crate::auth::User) -> Self {
        AuditUser {
            username: user.name.clone(),
            uid: Some(user.uid.clone()).filter(|u| !u.is_empty()),
            groups: user.groups.clone(),
        }
    }
}

/// What the request was about (`objectRef`).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub resource: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `""` for the core group (serialised as absent, like upstream).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    pub api_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
}

impl ObjectRef {
    fn is(&self, group: &str, resource: &str) -> bool {
        self.api_group == group && self.resource == resource
    }
}

/// One finished request, as the router knows it.
#[derive(Clone, Debug)]
pub struct AuditRecord {
    /// The request id ([`crate::request_id::RequestId`]).
    pub audit_id: String,
    /// Path and query; never headers.
    pub request_uri: String,
    pub verb: String,
    pub user: AuditUser,
    /// The identity the request ran as (`Impersonate-User`).
    pub impersonated_user: Option<AuditUser>,
    pub source_ips: Vec<String>,
    pub user_agent: Option<String>,
    pub object_ref: Option<ObjectRef>,
    pub workspace: Option<String>,
    pub code: u16,
    pub received: DateTime<Utc>,
    pub completed: DateTime<Utc>,
    /// The request body; kept only at level `request` and above.
    pub request_body: Option<Bytes>,
    /// The response body (`None` when streamed); kept only at
    /// `requestresponse`.
    pub response_body: Option<Bytes>,
}

/// One audit policy rule (`[[audit.rules]]`). Empty lists match anything;
/// `resources` entries are `resource` (core group), `group/resource`, or
/// `*`; a non-resource request matches only rules without `resources`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AuditRule {
    pub level: RuleLevel,
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub verbs: Vec<String>,
    pub resources: Vec<String>,
}

/// A rule's level: an [`AuditLevel`] or `none` (not recorded).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum RuleLevel {
    None,
    #[default]
    Metadata,
    Request,
    RequestResponse,
}

impl From<AuditLevel> for RuleLevel {
    fn from(l: AuditLevel) -> Self {
        match l {
            AuditLevel::Metadata => RuleLevel::Metadata,
            AuditLevel::Request => RuleLevel::Request,
            AuditLevel::RequestResponse => RuleLevel::RequestResponse,
        }
    }
}

impl AuditRule {
    fn matches(&self, r: &AuditRecord) -> bool {
        let any =
            |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == "*" || x == v);
        let user_ok = any(&self.users, &r.user.username);
        let group_ok = self.groups.is_empty()
            || r.user
                .groups
                .iter()
                .any(|g| self.groups.iter().any(|x| x == g || x == "*"));
        let resource_ok = match (&r.object_ref, self.resources.is_empty()) {
            (_, true) => true,
            (None, false) => false,
            (Some(o), false) => self.resources.iter().any(|x| {
                x == "*"
                    || match x.split_once('/') {
                        Some((g, res)) => g == o.api_group && (res == "*" || res == o.resource),
                        None => o.api_group.is_empty() && x == &o.resource,
                    }
            }),
        };
        user_ok && group_ok && any(&self.verbs, &r.verb) && resource_ok
    }
}

/// `sourceIPs` of a request: the peer address; when the peer is a trusted
/// proxy, the `X-Forwarded-For` addresses first (client first, as
/// upstream). Untrusted peers cannot put addresses into the log.
pub fn source_ips(
    peer: Option<&crate::tls::Peer>,
    headers: &HeaderMap,
    trusted_proxies: &[IpAddr],
) -> Vec<String> {
    let Some(peer) = peer else {
        return Vec::new();
    };
    let ip = peer.addr.ip().to_canonical();
    let mut out = Vec::new();
    if trusted_proxies.contains(&ip) {
        for v in headers.get_all("x-forwarded-for") {
            if let Ok(v) = v.to_str() {
                out.extend(
                    v.split(',')
                        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
                        .map(|a| a.to_string()),
                );
            }
        }
    }
    out.push(ip.to_string());
    out
}

/// A handle for recording events; cheap to clone. [`AuditLog::disabled`]
/// records nothing.
#[derive(Clone, Debug)]
pub struct AuditLog {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    tx: mpsc::Sender<(AuditRecord, RuleLevel)>,
    level: RuleLevel,
    rules: Vec<AuditRule>,
    /// The highest level any rule or the default can pick.
    max_level: RuleLevel,
    trusted_proxies: Vec<IpAddr>,
    dropped: AtomicU64,
    dropped_metric: Counter,
}

/// The writer task; [`AuditWriter::finish`] flushes what is queued.
#[derive(Debug)]
pub struct AuditWriter {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), AuditError>>,
}

impl AuditWriter {
    /// Stops taking events, writes those already queued, flushes.
    pub async fn finish(self) -> Result<(), AuditError> {
        let _ = self.shutdown.send(());
        self.task
            .await
            .map_err(|e| AuditError::Task(e.to_string()))?
    }
}

impl AuditLog {
    pub fn disabled() -> Self {
        AuditLog { inner: None }
    }

    /// Opens the output (a file, appended to, mode 0600; or `-` for
    /// stdout) and starts the writer task. Needs a tokio runtime. Returns a
    /// disabled log and no writer when auditing is off.
    pub fn start(
        config: &AuditSection,
        dropped_metric: Counter,
    ) -> Result<(AuditLog, Option<AuditWriter>), AuditError> {
        if !config.enabled {
            return Ok((AuditLog::disabled(), None));
        }
        let out = if config.path == "-" {
            Output::Stdout(BufWriter::new(tokio::io::stdout()))
        } else {
            let path = PathBuf::from(&config.path);
            let (file, size) = open_log(&path)?;
            Output::File {
                file: BufWriter::new(file),
                size,
                max_bytes: config.max_size_mb.saturating_mul(1024 * 1024),
                max_backups: config.max_backups,
                path,
            }
        };
        let (log, rx) = Self::channel(config, dropped_metric);
        let (shutdown, stop) = oneshot::channel();
        let task = tokio::spawn(write_events(rx, stop, out));
        Ok((log, Some(AuditWriter { shutdown, task })))
    }

    fn channel(
        config: &AuditSection,
        dropped_metric: Counter,
    ) -> (AuditLog, mpsc::Receiver<(AuditRecord, RuleLevel)>) {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let level = RuleLevel::from(config.level);
        let max_level = config
            .rules
            .iter()
            .map(|r| r.level)
            .chain([level])
            .max()
            .unwrap_or(level);
        let log = AuditLog {
            inner: Some(Arc::new(Inner {
                tx,
                level,
                rules: config.rules.clone(),
                max_level,
                trusted_proxies: config.trusted_proxies.clone(),
                dropped: AtomicU64::new(0),
                dropped_metric,
            })),
        };
        (log, rx)
    }

    /// Peers whose `X-Forwarded-For` is believed.
    pub fn trusted_proxies(&self) -> &[IpAddr] {
        self.inner
            .as_ref()
            .map_or(&[][..], |i| &i.trusted_proxies[..])
    }

    /// Whether a response body may be wanted.
    pub fn wants_response_body(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|i| i.max_level >= RuleLevel::RequestResponse)
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Whether request bodies may be wanted (so the caller can skip
    /// keeping one).
    pub fn wants_request_body(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|i| i.max_level >= RuleLevel::Request)
    }

    /// Queues an event without waiting at the level the rules pick;
    /// `false` if it was dropped or the level is `none`.
    pub fn record(&self, mut record: AuditRecord) -> bool {
        let Some(inner) = &self.inner else {
            return false;
        };
        let level = inner
            .rules
            .iter()
            .find(|r| r.matches(&record))
            .map_or(inner.level, |r| r.level);
        if level == RuleLevel::None {
            return false;
        }
        if level < RuleLevel::Request {
            record.request_body = None;
        }
        if level < RuleLevel::RequestResponse {
            record.response_body = None;
        }
        match inner.tx.try_send((record, level)) {
            Ok(()) => true,
            Err(_) => {
                let n = inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                inner.dropped_metric.inc();
                // Powers of two: the operator hears of it without a flood.
                if n.is_power_of_two() {
                    tracing::warn!(dropped = n, "audit events dropped: the writer is behind");
                }
                false
            }
        }
    }

    /// Events dropped so far.
    pub fn dropped(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |i| i.dropped.load(Ordering::Relaxed))
    }
}

/// Where events go.
enum Output {
    Stdout(BufWriter<tokio::io::Stdout>),
    File {
        file: BufWriter<tokio::fs::File>,
        path: PathBuf,
        /// Bytes in the current file.
        size: u64,
        /// 0: never rotate.
        max_bytes: u64,
        max_backups: usize,
    },
}

fn open_log(path: &Path) -> Result<(tokio::fs::File, u64), AuditError> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path).map_err(|source| AuditError::Open {
        path: path.to_owned(),
        source,
    })?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((tokio::fs::File::from_std(file), size))
}

/// `audit.log.<n>`.
fn backup_path(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

impl Output {
    async fn write(&mut self, line: &[u8]) -> Result<(), AuditError> {
        match self {
            Output::Stdout(out) => out.write_all(line).await.map_err(AuditError::Write),
            Output::File {
                file,
                path,
                size,
                max_bytes,
                max_backups,
            } => {
                let len = line.len() as u64;
                if *max_bytes > 0 && *size > 0 && *size + len > *max_bytes {
                    file.flush().await.map_err(AuditError::Write)?;
                    rotate(path, *max_backups).map_err(AuditError::Write)?;
                    let (new, _) = open_log(path)?;
                    *file = BufWriter::new(new);
                    *size = 0;
                }
                file.write_all(line).await.map_err(AuditError::Write)?;
                *size += len;
                Ok(())
            }
        }
    }

    async fn flush(&mut self) -> Result<(), AuditError> {
        match self {
            Output::Stdout(out) => out.flush().await,
            Output::File { file, .. } => file.flush().await,
        }
        .map_err(AuditError::Write)
    }
}

/// Shifts `path.<n>` to `path.<n+1>` (dropping the last), then `path` to
/// `path.1`; with no backups kept, the full file is removed.
fn rotate(path: &Path, max_backups: usize) -> std::io::Result<()> {
    if max_backups == 0 {
        return std::fs::remove_file(path);
    }
    let _ = std::fs::remove_file(backup_path(path, max_backups));
    for n in (1..max_backups).rev() {
        let from = backup_path(path, n);
        if from.exists() {
            std::fs::rename(&from, backup_path(path, n + 1))?;
        }
    }
    std::fs::rename(path, backup_path(path, 1))
}

async fn write_events(
    mut rx: mpsc::Receiver<(AuditRecord, RuleLevel)>,
    mut stop: oneshot::Receiver<()>,
    mut out: Output,
) -> Result<(), AuditError> {
    let mut line = Vec::with_capacity(1024);
    loop {
        let first = tokio::select! {
            r = rx.recv() => r,
            _ = &mut stop => {
                rx.close();
                None
            }
        };
        let stopping = first.is_none();
        // Write everything already queued, then flush once.
        let mut next = first;
        loop {
            if let Some((record, level)) = next.take() {
                line.clear();
                encode_event(&record, level, &mut line);
                out.write(&line).await?;
            }
            match rx.try_recv() {
                Ok(r) => next = Some(r),
                Err(_) => break,
            }
        }
        out.flush().await?;
        if stopping {
            return Ok(());
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    kind: &'static str,
    api_version: &'static str,
    level: &'static str,
    #[serde(rename = "auditID")]
    audit_id: &'a str,
    stage: &'static str,
    #[serde(rename = "requestURI")]
    request_uri: &'a str,
    verb: &'a str,
    user: &'a AuditUser,
    #[serde(skip_serializing_if = "Option::is_none")]
    impersonated_user: Option<&'a AuditUser>,
    #[serde(rename = "sourceIPs", skip_serializing_if = "<[String]>::is_empty")]
    source_ips: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    object_ref: Option<&'a ObjectRef>,
    response_status: ResponseStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_object: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_object: Option<Value>,
    request_received_timestamp: String,
    stage_timestamp: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
struct ResponseStatus {
    metadata: Map<String, Value>,
    code: u16,
}

fn timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// One JSON line (with the newline) for `record`.
fn encode_event(record: &AuditRecord, level: RuleLevel, out: &mut Vec<u8>) {
    let mut annotations = BTreeMap::new();
    if let Some(ws) = &record.workspace {
        annotations.insert(WORKSPACE_ANNOTATION, ws.clone());
    }
    let request_object = match &record.request_body {
        Some(body) if !body.is_empty() => {
            let (object, note) = logged_object(record.object_ref.as_ref(), body, Side::Request);
            if let Some(note) = note {
                annotations.insert(REQUEST_OBJECT_ANNOTATION, note.to_owned());
            }
            object
        }
        _ => None,
    };
    let response_object = match &record.response_body {
        Some(body) if !body.is_empty() => {
            let (object, note) = logged_object(record.object_ref.as_ref(), body, Side::Response);
            if let Some(note) = note {
                annotations.insert(RESPONSE_OBJECT_ANNOTATION, note.to_owned());
            }
            object
        }
        _ if level == RuleLevel::RequestResponse => {
            annotations.insert(RESPONSE_OBJECT_ANNOTATION, "omitted: streamed".to_owned());
            None
        }
        _ => None,
    };
    let level = match level {
        RuleLevel::None | RuleLevel::Metadata => "Metadata",
        RuleLevel::Request => "Request",
        RuleLevel::RequestResponse => "RequestResponse",
    };
    let event = Event {
        kind: "Event",
        api_version: "audit.k8s.io/v1",
        level,
        audit_id: &record.audit_id,
        stage: "ResponseComplete",
        request_uri: &record.request_uri,
        verb: &record.verb,
        user: &record.user,
        impersonated_user: record.impersonated_user.as_ref(),
        source_ips: &record.source_ips,
        user_agent: record.user_agent.as_deref(),
        object_ref: record.object_ref.as_ref(),
        response_status: ResponseStatus {
            metadata: Map::new(),
            code: record.code,
        },
        request_object,
        response_object,
        request_received_timestamp: timestamp(&record.received),
        stage_timestamp: timestamp(&record.completed),
        annotations,
    };
    // Serialising plain data with string keys cannot fail; an empty line
    // would be the worst outcome.
    if serde_json::to_writer(&mut *out, &event).is_ok() {
        out.push(b'\n');
    } else {
        out.clear();
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Request,
    Response,
}

/// The body as it may appear in the log, and a note when it was altered
/// or left out.
fn logged_object(
    object_ref: Option<&ObjectRef>,
    body: &[u8],
    side: Side,
) -> (Option<Value>, Option<&'static str>) {
    let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
        return (None, Some("omitted: not JSON"));
    };
    let secret = object_ref.is_some_and(|r| r.is("", "secrets"));
    let token_request = object_ref
        .is_some_and(|r| r.is("", "serviceaccounts") && r.subresource.as_deref() == Some("token"));
    let token_review = object_ref.is_some_and(|r| r.is("authentication.k8s.io", "tokenreviews"));
    let mut redacted = false;
    if secret && side == Side::Response {
        // Objects, lists (whose items carry no kind) and tables with
        // objects: every Secret field anywhere.
        redact_everywhere(&mut value);
        redacted = true;
    } else if secret {
        match &mut value {
            // A Secret, a list of them, or a merge/strategic patch.
            Value::Object(map) => {
                redact_secret_fields(map);
                redact_items(map);
            }
            // A JSON patch: every value may be secret data.
            Value::Array(ops) => {
                for op in ops.iter_mut() {
                    if let Some(v) = op.as_object_mut().and_then(|o| o.get_mut("value")) {
                        *v = Value::String(REDACTED.to_owned());
                    }
                }
            }
            _ => return (None, Some("omitted: Secret")),
        }
        redacted = true;
    } else if let Value::Object(map) = &mut value {
        // A Secret inside something else (a List) is still a Secret.
        redacted = redact_items(map);
        if token_request {
            redacted |= map.remove("status").is_some();
        }
        if token_review && let Some(Value::Object(spec)) = map.get_mut("spec") {
            redacted |= spec.remove("token").is_some();
        }
    }
    (Some(value), redacted.then_some("Secret values redacted"))
}

fn redact_everywhere(value: &mut Value) {
    match value {
        Value::Object(map) => {
            redact_secret_fields(map);
            for v in map.values_mut() {
                redact_everywhere(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_everywhere),
        _ => {}
    }
}

/// Redacts Secrets in `items` (lists); whether any were found.
fn redact_items(map: &mut Map<String, Value>) -> bool {
    let mut found = false;
    if let Some(Value::Array(items)) = map.get_mut("items") {
        for item in items.iter_mut() {
            if let Value::Object(o) = item
                && o.get("kind").and_then(Value::as_str) == Some("Secret")
            {
                redact_secret_fields(o);
                found = true;
            }
        }
    }
    found
}

fn redact_secret_fields(map: &mut Map<String, Value>) {
    for field in ["data", "stringData"] {
        match map.get_mut(field) {
            Some(Value::Object(entries)) => {
                for v in entries.values_mut() {
                    *v = Value::String(REDACTED.to_owned());
                }
            }
            Some(v) if !v.is_null() => *v = Value::String(REDACTED.to_owned()),
            _ => {}
        }
    }
    // kubectl apply copies the whole object, data included, into this.
    if let Some(Value::Object(annotations)) = map
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        && let Some(v) = annotations.get_mut(LAST_APPLIED)
    {
        *v = Value::String(REDACTED.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(resource: &str, subresource: Option<&str>, body: Option<&str>) -> AuditRecord {
        let now = Utc::now();
        AuditRecord {
            audit_id: "0b6f1c2e-0000-4000-8000-000000000001".into(),
            request_uri: format!("/clusters/acme/api/v1/namespaces/default/{resource}"),
            verb: "create".into(),
            user: AuditUser {
                username: "alice".into(),
                uid: None,
                groups: vec!["system:authenticated".into()],
            },
            impersonated_user: None,
            source_ips: vec!["127.0.0.1".into()],
            user_agent: Some("kubectl/v1.33".into()),
            object_ref: Some(ObjectRef {
                resource: resource.into(),
                namespace: Some("default".into()),
                name: Some("x".into()),
                api_group: String::new(),
                api_version: "v1".into(),
                subresource: subresource.map(Into::into),
            }),
            workspace: Some("acme".into()),
            code: 201,
            received: now,
            completed: now,
            request_body: body.map(|b| Bytes::from(b.to_owned())),
            response_body: None,
        }
    }

    async fn run(level: AuditLevel, records: Vec<AuditRecord>) -> Vec<Value> {
        run_with(level, Vec::new(), records).await
    }

    async fn run_with(
        level: AuditLevel,
        rules: Vec<AuditRule>,
        records: Vec<AuditRecord>,
    ) -> Vec<Value> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("audit.log");
        let config = AuditSection {
            enabled: true,
            path: path.to_string_lossy().into_owned(),
            level,
            queue_capacity: 100,
            rules,
            ..AuditSection::default()
        };
        let (log, writer) = AuditLog::start(&config, Counter::default()).expect("starts");
        for r in records {
            log.record(r);
        }
        writer.expect("a writer").finish().await.expect("flushes");
        let text = std::fs::read_to_string(&path).expect("read");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o077, 0, "the audit log is private");
        }
        text.lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    const SECRET: &str = r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"data\":{\"password\":\"aHVudGVyMg==\"}}"}},"data":{"password":"aHVudGVyMg=="},"stringData":{"token":"hunter2"}}"#;

    #[tokio::test]
    async fn metadata_level_has_the_event_shape_and_no_body() {
        let events = run(
            AuditLevel::Metadata,
            vec![record("configmaps", None, Some(r#"{"data":{"k":"v"}}"#))],
        )
        .await;
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e["kind"], "Event");
        assert_eq!(e["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(e["level"], "Metadata");
        assert_eq!(e["stage"], "ResponseComplete");
        assert_eq!(e["auditID"], "0b6f1c2e-0000-4000-8000-000000000001");
        assert_eq!(e["verb"], "create");
        assert_eq!(e["user"]["username"], "alice");
        assert_eq!(e["user"]["groups"][0], "system:authenticated");
        assert_eq!(e["objectRef"]["resource"], "configmaps");
        assert_eq!(e["objectRef"]["apiVersion"], "v1");
        assert!(
            e["objectRef"].get("apiGroup").is_none(),
            "core group is absent"
        );
        assert_eq!(e["responseStatus"]["code"], 201);
        assert_eq!(e["annotations"][WORKSPACE_ANNOTATION], "acme");
        assert_eq!(e["sourceIPs"][0], "127.0.0.1");
        assert!(
            e["requestReceivedTimestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
        assert!(e.get("requestObject").is_none());
    }

    #[tokio::test]
    async fn request_level_keeps_bodies_but_never_secret_values() {
        let list = format!(r#"{{"kind":"List","items":[{SECRET}]}}"#);
        let events = run(
            AuditLevel::Request,
            vec![
                record("configmaps", None, Some(r#"{"data":{"k":"v"}}"#)),
                record("secrets", None, Some(SECRET)),
                record("secrets", None, Some(r#"{"data":{"password":"aHVudGVyMg=="}}"#)),
                record(
                    "secrets",
                    None,
                    Some(r#"[{"op":"replace","path":"/data/password","value":"aHVudGVyMg=="}]"#),
                ),
                record("secrets", None, Some("apiVersion: v1\nkind: Secret\nstringData:\n  token: hunter2\n")),
                record("configmaps", None, Some(&list)),
                record(
                    "serviceaccounts",
                    Some("token"),
                    Some(r#"{"kind":"TokenRequest","spec":{},"status":{"token":"eyJhbGciOi.hunter2"}}"#),
                ),
            ],
        )
        .await;
        assert_eq!(events.len(), 7);
        assert_eq!(events[0]["level"], "Request");
        assert_eq!(events[0]["requestObject"]["data"]["k"], "v");
        let text = events.iter().map(Value::to_string).collect::<String>();
        assert!(!text.contains("aHVudGVyMg"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(events[1]["requestObject"]["data"]["password"], REDACTED);
        assert_eq!(events[1]["requestObject"]["metadata"]["name"], "x");
        assert_eq!(
            events[1]["annotations"][REQUEST_OBJECT_ANNOTATION],
            "Secret values redacted"
        );
        assert_eq!(events[3]["requestObject"][0]["path"], "/data/password");
        assert!(
            events[4].get("requestObject").is_none(),
            "YAML is not logged"
        );
        assert_eq!(
            events[4]["annotations"][REQUEST_OBJECT_ANNOTATION],
            "omitted: not JSON"
        );
        assert_eq!(
            events[5]["requestObject"]["items"][0]["data"]["password"],
            REDACTED
        );
        assert!(events[6]["requestObject"].get("status").is_none());
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let counter = Counter::default();
        // No writer: nothing drains the channel.
        let config = AuditSection {
            queue_capacity: 2,
            ..AuditSection::default()
        };
        let (log, _rx) = AuditLog::channel(&config, counter.clone());
        for _ in 0..5 {
            log.record(record("configmaps", None, None));
        }
        assert_eq!(log.dropped(), 3);
        assert_eq!(counter.get(), 3);
    }

    #[tokio::test]
    async fn request_response_level_logs_responses_without_secret_data_or_tokens() {
        let mut get_secret = record("secrets", None, None);
        get_secret.verb = "list".into();
        get_secret.response_body = Some(Bytes::from_static(
            br#"{"kind":"SecretList","items":[{"metadata":{"name":"x"},"data":{"password":"aHVudGVyMg=="}}]}"#,
        ));
        let mut cm = record("configmaps", None, Some(r#"{"data":{"k":"v"}}"#));
        cm.response_body = Some(Bytes::from_static(
            br#"{"kind":"ConfigMap","data":{"k":"v"}}"#,
        ));
        let mut token = record(
            "serviceaccounts",
            Some("token"),
            Some(r#"{"kind":"TokenRequest","spec":{}}"#),
        );
        token.response_body = Some(Bytes::from_static(
            br#"{"kind":"TokenRequest","status":{"token":"eyJhbGciOi.hunter2"}}"#,
        ));
        let mut review = record(
            "tokenreviews",
            None,
            Some(r#"{"spec":{"token":"eyJ.hunter2"}}"#),
        );
        if let Some(o) = review.object_ref.as_mut() {
            o.api_group = "authentication.k8s.io".into();
        }
        let watch = record("configmaps", None, None);
        let events = run(
            AuditLevel::RequestResponse,
            vec![get_secret, cm, token, review, watch],
        )
        .await;
        assert_eq!(events.len(), 5);
        let text = events.iter().map(Value::to_string).collect::<String>();
        assert!(!text.contains("aHVudGVyMg"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(events[0]["level"], "RequestResponse");
        assert_eq!(
            events[0]["responseObject"]["items"][0]["data"]["password"],
            REDACTED
        );
        assert_eq!(events[1]["responseObject"]["data"]["k"], "v");
        assert_eq!(events[1]["requestObject"]["data"]["k"], "v");
        assert_eq!(
            events[4]["annotations"][RESPONSE_OBJECT_ANNOTATION],
            "omitted: streamed"
        );
    }

    #[tokio::test]
    async fn rules_pick_the_level_first_match_wins() {
        let rules = vec![
            AuditRule {
                level: RuleLevel::None,
                users: vec!["system:kube-probe".into()],
                ..AuditRule::default()
            },
            AuditRule {
                level: RuleLevel::Request,
                resources: vec!["configmaps".into()],
                verbs: vec!["create".into()],
                ..AuditRule::default()
            },
            AuditRule {
                level: RuleLevel::Metadata,
                groups: vec!["system:authenticated".into()],
                ..AuditRule::default()
            },
        ];
        let mut probe = record("configmaps", None, Some(r#"{"data":{}}"#));
        probe.user.username = "system:kube-probe".into();
        let events = run_with(
            AuditLevel::RequestResponse,
            rules,
            vec![
                probe,
                record("configmaps", None, Some(r#"{"data":{"k":"v"}}"#)),
                record("secrets", None, Some(SECRET)),
            ],
        )
        .await;
        assert_eq!(events.len(), 2, "the probe is not recorded: {events:?}");
        assert_eq!(events[0]["level"], "Request");
        assert_eq!(events[0]["requestObject"]["data"]["k"], "v");
        assert_eq!(events[1]["level"], "Metadata");
        assert!(events[1].get("requestObject").is_none());
    }

    #[tokio::test]
    async fn a_full_file_rotates_keeping_max_backups() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("audit.log");
        let (file, size) = open_log(&path).expect("opens");
        let out = Output::File {
            file: BufWriter::new(file),
            path: path.clone(),
            size,
            max_bytes: 2048,
            max_backups: 2,
        };
        let config = AuditSection {
            enabled: true,
            ..AuditSection::default()
        };
        let (log, rx) = AuditLog::channel(&config, Counter::default());
        let (shutdown, stop) = oneshot::channel();
        let task = tokio::spawn(write_events(rx, stop, out));
        for _ in 0..40 {
            assert!(log.record(record("configmaps", None, None)));
        }
        let _ = shutdown.send(());
        task.await.expect("joins").expect("writes");
        let lines = |p: &Path| {
            std::fs::read_to_string(p)
                .map(|t| {
                    assert!(t.len() <= 2048, "{} is {} bytes", p.display(), t.len());
                    t.lines().count()
                })
                .unwrap_or(0)
        };
        assert!(path.exists() && backup_path(&path, 1).exists() && backup_path(&path, 2).exists());
        assert!(!backup_path(&path, 3).exists(), "only two backups are kept");
        // Rotation loses nothing it keeps: every line is whole JSON.
        for p in [path.clone(), backup_path(&path, 1), backup_path(&path, 2)] {
            for l in std::fs::read_to_string(&p).expect("read").lines() {
                serde_json::from_str::<Value>(l).expect("a whole JSON line");
            }
            assert!(lines(&p) > 0);
        }
    }

    #[test]
    fn source_ips_trust_forwarded_for_only_from_trusted_proxies() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "203.0.113.7, 10.0.0.2".parse().expect("header"),
        );
        let peer = crate::tls::Peer {
            addr: "127.0.0.1:5555".parse().expect("addr"),
            client_cert: None,
        };
        assert_eq!(source_ips(Some(&peer), &headers, &[]), vec!["127.0.0.1"]);
        let trusted: Vec<IpAddr> = vec!["127.0.0.1".parse().expect("ip")];
        assert_eq!(
            source_ips(Some(&peer), &headers, &trusted),
            vec!["203.0.113.7", "10.0.0.2", "127.0.0.1"]
        );
        assert!(source_ips(None, &headers, &trusted).is_empty());
    }

    #[tokio::test]
    async fn disabled_records_nothing() {
        let (log, writer) =
            AuditLog::start(&AuditSection::default(), Counter::default()).expect("ok");
        assert!(!log.enabled() && writer.is_none());
        assert!(!log.record(record("configmaps", None, None)));
    }

    #[test]
    fn an_unwritable_path_fails_at_start() {
        let config = AuditSection {
            enabled: true,
            path: "/nonexistent-dir/audit.log".into(),
            ..AuditSection::default()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let r = rt.block_on(async { AuditLog::start(&config, Counter::default()).map(|_| ()) });
        assert!(matches!(r, Err(AuditError::Open { .. })));
    }
}
