//! Request options of the verbs, as the registry understands them. The HTTP
//! layer fills these from query parameters or bodies; the registry validates
//! their combinations.

use base64::Engine;
use serde_json::{Value, json};

use crate::cluster::ClusterScope;
use crate::status::{ApiError, ApiResult};
use crate::validation::FieldError;

/// List and watch options (`metav1.ListOptions`).
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<i64>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub send_initial_events: Option<bool>,
    pub allow_watch_bookmarks: bool,
    /// Watch only: end the stream cleanly after this long.
    pub timeout_seconds: Option<u64>,
}

/// Where a list or watch starts, after validating `resourceVersion` and
/// `resourceVersionMatch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFrom {
    /// Unset or `""`: the latest state, read consistently.
    Latest,
    /// `"0"`: any state is acceptable (we serve the latest).
    Any,
    /// At least this revision.
    NotOlderThan(i64),
    /// Exactly this revision.
    Exact(i64),
}

fn invalid_list_options(errors: Vec<FieldError>) -> ApiError {
    ApiError::invalid("", "ListOptions", "", &errors)
}

impl ListOptions {
    pub fn limit(&self) -> usize {
        self.limit.filter(|l| *l > 0).map_or(0, |l| l as usize)
    }

    fn parse_rv(&self) -> ApiResult<Option<i64>> {
        match self.resource_version.as_deref() {
            None | Some("") => Ok(None),
            Some(s) => s
                .parse::<i64>()
                .ok()
                .filter(|v| *v >= 0)
                .map(Some)
                .ok_or_else(|| {
                    invalid_list_options(vec![FieldError::invalid(
                        "resourceVersion",
                        s,
                        "must be a non-negative integer",
                    )])
                    .into_bad_request()
                }),
        }
    }

    /// Validates and interprets resourceVersion/resourceVersionMatch for a
    /// list (upstream `ValidateListOptions`).
    pub fn list_read_from(&self) -> ApiResult<ReadFrom> {
        if self.send_initial_events.is_some() {
            return Err(invalid_list_options(vec![FieldError::forbidden(
                "sendInitialEvents",
                "sendInitialEvents is forbidden for list",
            )]));
        }
        self.read_from(false)
    }

