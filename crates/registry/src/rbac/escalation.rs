//! Privilege-escalation prevention (upstream
//! `pkg/registry/rbac/escalation_check.go` and `validation/rule.go`):
//! writing a Role/ClusterRole needs every permission it grants, or the
//! `escalate` verb on it; writing a binding needs the permissions of the
//! referenced role, or the `bind` verb on it. `system:masters` may do both.

use std::collections::BTreeSet;

use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef};

use super::bootstrap::SYSTEM_MASTERS;
use super::policy::{RBAC_GROUP, RbacPolicy, RoleKind};
use super::rule::Rule;
use super::{Attributes, UserInfo};
use crate::status::{ApiError, QualifiedResource};

/// Why a role or binding write was refused. Render with
/// [`EscalationError::forbidden`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EscalationError {
    #[error("{}", not_held_message(.user, .groups, .missing, .errors))]
    NotHeld {
        user: String,
        groups: Vec<String>,
        /// Atomic rules the writer lacks, sorted and de-duplicated.
        missing: Vec<Rule>,
        errors: Vec<String>,
    },
    #[error("{0}")]
    RoleNotFound(String),
    #[error("must have cluster-admin privileges to use the aggregationRule")]
    AggregationRule,
}

fn not_held_message(user: &str, groups: &[String], missing: &[Rule], errors: &[String]) -> String {
    let groups: Vec<String> = groups.iter().map(|g| format!("{g:?}")).collect();
    let missing: BTreeSet<String> = missing.iter().map(|r| r.to_string()).collect();
    let mut msg = format!(
        "user {user:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
        groups.join(" "),
        missing.into_iter().collect::<Vec<_>>().join("\n")
    );
    if !errors.is_empty() {
        msg.push_str(&format!("; resolution errors: [{}]", errors.join(", ")));
    }
    msg
}

impl EscalationError {
    /// The 403: `roles.rbac.authorization.k8s.io "x" is forbidden: user ...`.
    /// `resource` is the plural being written (`roles`, `clusterrolebindings`...).
    pub fn forbidden(&self, resource: &str, name: &str) -> ApiError {
        ApiError::forbidden(
            &QualifiedResource::new(RBAC_GROUP, resource),
            name,
            &self.to_string(),
        )
    }
}

/// Whether `owner` covers every rule in `requested`; the atomic rules it
/// does not cover are returned (empty when covered).
pub fn uncovered(owner: &[Rule], requested: &[Rule]) -> Vec<Rule> {
    let mut missing = Vec::new();
    for sub in requested.iter().flat_map(Rule::breakdown) {
        if !owner.iter().any(|o| o.covers(&sub)) && !missing.contains(&sub) {
            missing.push(sub);
        }
    }
    missing
}

/// `covers(owner, requested)`.
pub fn covers(owner: &[Rule], requested: &[Rule]) -> bool {
    uncovered(owner, requested).is_empty()
}

fn role_resource(kind: RoleKind) -> &'static str {
    match kind {
        RoleKind::Role => "roles",
        RoleKind::ClusterRole => "clusterroles",
    }
}

impl RbacPolicy {
    /// `ConfirmNoEscalation`: `user` holds every rule of `requested` in
    /// `namespace` (empty = cluster-wide).
    pub fn confirm_no_escalation(
        &self,
        user: &UserInfo,
        namespace: &str,
        requested: &[Rule],
    ) -> Result<(), EscalationError> {
        let (owner, errors) = self.rules_for(user, namespace);
        let missing = uncovered(&owner, requested);
        if missing.is_empty() {
            return Ok(());
        }
        Err(EscalationError::NotHeld {
            user: user.name.clone(),
            groups: user.groups.clone(),
            missing,
            errors,
        })
    }

    /// May `user` create or update the Role `namespace/name` (or the
    /// ClusterRole `name`, with `namespace` empty) granting `rules`?
    /// `has_aggregation_rule` is true for a ClusterRole carrying an
    /// aggregationRule, which upstream allows only to holders of `*` on `*`.
    pub fn check_role_write(
        &self,
        user: &UserInfo,
        kind: RoleKind,
        namespace: &str,
        name: &str,
        rules: &[PolicyRule],
        has_aggregation_rule: bool,
    ) -> Result<(), EscalationError> {
        if user.in_group(SYSTEM_MASTERS) {
            return Ok(());
        }
        let escalate = Attributes::resource(user, "escalate", RBAC_GROUP, role_resource(kind))
            .namespace(namespace)
            .name(name);
        if self.allows(&escalate) {
            return Ok(());
        }
        let requested: Vec<Rule> = rules.iter().map(Rule::from).collect();
        self.confirm_no_escalation(user, namespace, &requested)?;
        if has_aggregation_rule {
            let full = [
                Rule::new(&["*"]).groups(&["*"]).resources(&["*"]),
                Rule::new(&["*"]).urls(&["*"]),
            ];
            self.confirm_no_escalation(user, namespace, &full)
                .map_err(|_| EscalationError::AggregationRule)?;
        }
        Ok(())
    }

    /// May `user` create or update a binding in `binding_namespace` (empty
    /// for a ClusterRoleBinding) that references `role_ref`?
    pub fn check_binding_write(
        &self,
        user: &UserInfo,
        binding_namespace: &str,
        role_ref: &RoleRef,
    ) -> Result<(), EscalationError> {
        if user.in_group(SYSTEM_MASTERS) {
            return Ok(());
        }
        let kind = match role_ref.kind.as_str() {
            "Role" => RoleKind::Role,
            _ => RoleKind::ClusterRole,
        };
        let bind = Attributes::resource(user, "bind", RBAC_GROUP, role_resource(kind))
            .namespace(binding_namespace)
            .name(&role_ref.name);
        if self.allows(&bind) {
            return Ok(());
        }
        let rules = self
            .role_rules(kind, binding_namespace, &role_ref.name)
            .ok_or_else(|| {
                let resource = match kind {
                    RoleKind::Role => "role",
                    RoleKind::ClusterRole => "clusterrole",
                };
                EscalationError::RoleNotFound(format!(
                    "{resource}.{RBAC_GROUP} {:?} not found",
                    role_ref.name
                ))
            })?;
        self.confirm_no_escalation(user, binding_namespace, &rules)
    }
}
