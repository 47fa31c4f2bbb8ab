//! Printer columns: rendering objects as `meta.k8s.io/v1` Tables.
//!
//! Built-in kinds get the columns of kube-apiserver's printers
//! (`pkg/printers/internalversion/printers.go`): their Age cells are human
//! durations rendered server-side (`5m`, `3d4h`) in a column of type
//! `string`. Kinds without a printer (CRDs, and every kind not listed in
//! [`builtin_columns`]) get the default convertor's `Name` + `Created At`
//! (type `date`, RFC 3339 cells). Custom resources use
//! [`table_for_columns`] with their `additionalPrinterColumns`.

use chrono::{DateTime, Utc};
use kube_core::GroupVersionKind;
use serde_json::{Map, Value, json};

/// What each Table row carries in `object` (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No `object` in rows.
    None,
    /// `PartialObjectMetadata` (the default).
    #[default]
    Metadata,
    /// The full object.
    Object,
}

/// Errors of Table rendering options (answered as 400 BadRequest).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// An `includeObject` value other than `None`, `Metadata` or `Object`.
    #[error(
        "includeObject: Unsupported value: {0:?}: supported values: \"Metadata\", \"None\", \"Object\""
    )]
    InvalidIncludeObject(String),
}

impl IncludeObject {
    /// Parses the `includeObject` query parameter; absent or empty means `Metadata`.
    pub fn parse(value: Option<&str>) -> Result<IncludeObject, TableError> {
        match value {
            None | Some("") | Some("Metadata") => Ok(IncludeObject::Metadata),
            Some("None") => Ok(IncludeObject::None),
            Some("Object") => Ok(IncludeObject::Object),
            Some(other) => Err(TableError::InvalidIncludeObject(other.to_string())),
        }
    }
}

/// One column of a Table, with where its cell comes from (CRD
/// `additionalPrinterColumns`: `name`, `type`, `format`, `description`,
/// `priority`, `jsonPath`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i32,
    pub json_path: String,
}

impl ColumnSpec {
    /// Reads one entry of a CRD version's `additionalPrinterColumns`.
    pub fn from_crd_column(col: &Value) -> ColumnSpec {
        let s = |k: &str| col.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        ColumnSpec {
            name: s("name"),
            type_: s("type"),
            format: s("format"),
            description: s("description"),
            priority: col
                .get("priority")
                .and_then(Value::as_i64)
                .and_then(|p| i32::try_from(p).ok())
                .unwrap_or(0),
            json_path: s("jsonPath"),
        }
    }

    /// The column a CRD gets when it declares no printer columns.
    pub fn crd_default_age() -> ColumnSpec {
        ColumnSpec {
            name: "Age".into(),
            type_: "date".into(),
            format: String::new(),
            description: CREATION_TIMESTAMP_DOC.into(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".into(),
        }
    }
}

const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const CREATION_TIMESTAMP_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

fn col(name: &str, type_: &str, priority: i32, description: &str) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": type_, "format": format, "description": description, "priority": priority})
}

fn name_col() -> Value {
    col("Name", "string", 0, NAME_DOC)
}

fn age_col() -> Value {
    col("Age", "string", 0, CREATION_TIMESTAMP_DOC)
}

/// Renders `objects` of kind `gvk` as a Table with the upstream kubectl
/// columns, computing ages against the current time.
pub fn to_table(
    gvk: &GroupVersionKind,
    objects: &[Value],
    include_object: IncludeObject,
    list_meta: Value,
) -> Value {
    to_table_at(gvk, objects, include_object, list_meta, Utc::now())
}

/// [`to_table`] with an explicit "now" for the Age cells.
pub fn to_table_at(
    gvk: &GroupVersionKind,
    objects: &[Value],
    include_object: IncludeObject,
    list_meta: Value,
    now: DateTime<Utc>,
) -> Value {
    if gvk.group == crate::workspace::GROUP && gvk.kind == crate::workspace::KIND {
        return table_for_columns(&workspace_columns(), objects, include_object, list_meta);
    }
    let Some(kind) = builtin_kind(gvk) else {
        return default_table(objects, include_object, list_meta);
    };
    let ctx = Ctx { now };
    let rows = objects
        .iter()
        .map(|o| row(ctx.cells(kind, o), o, include_object))
        .collect();
    table(builtin_columns(kind), rows, list_meta)
}

/// Renders `objects` as a Table with a Name column followed by `columns`
/// (CRD `additionalPrinterColumns`). Cells are read with a small JSONPath
/// subset: `.a.b`, `.a[0]`, `.a[*].b`, and `[?(@.k=="v")]` filters.
pub fn table_for_columns(
    columns: &[ColumnSpec],
    objects: &[Value],
    include_object: IncludeObject,
    list_meta: Value,
) -> Value {
    let mut defs = vec![name_col()];
    defs.extend(columns.iter().map(|c| {
        json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority})
    }));
    let rows = objects
        .iter()
        .map(|o| {
            let mut cells = vec![Value::String(meta_str(o, "name").to_string())];
            cells.extend(columns.iter().map(|c| crd_cell(o, c)));
            row(cells, o, include_object)
        })
        .collect();
    table(defs, rows, list_meta)
}

/// `kubectl get workspaces`: NAME, PHASE, URL, AGE.
fn workspace_columns() -> Vec<ColumnSpec> {
    let c = |name: &str, path: &str, desc: &str| ColumnSpec {
        name: name.into(),
        type_: "string".into(),
        format: String::new(),
        description: desc.into(),
        priority: 0,
        json_path: path.into(),
    };
    vec![
        c("Phase", ".status.phase", "The workspace's lifecycle phase."),
        c("URL", ".status.url", "The URL to use for the workspace."),
        ColumnSpec::crd_default_age(),
    ]
}

fn default_table(objects: &[Value], include_object: IncludeObject, list_meta: Value) -> Value {
    let defs = vec![
        name_col(),
        col("Created At", "date", 0, CREATION_TIMESTAMP_DOC),
    ];
    let rows = objects
        .iter()
        .map(|o| {
            let cells = vec![
                Value::String(meta_str(o, "name").to_string()),
                Value::String(meta_str(o, "creationTimestamp").to_string()),
            ];
            row(cells, o, include_object)
        })
        .collect();
    table(defs, rows, list_meta)
}

fn table(columns: Vec<Value>, rows: Vec<Value>, list_meta: Value) -> Value {
    let metadata = if list_meta.is_null() {
        json!({})
    } else {
        list_meta
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

fn row(cells: Vec<Value>, obj: &Value, include_object: IncludeObject) -> Value {
    let mut r = Map::new();
    r.insert("cells".into(), Value::Array(cells));
    match include_object {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            r.insert(
                "object".into(),
                json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
                }),
            );
        }
        IncludeObject::Object => {
            r.insert("object".into(), obj.clone());
        }
    }
    Value::Object(r)
}

fn crd_cell(obj: &Value, c: &ColumnSpec) -> Value {
    let found = jsonpath(obj, &c.json_path);
    let Some(first) = found.first() else {
        return Value::Null;
    };
    match c.type_.as_str() {
        // Like apiextensions: a non-scalar or multiple matches print as JSON text.
        "string" if found.len() > 1 => Value::String(
            found
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
        ),
        "string" => match first {
            Value::String(_) => (*first).clone(),
            other => Value::String(other.to_string()),
        },
        // Like apiextensions' table convertor: dates print as their age.
        "date" => match first.as_str() {
            Some(ts) => match parse_time(ts) {
                Some(t) => Value::String(human_duration((Utc::now() - t).num_seconds())),
                None => Value::String("<invalid>".into()),
            },
            None => Value::Null,
        },
        "integer" | "number" if !first.is_number() => Value::Null,
        "boolean" if !first.is_boolean() => Value::Null,
        _ => (*first).clone(),
    }
}

/// Evaluates the JSONPath subset CRD printer columns use in practice.
pub fn jsonpath<'a>(obj: &'a Value, path: &str) -> Vec<&'a Value> {
    let path = path.trim();
    let path = path
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(path);
    let path = path.strip_prefix('$').unwrap_or(path);
    let mut cur: Vec<&Value> = vec![obj];
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            rest = &r[end..];
            if key.is_empty() {
                continue;
            }
            cur = cur.into_iter().filter_map(|v| v.get(key)).collect();
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = find_bracket_end(r) else {
                return Vec::new();
            };
            let sel = &r[..end];
            rest = &r[end + 1..];
            cur = apply_bracket(cur, sel);
        } else {
            return Vec::new();
        }
    }
    cur
}

fn find_bracket_end(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_str: Option<char> = None;
    for (i, c) in s.char_indices() {
        match (in_str, c) {
            (Some(q), c) if c == q => in_str = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => in_str = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth = depth.saturating_sub(1),
            (None, ']') if depth == 0 => return Some(i),
            _ => {}
        }
    }
    None
}

fn apply_bracket<'a>(cur: Vec<&'a Value>, sel: &str) -> Vec<&'a Value> {
    let sel = sel.trim();
    if sel == "*" {
        return cur
            .into_iter()
            .flat_map(|v| match v {
                Value::Array(a) => a.iter().collect::<Vec<_>>(),
                Value::Object(m) => m.values().collect(),
                _ => Vec::new(),
            })
            .collect();
    }
    if let Some(filter) = sel.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
        // `@.a.b == "v"` or `@.a.b` (exists)
        let (lhs, rhs) = match filter.split_once("==") {
            Some((l, r)) => (l.trim(), Some(r.trim().trim_matches(['"', '\'']))),
            None => (filter.trim(), None),
        };
        let lhs = lhs.strip_prefix('@').unwrap_or(lhs);
        return cur
            .into_iter()
            .flat_map(|v| match v {
                Value::Array(a) => a.iter().collect::<Vec<_>>(),
                _ => Vec::new(),
            })
            .filter(|item| {
                let got = jsonpath(item, lhs);
                match (got.first(), rhs) {
                    (Some(Value::String(s)), Some(want)) => s == want,
                    (Some(Value::Number(n)), Some(want)) => want.parse::<f64>().ok() == n.as_f64(),
                    (Some(Value::Bool(b)), Some(want)) => want == if *b { "true" } else { "false" },
                    (Some(_), Some(_)) => false,
                    (Some(_), None) => true,
                    (None, _) => false,
                }
            })
            .collect();
    }
    if let Some(key) = sel
        .strip_prefix('\'')
        .and_then(|k| k.strip_suffix('\''))
        .or_else(|| sel.strip_prefix('"').and_then(|k| k.strip_suffix('"')))
    {
        return cur.into_iter().filter_map(|v| v.get(key)).collect();
    }
    if let Ok(i) = sel.parse::<i64>() {
        return cur
            .into_iter()
            .filter_map(|v| {
                let a = v.as_array()?;
                let idx = if i < 0 {
                    a.len().checked_sub(i.unsigned_abs() as usize)?
                } else {
                    usize::try_from(i).ok()?
                };
                a.get(idx)
            })
            .collect();
    }
    Vec::new()
}

