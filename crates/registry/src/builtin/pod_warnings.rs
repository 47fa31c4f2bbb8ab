//! Field-level `Warning`s for pod specs, as upstream's
//! `pkg/api/pod/warnings.go` gives them for pods and for the pod templates of
//! workloads (the cheap checks: deprecated node labels, annotations and
//! volume plugins, duplicate host aliases and pull secrets, seccomp
//! annotations without the field, a negative grace period). Each warning is
//! `<field path>: <message>`; a template's path starts at the template
//! (`spec.template.spec.nodeSelector[...]`).

use std::collections::HashSet;

use serde_json::Value;

use crate::resource::Object;

/// Node labels upstream deprecates, with its message for each.
const DEPRECATED_NODE_LABELS: &[(&str, &str)] = &[
    (
        "beta.kubernetes.io/arch",
        r#"deprecated since v1.14; use "kubernetes.io/arch" instead"#,
    ),
    (
        "beta.kubernetes.io/os",
        r#"deprecated since v1.14; use "kubernetes.io/os" instead"#,
    ),
    (
        "failure-domain.beta.kubernetes.io/region",
        r#"deprecated since v1.17; use "topology.kubernetes.io/region" instead"#,
    ),
    (
        "failure-domain.beta.kubernetes.io/zone",
        r#"deprecated since v1.17; use "topology.kubernetes.io/zone" instead"#,
    ),
    (
        "beta.kubernetes.io/instance-type",
        r#"deprecated since v1.17; use "node.kubernetes.io/instance-type" instead"#,
    ),
];

const DEPRECATED_ANNOTATIONS: &[(&str, &str)] = &[
    (
        "scheduler.alpha.kubernetes.io/critical-pod",
        r#"non-functional in v1.16+; use the "priorityClassName" field instead"#,
    ),
    (
        "security.alpha.kubernetes.io/sysctls",
        r#"non-functional in v1.11+; use the "sysctls" field instead"#,
    ),
    (
        "security.alpha.kubernetes.io/unsafe-sysctls",
        r#"non-functional in v1.11+; use the "sysctls" field instead"#,
    ),
];

/// Volume sources upstream deprecates: (JSON field, path segment, message).
const DEPRECATED_VOLUMES: &[(&str, &str, &str)] = &[
    (
        "photonPersistentDisk",
        "photonPersistentDisk",
        "deprecated in v1.11, non-functional in v1.16+",
    ),
    ("gitRepo", "gitRepo", "deprecated in v1.11"),
    (
        "scaleIO",
        "scaleIO",
        "deprecated in v1.16, non-functional in v1.22+",
    ),
    (
        "flocker",
        "flocker",
        "deprecated in v1.22, non-functional in v1.25+",
    ),
    (
        "storageos",
        "storageOS",
        "deprecated in v1.22, non-functional in v1.25+",
    ),
    (
        "quobyte",
        "quobyte",
        "deprecated in v1.22, non-functional in v1.25+",
    ),
    (
        "glusterfs",
        "glusterfs",
        "deprecated in v1.25, non-functional in v1.26+",
    ),
    (
        "cephfs",
        "cephfs",
        "deprecated in v1.28, non-functional in v1.31+",
    ),
    (
        "rbd",
        "rbd",
        "deprecated in v1.28, non-functional in v1.31+",
    ),
];

const SECCOMP_POD: &str = "seccomp.security.alpha.kubernetes.io/pod";
const SECCOMP_CONTAINER_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";

fn node_label_message(key: &str) -> Option<&'static str> {
    DEPRECATED_NODE_LABELS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, m)| *m)
}

fn join(prefix: &str, rest: &str) -> String {
    if prefix.is_empty() {
        rest.to_owned()
    } else {
        format!("{prefix}.{rest}")
    }
}

fn arr<'a>(v: Option<&'a Value>, key: &str) -> &'a [Value] {
    v.and_then(|v| v.get(key))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// `GetWarningsForNodeSelectorTerm`: deprecated keys in a term's expressions.
