//! Compiling a workspace's RBAC objects into an index, and evaluating it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use dashmap::DashMap;
use k8s_openapi::api::authorization::v1::SubjectRulesReviewStatus;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, Role, RoleBinding, RoleRef, Subject,
};
use serde_json::Value;

use super::bootstrap::{self, SYSTEM_MASTERS};
use super::rule::Rule;
use super::{Attributes, Decision, UserInfo};
use crate::cluster::ClusterId;
use crate::selector::LabelSelector;

pub(crate) const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const SA_PREFIX: &str = "system:serviceaccount:";

/// The stored RBAC objects of one workspace.
#[derive(Clone, Debug, Default)]
pub struct RbacObjects {
    pub roles: Vec<Role>,
    pub cluster_roles: Vec<ClusterRole>,
    pub role_bindings: Vec<RoleBinding>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
}

impl RbacObjects {
    /// Decodes stored JSON objects. An object that does not decode is
    /// skipped (it can only have been written by a bug; one bad object must
    /// not lock everybody out) and counted in the second value.
    pub fn from_values<'a>(
        roles: impl IntoIterator<Item = &'a Value>,
        cluster_roles: impl IntoIterator<Item = &'a Value>,
        role_bindings: impl IntoIterator<Item = &'a Value>,
        cluster_role_bindings: impl IntoIterator<Item = &'a Value>,
    ) -> (Self, usize) {
        let mut skipped = 0;
        let objects = RbacObjects {
            roles: decode_all(roles, &mut skipped),
            cluster_roles: decode_all(cluster_roles, &mut skipped),
            role_bindings: decode_all(role_bindings, &mut skipped),
            cluster_role_bindings: decode_all(cluster_role_bindings, &mut skipped),
        };
        (objects, skipped)
    }
}

fn decode_all<'a, T: serde::de::DeserializeOwned>(
    values: impl IntoIterator<Item = &'a Value>,
    skipped: &mut usize,
) -> Vec<T> {
    values
        .into_iter()
        .filter_map(|v| match T::deserialize(v) {
            Ok(t) => Some(t),
            Err(_) => {
                *skipped += 1;
                None
            }
        })
        .collect()
}

/// Whether a role reference names a namespaced Role or a ClusterRole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleKind {
    Role,
    ClusterRole,
}

/// Rules granted by one binding, or why they could not be resolved (a
/// binding to a role that does not exist grants nothing; upstream reports
/// it in the denial reason).
#[derive(Clone, Debug)]
struct Grant {
    rules: Result<Arc<[Rule]>, Arc<str>>,
}

#[derive(Default, Debug)]
struct SubjectIndex {
    users: HashMap<String, Vec<Grant>>,
    groups: HashMap<String, Vec<Grant>>,
}

impl SubjectIndex {
    fn add(&mut self, subject: &Subject, binding_namespace: &str, grant: &Grant) {
        match subject.kind.as_str() {
            "User" => self
                .users
                .entry(subject.name.clone())
                .or_default()
                .push(grant.clone()),
            "Group" => self
                .groups
                .entry(subject.name.clone())
                .or_default()
                .push(grant.clone()),
            "ServiceAccount" => {
                // Upstream defaults the namespace to the binding's; a
                // ClusterRoleBinding subject without one matches nobody.
                let ns = subject
                    .namespace
                    .as_deref()
                    .filter(|n| !n.is_empty())
                    .unwrap_or(binding_namespace);
                if !ns.is_empty() {
                    self.users
                        .entry(format!("{SA_PREFIX}{ns}:{}", subject.name))
                        .or_default()
                        .push(grant.clone());
                }
            }
            _ => {}
        }
    }

    /// Every grant that applies to `user`, in a stable order.
    fn for_user<'a>(&'a self, user: &'a UserInfo) -> impl Iterator<Item = &'a Grant> + 'a {
        let by_name = self.users.get(&user.name).into_iter().flatten();
        let by_group = user
            .groups
            .iter()
            .filter_map(|g| self.groups.get(g))
            .flatten();
        by_name.chain(by_group)
    }
}

