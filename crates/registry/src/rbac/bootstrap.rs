//! The roles and bindings present in every workspace without being stored
//! there (upstream `plugin/pkg/auth/authorizer/rbac/bootstrappolicy`, 1.32,
//! limited to the user-facing roles). The registry serves these objects in
//! every workspace's get/list results (implicit objects of the ClusterRole
//! and ClusterRoleBinding strategies); the evaluator always uses these
//! definitions, and writes of these names are refused (422), so what is
//! served is what is evaluated. Upstream reconciles its bootstrap roles at
//! every start (missing rules are put back, a deleted one re-created); here
//! the server's definition simply always wins, and a workspace extends
//! `admin`/`edit`/`view` the supported way, with ClusterRoles labelled
//! `rbac.authorization.k8s.io/aggregate-to-<role>`.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::rule::Rule;

pub const SYSTEM_MASTERS: &str = "system:masters";
pub const SYSTEM_AUTHENTICATED: &str = "system:authenticated";
pub const SYSTEM_UNAUTHENTICATED: &str = "system:unauthenticated";
pub const AGGREGATE_TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
pub const AGGREGATE_TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
pub const AGGREGATE_TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";
const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";
const BOOTSTRAPPING: &str = "kubernetes.io/bootstrapping";

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];
const READ_WRITE: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

/// Names of the bootstrap ClusterRoles.
pub const CLUSTER_ROLE_NAMES: &[&str] = &[
    "cluster-admin",
    "admin",
    "edit",
    "view",
    "system:aggregate-to-admin",
    "system:aggregate-to-edit",
    "system:aggregate-to-view",
    "system:discovery",
    "system:basic-user",
    "system:public-info-viewer",
];

pub fn is_bootstrap_cluster_role(name: &str) -> bool {
    CLUSTER_ROLE_NAMES.contains(&name)
}

fn meta(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    let mut all: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.insert(BOOTSTRAPPING.into(), "rbac-defaults".into());
    ObjectMeta {
        name: Some(name.into()),
        labels: Some(all),
        annotations: Some(BTreeMap::from([(AUTOUPDATE.into(), "true".into())])),
        ..Default::default()
    }
}

fn role(name: &str, labels: &[(&str, &str)], rules: Vec<Rule>) -> ClusterRole {
    ClusterRole {
        metadata: meta(name, labels),
        rules: Some(rules.iter().map(PolicyRule::from).collect()),
        aggregation_rule: None,
    }
}

fn aggregated(name: &str, labels: &[(&str, &str)], selector_label: &str) -> ClusterRole {
    ClusterRole {
        metadata: meta(name, labels),
        rules: Some(Vec::new()),
        aggregation_rule: Some(AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some(BTreeMap::from([(selector_label.into(), "true".into())])),
                match_expressions: None,
            }]),
        }),
    }
}