fn term_warnings(term: Option<&Value>, path: &str, out: &mut Vec<String>) {
    for (j, e) in arr(term, "matchExpressions").iter().enumerate() {
        let key = s(e, "key");
        if let Some(msg) = node_label_message(key) {
            out.push(format!("{path}.matchExpressions[{j}].key: {key} is {msg}"));
        }
    }
}

/// The warnings for a pod's `spec` and `metadata`; `prefix` is where the
/// pod (template) sits in the object (`""` for a pod, `spec.template` for a
/// Deployment).
pub fn pod_spec_warnings(prefix: &str, spec: Option<&Value>, meta: Option<&Value>) -> Vec<String> {
    let mut out = Vec::new();
    let p = |rest: &str| join(prefix, rest);
    let Some(spec) = spec else {
        return out;
    };
    let annotations = meta
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object);
    if let Some(sel) = spec.get("nodeSelector").and_then(Value::as_object) {
        for k in sel.keys() {
            if let Some(msg) = node_label_message(k) {
                out.push(format!("{}[{k}]: {msg}", p("spec.nodeSelector")));
            }
        }
    }
    if let Some(na) = spec.get("affinity").and_then(|a| a.get("nodeAffinity")) {
        let required = na.get("requiredDuringSchedulingIgnoredDuringExecution");
        let terms_path = p(
            "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms",
        );
        for (i, term) in arr(required, "nodeSelectorTerms").iter().enumerate() {
            term_warnings(Some(term), &format!("{terms_path}[{i}]"), &mut out);
        }
        let preferred_path =
            p("spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution");
        let preferred = na
            .get("preferredDuringSchedulingIgnoredDuringExecution")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        for (i, t) in preferred.iter().enumerate() {
            term_warnings(
                t.get("preference"),
                &format!("{preferred_path}[{i}].preference"),
                &mut out,
            );
        }
    }
    for (i, t) in arr(Some(spec), "topologySpreadConstraints")
        .iter()
        .enumerate()
    {
        let base = format!("{}[{i}]", p("spec.topologySpreadConstraints"));
        let key = s(t, "topologyKey");
        if let Some(msg) = node_label_message(key) {
            out.push(format!("{base}.topologyKey: {key} is {msg}"));
        }
        if t.get("labelSelector").is_none_or(Value::is_null) {
            out.push(format!(
                "{base}.labelSelector: a null labelSelector results in matching no pod"
            ));
        }
    }
    for (key, msg) in DEPRECATED_ANNOTATIONS {
        if annotations.is_some_and(|a| a.contains_key(*key)) {
            out.push(format!("{}[{key}]: {msg}", p("metadata.annotations")));
        }
    }
    for (i, v) in arr(Some(spec), "volumes").iter().enumerate() {
        for (field, segment, msg) in DEPRECATED_VOLUMES {
            if v.get(*field).is_some_and(|x| !x.is_null()) {
                out.push(format!("{}[{i}].{segment}: {msg}", p("spec.volumes")));
            }
        }
    }
    let mut ips = HashSet::new();
    for (i, h) in arr(Some(spec), "hostAliases").iter().enumerate() {
        let ip = s(h, "ip");
        if !ips.insert(ip) {
            out.push(format!(
                "{}[{i}].ip: duplicate ip {ip:?}",
                p("spec.hostAliases")
            ));
        }
    }
    let mut names = HashSet::new();
    let secrets = arr(Some(spec), "imagePullSecrets");
    for (i, sec) in secrets.iter().enumerate() {
        let name = s(sec, "name");
        if !names.insert(name) {
            out.push(format!(
                "{}[{i}].name: duplicate name {name:?}",
                p("spec.imagePullSecrets")
            ));
        }
    }
    for (i, sec) in secrets.iter().enumerate() {
        let name = s(sec, "name");
        if name.is_empty() {
            out.push(format!(
                "{}[{i}].name: invalid empty name {name:?}",
                p("spec.imagePullSecrets")
            ));
        }
    }
    let has_field = |sc: Option<&Value>| {
        sc.and_then(|c| c.get("seccompProfile"))
            .is_some_and(|x| !x.is_null())
    };
    let seccomp_msg = r#"non-functional in v1.27+; use the "seccompProfile" field instead"#;
    if !has_field(spec.get("securityContext"))
        && annotations.is_some_and(|a| a.contains_key(SECCOMP_POD))
    {
        out.push(format!(
            "{}[{SECCOMP_POD}]: {seccomp_msg}",
            p("metadata.annotations")
        ));
    }
    // Upstream's VisitContainersWithPath order: init, regular, ephemeral.
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in arr(Some(spec), list) {
            let key = format!("{SECCOMP_CONTAINER_PREFIX}{}", s(c, "name"));
            if !has_field(c.get("securityContext"))
                && annotations.is_some_and(|a| a.contains_key(&key))
            {
                out.push(format!(
                    "{}[{key}]: {seccomp_msg}",
                    p("metadata.annotations")
                ));
            }
        }
    }
    if spec
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|g| g < 0)
    {
        out.push(format!(
            "{}: must be >= 0; negative values are invalid and will be treated as 1",
            p("spec.terminationGracePeriodSeconds")
        ));
    }
    out
}