/// One workspace's RBAC, compiled. Cheap to share (`Arc`), immutable.
#[derive(Debug, Default)]
pub struct RbacPolicy {
    /// Shared by every workspace that defines no ClusterRole of its own
    /// (the bootstrap roles resolved once), so an idle workspace's policy
    /// does not carry its own copy of them.
    cluster_roles: Arc<HashMap<String, Arc<[Rule]>>>,
    /// Keyed by (namespace, name).
    roles: HashMap<(String, String), Arc<[Rule]>>,
    cluster_grants: SubjectIndex,
    namespace_grants: HashMap<String, SubjectIndex>,
    /// Users (and ServiceAccount user names) and groups named by a binding
    /// of this workspace, cluster-wide or in any namespace, other than the
    /// bootstrap bindings every authenticated user has: the workspace's
    /// access grants.
    access: AccessIndex,
}

#[derive(Debug, Default)]
struct AccessIndex {
    users: HashSet<String>,
    groups: HashSet<String>,
}

impl AccessIndex {
    fn add(&mut self, subject: &Subject, binding_namespace: &str) {
        match subject.kind.as_str() {
            "User" => {
                self.users.insert(subject.name.clone());
            }
            "Group" => {
                self.groups.insert(subject.name.clone());
            }
            "ServiceAccount" => {
                let ns = subject
                    .namespace
                    .as_deref()
                    .filter(|n| !n.is_empty())
                    .unwrap_or(binding_namespace);
                if !ns.is_empty() {
                    self.users
                        .insert(format!("{SA_PREFIX}{ns}:{}", subject.name));
                }
            }
            _ => {}
        }
    }
}

/// The bootstrap ClusterRoles with aggregation resolved, built once.
static BOOTSTRAP_CLUSTER_ROLES: std::sync::LazyLock<Arc<HashMap<String, Arc<[Rule]>>>> =
    std::sync::LazyLock::new(|| Arc::new(resolve_aggregation(&bootstrap::cluster_roles())));

impl RbacPolicy {
    /// Builds the index from the stored objects plus the bootstrap policy.
    pub fn compile(objects: &RbacObjects) -> RbacPolicy {
        let own_cluster_roles: Vec<&ClusterRole> = objects
            .cluster_roles
            .iter()
            .filter(|r| !bootstrap::is_bootstrap_cluster_role(name_of(&r.metadata)))
            .collect();
        let cluster_roles = if own_cluster_roles.is_empty() {
            BOOTSTRAP_CLUSTER_ROLES.clone()
        } else {
            let mut src: Vec<ClusterRole> = bootstrap::cluster_roles();
            src.extend(own_cluster_roles.into_iter().cloned());
            Arc::new(resolve_aggregation(&src))
        };

        let roles: HashMap<(String, String), Arc<[Rule]>> = objects
            .roles
            .iter()
            .map(|r| {
                let key = (
                    r.metadata.namespace.clone().unwrap_or_default(),
                    name_of(&r.metadata).to_owned(),
                );
                (key, compile_rules(r.rules.as_deref().unwrap_or_default()))
            })
            .collect();

        let mut policy = RbacPolicy {
            cluster_roles,
            roles,
            ..Default::default()
        };

        let mut cluster_bindings = bootstrap::cluster_role_bindings();
        cluster_bindings.extend(
            objects
                .cluster_role_bindings
                .iter()
                .filter(|b| !bootstrap::is_bootstrap_cluster_role_binding(name_of(&b.metadata)))
                .cloned(),
        );
        for b in cluster_bindings
            .iter()
            .filter(|b| !bootstrap::is_bootstrap_cluster_role_binding(name_of(&b.metadata)))
        {
            for s in b.subjects.iter().flatten() {
                policy.access.add(s, "");
            }
        }
        for b in &cluster_bindings {
            // A ClusterRoleBinding can only reference a ClusterRole.
            let grant = if b.role_ref.kind == "ClusterRole" {
                policy.grant_for(&b.role_ref, "")
            } else {
                continue;
            };
            for s in b.subjects.iter().flatten() {
                policy.cluster_grants.add(s, "", &grant);
            }
        }
        for b in &objects.role_bindings {
            let ns = b.metadata.namespace.clone().unwrap_or_default();
            if ns.is_empty() {
                continue;
            }
            let grant = policy.grant_for(&b.role_ref, &ns);
            for s in b.subjects.iter().flatten() {
                policy.access.add(s, &ns);
            }
            let index = policy.namespace_grants.entry(ns.clone()).or_default();
            for s in b.subjects.iter().flatten() {
                index.add(s, &ns, &grant);
            }
        }
        policy
    }