    /// The same for a watch.
    pub fn watch_read_from(&self) -> ApiResult<ReadFrom> {
        if self.send_initial_events == Some(true) {
            let mut errs = Vec::new();
            if self.resource_version_match.as_deref() != Some("NotOlderThan") {
                errs.push(FieldError::forbidden(
                    "resourceVersionMatch",
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                ));
            }
            if !self.allow_watch_bookmarks {
                errs.push(FieldError::forbidden(
                    "allowWatchBookmarks",
                    "sendInitialEvents requires setting allowWatchBookmarks to true",
                ));
            }
            if !errs.is_empty() {
                return Err(invalid_list_options(errs));
            }
            // Watch-list: "" is the consistent current state, 0 any state,
            // X at least X.
            return Ok(match self.parse_rv()? {
                None => ReadFrom::Latest,
                Some(0) => ReadFrom::Any,
                Some(x) => ReadFrom::NotOlderThan(x),
            });
        } else if self.resource_version_match.is_some() {
            return Err(invalid_list_options(vec![FieldError::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            )]));
        }
        self.read_from(true)
    }

    fn read_from(&self, watch: bool) -> ApiResult<ReadFrom> {
        let rv = self.parse_rv()?;
        let has_continue = self
            .continue_token
            .as_deref()
            .is_some_and(|c| !c.is_empty());
        match self.resource_version_match.as_deref() {
            None | Some("") => Ok(match rv {
                None => ReadFrom::Latest,
                Some(0) => ReadFrom::Any,
                // Legacy: an RV with a limit is an exact read for lists.
                Some(x) if !watch && self.limit() > 0 => ReadFrom::Exact(x),
                Some(x) => ReadFrom::NotOlderThan(x),
            }),
            Some(m) => {
                let mut errs = Vec::new();
                if rv.is_none() {
                    errs.push(FieldError::forbidden(
                        "resourceVersionMatch",
                        "resourceVersionMatch is forbidden unless resourceVersion is provided",
                    ));
                }
                if has_continue {
                    errs.push(FieldError::forbidden(
                        "resourceVersionMatch",
                        "resourceVersionMatch is forbidden when continue is provided",
                    ));
                }
                let from = match (m, rv) {
                    ("NotOlderThan", Some(0)) => ReadFrom::Any,
                    ("NotOlderThan", Some(x)) => ReadFrom::NotOlderThan(x),
                    ("Exact", Some(0)) => {
                        errs.push(FieldError::forbidden(
                            "resourceVersionMatch",
                            "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                        ));
                        ReadFrom::Latest
                    }
                    ("Exact", Some(x)) => ReadFrom::Exact(x),
                    ("NotOlderThan" | "Exact", None) => ReadFrom::Latest,
                    (other, _) => {
                        errs.push(FieldError {
                            kind: crate::validation::FieldErrorKind::NotSupported,
                            field: "resourceVersionMatch".into(),
                            value: Some(other.into()),
                            detail: "supported values: \"Exact\", \"NotOlderThan\", \"\"".into(),
                        });
                        ReadFrom::Latest
                    }
                };
                if errs.is_empty() {
                    Ok(from)
                } else {
                    Err(invalid_list_options(errs))
                }
            }
        }
    }
}

/// GET options (`metav1.GetOptions`): only `resourceVersion` matters.
#[derive(Clone, Debug, Default)]
pub struct GetOptions {
    pub resource_version: Option<String>,
}

impl GetOptions {
    /// Where a GET reads from, upstream's rules: unset or `""` is the
    /// latest state (read from storage), `"0"` any state (the watch
    /// cache), `N` at least revision N. There is no resourceVersionMatch.
    /// A value that is not a revision is a 400 (upstream lets its storage
    /// parse error through as a 500).
    pub fn read_from(&self) -> ApiResult<ReadFrom> {
        match self.resource_version.as_deref() {
            None | Some("") => Ok(ReadFrom::Latest),
            Some(s) => match s.parse::<u64>() {
                Ok(0) => Ok(ReadFrom::Any),
                Ok(x) => i64::try_from(x)
                    .map(ReadFrom::NotOlderThan)
                    .map_err(|_| bad_get_resource_version(s)),
                Err(_) => Err(bad_get_resource_version(s)),
            },
        }
    }
}

fn bad_get_resource_version(s: &str) -> ApiError {
    ApiError::bad_request(
        FieldError::invalid("resourceVersion", s, "must be a non-negative integer").to_string(),
    )
}

impl ApiError {
    fn into_bad_request(self) -> ApiError {
        ApiError::bad_request(self.message)
    }
}

/// Options of writes.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    /// `force` as sent (only apply patches may carry it).
    pub force: Option<bool>,
    pub field_validation: crate::schema::FieldValidation,
    /// The manager of non-apply writes without `fieldManager`: the
    /// User-Agent up to its first `/`, as upstream.
    pub default_manager: Option<String>,
    /// The authenticated user making the request (set by the server once
    /// authentication is wired); recorded as the owner of a new workspace.
    pub user: Option<String>,
    /// Warnings the write collects for the response's `Warning` headers
    /// (unknown fields of a PATCH under fieldValidation=Warn).
    pub warnings: WarningSink,
}

/// A shared list of warnings: the registry adds, the server reads once the
/// write is done.
#[derive(Clone, Debug, Default)]
pub struct WarningSink(std::sync::Arc<parking_lot::Mutex<Vec<String>>>);

impl WarningSink {
    pub fn extend(&self, warnings: Vec<String>) {
        let mut list = self.0.lock();
        for w in warnings {
            // A retried write reports the same fields again.
            if !list.contains(&w) {
                list.push(w);
            }
        }
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock())
    }
}