// ---------------------------------------------------------------------------
// Built-in printers
// ---------------------------------------------------------------------------

/// The built-in kinds that have a kubectl printer here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ConfigMap,
    Secret,
    Namespace,
    Pod,
    PodTemplate,
    Service,
    ServiceAccount,
    Endpoints,
    Event,
    Node,
    PersistentVolume,
    PersistentVolumeClaim,
    ReplicationController,
    LimitRange,
    ResourceQuota,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    ControllerRevision,
    Job,
    CronJob,
    Lease,
    Ingress,
    IngressClass,
    NetworkPolicy,
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
    StorageClass,
    PriorityClass,
    PodDisruptionBudget,
    HorizontalPodAutoscaler,
    EndpointSlice,
    MutatingWebhookConfiguration,
    ValidatingWebhookConfiguration,
    CertificateSigningRequest,
    ApiService,
    ComponentStatus,
}

fn builtin_kind(gvk: &GroupVersionKind) -> Option<Kind> {
    use Kind::*;
    Some(match (gvk.group.as_str(), gvk.kind.as_str()) {
        ("", "ConfigMap") => ConfigMap,
        ("", "ComponentStatus") => ComponentStatus,
        ("", "Secret") => Secret,
        ("", "Namespace") => Namespace,
        ("", "Pod") => Pod,
        ("", "PodTemplate") => PodTemplate,
        ("", "Service") => Service,
        ("", "ServiceAccount") => ServiceAccount,
        ("", "Endpoints") => Endpoints,
        ("", "Event") | ("events.k8s.io", "Event") => Event,
        ("", "Node") => Node,
        ("", "PersistentVolume") => PersistentVolume,
        ("", "PersistentVolumeClaim") => PersistentVolumeClaim,
        ("", "ReplicationController") => ReplicationController,
        ("", "LimitRange") => LimitRange,
        ("", "ResourceQuota") => ResourceQuota,
        ("apps", "Deployment") => Deployment,
        ("apps", "ReplicaSet") => ReplicaSet,
        ("apps", "StatefulSet") => StatefulSet,
        ("apps", "DaemonSet") => DaemonSet,
        ("apps", "ControllerRevision") => ControllerRevision,
        ("batch", "Job") => Job,
        ("batch", "CronJob") => CronJob,
        ("coordination.k8s.io", "Lease") => Lease,
        ("networking.k8s.io", "Ingress") => Ingress,
        ("networking.k8s.io", "IngressClass") => IngressClass,
        ("networking.k8s.io", "NetworkPolicy") => NetworkPolicy,
        ("rbac.authorization.k8s.io", "Role") => Role,
        ("rbac.authorization.k8s.io", "ClusterRole") => ClusterRole,
        ("rbac.authorization.k8s.io", "RoleBinding") => RoleBinding,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => ClusterRoleBinding,
        ("storage.k8s.io", "StorageClass") => StorageClass,
        ("scheduling.k8s.io", "PriorityClass") => PriorityClass,
        ("policy", "PodDisruptionBudget") => PodDisruptionBudget,
        ("autoscaling", "HorizontalPodAutoscaler") => HorizontalPodAutoscaler,
        ("discovery.k8s.io", "EndpointSlice") => EndpointSlice,
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => {
            MutatingWebhookConfiguration
        }
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            ValidatingWebhookConfiguration
        }
        ("certificates.k8s.io", "CertificateSigningRequest") => CertificateSigningRequest,
        ("apiregistration.k8s.io", "APIService") => ApiService,
        _ => return None,
    })
}

const CONTAINERS_DOC: &str = "Names of each container in the template.";
const IMAGES_DOC: &str = "Images referenced by each container in the template.";