    fn grant_for(&self, role_ref: &RoleRef, namespace: &str) -> Grant {
        let kind = match role_ref.kind.as_str() {
            "Role" => RoleKind::Role,
            _ => RoleKind::ClusterRole,
        };
        Grant {
            rules: self
                .role_rules(kind, namespace, &role_ref.name)
                .ok_or_else(|| Arc::from(not_found(kind, &role_ref.name))),
        }
    }

    /// The effective rules of a role (aggregated for aggregating
    /// ClusterRoles); `None` if it does not exist.
    pub fn role_rules(&self, kind: RoleKind, namespace: &str, name: &str) -> Option<Arc<[Rule]>> {
        match kind {
            RoleKind::ClusterRole => self.cluster_roles.get(name).cloned(),
            RoleKind::Role => self
                .roles
                .get(&(namespace.to_owned(), name.to_owned()))
                .cloned(),
        }
    }

    /// Whether `user` may enter this workspace at all: a member of
    /// `system:masters`, or named (by name or group) in one of its
    /// bindings, cluster-wide or in any namespace. The bootstrap bindings
    /// that every authenticated user has (discovery, basic-user,
    /// public-info) are not access grants, so a workspace you were never
    /// given anything in answers like one that does not exist.
    pub fn has_access(&self, user: &UserInfo) -> bool {
        user.in_group(SYSTEM_MASTERS)
            || self.access.users.contains(&user.name)
            || user.groups.iter().any(|g| self.access.groups.contains(g))
    }