impl WriteOptions {
    /// Who a non-apply write is recorded for in managedFields.
    pub fn manager(&self) -> &str {
        self.field_manager
            .as_deref()
            .filter(|m| !m.is_empty())
            .or(self.default_manager.as_deref())
            .unwrap_or("")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

/// `metav1.DeleteOptions`.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation: Option<Propagation>,
    pub orphan_dependents: Option<bool>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    /// Reads a DeleteOptions object (any apiVersion, kind optional) on top of
    /// the query-derived options; body fields win.
    pub fn merge_body(&mut self, body: &Value) -> ApiResult<()> {
        let Some(obj) = body.as_object() else {
            return Err(ApiError::bad_request("DeleteOptions must be a JSON object"));
        };
        if let Some(k) = obj
            .get("kind")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty() && *k != "DeleteOptions")
        {
            return Err(ApiError::bad_request(format!(
                "expected DeleteOptions, got {k}"
            )));
        }
        if let Some(g) = obj.get("gracePeriodSeconds").and_then(Value::as_i64) {
            self.grace_period_seconds = Some(g);
        }
        if let Some(p) = obj.get("propagationPolicy").and_then(Value::as_str) {
            self.propagation = Some(parse_propagation(p)?);
        }
        if let Some(o) = obj.get("orphanDependents").and_then(Value::as_bool) {
            self.orphan_dependents = Some(o);
        }
        if let Some(pre) = obj.get("preconditions").and_then(Value::as_object) {
            if let Some(u) = pre.get("uid").and_then(Value::as_str) {
                self.precondition_uid = Some(u.to_owned());
            }
            if let Some(rv) = pre.get("resourceVersion").and_then(Value::as_str) {
                self.precondition_resource_version = Some(rv.to_owned());
            }
        }
        if let Some(d) = obj.get("dryRun").and_then(Value::as_array) {
            self.dry_run = parse_dry_run(d.iter().filter_map(Value::as_str))?;
        }
        Ok(())
    }

    /// The effective propagation policy; `orphanDependents` is the legacy form.
    pub fn effective_propagation(&self) -> ApiResult<Propagation> {
        match (self.propagation, self.orphan_dependents) {
            (Some(_), Some(_)) => Err(ApiError::invalid(
                "",
                "DeleteOptions",
                "",
                &[FieldError::invalid(
                    "propagationPolicy",
                    "",
                    "orphanDependents and deletionPropagation cannot be both set",
                )],
            )),
            (Some(p), None) => Ok(p),
            (None, Some(true)) => Ok(Propagation::Orphan),
            (None, _) => Ok(Propagation::Background),
        }
    }
}

pub fn parse_propagation(p: &str) -> ApiResult<Propagation> {
    match p {
        "Orphan" => Ok(Propagation::Orphan),
        "Background" => Ok(Propagation::Background),
        "Foreground" => Ok(Propagation::Foreground),
        other => Err(ApiError::invalid(
            "",
            "DeleteOptions",
            "",
            &[FieldError {
                kind: crate::validation::FieldErrorKind::NotSupported,
                field: "propagationPolicy".into(),
                value: Some(other.into()),
                detail: "supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
                    .into(),
            }],
        )),
    }
}

/// `dryRun` values: only `All` exists.
pub fn parse_dry_run<'a>(values: impl IntoIterator<Item = &'a str>) -> ApiResult<bool> {
    let mut dry = false;
    for v in values {
        match v {
            "All" => dry = true,
            "" => {}
            other => {
                return Err(ApiError::invalid(
                    "",
                    "DryRun",
                    "",
                    &[FieldError {
                        kind: crate::validation::FieldErrorKind::NotSupported,
                        field: "dryRun".into(),
                        value: Some(other.into()),
                        detail: "supported values: \"All\"".into(),
                    }],
                ));
            }
        }
    }
    Ok(dry)
}

/// An opaque continue token: the snapshot revision and the last key read,
/// relative to the collection, bound to the workspace and resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContinueToken {
    pub revision: i64,
    /// Key suffix after the collection prefix.
    pub start: String,
}

