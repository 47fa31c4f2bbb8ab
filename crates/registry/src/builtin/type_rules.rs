//! Upstream validation of the types users create most, beyond what the
//! schema round trip checks: field paths and messages as kube-apiserver's
//! `validation` packages word them, so `kubectl` prints the same errors.

use serde_json::{Value, json};

use crate::resource::{Object, Strategy};
use crate::selector::LabelSelector;
use crate::validation::{FieldError, FieldErrorKind};

/// ConfigMaps and Secrets may hold at most this many bytes of data.
pub const MAX_DATA_SIZE: usize = 1024 * 1024;

const CONFIG_KEY_ERR: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";

fn at<'a>(obj: &'a Object, pointer: &str) -> Option<&'a Value> {
    let mut parts = pointer.trim_start_matches('/').splitn(2, '/');
    let first = parts.next()?;
    let v = obj.get(first)?;
    match parts.next() {
        Some(rest) => v.pointer(&format!("/{rest}")),
        None => Some(v),
    }
}

fn int_at(obj: &Object, pointer: &str) -> Option<i64> {
    at(obj, pointer).and_then(Value::as_i64)
}

fn str_at<'a>(obj: &'a Object, pointer: &str) -> Option<&'a str> {
    at(obj, pointer).and_then(Value::as_str)
}

fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> FieldError {
    FieldError {
        kind: FieldErrorKind::NotSupported,
        field: field.into(),
        value: Some(value.into()),
        detail: format!(
            "supported values: {}",
            supported
                .iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn non_negative(errs: &mut Vec<FieldError>, obj: &Object, pointer: &str, field: &str) {
    if let Some(n) = int_at(obj, pointer)
        && n < 0
    {
        errs.push(FieldError::invalid(
            field,
            n,
            "must be greater than or equal to 0",
        ));
    }
}

/// Upstream's `IsConfigMapKey`.
pub fn config_key_problems(key: &str) -> Option<String> {
    if key.is_empty()
        || !key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-._".contains(&c))
    {
        return Some(CONFIG_KEY_ERR.to_owned());
    }
    if key.len() > 253 {
        return Some("must be no more than 253 characters".to_owned());
    }
    if key == "." {
        return Some("must not be '.'".to_owned());
    }
    if key == ".." {
        return Some("must not be '..'".to_owned());
    }
    if key.starts_with("..") {
        return Some("must not start with '..'".to_owned());
    }
    None
}

/// Keys of `data`/`binaryData` (ConfigMaps) or `data`/`stringData`
/// (Secrets), their disjointness and the total size.
pub fn validate_data_keys(obj: &Object, fields: [&str; 2], secret: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for f in fields {
        for (k, v) in obj.get(f).and_then(Value::as_object).into_iter().flatten() {
            if let Some(p) = config_key_problems(k) {
                errs.push(FieldError::invalid(format!("{f}[{k}]"), k.as_str(), p));
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
    }
    if !secret
        && let (Some(d), Some(b)) = (
            obj.get("data").and_then(Value::as_object),
            obj.get("binaryData").and_then(Value::as_object),
        )
    {
        for k in d.keys().filter(|k| b.contains_key(*k)) {
            errs.push(FieldError::invalid(
                format!("data[{k}]"),
                k.as_str(),
                "duplicate of key present in binaryData",
            ));
        }
    }
    if total > MAX_DATA_SIZE {
        errs.push(FieldError {
            kind: FieldErrorKind::TooLong,
            field: String::new(),
            value: None,
            detail: format!("must have at most {MAX_DATA_SIZE} bytes"),
        });
    }
    errs
}

/// ConfigMaps: key names, size, `immutable`.
pub struct ConfigMapStrategy;

impl Strategy for ConfigMapStrategy {
    fn validate(&self, obj: &Object) -> Vec<FieldError> {
        validate_data_keys(obj, ["data", "binaryData"], false)
    }

    fn validate_update(&self, new: &Object, old: &Object) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        if old.get("immutable").and_then(Value::as_bool) == Some(true) {
            for f in ["data", "binaryData"] {
                if new.get(f) != old.get(f) {
                    errs.push(FieldError::forbidden(
                        f,
                        "field is immutable when `immutable` is set",
                    ));
                }
            }
            if new.get("immutable") != old.get("immutable") {
                errs.push(FieldError::forbidden(
                    "immutable",
                    "field is immutable when `immutable` is set",
                ));
            }
        }
        errs
    }
}

/// Containers of the pod spec at `pointer`, reported under `path`.
pub fn validate_pod_template(obj: &Object, pointer: &str, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let containers = at(obj, &format!("{pointer}/containers")).and_then(Value::as_array);
    match containers {
        Some(cs) if !cs.is_empty() => {
            let mut seen = Vec::new();
            for (i, c) in cs.iter().enumerate() {
                let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                if name.is_empty() {
                    errs.push(FieldError::required(
                        format!("{path}.containers[{i}].name"),
                        "",
                    ));
                } else if seen.contains(&name) {
                    errs.push(FieldError {
                        kind: FieldErrorKind::Duplicate,
                        field: format!("{path}.containers[{i}].name"),
                        value: Some(name.into()),
                        detail: String::new(),
                    });
                } else {
                    seen.push(name);
                }
                if c.get("image")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    errs.push(FieldError::required(
                        format!("{path}.containers[{i}].image"),
                        "",
                    ));
                }
            }
        }
        _ => errs.push(FieldError::required(format!("{path}.containers"), "")),
    }
    errs
}

/// `spec.selector` (required, non-empty, selecting the template's labels).
pub fn validate_workload_selector(obj: &Object, kind: &str) -> Vec<FieldError> {
    let Some(selector) = at(obj, "/spec/selector").filter(|s| !s.is_null()) else {
        return vec![FieldError::required("spec.selector", "")];
    };
    let parsed = match LabelSelector::from_json(selector) {
        Ok(p) => p,
        Err(e) => {
            return vec![FieldError::invalid(
                "spec.selector",
                selector.clone(),
                e.to_string(),
            )];
        }
    };
    if parsed.is_empty() {
        return vec![FieldError::invalid(
            "spec.selector",
            selector.clone(),
            format!("empty selector is invalid for {kind}"),
        )];
    }
    let labels = at(obj, "/spec/template/metadata/labels").and_then(Value::as_object);
    if !parsed.matches(labels) {
        return vec![FieldError::invalid(
            "spec.template.metadata.labels",
            labels.cloned().map(Value::Object).unwrap_or(Value::Null),
            "`selector` does not match template `labels`",
        )];
    }
    Vec::new()
}

/// StatefulSets, DaemonSets, ReplicaSets and ReplicationControllers.
pub fn validate_workload(obj: &Object, kind: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    non_negative(&mut errs, obj, "/spec/replicas", "spec.replicas");
    non_negative(
        &mut errs,
        obj,
        "/spec/minReadySeconds",
        "spec.minReadySeconds",
    );
    non_negative(
        &mut errs,
        obj,
        "/spec/revisionHistoryLimit",
        "spec.revisionHistoryLimit",
    );
    if kind == "replicationcontroller" {
        // A ReplicationController's selector is a plain map, defaulted
        // from the template's labels.
        if at(obj, "/spec/template").is_none() {
            errs.push(FieldError::required("spec.template", ""));
            return errs;
        }
    } else {
        errs.extend(validate_workload_selector(obj, kind));
    }
    errs.extend(validate_pod_template(
        obj,
        "/spec/template/spec",
        "spec.template.spec",
    ));
    if kind == "statefulset" {
        if let Some(p) = str_at(obj, "/spec/podManagementPolicy")
            && !matches!(p, "OrderedReady" | "Parallel")
        {
            errs.push(not_supported(
                "spec.podManagementPolicy",
                p,
                &["OrderedReady", "Parallel"],
            ));
        }
        if let Some(t) = str_at(obj, "/spec/updateStrategy/type")
            && !matches!(t, "RollingUpdate" | "OnDelete")
        {
            errs.push(not_supported(
                "spec.updateStrategy.type",
                t,
                &["OnDelete", "RollingUpdate"],
            ));
        }
    }
    if kind == "daemonset"
        && let Some(t) = str_at(obj, "/spec/updateStrategy/type")
        && !matches!(t, "RollingUpdate" | "OnDelete")
    {
        errs.push(not_supported(
            "spec.updateStrategy.type",
            t,
            &["OnDelete", "RollingUpdate"],
        ));
    }
    errs
}

/// A Job spec at `pointer` (a Job's `spec`, a CronJob's `jobTemplate.spec`).
pub fn validate_job_spec(obj: &Object, pointer: &str, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for f in [
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
    ] {
        non_negative(
            &mut errs,
            obj,
            &format!("{pointer}/{f}"),
            &format!("{path}.{f}"),
        );
    }
    if let Some(n) = int_at(obj, &format!("{pointer}/activeDeadlineSeconds"))
        && n == 0
    {
        errs.push(FieldError::invalid(
            format!("{path}.activeDeadlineSeconds"),
            0,
            "must be greater than 0",
        ));
    }
    let policy = str_at(obj, &format!("{pointer}/template/spec/restartPolicy")).unwrap_or("");
    // Upstream words a missing (defaulted to Always) and a wrong policy alike.
    if !matches!(policy, "OnFailure" | "Never") {
        errs.push(FieldError::required(
            format!("{path}.template.spec.restartPolicy"),
            "valid values: \"OnFailure\", \"Never\"",
        ));
    }
    errs.extend(validate_pod_template(
        obj,
        &format!("{pointer}/template/spec"),
        &format!("{path}.template.spec"),
    ));
    errs
}

/// CronJobs: the schedule, the concurrency policy, the job template.
pub fn validate_cronjob(obj: &Object) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match str_at(obj, "/spec/schedule").unwrap_or("") {
        "" => errs.push(FieldError::required("spec.schedule", "")),
        s => {
            if s.contains("TZ") {
                errs.push(FieldError::invalid(
                    "spec.schedule",
                    s,
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                ));
            } else if let Err(e) = parse_cron(s) {
                errs.push(FieldError::invalid("spec.schedule", s, e));
            }
        }
    }
    if let Some(p) = str_at(obj, "/spec/concurrencyPolicy")
        && !matches!(p, "Allow" | "Forbid" | "Replace")
    {
        errs.push(not_supported(
            "spec.concurrencyPolicy",
            p,
            &["Allow", "Forbid", "Replace"],
        ));
    }
    for f in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        non_negative(&mut errs, obj, &format!("/spec/{f}"), &format!("spec.{f}"));
    }
    errs.extend(validate_job_spec(
        obj,
        "/spec/jobTemplate/spec",
        "spec.jobTemplate.spec",
    ));
    errs
}

/// robfig/cron's standard parser (what the CronJob controller uses):
/// five fields, or a `@` descriptor.
pub fn parse_cron(spec: &str) -> Result<(), String> {
    let spec = spec.trim();
    if let Some(d) = spec.strip_prefix('@') {
        return match d {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            _ if d.starts_with("every ") => Ok(()),
            _ => Err(format!("unrecognized descriptor: {spec}")),
        };
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    const MONTHS: &[&str] = &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let bounds: [(u32, u32, &[&str]); 5] = [
        (0, 59, &[]),
        (0, 23, &[]),
        (1, 31, &[]),
        (1, 12, MONTHS),
        (0, 6, DAYS),
    ];
    for (field, (min, max, names)) in fields.iter().zip(bounds) {
        for part in field.split(',') {
            parse_cron_range(part, min, max, names)?;
        }
    }
    Ok(())
}

fn parse_cron_range(expr: &str, min: u32, max: u32, names: &[&str]) -> Result<(), String> {
    let (range, step) = match expr.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (expr, None),
    };
    let value = |s: &str| -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            return Ok(i as u32 + min);
        }
        s.parse::<u32>().map_err(|_| {
            format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax")
        })
    };
    let (start, end) = if range == "*" || range == "?" {
        (min, max)
    } else if let Some((a, b)) = range.split_once('-') {
        (value(a)?, value(b)?)
    } else {
        let v = value(range)?;
        (v, v)
    };
    if let Some(s) = step {
        let n = s.parse::<u32>().map_err(|_| {
            format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax")
        })?;
        if n == 0 {
            return Err(format!("step of range should be a positive number: {expr}"));
        }
    }
    if start < min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({min}): {expr}"
        ));
    }
    if end > max {
        return Err(format!(
            "end of range ({end}) above maximum ({max}): {expr}"
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    Ok(())
}

/// Ingresses: path types and absolute paths, backends.
pub fn validate_ingress(obj: &Object) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let rules = at(obj, "/spec/rules").and_then(Value::as_array);
    if at(obj, "/spec/defaultBackend").is_none() && rules.is_none_or(|r| r.is_empty()) {
        errs.push(FieldError::invalid(
            "spec.rules",
            json!([]),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    for (i, rule) in rules.into_iter().flatten().enumerate() {
        if let Some(host) = rule.get("host").and_then(Value::as_str)
            && !host.is_empty()
        {
            let bare = host.strip_prefix("*.").unwrap_or(host);
            if !crate::validation::is_dns1123_subdomain(bare) {
                errs.push(FieldError::invalid(
                    format!("spec.rules[{i}].host"),
                    host,
                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                ));
            }
        }
        let paths = rule.pointer("/http/paths").and_then(Value::as_array);
        for (j, p) in paths.into_iter().flatten().enumerate() {
            let base = format!("spec.rules[{i}].http.paths[{j}]");
            let path = p.get("path").and_then(Value::as_str).unwrap_or("");
            match p.get("pathType").and_then(Value::as_str) {
                None | Some("") => errs.push(FieldError::required(
                    format!("{base}.pathType"),
                    "pathType must be specified",
                )),
                Some("Exact" | "Prefix") if !path.starts_with('/') => {
                    errs.push(FieldError::invalid(
                        format!("{base}.path"),
                        path,
                        "must be an absolute path",
                    ));
                }
                Some("Exact" | "Prefix" | "ImplementationSpecific") => {}
                Some(t) => errs.push(not_supported(
                    format!("{base}.pathType"),
                    t,
                    &["Exact", "ImplementationSpecific", "Prefix"],
                )),
            }
            let backend = p.get("backend");
            let service = backend.and_then(|b| b.get("service"));
            let resource = backend.and_then(|b| b.get("resource"));
            match (service, resource) {
                (Some(_), Some(_)) => errs.push(FieldError::invalid(
                    format!("{base}.backend"),
                    backend.cloned().unwrap_or(Value::Null),
                    "cannot set both service and resource backends",
                )),
                (None, None) => errs.push(FieldError::invalid(
                    format!("{base}.backend"),
                    backend.cloned().unwrap_or(Value::Null),
                    "service or resource must be specified",
                )),
                (Some(s), None) => {
                    if s.get("name")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        errs.push(FieldError::required(
                            format!("{base}.backend.service.name"),
                            "",
                        ));
                    }
                    let port = s.get("port");
                    let named = port
                        .and_then(|p| p.get("name"))
                        .and_then(Value::as_str)
                        .is_some_and(|n| !n.is_empty());
                    let number = port
                        .and_then(|p| p.get("number"))
                        .and_then(Value::as_i64)
                        .is_some_and(|n| n != 0);
                    if named == number {
                        errs.push(FieldError::invalid(
                            format!("{base}.backend.service.port"),
                            port.cloned().unwrap_or(Value::Null),
                            if named {
                                "cannot set both port name & port number"
                            } else {
                                "port name or number is required"
                            },
                        ));
                    }
                }
                (None, Some(_)) => {}
            }
        }
    }
    errs
}

/// NetworkPolicies: policy types and port protocols.
pub fn validate_network_policy(obj: &Object) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let types = at(obj, "/spec/policyTypes").and_then(Value::as_array);
    for (i, t) in types.into_iter().flatten().enumerate() {
        let t = t.as_str().unwrap_or("");
        if !matches!(t, "Ingress" | "Egress") {
            errs.push(not_supported(
                format!("spec.policyTypes[{i}]"),
                t,
                &["Egress", "Ingress"],
            ));
        }
    }
    for (dir, peers) in [("ingress", "from"), ("egress", "to")] {
        let _ = peers;
        let rules = at(obj, &format!("/spec/{dir}")).and_then(Value::as_array);
        for (i, r) in rules.into_iter().flatten().enumerate() {
            let ports = r.get("ports").and_then(Value::as_array);
            for (j, p) in ports.into_iter().flatten().enumerate() {
                if let Some(proto) = p.get("protocol").and_then(Value::as_str)
                    && !matches!(proto, "TCP" | "UDP" | "SCTP")
                {
                    errs.push(not_supported(
                        format!("spec.{dir}[{i}].ports[{j}].protocol"),
                        proto,
                        &["SCTP", "TCP", "UDP"],
                    ));
                }
            }
        }
    }
    errs
}

/// PersistentVolumeClaims: access modes and the storage request.
pub fn validate_pvc(obj: &Object) -> Vec<FieldError> {
    let mut errs = Vec::new();
    const MODES: &[&str] = &[
        "ReadOnlyMany",
        "ReadWriteMany",
        "ReadWriteOnce",
        "ReadWriteOncePod",
    ];
    match at(obj, "/spec/accessModes").and_then(Value::as_array) {
        Some(m) if !m.is_empty() => {
            for v in m {
                let s = v.as_str().unwrap_or("");
                if !MODES.contains(&s) {
                    errs.push(not_supported("spec.accessModes", s, MODES));
                }
            }
        }
        _ => errs.push(FieldError::required(
            "spec.accessModes",
            "at least 1 access mode is required",
        )),
    }
    if at(obj, "/spec/dataSourceRef").is_none()
        && at(obj, "/spec/resources/requests/storage").is_none()
    {
        errs.push(FieldError::required("spec.resources[storage]", ""));
    }
    if let Some(m) = str_at(obj, "/spec/volumeMode")
        && !matches!(m, "Block" | "Filesystem")
    {
        errs.push(not_supported(
            "spec.volumeMode",
            m,
            &["Block", "Filesystem"],
        ));
    }
    errs
}

/// PersistentVolumeClaims: the spec is immutable once bound, except for the
/// storage request (resize) and `volumeAttributesClassName`.
pub struct PvcStrategy;

impl Strategy for PvcStrategy {
    fn validate(&self, obj: &Object) -> Vec<FieldError> {
        validate_pvc(obj)
    }

    fn validate_update(&self, new: &Object, old: &Object) -> Vec<FieldError> {
        let mut errs = validate_pvc(new);
        let strip = |o: &Object| {
            let mut s = o.get("spec").cloned().unwrap_or(Value::Null);
            if let Some(m) = s.as_object_mut() {
                m.remove("volumeAttributesClassName");
                if let Some(Value::Object(r)) = m.get_mut("resources") {
                    r.remove("requests");
                }
                // Filled in by the binder.
                m.remove("volumeName");
            }
            s
        };
        if strip(new) != strip(old) {
            errs.push(FieldError::forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            ));
        }
        errs
    }
}

fn int_or_percent(errs: &mut Vec<FieldError>, v: &Value, field: &str) {
    match v {
        Value::Number(n) if n.as_i64().is_some_and(|n| n < 0) => {
            errs.push(FieldError::invalid(field, v.clone(), "must be greater than or equal to 0"));
        }
        Value::String(s) => match s.strip_suffix('%').map(str::parse::<i64>) {
            Some(Ok(p)) if p > 100 => {
                errs.push(FieldError::invalid(field, s.as_str(), "must not be greater than 100%"))
            }
            Some(Ok(p)) if p < 0 => errs.push(FieldError::invalid(
                field,
                s.as_str(),
                "must be greater than or equal to 0",
            )),
            Some(Ok(_)) => {}
            _ => errs.push(FieldError::invalid(
                field,
                s.as_str(),
                "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
            )),
        },
        _ => {}
    }
}

/// PodDisruptionBudgets.
pub fn validate_pdb(obj: &Object) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let min = at(obj, "/spec/minAvailable");
    let max = at(obj, "/spec/maxUnavailable");
    if min.is_some() && max.is_some() {
        errs.push(FieldError::invalid(
            "spec",
            obj.get("spec").cloned().unwrap_or(Value::Null),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    if let Some(v) = min {
        int_or_percent(&mut errs, v, "spec.minAvailable");
    }
    if let Some(v) = max {
        int_or_percent(&mut errs, v, "spec.maxUnavailable");
    }
    if let Some(p) = str_at(obj, "/spec/unhealthyPodEvictionPolicy")
        && !matches!(p, "IfHealthyBudget" | "AlwaysAllow")
    {
        errs.push(not_supported(
            "spec.unhealthyPodEvictionPolicy",
            p,
            &["AlwaysAllow", "IfHealthyBudget"],
        ));
    }
    errs
}

/// HorizontalPodAutoscalers (autoscaling/v2 form).
pub fn validate_hpa(obj: &Object) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for f in ["kind", "name"] {
        if str_at(obj, &format!("/spec/scaleTargetRef/{f}")).is_none_or(str::is_empty) {
            errs.push(FieldError::required(format!("spec.scaleTargetRef.{f}"), ""));
        }
    }
    let max = int_at(obj, "/spec/maxReplicas").unwrap_or(0);
    if max < 1 {
        errs.push(FieldError::invalid(
            "spec.maxReplicas",
            max,
            "must be greater than 0",
        ));
    }
    if let Some(min) = int_at(obj, "/spec/minReplicas") {
        if min < 1 {
            errs.push(FieldError::invalid(
                "spec.minReplicas",
                min,
                "must be greater than or equal to 1",
            ));
        } else if min > max {
            errs.push(FieldError::invalid(
                "spec.minReplicas",
                min,
                "must be less than or equal to maxReplicas",
            ));
        }
    }
    errs
}

/// Leases.
pub fn validate_lease(obj: &Object) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(d) = int_at(obj, "/spec/leaseDurationSeconds")
        && d <= 0
    {
        errs.push(FieldError::invalid(
            "spec.leaseDurationSeconds",
            d,
            "must be greater than 0",
        ));
    }
    non_negative(
        &mut errs,
        obj,
        "/spec/leaseTransitions",
        "spec.leaseTransitions",
    );
    errs
}

/// The highest priority a user-defined PriorityClass may have.
pub const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;

/// PriorityClasses: the reserved `system-` prefix, the value ceiling, and an
/// immutable value.
pub struct PriorityClassStrategy;

impl Strategy for PriorityClassStrategy {
    fn default(&self, obj: &mut Object) {
        obj.entry("preemptionPolicy")
            .or_insert("PreemptLowerPriority".into());
    }

    fn validate(&self, obj: &Object) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let name = crate::metadata::name(obj);
        let system = matches!(name, "system-node-critical" | "system-cluster-critical");
        if name.starts_with("system-") && !system {
            errs.push(FieldError::invalid(
                "metadata.name",
                name,
                "priority class names with 'system-' prefix are reserved",
            ));
        }
        let value = obj.get("value").and_then(Value::as_i64).unwrap_or(0);
        if value > HIGHEST_USER_PRIORITY && !system {
            errs.push(FieldError::forbidden(
                "value",
                format!(
                    "maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"
                ),
            ));
        }
        if let Some(p) = obj.get("preemptionPolicy").and_then(Value::as_str)
            && !matches!(p, "PreemptLowerPriority" | "Never")
        {
            errs.push(not_supported(
                "preemptionPolicy",
                p,
                &["Never", "PreemptLowerPriority"],
            ));
        }
        errs
    }

    fn validate_update(&self, new: &Object, old: &Object) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        if new.get("value") != old.get("value") {
            errs.push(FieldError::forbidden(
                "value",
                "may not be changed in an update.",
            ));
        }
        if new.get("preemptionPolicy") != old.get("preemptionPolicy") {
            errs.push(FieldError::invalid(
                "preemptionPolicy",
                new.get("preemptionPolicy").cloned().unwrap_or(Value::Null),
                "field is immutable",
            ));
        }
        errs
    }
}