fn builtin_columns(kind: Kind) -> Vec<Value> {
    use Kind::*;
    let s = |name: &str, desc: &str| col(name, "string", 0, desc);
    let i = |name: &str, desc: &str| col(name, "integer", 0, desc);
    let wide = |name: &str, desc: &str| col(name, "string", 1, desc);
    let workload_wide = |selector: bool| {
        let mut v = vec![
            wide("Containers", CONTAINERS_DOC),
            wide("Images", IMAGES_DOC),
        ];
        if selector {
            v.push(wide(
                "Selector",
                "A label query over pods that should match the replica count.",
            ));
        }
        v
    };
    let mut c = match kind {
        ConfigMap => vec![
            name_col(),
            i("Data", "Data contains the configuration data."),
            age_col(),
        ],
        Secret => vec![
            name_col(),
            s(
                "Type",
                "Used to facilitate programmatic handling of secret data.",
            ),
            i("Data", "Data contains the secret data."),
            age_col(),
        ],
        Namespace => vec![
            name_col(),
            s("Status", "The status of the namespace"),
            age_col(),
        ],
        Pod => vec![
            name_col(),
            s(
                "Ready",
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            s(
                "Status",
                "The aggregate status of the containers in this pod.",
            ),
            s(
                "Restarts",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            age_col(),
            wide("IP", "podIP address allocated to the pod."),
            wide(
                "Node",
                "NodeName indicates in which node this pod is scheduled.",
            ),
            wide(
                "Nominated Node",
                "nominatedNodeName is set only when this pod preempts other pods on the node.",
            ),
            wide(
                "Readiness Gates",
                "If specified, all readiness gates will be evaluated for pod readiness.",
            ),
        ],
        PodTemplate => vec![
            name_col(),
            s("Containers", CONTAINERS_DOC),
            s("Images", IMAGES_DOC),
            s("Pod Labels", "The labels for the pod template."),
        ],
        Service => vec![
            name_col(),
            s("Type", "type determines how the Service is exposed."),
            s("Cluster-IP", "clusterIP is the IP address of the service."),
            s(
                "External-IP",
                "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
            ),
            s(
                "Port(s)",
                "The list of ports that are exposed by this service.",
            ),
            age_col(),
            wide(
                "Selector",
                "Route service traffic to pods with label keys and values matching this selector.",
            ),
        ],
        ServiceAccount => vec![
            name_col(),
            i(
                "Secrets",
                "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
            ),
            age_col(),
        ],
        Endpoints => vec![
            name_col(),
            s(
                "Endpoints",
                "The set of all endpoints is the union of all subsets.",
            ),
            age_col(),
        ],
        Event => vec![
            s(
                "Last Seen",
                "The time at which the most recent occurrence of this event was recorded.",
            ),
            s(
                "Type",
                "Type of this event (Normal, Warning), new types could be added in the future",
            ),
            s(
                "Reason",
                "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
            ),
            s("Object", "The object that this event is about."),
            wide(
                "Subobject",
                "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement.",
            ),
            wide("Source", "The component reporting this event."),
            s(
                "Message",
                "A human-readable description of the status of this operation.",
            ),
            wide(
                "First Seen",
                "The time at which the event was first recorded.",
            ),
            wide("Count", "The number of times this event has occurred."),
            col("Name", "string", 1, NAME_DOC),
        ],
        Node => vec![
            name_col(),
            s("Status", "The status of the node"),
            s("Roles", "The roles of the node"),
            age_col(),
            s("Version", "Kubelet Version reported by the node."),
            wide("Internal-IP", "List of addresses reachable to the node."),
            wide("External-IP", "List of addresses reachable to the node."),
            wide(
                "OS-Image",
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
            ),
            wide(
                "Kernel-Version",
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
            ),
            wide(
                "Container-Runtime",
                "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
            ),
        ],
        PersistentVolume => vec![
            name_col(),
            s(
                "Capacity",
                "capacity is the description of the persistent volume's resources and capacity.",
            ),
            s(
                "Access Modes",
                "accessModes contains all ways the volume can be mounted.",
            ),
            s(
                "Reclaim Policy",
                "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
            ),
            s(
                "Status",
                "phase indicates if a volume is available, bound to a claim, or released by a claim.",
            ),
            s(
                "Claim",
                "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
            ),
            s(
                "StorageClass",
                "storageClassName is the name of StorageClass to which this persistent volume belongs.",
            ),
            s(
                "VolumeAttributesClass",
                "Name of VolumeAttributesClass to which this persistent volume belongs.",
            ),
            s(
                "Reason",
                "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.",
            ),
            age_col(),
            wide(
                "VolumeMode",
                "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.",
            ),
        ],
        PersistentVolumeClaim => vec![
            name_col(),
            s(
                "Status",
                "phase represents the current phase of PersistentVolumeClaim.",
            ),
            s(
                "Volume",
                "volumeName is the binding reference to the PersistentVolume backing this claim.",
            ),
            s(
                "Capacity",
                "capacity represents the actual resources of the underlying volume.",
            ),
            s(
                "Access Modes",
                "accessModes contains the desired access modes the volume should have.",
            ),
            s(
                "StorageClass",
                "storageClassName is the name of the StorageClass required by the claim.",
            ),
            s(
                "VolumeAttributesClass",
                "volumeAttributesClassName may be used to set the VolumeAttributesClass used by this claim.",
            ),
            age_col(),
            wide(
                "VolumeMode",
                "volumeMode defines what type of volume is required by the claim.",
            ),
        ],
        ReplicationController | ReplicaSet => {
            let mut v = vec![
                name_col(),
                i("Desired", "Replicas is the number of desired replicas."),
                i(
                    "Current",
                    "Replicas is the most recently observed number of replicas.",
                ),
                i(
                    "Ready",
                    "The number of ready replicas for this replication controller.",
                ),
                age_col(),
            ];
            v.extend(workload_wide(true));
            v
        }
        LimitRange => vec![name_col(), s("Created At", CREATION_TIMESTAMP_DOC)],
        ResourceQuota => vec![
            name_col(),
            age_col(),
            s(
                "Request",
                "Request represents a minimum amount of cpu/memory that a container may consume.",
            ),
            s(
                "Limit",
                "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
            ),
        ],
        Deployment => {
            let mut v = vec![
                name_col(),
                s("Ready", "Number of the pod with ready state"),
                i(
                    "Up-to-date",
                    "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
                ),
                i(
                    "Available",
                    "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
                ),
                age_col(),
            ];
            v.extend(workload_wide(true));
            v
        }
        StatefulSet => {
            let mut v = vec![
                name_col(),
                s("Ready", "Number of the pod with ready state"),
                age_col(),
            ];
            v.extend(workload_wide(false));
            v
        }
        DaemonSet => {
            let mut v = vec![
                name_col(),
                i(
                    "Desired",
                    "The total number of nodes that should be running the daemon pod.",
                ),
                i(
                    "Current",
                    "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
                ),
                i(
                    "Ready",
                    "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.",
                ),
                i(
                    "Up-to-date",
                    "The total number of nodes that are running updated daemon pod",
                ),
                i(
                    "Available",
                    "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.",
                ),
                s(
                    "Node Selector",
                    "NodeSelector is a selector which must be true for the pod to fit on a node.",
                ),
                age_col(),
            ];
            v.extend(workload_wide(true));
            v
        }
        ControllerRevision => vec![
            name_col(),
            s("Controller", "Controller of the object"),
            i(
                "Revision",
                "Revision indicates the revision of the state represented by Data.",
            ),
            age_col(),
        ],
        Job => {
            let mut v = vec![
                name_col(),
                s("Status", "Status of the job."),
                s("Completions", "The completion status of the job"),
                s("Duration", "Time required to complete the job."),
                age_col(),
            ];
            v.extend(workload_wide(true));
            v
        }
        CronJob => {
            let mut v = vec![
                name_col(),
                s(
                    "Schedule",
                    "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
                ),
                s(
                    "Timezone",
                    "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
                ),
                col(
                    "Suspend",
                    "boolean",
                    0,
                    "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.",
                ),
                i("Active", "A list of pointers to currently running jobs."),
                s(
                    "Last Schedule",
                    "Information when was the last time the job was successfully scheduled.",
                ),
                age_col(),
            ];
            v.extend(workload_wide(true));
            v
        }
        ComponentStatus => vec![
            name_col(),
            s("Status", "Status of the component conditions"),
            s("Message", "Message of the component conditions"),
            s("Error", "Error of the component conditions"),
        ],
        Lease => vec![
            name_col(),
            s(
                "Holder",
                "holderIdentity contains the identity of the holder of a current lease.",
            ),
            age_col(),
        ],
        Ingress => vec![
            name_col(),
            s("Class", "The name of the IngressClass cluster resource."),
            s(
                "Hosts",
                "Hosts that incoming requests are matched against before the ingress rule",
            ),
            s(
                "Address",
                "Address is a list containing ingress points for the load-balancer",
            ),
            s("Ports", "Ports of TLS configurations that open"),
            age_col(),
        ],
        IngressClass => vec![
            name_col(),
            s(
                "Controller",
                "Controller that is responsible for handling this class",
            ),
            s(
                "Parameters",
                "A reference to a resource with additional parameters",
            ),
            age_col(),
        ],
        NetworkPolicy => vec![
            name_col(),
            s(
                "Pod-Selector",
                "Selects the pods to which this NetworkPolicy object applies.",
            ),
            age_col(),
        ],
        Role | ClusterRole => vec![name_col(), s("Created At", CREATION_TIMESTAMP_DOC)],
        RoleBinding | ClusterRoleBinding => vec![
            name_col(),
            s(
                "Role",
                "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
            ),
            age_col(),
            wide("Users", "Users in the roleBinding"),
            wide("Groups", "Groups in the roleBinding"),
            wide("ServiceAccounts", "ServiceAccounts in the roleBinding"),
        ],
        StorageClass => vec![
            name_col(),
            s(
                "Provisioner",
                "provisioner indicates the type of the provisioner.",
            ),
            s(
                "ReclaimPolicy",
                "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class.",
            ),
            s(
                "VolumeBindingMode",
                "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.",
            ),
            s(
                "AllowVolumeExpansion",
                "allowVolumeExpansion shows whether the storage class allow volume expand.",
            ),
            age_col(),
        ],
        PriorityClass => vec![
            name_col(),
            i(
                "Value",
                "value represents the integer value of this priority class.",
            ),
            col(
                "Global-Default",
                "boolean",
                0,
                "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class.",
            ),
            s(
                "PreemptionPolicy",
                "preemptionPolicy is the Policy for preempting pods with lower priority.",
            ),
            age_col(),
        ],
        PodDisruptionBudget => vec![
            name_col(),
            s(
                "Min Available",
                "The minimum number of pods that must be available.",
            ),
            s(
                "Max Unavailable",
                "The maximum number of pods that may be unavailable.",
            ),
            i(
                "Allowed Disruptions",
                "Calculated number of pods that may be disrupted at this time.",
            ),
            age_col(),
        ],
        HorizontalPodAutoscaler => vec![
            name_col(),
            s(
                "Reference",
                "reference to scaled resource; horizontal pod autoscaler will learn the current resource consumption and will set the desired number of pods by using its Scale subresource.",
            ),
            s(
                "Targets",
                "metrics contains the specifications for which to use to calculate the desired replica count.",
            ),
            i(
                "MinPods",
                "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.",
            ),
            i(
                "MaxPods",
                "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up.",
            ),
            i(
                "Replicas",
                "currentReplicas is current number of replicas of pods managed by this autoscaler.",
            ),
            age_col(),
        ],
        EndpointSlice => vec![
            name_col(),
            s(
                "AddressType",
                "addressType specifies the type of address carried by this EndpointSlice.",
            ),
            s(
                "Ports",
                "ports specifies the list of network ports exposed by each endpoint in this slice.",
            ),
            s(
                "Endpoints",
                "endpoints is a list of unique endpoints in this slice.",
            ),
            age_col(),
        ],
        MutatingWebhookConfiguration | ValidatingWebhookConfiguration => vec![
            name_col(),
            i(
                "Webhooks",
                "Webhooks indicates the number of webhooks in the configuration",
            ),
            age_col(),
        ],
        CertificateSigningRequest => vec![
            name_col(),
            age_col(),
            s(
                "SignerName",
                "Name of the signer to sign the certificate request",
            ),
            s("Requestor", "Name of the user who requested the CSR"),
            s("RequestedDuration", "Requested certificate duration"),
            s("Condition", "Status of the CSR"),
        ],
        ApiService => vec![
            name_col(),
            s(
                "Service",
                "The reference to the service that hosts this API endpoint.",
            ),
            s("Available", "Whether this service is available."),
            age_col(),
        ],
    };
    c.shrink_to_fit();
    c
}

struct Ctx {
    now: DateTime<Utc>,
}

fn meta_str<'a>(o: &'a Value, key: &str) -> &'a str {
    o.pointer(&format!("/metadata/{key}"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn ptr<'a>(o: &'a Value, p: &str) -> Option<&'a Value> {
    o.pointer(p)
}

fn pstr<'a>(o: &'a Value, p: &str) -> &'a str {
    o.pointer(p).and_then(Value::as_str).unwrap_or("")
}