impl ContinueToken {
    fn binding(scope: &ClusterScope, resource: &str) -> String {
        let ws = scope.cluster().map_or("*", |c| c.as_str());
        format!("{ws}/{resource}")
    }

    pub fn encode(&self, scope: &ClusterScope, resource: &str) -> String {
        let doc = json!({
            "v": "meta.k8s.io/v1",
            "rv": self.revision,
            "start": self.start,
            "b": Self::binding(scope, resource),
        });
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(doc.to_string())
    }

    pub fn decode(token: &str, scope: &ClusterScope, resource: &str) -> ApiResult<Self> {
        let bad = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.trim_end_matches('='))
            .map_err(|_| bad())?;
        let doc: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if doc.get("v").and_then(Value::as_str) != Some("meta.k8s.io/v1")
            || doc.get("b").and_then(Value::as_str) != Some(Self::binding(scope, resource).as_str())
        {
            return Err(bad());
        }
        let revision = doc
            .get("rv")
            .and_then(Value::as_i64)
            .filter(|r| *r > 0)
            .ok_or_else(bad)?;
        let start = doc.get("start").and_then(Value::as_str).ok_or_else(bad)?;
        if start.starts_with('/') || start.split('/').any(|s| s == "..") {
            return Err(bad());
        }
        Ok(ContinueToken {
            revision,
            start: start.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterId;

    #[test]
    fn continue_token_is_bound() {
        let a = ClusterScope::One(ClusterId::parse("aaa").unwrap());
        let b = ClusterScope::One(ClusterId::parse("bbb").unwrap());
        let t = ContinueToken {
            revision: 7,
            start: "default/x".into(),
        };
        let s = t.encode(&a, "configmaps");
        assert_eq!(ContinueToken::decode(&s, &a, "configmaps").unwrap(), t);
        assert!(ContinueToken::decode(&s, &b, "configmaps").is_err());
        assert!(ContinueToken::decode(&s, &a, "secrets").is_err());
        assert!(ContinueToken::decode("garbage!", &a, "configmaps").is_err());
    }

    #[test]
    fn read_from_rules() {
        let mut o = ListOptions::default();
        assert_eq!(o.list_read_from().unwrap(), ReadFrom::Latest);
        o.resource_version = Some("5".into());
        assert_eq!(o.list_read_from().unwrap(), ReadFrom::NotOlderThan(5));
        o.limit = Some(10);
        assert_eq!(o.list_read_from().unwrap(), ReadFrom::Exact(5));
        o.resource_version_match = Some("NotOlderThan".into());
        assert_eq!(o.list_read_from().unwrap(), ReadFrom::NotOlderThan(5));
        o.resource_version = None;
        assert_eq!(o.list_read_from().unwrap_err().code(), 422);
        let w = ListOptions {
            send_initial_events: Some(true),
            ..Default::default()
        };
        assert_eq!(w.watch_read_from().unwrap_err().code(), 422);
    }

    #[test]
    fn get_read_from_rules() {
        let get = |rv: Option<&str>| {
            GetOptions {
                resource_version: rv.map(str::to_owned),
            }
            .read_from()
        };
        assert_eq!(get(None).unwrap(), ReadFrom::Latest);
        assert_eq!(get(Some("")).unwrap(), ReadFrom::Latest);
        assert_eq!(get(Some("0")).unwrap(), ReadFrom::Any);
        assert_eq!(get(Some("42")).unwrap(), ReadFrom::NotOlderThan(42));
        for bad in [
            "abc",
            "-1",
            "1.5",
            " 1",
            "99999999999999999999",
            "18446744073709551615",
        ] {
            let e = get(Some(bad)).unwrap_err();
            assert_eq!(e.code(), 400, "{bad}");
            assert!(
                e.message.starts_with("resourceVersion: Invalid value"),
                "{bad}: {}",
                e.message
            );
        }
    }
}