/// Upstream's warnings for a write: the new object and, on update, the old.
pub type WarningsFn = fn(&Object, Option<&Object>) -> Vec<String>;

/// A strategy that tracks generation and validates with `f` (types whose
/// only special rule is validation).
pub struct Validated {
    pub generation: bool,
    pub validate: fn(&Object) -> Vec<FieldError>,
    /// Upstream's warnings for the write (`None` for types that have none).
    pub warnings: Option<WarningsFn>,
}

impl Strategy for Validated {
    fn tracks_generation(&self) -> bool {
        self.generation
    }

    fn validate(&self, obj: &Object) -> Vec<FieldError> {
        (self.validate)(obj)
    }

    fn warnings(&self, obj: &Object, old: Option<&Object>) -> Vec<String> {
        self.warnings.map(|w| w(obj, old)).unwrap_or_default()
    }
}

/// Upstream's Ingress `WarningsOnCreate`: the legacy class annotation
/// (updates do not warn).
pub fn ingress_warnings(obj: &Object, old: Option<&Object>) -> Vec<String> {
    const CLASS: &str = "kubernetes.io/ingress.class";
    let annotated = crate::metadata::meta(obj)
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
        .is_some_and(|a| a.contains_key(CLASS));
    if old.is_none() && annotated {
        vec![format!(
            "annotation {CLASS:?} is deprecated, please use 'spec.ingressClassName' instead"
        )]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Object {
        match v {
            Value::Object(o) => o,
            _ => Object::new(),
        }
    }

    #[test]
    fn cron_schedules() {
        for ok in [
            "*/5 * * * *",
            "0 0 1 1 *",
            "@hourly",
            "0 9-17 * * mon-fri",
            "15,45 * * jan *",
        ] {
            assert_eq!(parse_cron(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            parse_cron("bad"),
            Err("expected exactly 5 fields, found 1: [bad]".to_owned())
        );
        assert_eq!(
            parse_cron("60 * * * *"),
            Err("end of range (60) above maximum (59): 60".to_owned())
        );
        assert!(parse_cron("*/0 * * * *").is_err());
        assert!(parse_cron("@sometimes").is_err());
    }

    #[test]
    fn config_keys() {
        let cm =
            obj(json!({"data": {"ok.key": "v", "bad key": "v"}, "binaryData": {"ok.key": "dg=="}}));
        let errs = ConfigMapStrategy.validate(&cm);
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["data[bad key]", "data[ok.key]"]);
        assert_eq!(errs[0].detail, CONFIG_KEY_ERR);
        let big = obj(json!({"data": {"k": "x".repeat(MAX_DATA_SIZE)}}));
        assert_eq!(ConfigMapStrategy.validate(&big).len(), 1);
    }

    #[test]
    fn jobs_need_a_restart_policy() {
        let job = obj(
            json!({"spec": {"template": {"spec": {"restartPolicy": "Always",
            "containers": [{"name": "c", "image": "x"}]}}}}),
        );
        let errs = validate_job_spec(&job, "/spec", "spec");
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec.template.spec.restartPolicy");
    }

    #[test]
    fn hpa_pdb_lease_priority() {
        let hpa = obj(
            json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"},
            "minReplicas": 5, "maxReplicas": 3}}),
        );
        assert_eq!(validate_hpa(&hpa)[0].field, "spec.minReplicas");
        let pdb = obj(json!({"spec": {"minAvailable": 1, "maxUnavailable": "150%"}}));
        assert_eq!(validate_pdb(&pdb).len(), 2);
        let lease = obj(json!({"spec": {"leaseDurationSeconds": 0}}));
        assert_eq!(validate_lease(&lease).len(), 1);
        let pc = obj(json!({"metadata": {"name": "system-mine"}, "value": 2_000_000_000i64}));
        assert_eq!(PriorityClassStrategy.validate(&pc).len(), 2);
    }

    #[test]
    fn ingress_paths() {
        let ing = obj(
            json!({"spec": {"rules": [{"host": "example.com", "http": {"paths": [
            {"path": "foo", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
            {"path": "/", "backend": {"service": {"name": "web", "port": {}}}}]}}]}}),
        );
        let fields: Vec<String> = validate_ingress(&ing)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.rules[0].http.paths[0].path",
                "spec.rules[0].http.paths[1].pathType",
                "spec.rules[0].http.paths[1].backend.service.port"
            ]
        );
    }
}