    /// Decides one request.
    pub fn authorize(&self, attrs: &Attributes<'_>) -> Decision {
        // The superuser group short-cuts the walk (it is also bound to
        // cluster-admin, so SSRR still lists its rules).
        if attrs.user.in_group(SYSTEM_MASTERS) {
            return Decision::Allow;
        }
        let mut errors: Vec<&str> = Vec::new();
        for grant in self.grants(attrs.user, attrs.namespace_str()) {
            match &grant.rules {
                Ok(rules) => {
                    if rules.iter().any(|r| r.allows(attrs.verb, &attrs.target)) {
                        return Decision::Allow;
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        errors.sort_unstable();
        errors.dedup();
        Decision::Deny(match errors.as_slice() {
            [] => String::new(),
            [one] => format!("RBAC: {one}"),
            many => format!("RBAC: [{}]", many.join(", ")),
        })
    }

    /// Shorthand for [`Self::authorize`] with a resource target.
    pub fn allows(&self, attrs: &Attributes<'_>) -> bool {
        self.authorize(attrs).is_allowed()
    }

    fn grants<'a>(
        &'a self,
        user: &'a UserInfo,
        namespace: &'a str,
    ) -> impl Iterator<Item = &'a Grant> + 'a {
        let ns = (!namespace.is_empty())
            .then(|| self.namespace_grants.get(namespace))
            .flatten();
        self.cluster_grants
            .for_user(user)
            .chain(ns.into_iter().flat_map(move |i| i.for_user(user)))
    }

    /// Every rule that applies to `user` in `namespace` (cluster-wide
    /// bindings included; empty namespace = cluster-wide only), plus the
    /// resolution errors met on the way. Used by escalation checks.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<Rule>, Vec<String>) {
        let mut rules = Vec::new();
        let mut seen = HashSet::new();
        let mut errors = Vec::new();
        for grant in self.grants(user, namespace) {
            match &grant.rules {
                Ok(rs) => {
                    for r in rs.iter() {
                        if seen.insert(r) {
                            rules.push(r.clone());
                        }
                    }
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        errors.sort();
        errors.dedup();
        (rules, errors)
    }

    /// The `status` of a SelfSubjectRulesReview for `namespace`.
    pub fn rules_review(&self, user: &UserInfo, namespace: &str) -> SubjectRulesReviewStatus {
        let (rules, errors) = self.rules_for(user, namespace);
        SubjectRulesReviewStatus {
            resource_rules: rules.iter().filter_map(Rule::to_resource_rule).collect(),
            non_resource_rules: rules
                .iter()
                .filter_map(Rule::to_non_resource_rule)
                .collect(),
            incomplete: !errors.is_empty(),
            evaluation_error: (!errors.is_empty()).then(|| errors.join(", ")),
        }
    }
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

fn not_found(kind: RoleKind, name: &str) -> String {
    let resource = match kind {
        RoleKind::Role => "role",
        RoleKind::ClusterRole => "clusterrole",
    };
    format!("{resource}.{RBAC_GROUP} {name:?} not found")
}

fn compile_rules(rules: &[k8s_openapi::api::rbac::v1::PolicyRule]) -> Arc<[Rule]> {
    let mut out: Vec<Rule> = Vec::with_capacity(rules.len());
    for r in rules {
        let r = Rule::from(r);
        if !out.contains(&r) {
            out.push(r);
        }
    }
    out.into()
}

/// Effective rules of every ClusterRole. An aggregating role's rules are the
/// union of the (effective) rules of every other ClusterRole its selectors
/// match, which is the fixed point upstream's aggregation controller
/// converges to. Cycles are cut: a role being resolved contributes nothing
/// to itself.
pub(crate) fn resolve_aggregation(roles: &[ClusterRole]) -> HashMap<String, Arc<[Rule]>> {
    let labels: Vec<serde_json::Map<String, Value>> = roles
        .iter()
        .map(|r| {
            r.metadata
                .labels
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect()
        })
        .collect();
    let selectors: Vec<Option<Vec<LabelSelector>>> = roles
        .iter()
        .map(|r| {
            r.aggregation_rule.as_ref().map(|a| {
                a.cluster_role_selectors
                    .iter()
                    .flatten()
                    .filter_map(|s| {
                        let json = serde_json::to_value(s).ok()?;
                        // An unparsable selector selects nothing (fail closed).
                        LabelSelector::from_json(&json).ok()
                    })
                    .collect()
            })
        })
        .collect();

    fn resolve(
        i: usize,
        roles: &[ClusterRole],
        labels: &[serde_json::Map<String, Value>],
        selectors: &[Option<Vec<LabelSelector>>],
        memo: &mut Vec<Option<Arc<[Rule]>>>,
        visiting: &mut Vec<bool>,
    ) -> Arc<[Rule]> {
        if let Some(done) = &memo[i] {
            return done.clone();
        }
        let Some(sels) = &selectors[i] else {
            let rules = compile_rules(roles[i].rules.as_deref().unwrap_or_default());
            memo[i] = Some(rules.clone());
            return rules;
        };
        visiting[i] = true;
        let mut out: Vec<Rule> = Vec::new();
        for j in 0..roles.len() {
            if j == i || visiting[j] {
                continue;
            }
            if sels.iter().any(|s| s.matches(Some(&labels[j]))) {
                for r in resolve(j, roles, labels, selectors, memo, visiting).iter() {
                    if !out.contains(r) {
                        out.push(r.clone());
                    }
                }
            }
        }
        visiting[i] = false;
        let rules: Arc<[Rule]> = out.into();
        memo[i] = Some(rules.clone());
        rules
    }

    let mut memo = vec![None; roles.len()];
    let mut visiting = vec![false; roles.len()];
    let mut out = HashMap::with_capacity(roles.len());
    for (i, r) in roles.iter().enumerate() {
        let rules = resolve(i, roles, &labels, &selectors, &mut memo, &mut visiting);
        out.insert(name_of(&r.metadata).to_owned(), rules);
    }
    out
}

/// Compiled policies per workspace, each tagged with the revision of the
/// RBAC objects it was built from. The caller picks the revision (e.g. the
/// highest `mod_revision` among the workspace's RBAC objects, or a counter
/// the watch cache bumps on every RBAC event of that workspace) and calls
/// [`PolicyCache::invalidate`] on deletes it cannot express as a revision.
#[derive(Default)]
pub struct PolicyCache {
    entries: DashMap<ClusterId, (u64, Arc<RbacPolicy>)>,
}

impl PolicyCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The cached policy if it was built at exactly `revision`.
    pub fn get(&self, cluster: &ClusterId, revision: u64) -> Option<Arc<RbacPolicy>> {
        self.entries
            .get(cluster)
            .filter(|e| e.0 == revision)
            .map(|e| e.1.clone())
    }

    /// The cached policy at `revision`, or `build()` stored under it. A
    /// policy built at an older revision never replaces a newer one.
    pub fn get_or_build(
        &self,
        cluster: &ClusterId,
        revision: u64,
        build: impl FnOnce() -> RbacPolicy,
    ) -> Arc<RbacPolicy> {
        if let Some(p) = self.get(cluster, revision) {
            return p;
        }
        let policy = Arc::new(build());
        let mut entry = self
            .entries
            .entry(cluster.clone())
            .or_insert_with(|| (revision, policy.clone()));
        if entry.0 < revision {
            *entry = (revision, policy.clone());
        }
        policy
    }

    pub fn invalidate(&self, cluster: &ClusterId) {
        self.entries.remove(cluster);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