/// The warnings for a pod object.
pub fn pod_warnings(pod: &Object) -> Vec<String> {
    pod_spec_warnings("", pod.get("spec"), pod.get("metadata"))
}

/// The warnings for the pod template at `path` (dotted, e.g.
/// `spec.template`) of a workload. On update upstream warns only when the
/// template changed.
pub fn template_warnings(obj: &Object, old: Option<&Object>, path: &str) -> Vec<String> {
    let template = at(obj, path);
    if old.is_some_and(|o| at(o, path) == template) {
        return Vec::new();
    }
    let Some(t) = template else {
        return Vec::new();
    };
    pod_spec_warnings(path, t.get("spec"), t.get("metadata"))
}

/// The value at a dotted path of an object (no copy of the object).
fn at<'a>(obj: &'a Object, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut cur = obj.get(parts.next()?)?;
    for p in parts {
        cur = cur.get(p)?;
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Object {
        match v {
            Value::Object(o) => o,
            _ => Object::new(),
        }
    }

    #[test]
    fn deprecated_node_labels_volumes_and_annotations() {
        let pod = obj(json!({
            "metadata": {"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "runtime/default"}},
            "spec": {
                "nodeSelector": {"beta.kubernetes.io/arch": "amd64"},
                "volumes": [{"name": "src", "gitRepo": {"repository": "x"}}],
                "imagePullSecrets": [{"name": "a"}, {"name": "a"}],
                "terminationGracePeriodSeconds": -1,
                "containers": [{"name": "c", "image": "i"}],
            }
        }));
        assert_eq!(
            pod_warnings(&pod),
            [
                r#"spec.nodeSelector[beta.kubernetes.io/arch]: deprecated since v1.14; use "kubernetes.io/arch" instead"#,
                "spec.volumes[0].gitRepo: deprecated in v1.11",
                r#"spec.imagePullSecrets[1].name: duplicate name "a""#,
                r#"metadata.annotations[seccomp.security.alpha.kubernetes.io/pod]: non-functional in v1.27+; use the "seccompProfile" field instead"#,
                "spec.terminationGracePeriodSeconds: must be >= 0; negative values are invalid and will be treated as 1",
            ]
        );
    }

    #[test]
    fn templates_warn_under_their_path_and_only_when_changed() {
        let d = obj(json!({"spec": {"template": {"spec": {
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "beta.kubernetes.io/os", "operator": "In", "values": ["linux"]}]}]}}},
            "containers": [{"name": "c", "image": "i"}]}}}}));
        let w = template_warnings(&d, None, "spec.template");
        assert_eq!(
            w,
            [
                r#"spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key: beta.kubernetes.io/os is deprecated since v1.14; use "kubernetes.io/os" instead"#
            ]
        );
        assert!(template_warnings(&d, Some(&d), "spec.template").is_empty());
    }
}