fn pint(o: &Value, p: &str) -> i64 {
    o.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

fn parr<'a>(o: &'a Value, p: &str) -> &'a [Value] {
    o.pointer(p)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn plen(o: &Value, p: &str) -> i64 {
    let n = match o.pointer(p) {
        Some(Value::Array(a)) => a.len(),
        Some(Value::Object(m)) => m.len(),
        _ => 0,
    };
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn or_none(s: String) -> String {
    if s.is_empty() { "<none>".into() } else { s }
}

/// `k=v,k2=v2` of a string map, sorted by key (labels.FormatLabels).
fn format_labels(m: Option<&Value>) -> String {
    let Some(Value::Object(m)) = m else {
        return "<none>".into();
    };
    let mut kv: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    kv.sort();
    or_none(kv.join(","))
}

fn label_selector_string(sel: Option<&Value>) -> String {
    match sel {
        None => "<none>".into(),
        Some(v) => match crate::selector::LabelSelector::from_json(v) {
            Ok(s) if s.is_empty() => "<none>".into(),
            Ok(s) => s.to_string(),
            Err(_) => "<error>".into(),
        },
    }
}

fn container_names_images(spec: Option<&Value>) -> (String, String) {
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c.get("name").and_then(Value::as_str).unwrap_or(""))
        .collect();
    let images: Vec<&str> = containers
        .iter()
        .map(|c| c.get("image").and_then(Value::as_str).unwrap_or(""))
        .collect();
    (names.join(","), images.join(","))
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// apimachinery `duration.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

impl Ctx {
    /// `translateTimestampSince`: `<unknown>` for a missing timestamp.
    fn since(&self, ts: &str) -> String {
        match parse_time(ts) {
            Some(t) => human_duration((self.now - t).num_seconds()),
            None => "<unknown>".into(),
        }
    }

    fn age(&self, o: &Value) -> Value {
        Value::String(self.since(meta_str(o, "creationTimestamp")))
    }

    fn cells(&self, kind: Kind, o: &Value) -> Vec<Value> {
        use Kind::*;
        let name = Value::String(meta_str(o, "name").to_string());
        let s = |v: String| Value::String(v);
        let n = |v: i64| Value::from(v);
        match kind {
            ConfigMap => vec![
                name,
                n(plen(o, "/data") + plen(o, "/binaryData")),
                self.age(o),
            ],
            Secret => vec![
                name,
                s(pstr(o, "/type").to_string()),
                n(plen(o, "/data")),
                self.age(o),
            ],
            Namespace => vec![name, s(pstr(o, "/status/phase").to_string()), self.age(o)],
            Pod => self.pod(o, name),
            PodTemplate => {
                let (names, images) = container_names_images(ptr(o, "/template/spec"));
                vec![
                    name,
                    s(names),
                    s(images),
                    s(format_labels(ptr(o, "/template/metadata/labels"))),
                ]
            }
            Service => vec![
                name,
                s(pstr(o, "/spec/type").to_string()),
                s(or_none(pstr(o, "/spec/clusterIP").to_string())),
                s(service_external_ip(o)),
                s(service_ports(o)),
                self.age(o),
                s(format_labels(ptr(o, "/spec/selector"))),
            ],
            ServiceAccount => vec![name, n(plen(o, "/secrets")), self.age(o)],
            Endpoints => vec![name, s(format_endpoints(o)), self.age(o)],
            Event => self.event(o, name),
            Node => self.node(o, name),
            PersistentVolume => {
                let claim = match ptr(o, "/spec/claimRef") {
                    Some(c) => format!(
                        "{}/{}",
                        c.get("namespace").and_then(Value::as_str).unwrap_or(""),
                        c.get("name").and_then(Value::as_str).unwrap_or("")
                    ),
                    None => String::new(),
                };
                vec![
                    name,
                    s(pstr(o, "/spec/capacity/storage").to_string()),
                    s(access_modes(parr(o, "/spec/accessModes"))),
                    s(pstr(o, "/spec/persistentVolumeReclaimPolicy").to_string()),
                    s(pstr(o, "/status/phase").to_string()),
                    s(claim),
                    s(pstr(o, "/spec/storageClassName").to_string()),
                    s(unset(pstr(o, "/spec/volumeAttributesClassName"))),
                    s(pstr(o, "/status/reason").to_string()),
                    self.age(o),
                    s(volume_mode(o)),
                ]
            }
            PersistentVolumeClaim => {
                let phase = if ptr(o, "/metadata/deletionTimestamp").is_some() {
                    "Terminating"
                } else {
                    pstr(o, "/status/phase")
                };
                let bound = !pstr(o, "/spec/volumeName").is_empty();
                let (capacity, modes) = if bound {
                    (
                        pstr(o, "/status/capacity/storage").to_string(),
                        access_modes(parr(o, "/status/accessModes")),
                    )
                } else {
                    (String::new(), String::new())
                };
                vec![
                    name,
                    s(phase.to_string()),
                    s(pstr(o, "/spec/volumeName").to_string()),
                    s(capacity),
                    s(modes),
                    s(pstr(o, "/spec/storageClassName").to_string()),
                    s(unset(pstr(o, "/spec/volumeAttributesClassName"))),
                    self.age(o),
                    s(volume_mode(o)),
                ]
            }
            ReplicationController | ReplicaSet => {
                let (names, images) = container_names_images(ptr(o, "/spec/template/spec"));
                let selector = if kind == ReplicaSet {
                    label_selector_string(ptr(o, "/spec/selector"))
                } else {
                    format_labels(ptr(o, "/spec/selector"))
                };
                vec![
                    name,
                    n(replicas(o)),
                    n(pint(o, "/status/replicas")),
                    n(pint(o, "/status/readyReplicas")),
                    self.age(o),
                    s(names),
                    s(images),
                    s(selector),
                ]
            }
            LimitRange | Role | ClusterRole => {
                let created = parse_time(meta_str(o, "creationTimestamp"))
                    .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                    .unwrap_or_default();
                vec![name, s(created)]
            }
            ResourceQuota => {
                let (req, lim) = quota_cells(o);
                vec![name, self.age(o), s(req), s(lim)]
            }
            Deployment => {
                let (names, images) = container_names_images(ptr(o, "/spec/template/spec"));
                vec![
                    name,
                    s(format!(
                        "{}/{}",
                        pint(o, "/status/readyReplicas"),
                        replicas(o)
                    )),
                    n(pint(o, "/status/updatedReplicas")),
                    n(pint(o, "/status/availableReplicas")),
                    self.age(o),
                    s(names),
                    s(images),
                    s(label_selector_string(ptr(o, "/spec/selector"))),
                ]
            }
            StatefulSet => {
                let (names, images) = container_names_images(ptr(o, "/spec/template/spec"));
                vec![
                    name,
                    s(format!(
                        "{}/{}",
                        pint(o, "/status/readyReplicas"),
                        replicas(o)
                    )),
                    self.age(o),
                    s(names),
                    s(images),
                ]
            }
            DaemonSet => {
                let (names, images) = container_names_images(ptr(o, "/spec/template/spec"));
                vec![
                    name,
                    n(pint(o, "/status/desiredNumberScheduled")),
                    n(pint(o, "/status/currentNumberScheduled")),
                    n(pint(o, "/status/numberReady")),
                    n(pint(o, "/status/updatedNumberScheduled")),
                    n(pint(o, "/status/numberAvailable")),
                    s(format_labels(ptr(o, "/spec/template/spec/nodeSelector"))),
                    self.age(o),
                    s(names),
                    s(images),
                    s(label_selector_string(ptr(o, "/spec/selector"))),
                ]
            }
            ControllerRevision => {
                let controller = parr(o, "/metadata/ownerReferences")
                    .iter()
                    .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
                    .map(|r| {
                        let api = r.get("apiVersion").and_then(Value::as_str).unwrap_or("");
                        let group = api.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
                        let kind = r.get("kind").and_then(Value::as_str).unwrap_or("");
                        let rname = r.get("name").and_then(Value::as_str).unwrap_or("");
                        let gk = if group.is_empty() {
                            kind.to_lowercase()
                        } else {
                            format!("{}.{group}", kind.to_lowercase())
                        };
                        format!("{gk}/{rname}")
                    })
                    .unwrap_or_else(|| "<none>".into());
                vec![name, s(controller), n(pint(o, "/revision")), self.age(o)]
            }
            Job => self.job(o, name),
            CronJob => {
                let (names, images) =
                    container_names_images(ptr(o, "/spec/jobTemplate/spec/template/spec"));
                let last = match ptr(o, "/status/lastScheduleTime").and_then(Value::as_str) {
                    Some(t) => self.since(t),
                    None => "<none>".into(),
                };
                let suspend = ptr(o, "/spec/suspend").and_then(Value::as_bool);
                vec![
                    name,
                    s(pstr(o, "/spec/schedule").to_string()),
                    s(or_none(pstr(o, "/spec/timeZone").to_string())),
                    match suspend {
                        Some(b) => Value::Bool(b),
                        None => s("<unset>".into()),
                    },
                    n(plen(o, "/status/active")),
                    s(last),
                    self.age(o),
                    s(names),
                    s(images),
                    s(label_selector_string(ptr(
                        o,
                        "/spec/jobTemplate/spec/selector",
                    ))),
                ]
            }
            ComponentStatus => {
                let healthy = o
                    .get("conditions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some("Healthy"));
                let field = |k: &str| {
                    healthy
                        .and_then(|c| c.get(k))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                let status = match field("status").as_str() {
                    "True" => "Healthy",
                    "False" => "Unhealthy",
                    _ => "Unknown",
                };
                vec![
                    name,
                    s(status.into()),
                    s(field("message")),
                    s(field("error")),
                ]
            }
            Lease => vec![
                name,
                s(pstr(o, "/spec/holderIdentity").to_string()),
                self.age(o),
            ],
            Ingress => vec![
                name,
                s(or_none(pstr(o, "/spec/ingressClassName").to_string())),
                s(ingress_hosts(o)),
                s(load_balancer_addresses(parr(
                    o,
                    "/status/loadBalancer/ingress",
                ))),
                s(if plen(o, "/spec/tls") > 0 {
                    "80, 443"
                } else {
                    "80"
                }
                .into()),
                self.age(o),
            ],
            IngressClass => {
                let params = match ptr(o, "/spec/parameters") {
                    Some(p) => {
                        let g = p.get("apiGroup").and_then(Value::as_str).unwrap_or("");
                        let k = p.get("kind").and_then(Value::as_str).unwrap_or("");
                        let pn = p.get("name").and_then(Value::as_str).unwrap_or("");
                        if g.is_empty() {
                            format!("{k}/{pn}")
                        } else {
                            format!("{k}.{g}/{pn}")
                        }
                    }
                    None => "<none>".into(),
                };
                vec![
                    name,
                    s(pstr(o, "/spec/controller").to_string()),
                    s(params),
                    self.age(o),
                ]
            }
            NetworkPolicy => vec![
                name,
                s(label_selector_string(ptr(o, "/spec/podSelector"))),
                self.age(o),
            ],
            RoleBinding | ClusterRoleBinding => {
                let subjects = parr(o, "/subjects");
                let pick = |k: &str| -> String {
                    subjects
                        .iter()
                        .filter(|s| s.get("kind").and_then(Value::as_str) == Some(k))
                        .map(|s| {
                            let sn = s.get("name").and_then(Value::as_str).unwrap_or("");
                            match (k, s.get("namespace").and_then(Value::as_str)) {
                                ("ServiceAccount", Some(ns)) => format!("{ns}/{sn}"),
                                ("ServiceAccount", None) => format!("/{sn}"),
                                _ => sn.to_string(),
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                vec![
                    name,
                    s(format!(
                        "{}/{}",
                        pstr(o, "/roleRef/kind"),
                        pstr(o, "/roleRef/name")
                    )),
                    self.age(o),
                    s(pick("User")),
                    s(pick("Group")),
                    s(pick("ServiceAccount")),
                ]
            }
            StorageClass => {
                let default = [
                    "storageclass.kubernetes.io/is-default-class",
                    "storageclass.beta.kubernetes.io/is-default-class",
                ]
                .iter()
                .any(|a| {
                    ptr(o, "/metadata/annotations")
                        .and_then(|m| m.get(*a))
                        .and_then(Value::as_str)
                        == Some("true")
                });
                let display = if default {
                    format!("{} (default)", meta_str(o, "name"))
                } else {
                    meta_str(o, "name").to_string()
                };
                let or = |p: &str, d: &str| {
                    let v = pstr(o, p);
                    if v.is_empty() {
                        d.to_string()
                    } else {
                        v.to_string()
                    }
                };
                vec![
                    s(display),
                    s(pstr(o, "/provisioner").to_string()),
                    s(or("/reclaimPolicy", "Delete")),
                    s(or("/volumeBindingMode", "Immediate")),
                    Value::Bool(
                        ptr(o, "/allowVolumeExpansion")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                    ),
                    self.age(o),
                ]
            }
            PriorityClass => vec![
                name,
                n(pint(o, "/value")),
                Value::Bool(
                    ptr(o, "/globalDefault")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                ),
                s(or_none(pstr(o, "/preemptionPolicy").to_string())),
                self.age(o),
            ],
            PodDisruptionBudget => {
                let iors = |p: &str| match ptr(o, p) {
                    Some(Value::String(v)) => v.clone(),
                    Some(Value::Number(v)) => v.to_string(),
                    _ => "N/A".into(),
                };
                vec![
                    name,
                    s(iors("/spec/minAvailable")),
                    s(iors("/spec/maxUnavailable")),
                    n(pint(o, "/status/disruptionsAllowed")),
                    self.age(o),
                ]
            }
            HorizontalPodAutoscaler => {
                let min = ptr(o, "/spec/minReplicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                vec![
                    name,
                    s(format!(
                        "{}/{}",
                        pstr(o, "/spec/scaleTargetRef/kind"),
                        pstr(o, "/spec/scaleTargetRef/name")
                    )),
                    s(hpa_targets(o)),
                    n(min),
                    n(pint(o, "/spec/maxReplicas")),
                    n(pint(o, "/status/currentReplicas")),
                    self.age(o),
                ]
            }
            EndpointSlice => vec![
                name,
                s(pstr(o, "/addressType").to_string()),
                s(endpoint_slice_ports(o)),
                s(endpoint_slice_endpoints(o)),
                self.age(o),
            ],
            MutatingWebhookConfiguration | ValidatingWebhookConfiguration => {
                vec![name, n(plen(o, "/webhooks")), self.age(o)]
            }
            CertificateSigningRequest => {
                let dur = ptr(o, "/spec/expirationSeconds")
                    .and_then(Value::as_i64)
                    .map(human_duration)
                    .unwrap_or_else(|| "<none>".into());
                vec![
                    name,
                    self.age(o),
                    s(pstr(o, "/spec/signerName").to_string()),
                    s(pstr(o, "/spec/username").to_string()),
                    s(dur),
                    s(csr_condition(o)),
                ]
            }
            ApiService => {
                let service = match ptr(o, "/spec/service") {
                    Some(svc) if !svc.is_null() => format!(
                        "{}/{}",
                        svc.get("namespace").and_then(Value::as_str).unwrap_or(""),
                        svc.get("name").and_then(Value::as_str).unwrap_or("")
                    ),
                    _ => "Local".into(),
                };
                let available = parr(o, "/status/conditions")
                    .iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some("Available"))
                    .map(|c| {
                        let st = c.get("status").and_then(Value::as_str).unwrap_or("");
                        let reason = c.get("reason").and_then(Value::as_str).unwrap_or("");
                        if st == "True" || reason.is_empty() {
                            st.to_string()
                        } else {
                            format!("{st} ({reason})")
                        }
                    })
                    .unwrap_or_else(|| "Unknown".into());
                vec![name, s(service), s(available), self.age(o)]
            }
        }
    }

    fn pod(&self, o: &Value, name: Value) -> Vec<Value> {
        let spec_containers = parr(o, "/spec/containers");
        let init_specs = parr(o, "/spec/initContainers");
        let statuses = parr(o, "/status/containerStatuses");
        let init_statuses = parr(o, "/status/initContainerStatuses");
        let is_true = |v: Option<&Value>| v.and_then(Value::as_bool).unwrap_or(false);

        // Sidecars (restartable init containers) count towards READY.
        let sidecars: Vec<&str> = init_specs
            .iter()
            .filter(|c| c.get("restartPolicy").and_then(Value::as_str) == Some("Always"))
            .filter_map(|c| c.get("name").and_then(Value::as_str))
            .collect();
        let mut total = spec_containers.len() + sidecars.len();
        let mut ready = 0usize;
        let mut restarts = 0i64;
        let mut last_restart: Option<DateTime<Utc>> = None;
        let mut note_restart = |st: &Value, restarts: &mut i64| {
            *restarts += st.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
            if let Some(t) = st
                .pointer("/lastState/terminated/finishedAt")
                .and_then(Value::as_str)
                .and_then(parse_time)
                && last_restart.is_none_or(|l| t > l)
            {
                last_restart = Some(t);
            }
        };

        let mut reason = pstr(o, "/status/reason").to_string();
        if reason.is_empty() {
            reason = pstr(o, "/status/phase").to_string();
        }

        let mut initializing = false;
        for (i, st) in init_statuses.iter().enumerate() {
            note_restart(st, &mut restarts);
            let cname = st.get("name").and_then(Value::as_str).unwrap_or("");
            let is_sidecar = sidecars.contains(&cname);
            if is_sidecar && is_true(st.get("started")) && is_true(st.get("ready")) {
                ready += 1;
            }
            if let Some(term) = st.pointer("/state/terminated")
                && term.get("exitCode").and_then(Value::as_i64) == Some(0)
            {
                continue;
            }
            if is_sidecar && is_true(st.get("started")) {
                continue;
            }
            if let Some(term) = st.pointer("/state/terminated") {
                let r = term.get("reason").and_then(Value::as_str).unwrap_or("");
                reason = if !r.is_empty() {
                    format!("Init:{r}")
                } else if let Some(sig) = term
                    .get("signal")
                    .and_then(Value::as_i64)
                    .filter(|s| *s != 0)
                {
                    format!("Init:Signal:{sig}")
                } else {
                    format!(
                        "Init:ExitCode:{}",
                        term.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
                    )
                };
            } else if let Some(r) = st
                .pointer("/state/waiting/reason")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty() && *r != "PodInitializing")
            {
                reason = format!("Init:{r}");
            } else {
                reason = format!("Init:{i}/{}", init_specs.len());
            }
            initializing = true;
            break;
        }

        let pod_ready_condition = parr(o, "/status/conditions").iter().any(|c| {
            c.get("type").and_then(Value::as_str) == Some("Ready")
                && c.get("status").and_then(Value::as_str) == Some("True")
        });
        if !initializing {
            let mut has_running = false;
            for st in statuses.iter().rev() {
                note_restart(st, &mut restarts);
                if let Some(r) = st
                    .pointer("/state/waiting/reason")
                    .and_then(Value::as_str)
                    .filter(|r| !r.is_empty())
                {
                    reason = r.to_string();
                } else if let Some(term) = st.pointer("/state/terminated") {
                    let r = term.get("reason").and_then(Value::as_str).unwrap_or("");
                    reason = if !r.is_empty() {
                        r.to_string()
                    } else if let Some(sig) = term
                        .get("signal")
                        .and_then(Value::as_i64)
                        .filter(|s| *s != 0)
                    {
                        format!("Signal:{sig}")
                    } else {
                        format!(
                            "ExitCode:{}",
                            term.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
                        )
                    };
                } else if is_true(st.get("ready")) && st.pointer("/state/running").is_some() {
                    has_running = true;
                    ready += 1;
                }
            }
            if reason == "Completed" && has_running {
                reason = if pod_ready_condition {
                    "Running"
                } else {
                    "NotReady"
                }
                .into();
            }
        }
        if ptr(o, "/metadata/deletionTimestamp").is_some() {
            reason = if pstr(o, "/status/reason") == "NodeLost" {
                "Unknown".into()
            } else {
                "Terminating".into()
            };
        }
        if total == 0 {
            total = statuses.len();
        }

        let restarts_cell = match last_restart {
            Some(t) if restarts != 0 => format!(
                "{restarts} ({} ago)",
                human_duration((self.now - t).num_seconds())
            ),
            _ => restarts.to_string(),
        };
        let ip = parr(o, "/status/podIPs")
            .first()
            .and_then(|p| p.get("ip"))
            .and_then(Value::as_str)
            .unwrap_or_else(|| pstr(o, "/status/podIP"));
        let gates = parr(o, "/spec/readinessGates");
        let gates_cell = if gates.is_empty() {
            "<none>".to_string()
        } else {
            let conds = parr(o, "/status/conditions");
            let ok = gates
                .iter()
                .filter(|g| {
                    let t = g.get("conditionType").and_then(Value::as_str);
                    conds.iter().any(|c| {
                        c.get("type").and_then(Value::as_str) == t
                            && c.get("status").and_then(Value::as_str) == Some("True")
                    })
                })
                .count();
            format!("{ok}/{}", gates.len())
        };
        vec![
            name,
            Value::String(format!("{ready}/{total}")),
            Value::String(reason),
            Value::String(restarts_cell),
            self.age(o),
            Value::String(or_none(ip.to_string())),
            Value::String(or_none(pstr(o, "/spec/nodeName").to_string())),
            Value::String(or_none(pstr(o, "/status/nominatedNodeName").to_string())),
            Value::String(gates_cell),
        ]
    }

    fn event(&self, o: &Value, name: Value) -> Vec<Value> {
        // events.k8s.io/v1 names: regarding/note/deprecated*; core/v1: involvedObject/message.
        let obj_ref = ptr(o, "/involvedObject")
            .or_else(|| ptr(o, "/regarding"))
            .cloned()
            .unwrap_or(Value::Null);
        let first = ["/firstTimestamp", "/deprecatedFirstTimestamp", "/eventTime"]
            .iter()
            .find_map(|p| ptr(o, p).and_then(Value::as_str))
            .unwrap_or("");
        let last_ts = [
            "/series/lastObservedTime",
            "/lastTimestamp",
            "/deprecatedLastTimestamp",
            "/eventTime",
        ]
        .iter()
        .find_map(|p| ptr(o, p).and_then(Value::as_str))
        .unwrap_or("");
        let last_seen = if let Some(series_count) = ptr(o, "/series/count").and_then(Value::as_i64)
        {
            format!(
                "{} (x{series_count} over {})",
                self.since(last_ts),
                self.since(first)
            )
        } else if ptr(o, "/count").and_then(Value::as_i64).unwrap_or(1) > 1 {
            format!(
                "{} (x{} over {})",
                self.since(last_ts),
                pint(o, "/count"),
                self.since(first)
            )
        } else {
            self.since(last_ts)
        };
        let component = ptr(o, "/source/component")
            .or_else(|| ptr(o, "/deprecatedSource/component"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .or_else(|| ptr(o, "/reportingComponent").and_then(Value::as_str))
            .or_else(|| ptr(o, "/reportingController").and_then(Value::as_str))
            .unwrap_or("");
        let host = ptr(o, "/source/host")
            .or_else(|| ptr(o, "/deprecatedSource/host"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .or_else(|| ptr(o, "/reportingInstance").and_then(Value::as_str))
            .unwrap_or("");
        let source = if host.is_empty() {
            component.to_string()
        } else {
            format!("{component}, {host}")
        };
        let message = ptr(o, "/message")
            .or_else(|| ptr(o, "/note"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let count = ptr(o, "/count")
            .or_else(|| ptr(o, "/deprecatedCount"))
            .and_then(Value::as_i64)
            .unwrap_or(1);
        vec![
            Value::String(last_seen),
            Value::String(pstr(o, "/type").to_string()),
            Value::String(pstr(o, "/reason").to_string()),
            Value::String(format!(
                "{}/{}",
                pstr(&obj_ref, "/kind").to_lowercase(),
                pstr(&obj_ref, "/name")
            )),
            Value::String(pstr(&obj_ref, "/fieldPath").to_string()),
            Value::String(source),
            Value::String(message.trim().to_string()),
            Value::String(self.since(first)),
            Value::from(count),
            name,
        ]
    }

    fn node(&self, o: &Value, name: Value) -> Vec<Value> {
        let mut status: Vec<String> = Vec::new();
        if let Some(c) = parr(o, "/status/conditions")
            .iter()
            .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        {
            status.push(match c.get("status").and_then(Value::as_str) {
                Some("True") => "Ready".into(),
                _ => "NotReady".into(),
            });
        } else {
            status.push("Unknown".into());
        }
        if ptr(o, "/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
            status.push("SchedulingDisabled".into());
        }
        let mut roles: Vec<String> = Vec::new();
        if let Some(Value::Object(labels)) = ptr(o, "/metadata/labels") {
            for (k, v) in labels {
                if let Some(r) = k.strip_prefix("node-role.kubernetes.io/") {
                    if !r.is_empty() {
                        roles.push(r.to_string());
                    }
                } else if k == "kubernetes.io/role"
                    && let Some(r) = v.as_str().filter(|r| !r.is_empty())
                {
                    roles.push(r.to_string());
                }
            }
        }
        roles.sort();
        roles.dedup();
        let addr = |t: &str| {
            parr(o, "/status/addresses")
                .iter()
                .find(|a| a.get("type").and_then(Value::as_str) == Some(t))
                .and_then(|a| a.get("address").and_then(Value::as_str))
                .unwrap_or("<none>")
                .to_string()
        };
        vec![
            name,
            Value::String(status.join(",")),
            Value::String(or_none(roles.join(","))),
            self.age(o),
            Value::String(pstr(o, "/status/nodeInfo/kubeletVersion").to_string()),
            Value::String(addr("InternalIP")),
            Value::String(addr("ExternalIP")),
            Value::String(unknown(pstr(o, "/status/nodeInfo/osImage"))),
            Value::String(unknown(pstr(o, "/status/nodeInfo/kernelVersion"))),
            Value::String(unknown(pstr(o, "/status/nodeInfo/containerRuntimeVersion"))),
        ]
    }

    fn job(&self, o: &Value, name: Value) -> Vec<Value> {
        let (names, images) = container_names_images(ptr(o, "/spec/template/spec"));
        let succeeded = pint(o, "/status/succeeded");
        let completions = match ptr(o, "/spec/completions").and_then(Value::as_i64) {
            Some(c) => format!("{succeeded}/{c}"),
            None => {
                let parallelism = pint(o, "/spec/parallelism");
                if parallelism > 1 {
                    format!("{succeeded}/1 of {parallelism}")
                } else {
                    format!("{succeeded}/1")
                }
            }
        };
        let start = ptr(o, "/status/startTime")
            .and_then(Value::as_str)
            .and_then(parse_time);
        let end = ptr(o, "/status/completionTime")
            .and_then(Value::as_str)
            .and_then(parse_time);
        let duration = match (start, end) {
            (None, _) => String::new(),
            (Some(s), None) => human_duration((self.now - s).num_seconds()),
            (Some(s), Some(e)) => human_duration((e - s).num_seconds()),
        };
        let cond = |t: &str| {
            parr(o, "/status/conditions").iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some(t)
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        };
        let status = if cond("Complete") {
            "Complete"
        } else if cond("Failed") {
            "Failed"
        } else if ptr(o, "/metadata/deletionTimestamp").is_some() {
            "Terminating"
        } else if cond("SuccessCriteriaMet") {
            "SuccessCriteriaMet"
        } else if cond("FailureTarget") {
            "FailureTarget"
        } else if cond("Suspended") {
            "Suspended"
        } else {
            "Running"
        };
        vec![
            name,
            Value::String(status.into()),
            Value::String(completions),
            Value::String(duration),
            self.age(o),
            Value::String(names),
            Value::String(images),
            Value::String(label_selector_string(ptr(o, "/spec/selector"))),
        ]
    }
}

fn unknown(s: &str) -> String {
    if s.is_empty() {
        "<unknown>".into()
    } else {
        s.into()
    }
}

fn unset(s: &str) -> String {
    if s.is_empty() {
        "<unset>".into()
    } else {
        s.into()
    }
}

/// `spec.replicas`, which defaulting sets to 1 when absent.
fn replicas(o: &Value) -> i64 {
    ptr(o, "/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn volume_mode(o: &Value) -> String {
    let m = pstr(o, "/spec/volumeMode");
    if m.is_empty() {
        "Filesystem".into()
    } else {
        m.into()
    }
}

fn access_modes(modes: &[Value]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for (full, short) in [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ] {
        if modes.iter().any(|m| m.as_str() == Some(full)) {
            out.push(short);
        }
    }
    out.join(",")
}

fn load_balancer_addresses(ingress: &[Value]) -> String {
    ingress
        .iter()
        .filter_map(|i| {
            i.get("ip")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .or_else(|| i.get("hostname").and_then(Value::as_str))
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn service_external_ip(o: &Value) -> String {
    let external: Vec<&str> = parr(o, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match pstr(o, "/spec/type") {
        "ClusterIP" | "NodePort" | "" => or_none(external.join(",")),
        "LoadBalancer" => {
            let mut ips = load_balancer_addresses(parr(o, "/status/loadBalancer/ingress"));
            if !external.is_empty() {
                if !ips.is_empty() {
                    ips.push(',');
                }
                ips.push_str(&external.join(","));
            }
            if ips.is_empty() {
                "<pending>".into()
            } else {
                ips
            }
        }
        "ExternalName" => pstr(o, "/spec/externalName").to_string(),
        _ => "<unknown>".into(),
    }
}

fn service_ports(o: &Value) -> String {
    let ports: Vec<String> = parr(o, "/spec/ports")
        .iter()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(np) if np != 0 => format!("{port}:{np}/{proto}"),
                _ => format!("{port}/{proto}"),
            }
        })
        .collect();
    or_none(ports.join(","))
}

/// Lists up to three `ip:port` pairs, then `+ N more...`.
fn format_endpoints(o: &Value) -> String {
    let mut list: Vec<String> = Vec::new();
    let mut count = 0usize;
    for subset in parr(o, "/subsets") {
        let addrs = subset.get("addresses").and_then(Value::as_array);
        let ports = subset.get("ports").and_then(Value::as_array);
        for a in addrs.map(Vec::as_slice).unwrap_or(&[]) {
            let ip = a.get("ip").and_then(Value::as_str).unwrap_or("");
            match ports {
                Some(ps) if !ps.is_empty() => {
                    for p in ps {
                        count += 1;
                        if list.len() < 3 {
                            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                            list.push(format!("{ip}:{port}"));
                        }
                    }
                }
                _ => {
                    count += 1;
                    if list.len() < 3 {
                        list.push(ip.to_string());
                    }
                }
            }
        }
    }
    let mut s = list.join(",");
    if count > list.len() {
        s.push_str(&format!(" + {} more...", count - list.len()));
    }
    or_none(s)
}

fn ingress_hosts(o: &Value) -> String {
    let hosts: Vec<&str> = parr(o, "/spec/rules")
        .iter()
        .map(|r| {
            r.get("host")
                .and_then(Value::as_str)
                .filter(|h| !h.is_empty())
                .unwrap_or("*")
        })
        .collect();
    if hosts.is_empty() {
        return "*".into();
    }
    if hosts.len() > 3 {
        return format!("{} + {} more...", hosts[..3].join(","), hosts.len() - 3);
    }
    hosts.join(",")
}

fn endpoint_slice_ports(o: &Value) -> String {
    let ports = parr(o, "/ports");
    if ports.is_empty() {
        return "<unset>".into();
    }
    let list: Vec<String> = ports
        .iter()
        .map(|p| match p.get("port").and_then(Value::as_i64) {
            Some(n) => n.to_string(),
            None => "<unset>".into(),
        })
        .collect();
    if list.len() > 3 {
        return format!("{} + {} more...", list[..3].join(","), list.len() - 3);
    }
    list.join(",")
}

fn endpoint_slice_endpoints(o: &Value) -> String {
    let addrs: Vec<&str> = parr(o, "/endpoints")
        .iter()
        .flat_map(|e| {
            e.get("addresses")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[])
        })
        .filter_map(Value::as_str)
        .collect();
    if addrs.is_empty() {
        return "<unset>".into();
    }
    if addrs.len() > 3 {
        return format!("{} + {} more...", addrs[..3].join(","), addrs.len() - 3);
    }
    addrs.join(",")
}

fn quota_cells(o: &Value) -> (String, String) {
    let hard = ptr(o, "/status/hard").or_else(|| ptr(o, "/spec/hard"));
    let used = ptr(o, "/status/used");
    let mut req = Vec::new();
    let mut lim = Vec::new();
    if let Some(Value::Object(h)) = hard {
        let mut keys: Vec<&String> = h.keys().collect();
        keys.sort();
        for k in keys {
            let hv = h.get(k).and_then(Value::as_str).unwrap_or("");
            let uv = used
                .and_then(|u| u.get(k))
                .and_then(Value::as_str)
                .unwrap_or("0");
            let cell = format!("{}: {uv}/{hv}", k.strip_prefix("limits.").unwrap_or(k));
            if k.starts_with("limits.") {
                lim.push(cell);
            } else {
                req.push(cell);
            }
        }
    }
    (req.join(", "), lim.join(", "))
}

fn hpa_targets(o: &Value) -> String {
    let metrics = parr(o, "/spec/metrics");
    if metrics.is_empty() {
        // autoscaling/v1 form
        return match ptr(o, "/spec/targetCPUUtilizationPercentage").and_then(Value::as_i64) {
            Some(t) => {
                let cur = ptr(o, "/status/currentCPUUtilizationPercentage")
                    .and_then(Value::as_i64)
                    .map(|c| format!("{c}%"))
                    .unwrap_or_else(|| "<unknown>".into());
                format!("cpu: {cur}/{t}%")
            }
            None => "<none>".into(),
        };
    }
    let list: Vec<String> = metrics
        .iter()
        .map(|m| {
            if let Some(r) = m.get("resource") {
                let name = r.get("name").and_then(Value::as_str).unwrap_or("");
                let target = match r
                    .pointer("/target/averageUtilization")
                    .and_then(Value::as_i64)
                {
                    Some(u) => format!("{u}%"),
                    None => r
                        .pointer("/target/averageValue")
                        .or_else(|| r.pointer("/target/value"))
                        .and_then(Value::as_str)
                        .unwrap_or("<unset>")
                        .to_string(),
                };
                format!("{name}: <unknown>/{target}")
            } else {
                "<unknown>/<unset>".to_string()
            }
        })
        .collect();
    list.join(", ")
}

fn csr_condition(o: &Value) -> String {
    let mut approved = false;
    let mut denied = false;
    let mut failed = false;
    for c in parr(o, "/status/conditions") {
        match c.get("type").and_then(Value::as_str) {
            Some("Approved") => approved = true,
            Some("Denied") => denied = true,
            Some("Failed") => failed = true,
            _ => {}
        }
    }
    let mut parts = Vec::new();
    if approved {
        parts.push("Approved");
    }
    if denied {
        parts.push("Denied");
    }
    if failed {
        parts.push("Failed");
    }
    if parts.is_empty() {
        parts.push("Pending");
    }
    let mut s = parts.join(",");
    if ptr(o, "/status/certificate").is_some_and(|c| !c.is_null()) {
        s.push_str(",Issued");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gvk(group: &str, version: &str, kind: &str) -> GroupVersionKind {
        GroupVersionKind::gvk(group, version, kind)
    }

    fn now() -> DateTime<Utc> {
        parse_time("2025-01-10T12:00:00Z").unwrap_or_default()
    }

    /// Renders one object; returns (column names, column priorities, cells).
    fn render(g: &str, k: &str, obj: Value) -> (Vec<String>, Vec<i64>, Vec<Value>) {
        let t = to_table_at(
            &gvk(g, "v1", k),
            &[obj],
            IncludeObject::None,
            json!({}),
            now(),
        );
        let cols = t["columnDefinitions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let names = cols
            .iter()
            .map(|c| c["name"].as_str().unwrap_or("").to_string())
            .collect();
        let prios = cols
            .iter()
            .map(|c| c["priority"].as_i64().unwrap_or(-1))
            .collect();
        let cells = t["rows"][0]["cells"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (names, prios, cells)
    }

    #[track_caller]
    fn check(g: &str, k: &str, obj: Value, columns: &[&str], cells: Value) {
        let (names, _, got) = render(g, k, obj);
        assert_eq!(names, columns, "{k} columns");
        assert_eq!(Value::Array(got), cells, "{k} cells");
    }

    fn meta(name: &str) -> Value {
        json!({"name": name, "namespace": "ns", "creationTimestamp": "2025-01-10T11:55:00Z", "uid": "u1", "resourceVersion": "7"})
    }

    #[test]
    fn include_object_parse() {
        assert_eq!(IncludeObject::parse(None), Ok(IncludeObject::Metadata));
        assert_eq!(IncludeObject::parse(Some("None")), Ok(IncludeObject::None));
        assert_eq!(
            IncludeObject::parse(Some("Object")),
            Ok(IncludeObject::Object)
        );
        assert_eq!(
            IncludeObject::parse(Some("Metadata")),
            Ok(IncludeObject::Metadata)
        );
        assert!(IncludeObject::parse(Some("metadata")).is_err());
        assert!(IncludeObject::parse(Some("All")).is_err());
    }

    #[test]
    fn table_shape_and_row_objects() {
        let obj =
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata": meta("a"),"data":{"x":"1"}});
        let t = to_table_at(
            &gvk("", "v1", "ConfigMap"),
            std::slice::from_ref(&obj),
            IncludeObject::Metadata,
            json!({"resourceVersion":"42","continue":"abc"}),
            now(),
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(
            t["metadata"],
            json!({"resourceVersion":"42","continue":"abc"})
        );
        assert_eq!(
            t["columnDefinitions"][0],
            json!({"name":"Name","type":"string","format":"name","description":NAME_DOC,"priority":0})
        );
        assert_eq!(
            t["rows"][0]["object"],
            json!({"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata": meta("a")})
        );
        let t = to_table_at(
            &gvk("", "v1", "ConfigMap"),
            std::slice::from_ref(&obj),
            IncludeObject::Object,
            Value::Null,
            now(),
        );
        assert_eq!(t["rows"][0]["object"], obj);
        assert_eq!(t["metadata"], json!({}));
        let t = to_table_at(
            &gvk("", "v1", "ConfigMap"),
            std::slice::from_ref(&obj),
            IncludeObject::None,
            json!({}),
            now(),
        );
        assert!(t["rows"][0].get("object").is_none());
        let t = to_table_at(
            &gvk("", "v1", "ConfigMap"),
            &[],
            IncludeObject::None,
            json!({}),
            now(),
        );
        assert_eq!(t["rows"], json!([]));
    }

    #[test]
    fn configmap_secret_namespace_serviceaccount() {
        check(
            "",
            "ConfigMap",
            json!({"metadata": meta("cm"), "data": {"a":"1","b":"2"}, "binaryData": {"c":""}}),
            &["Name", "Data", "Age"],
            json!(["cm", 3, "5m"]),
        );
        check(
            "",
            "Secret",
            json!({"metadata": meta("s"), "type": "helm.sh/release.v1", "data": {"release":"eA=="}}),
            &["Name", "Type", "Data", "Age"],
            json!(["s", "helm.sh/release.v1", 1, "5m"]),
        );
        check(
            "",
            "Namespace",
            json!({"metadata": meta("default"), "status": {"phase":"Active"}}),
            &["Name", "Status", "Age"],
            json!(["default", "Active", "5m"]),
        );
        check(
            "",
            "ServiceAccount",
            json!({"metadata": meta("default")}),
            &["Name", "Secrets", "Age"],
            json!(["default", 0, "5m"]),
        );
    }

    #[test]
    fn pod_columns_and_status() {
        let (names, prios, cells) = render(
            "",
            "Pod",
            json!({
                "metadata": meta("web"),
                "spec": {"containers": [{"name":"a"},{"name":"b"}], "nodeName": "n1"},
                "status": {"phase": "Running", "podIPs": [{"ip":"10.0.0.5"}],
                    "containerStatuses": [
                        {"name":"a","ready":true,"restartCount":2,"state":{"running":{}},
                         "lastState":{"terminated":{"finishedAt":"2025-01-10T11:59:00Z"}}},
                        {"name":"b","ready":false,"restartCount":0,"state":{"waiting":{"reason":"CrashLoopBackOff"}}}
                    ]}
            }),
        );
        assert_eq!(
            names,
            [
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
        assert_eq!(prios, [0, 0, 0, 0, 0, 1, 1, 1, 1]);
        assert_eq!(
            Value::Array(cells),
            json!([
                "web",
                "1/2",
                "CrashLoopBackOff",
                "2 (60s ago)",
                "5m",
                "10.0.0.5",
                "n1",
                "<none>",
                "<none>"
            ])
        );

        let (_, _, cells) = render(
            "",
            "Pod",
            json!({"metadata": meta("p"), "spec": {"containers":[{"name":"a"}]}, "status": {"phase":"Pending"}}),
        );
        assert_eq!(
            Value::Array(cells),
            json!([
                "p", "0/1", "Pending", "0", "5m", "<none>", "<none>", "<none>", "<none>"
            ])
        );

        let mut m = meta("p");
        m["deletionTimestamp"] = json!("2025-01-10T12:00:00Z");
        let (_, _, cells) = render(
            "",
            "Pod",
            json!({"metadata": m, "spec": {"containers":[{"name":"a"}]}, "status": {"phase":"Running"}}),
        );
        assert_eq!(cells[2], "Terminating");

        let (_, _, cells) = render(
            "",
            "Pod",
            json!({"metadata": meta("p"),
            "spec": {"initContainers":[{"name":"i1"},{"name":"i2"}], "containers":[{"name":"a"}]},
            "status": {"phase":"Pending", "initContainerStatuses":[
                {"name":"i1","state":{"terminated":{"exitCode":0}}},
                {"name":"i2","state":{"running":{}}}]}}),
        );
        assert_eq!(cells[2], "Init:1/2");
    }

    #[test]
    fn deployment_and_workloads() {
        let tmpl = json!({"spec": {"containers": [{"name":"nginx","image":"nginx:1.27"},{"name":"side","image":"busybox"}]}});
        check(
            "apps",
            "Deployment",
            json!({"metadata": meta("web"),
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app":"web"}}, "template": tmpl},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}),
            &[
                "Name",
                "Ready",
                "Up-to-date",
                "Available",
                "Age",
                "Containers",
                "Images",
                "Selector",
            ],
            json!([
                "web",
                "2/3",
                3,
                2,
                "5m",
                "nginx,side",
                "nginx:1.27,busybox",
                "app=web"
            ]),
        );
        check(
            "apps",
            "ReplicaSet",
            json!({"metadata": meta("rs"),
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app":"web"}}, "template": tmpl},
            "status": {"replicas": 2, "readyReplicas": 1}}),
            &[
                "Name",
                "Desired",
                "Current",
                "Ready",
                "Age",
                "Containers",
                "Images",
                "Selector",
            ],
            json!([
                "rs",
                2,
                2,
                1,
                "5m",
                "nginx,side",
                "nginx:1.27,busybox",
                "app=web"
            ]),
        );
        check(
            "apps",
            "StatefulSet",
            json!({"metadata": meta("db"), "spec": {"replicas": 1, "template": tmpl}}),
            &["Name", "Ready", "Age", "Containers", "Images"],
            json!(["db", "0/1", "5m", "nginx,side", "nginx:1.27,busybox"]),
        );
        check(
            "apps",
            "DaemonSet",
            json!({"metadata": meta("ds"),
            "spec": {"selector": {"matchLabels": {"a":"b"}}, "template": {"spec": {"nodeSelector": {"os":"linux"}, "containers": []}}},
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2, "updatedNumberScheduled": 3, "numberAvailable": 2}}),
            &[
                "Name",
                "Desired",
                "Current",
                "Ready",
                "Up-to-date",
                "Available",
                "Node Selector",
                "Age",
                "Containers",
                "Images",
                "Selector",
            ],
            json!(["ds", 3, 3, 2, 3, 2, "os=linux", "5m", "", "", "a=b"]),
        );
    }

    #[test]
    fn jobs_and_cronjobs() {
        check(
            "batch",
            "Job",
            json!({"metadata": meta("j"),
            "spec": {"completions": 1, "template": {"spec": {"containers": [{"name":"c","image":"i"}]}}},
            "status": {"succeeded": 1, "startTime": "2025-01-10T11:56:00Z", "completionTime": "2025-01-10T11:56:30Z",
                "conditions": [{"type":"Complete","status":"True"}]}}),
            &[
                "Name",
                "Status",
                "Completions",
                "Duration",
                "Age",
                "Containers",
                "Images",
                "Selector",
            ],
            json!(["j", "Complete", "1/1", "30s", "5m", "c", "i", "<none>"]),
        );
        check(
            "batch",
            "CronJob",
            json!({"metadata": meta("cj"),
            "spec": {"schedule": "*/5 * * * *", "suspend": false, "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name":"c","image":"i"}]}}}}},
            "status": {"lastScheduleTime": "2025-01-10T11:00:00Z"}}),
            &[
                "Name",
                "Schedule",
                "Timezone",
                "Suspend",
                "Active",
                "Last Schedule",
                "Age",
                "Containers",
                "Images",
                "Selector",
            ],
            json!([
                "cj",
                "*/5 * * * *",
                "<none>",
                false,
                0,
                "60m",
                "5m",
                "c",
                "i",
                "<none>"
            ]),
        );
    }

    #[test]
    fn services_and_networking() {
        check(
            "",
            "Service",
            json!({"metadata": meta("svc"),
            "spec": {"type":"ClusterIP","clusterIP":"10.96.0.10","ports":[{"port":53,"protocol":"UDP"},{"port":80,"protocol":"TCP"}],"selector":{"app":"dns"}}}),
            &[
                "Name",
                "Type",
                "Cluster-IP",
                "External-IP",
                "Port(s)",
                "Age",
                "Selector",
            ],
            json!([
                "svc",
                "ClusterIP",
                "10.96.0.10",
                "<none>",
                "53/UDP,80/TCP",
                "5m",
                "app=dns"
            ]),
        );
        let (_, _, cells) = render(
            "",
            "Service",
            json!({"metadata": meta("lb"),
            "spec": {"type":"LoadBalancer","clusterIP":"10.0.0.1","ports":[{"port":80,"nodePort":30080,"protocol":"TCP"}]}}),
        );
        assert_eq!(cells[3], "<pending>");
        assert_eq!(cells[4], "80:30080/TCP");
        check(
            "networking.k8s.io",
            "Ingress",
            json!({"metadata": meta("ing"),
            "spec": {"ingressClassName":"nginx","rules":[{"host":"a.example"},{}],"tls":[{}]},
            "status": {"loadBalancer": {"ingress": [{"ip":"1.2.3.4"}]}}}),
            &["Name", "Class", "Hosts", "Address", "Ports", "Age"],
            json!(["ing", "nginx", "a.example,*", "1.2.3.4", "80, 443", "5m"]),
        );
        check(
            "",
            "Endpoints",
            json!({"metadata": meta("ep"), "subsets": [{"addresses":[{"ip":"10.0.0.1"},{"ip":"10.0.0.2"}],"ports":[{"port":80},{"port":443}]}]}),
            &["Name", "Endpoints", "Age"],
            json!([
                "ep",
                "10.0.0.1:80,10.0.0.1:443,10.0.0.2:80 + 1 more...",
                "5m"
            ]),
        );
    }

    #[test]
    fn events_nodes_leases() {
        let (names, prios, cells) = render(
            "",
            "Event",
            json!({"metadata": meta("web.1"),
            "involvedObject": {"kind":"Pod","name":"web","fieldPath":"spec.containers{a}"},
            "reason":"Pulled","type":"Normal","message":"Pulled image ","count":1,
            "source":{"component":"kubelet","host":"n1"},
            "firstTimestamp":"2025-01-10T11:58:00Z","lastTimestamp":"2025-01-10T11:59:00Z"}),
        );
        assert_eq!(
            names,
            [
                "Last Seen",
                "Type",
                "Reason",
                "Object",
                "Subobject",
                "Source",
                "Message",
                "First Seen",
                "Count",
                "Name"
            ]
        );
        assert_eq!(prios, [0, 0, 0, 0, 1, 1, 0, 1, 1, 1]);
        assert_eq!(
            Value::Array(cells),
            json!([
                "60s",
                "Normal",
                "Pulled",
                "pod/web",
                "spec.containers{a}",
                "kubelet, n1",
                "Pulled image",
                "2m",
                1,
                "web.1"
            ])
        );
        let mut m = meta("n1");
        m["labels"] = json!({"node-role.kubernetes.io/control-plane": ""});
        check(
            "",
            "Node",
            json!({"metadata": m, "spec": {"unschedulable": true},
            "status": {"conditions":[{"type":"Ready","status":"True"}], "nodeInfo":{"kubeletVersion":"v1.32.0"}, "addresses":[{"type":"InternalIP","address":"10.0.0.1"}]}}),
            &[
                "Name",
                "Status",
                "Roles",
                "Age",
                "Version",
                "Internal-IP",
                "External-IP",
                "OS-Image",
                "Kernel-Version",
                "Container-Runtime",
            ],
            json!([
                "n1",
                "Ready,SchedulingDisabled",
                "control-plane",
                "5m",
                "v1.32.0",
                "10.0.0.1",
                "<none>",
                "<unknown>",
                "<unknown>",
                "<unknown>"
            ]),
        );
        check(
            "coordination.k8s.io",
            "Lease",
            json!({"metadata": meta("l"), "spec": {"holderIdentity":"me"}}),
            &["Name", "Holder", "Age"],
            json!(["l", "me", "5m"]),
        );
        check(
            "",
            "ComponentStatus",
            json!({"metadata": {"name": "etcd-0"},
                   "conditions": [{"type": "Healthy", "status": "True", "message": "ok"}]}),
            &["Name", "Status", "Message", "Error"],
            json!(["etcd-0", "Healthy", "ok", ""]),
        );
    }

    #[test]
    fn rbac_storage_misc() {
        check(
            "rbac.authorization.k8s.io",
            "Role",
            json!({"metadata": meta("r")}),
            &["Name", "Created At"],
            json!(["r", "2025-01-10T11:55:00Z"]),
        );
        check(
            "rbac.authorization.k8s.io",
            "RoleBinding",
            json!({"metadata": meta("rb"),
            "roleRef": {"kind":"ClusterRole","name":"view"},
            "subjects": [{"kind":"User","name":"alice"},{"kind":"ServiceAccount","name":"default","namespace":"ns"}]}),
            &["Name", "Role", "Age", "Users", "Groups", "ServiceAccounts"],
            json!(["rb", "ClusterRole/view", "5m", "alice", "", "ns/default"]),
        );
        let mut m = meta("standard");
        m["annotations"] = json!({"storageclass.kubernetes.io/is-default-class":"true"});
        check(
            "storage.k8s.io",
            "StorageClass",
            json!({"metadata": m, "provisioner": "rancher.io/local-path"}),
            &[
                "Name",
                "Provisioner",
                "ReclaimPolicy",
                "VolumeBindingMode",
                "AllowVolumeExpansion",
                "Age",
            ],
            json!([
                "standard (default)",
                "rancher.io/local-path",
                "Delete",
                "Immediate",
                false,
                "5m"
            ]),
        );
        check(
            "",
            "PersistentVolumeClaim",
            json!({"metadata": meta("data"),
            "spec": {"volumeName":"pv1","storageClassName":"standard"},
            "status": {"phase":"Bound","capacity":{"storage":"1Gi"},"accessModes":["ReadWriteOnce"]}}),
            &[
                "Name",
                "Status",
                "Volume",
                "Capacity",
                "Access Modes",
                "StorageClass",
                "VolumeAttributesClass",
                "Age",
                "VolumeMode",
            ],
            json!([
                "data",
                "Bound",
                "pv1",
                "1Gi",
                "RWO",
                "standard",
                "<unset>",
                "5m",
                "Filesystem"
            ]),
        );
        check(
            "policy",
            "PodDisruptionBudget",
            json!({"metadata": meta("pdb"), "spec": {"minAvailable": 1}, "status": {"disruptionsAllowed": 0}}),
            &[
                "Name",
                "Min Available",
                "Max Unavailable",
                "Allowed Disruptions",
                "Age",
            ],
            json!(["pdb", "1", "N/A", 0, "5m"]),
        );
    }

    #[test]
    fn default_table_for_unknown_kinds() {
        check(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            json!({"metadata": meta("widgets.example.com")}),
            &["Name", "Created At"],
            json!(["widgets.example.com", "2025-01-10T11:55:00Z"]),
        );
        let t = to_table_at(
            &gvk("example.com", "v1", "Widget"),
            &[json!({"metadata": meta("w")})],
            IncludeObject::None,
            json!({}),
            now(),
        );
        assert_eq!(t["columnDefinitions"][1]["type"], "date");
    }

    #[test]
    fn crd_printer_columns() {
        let cols = vec![
            ColumnSpec::from_crd_column(
                &json!({"name":"Replicas","type":"integer","jsonPath":".spec.replicas"}),
            ),
            ColumnSpec::from_crd_column(
                &json!({"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}),
            ),
            ColumnSpec::from_crd_column(
                &json!({"name":"First","type":"string","jsonPath":".spec.items[0].name","priority":1}),
            ),
            ColumnSpec::from_crd_column(
                &json!({"name":"Missing","type":"string","jsonPath":".spec.nope"}),
            ),
            ColumnSpec::crd_default_age(),
        ];
        let obj = json!({"metadata": meta("w"), "spec": {"replicas": 3, "items": [{"name":"x"}]},
            "status": {"conditions": [{"type":"Synced","status":"False"},{"type":"Ready","status":"True"}]}});
        let t = table_for_columns(
            &cols,
            &[obj],
            IncludeObject::Metadata,
            json!({"resourceVersion":"1"}),
        );
        let cells = t["rows"][0]["cells"].as_array().expect("cells");
        assert_eq!(
            cells[..5],
            json!(["w", 3, "True", "x", null]).as_array().expect("row")[..]
        );
        // Date columns print as an age, as upstream's CRD table convertor.
        let age = cells[5].as_str().expect("age");
        assert!(age.ends_with('d') || age.ends_with('y'), "{age}");
        assert_eq!(t["columnDefinitions"][3]["priority"], 1);
        assert_eq!(t["columnDefinitions"][5]["type"], "date");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }

    #[test]
    fn human_durations() {
        for (secs, want) in [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (150, "2m30s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60 * 5, "3h5m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (50 * 3600, "2d2h"),
            (8 * 86400, "8d"),
            (729 * 86400, "729d"),
            (730 * 86400, "2y"),
            (731 * 86400, "2y1d"),
            (9 * 365 * 86400, "9y"),
        ] {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }
}