/// The bootstrap ClusterRoles, as objects (aggregated roles carry their
/// aggregation rule; the evaluator fills their rules).
pub fn cluster_roles() -> Vec<ClusterRole> {
    let discovery_urls = [
        "/api",
        "/api/*",
        "/apis",
        "/apis/*",
        "/healthz",
        "/livez",
        "/openapi",
        "/openapi/*",
        "/readyz",
        "/version",
        "/version/",
    ];
    vec![
        role(
            "cluster-admin",
            &[],
            vec![
                Rule::new(&["*"]).groups(&["*"]).resources(&["*"]),
                Rule::new(&["*"]).urls(&["*"]),
            ],
        ),
        aggregated("admin", &[], AGGREGATE_TO_ADMIN),
        aggregated("edit", &[(AGGREGATE_TO_ADMIN, "true")], AGGREGATE_TO_EDIT),
        aggregated("view", &[(AGGREGATE_TO_EDIT, "true")], AGGREGATE_TO_VIEW),
        role(
            "system:aggregate-to-admin",
            &[(AGGREGATE_TO_ADMIN, "true")],
            vec![
                Rule::new(&["create"])
                    .groups(&["authorization.k8s.io"])
                    .resources(&["localsubjectaccessreviews"]),
                Rule::new(READ_WRITE)
                    .groups(&["rbac.authorization.k8s.io"])
                    .resources(&["roles", "rolebindings"]),
            ],
        ),
        role(
            "system:aggregate-to-edit",
            &[(AGGREGATE_TO_EDIT, "true")],
            vec![
                Rule::new(READ).groups(&[""]).resources(&[
                    "pods/attach",
                    "pods/proxy",
                    "pods/exec",
                    "pods/portforward",
                    "secrets",
                    "services/proxy",
                ]),
                Rule::new(&["impersonate"])
                    .groups(&[""])
                    .resources(&["serviceaccounts"]),
                Rule::new(WRITE).groups(&[""]).resources(&[
                    "pods",
                    "pods/attach",
                    "pods/proxy",
                    "pods/exec",
                    "pods/portforward",
                ]),
                Rule::new(&["create"])
                    .groups(&[""])
                    .resources(&["pods/eviction"]),
                Rule::new(WRITE).groups(&[""]).resources(&[
                    "replicationcontrollers",
                    "replicationcontrollers/scale",
                    "serviceaccounts",
                    "services",
                    "services/proxy",
                    "persistentvolumeclaims",
                    "configmaps",
                    "secrets",
                    "events",
                ]),
                Rule::new(&["create"])
                    .groups(&[""])
                    .resources(&["serviceaccounts/token"]),
                Rule::new(WRITE).groups(&["apps"]).resources(&[
                    "statefulsets",
                    "statefulsets/scale",
                    "daemonsets",
                    "deployments",
                    "deployments/scale",
                    "deployments/rollback",
                    "replicasets",
                    "replicasets/scale",
                ]),
                Rule::new(WRITE)
                    .groups(&["autoscaling"])
                    .resources(&["horizontalpodautoscalers"]),
                Rule::new(WRITE)
                    .groups(&["batch"])
                    .resources(&["jobs", "cronjobs"]),
                Rule::new(WRITE)
                    .groups(&["policy"])
                    .resources(&["poddisruptionbudgets"]),
                Rule::new(WRITE)
                    .groups(&["networking.k8s.io"])
                    .resources(&["networkpolicies", "ingresses"]),
                Rule::new(READ_WRITE)
                    .groups(&["coordination.k8s.io"])
                    .resources(&["leases"]),
            ],
        ),
        role(
            "system:aggregate-to-view",
            &[(AGGREGATE_TO_VIEW, "true")],
            vec![
                Rule::new(READ).groups(&[""]).resources(&[
                    "pods",
                    "replicationcontrollers",
                    "replicationcontrollers/scale",
                    "serviceaccounts",
                    "services",
                    "services/status",
                    "endpoints",
                    "persistentvolumeclaims",
                    "persistentvolumeclaims/status",
                    "configmaps",
                ]),
                Rule::new(READ).groups(&[""]).resources(&[
                    "limitranges",
                    "resourcequotas",
                    "bindings",
                    "events",
                    "pods/status",
                    "resourcequotas/status",
                    "namespaces/status",
                    "replicationcontrollers/status",
                    "pods/log",
                ]),
                Rule::new(READ).groups(&[""]).resources(&["namespaces"]),
                Rule::new(READ)
                    .groups(&["discovery.k8s.io"])
                    .resources(&["endpointslices"]),
                Rule::new(READ).groups(&["apps"]).resources(&[
                    "controllerrevisions",
                    "statefulsets",
                    "statefulsets/status",
                    "statefulsets/scale",
                    "daemonsets",
                    "daemonsets/status",
                    "deployments",
                    "deployments/status",
                    "deployments/scale",
                    "replicasets",
                    "replicasets/status",
                    "replicasets/scale",
                ]),
                Rule::new(READ).groups(&["autoscaling"]).resources(&[
                    "horizontalpodautoscalers",
                    "horizontalpodautoscalers/status",
                ]),
                Rule::new(READ).groups(&["batch"]).resources(&[
                    "jobs",
                    "cronjobs",
                    "cronjobs/status",
                    "jobs/status",
                ]),
                Rule::new(READ)
                    .groups(&["policy"])
                    .resources(&["poddisruptionbudgets", "poddisruptionbudgets/status"]),
                Rule::new(READ).groups(&["networking.k8s.io"]).resources(&[
                    "networkpolicies",
                    "ingresses",
                    "ingresses/status",
                ]),
            ],
        ),
        role(
            "system:discovery",
            &[],
            vec![Rule::new(&["get"]).urls(&discovery_urls)],
        ),
        role(
            "system:basic-user",
            &[],
            vec![
                Rule::new(&["create"])
                    .groups(&["authorization.k8s.io"])
                    .resources(&["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
                Rule::new(&["create"])
                    .groups(&["authentication.k8s.io"])
                    .resources(&["selfsubjectreviews"]),
            ],
        ),
        role(
            "system:public-info-viewer",
            &[],
            vec![Rule::new(&["get"]).urls(&[
                "/healthz",
                "/livez",
                "/readyz",
                "/version",
                "/version/",
            ])],
        ),
    ]
}

fn group(name: &str) -> Subject {
    Subject {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: "Group".into(),
        name: name.into(),
        namespace: None,
    }
}

fn binding(name: &str, role: &str, subjects: Vec<Subject>) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(name, &[]),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
        subjects: Some(subjects),
    }
}

/// The bootstrap ClusterRoles as a fresh cluster shows them: aggregated
/// roles (`admin`, `edit`, `view`) with the rules aggregated from the other
/// bootstrap roles filled in, as upstream's aggregation controller writes
/// them. (Rules a workspace aggregates in with its own labelled
/// ClusterRoles are evaluated, but not shown here.)
pub fn cluster_roles_resolved() -> Vec<ClusterRole> {
    let roles = cluster_roles();
    let resolved = super::policy::resolve_aggregation(&roles);
    roles
        .into_iter()
        .map(|mut r| {
            if r.aggregation_rule.is_some()
                && let Some(rules) = r.metadata.name.as_deref().and_then(|n| resolved.get(n))
            {
                r.rules = Some(rules.iter().map(PolicyRule::from).collect());
            }
            r
        })
        .collect()
}

/// The bootstrap ClusterRoleBindings.
pub fn cluster_role_bindings() -> Vec<ClusterRoleBinding> {
    vec![
        binding(
            "cluster-admin",
            "cluster-admin",
            vec![group(SYSTEM_MASTERS)],
        ),
        binding(
            "system:discovery",
            "system:discovery",
            vec![group(SYSTEM_AUTHENTICATED)],
        ),
        binding(
            "system:basic-user",
            "system:basic-user",
            vec![group(SYSTEM_AUTHENTICATED)],
        ),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            vec![group(SYSTEM_AUTHENTICATED), group(SYSTEM_UNAUTHENTICATED)],
        ),
    ]
}

/// Names of the bootstrap ClusterRoleBindings.
pub fn is_bootstrap_cluster_role_binding(name: &str) -> bool {
    matches!(
        name,
        "cluster-admin" | "system:discovery" | "system:basic-user" | "system:public-info-viewer"
    )
}
