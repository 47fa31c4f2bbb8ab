//! ClusterRoles and ClusterRoleBindings: the bootstrap roles and bindings
//! of [`crate::rbac::bootstrap`] are implicit objects of every workspace
//! (get/list show them without a write), and their names cannot be written
//! (the evaluator always uses the bootstrap definition, so a stored copy
//! would show something that is not in force). Deleting one is a no-op, as
//! upstream re-creates a deleted bootstrap role.

use serde_json::Value;

use crate::builtin::namespace::implicit_uid;
use crate::rbac::bootstrap;
use crate::resource::Object;
use crate::resource::{ImplicitContext, Strategy};
use crate::validation::{FieldError, NameRule};

const API_VERSION: &str = "rbac.authorization.k8s.io/v1";

/// Which of the two cluster-scoped RBAC kinds.
#[derive(Clone, Copy, Debug)]
pub enum ClusterRbacKind {
    ClusterRole,
    ClusterRoleBinding,
}

/// The strategy of `clusterroles` or `clusterrolebindings`.
pub struct ClusterRbacStrategy(pub ClusterRbacKind);

impl ClusterRbacStrategy {
    fn kind(&self) -> &'static str {
        match self.0 {
            ClusterRbacKind::ClusterRole => "ClusterRole",
            ClusterRbacKind::ClusterRoleBinding => "ClusterRoleBinding",
        }
    }

    fn is_bootstrap(&self, name: &str) -> bool {
        match self.0 {
            ClusterRbacKind::ClusterRole => bootstrap::is_bootstrap_cluster_role(name),
            ClusterRbacKind::ClusterRoleBinding => {
                bootstrap::is_bootstrap_cluster_role_binding(name)
            }
        }
    }
}

impl Strategy for ClusterRbacStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn validate(&self, obj: &Object) -> Vec<FieldError> {
        let name = crate::metadata::name(obj);
        if self.is_bootstrap(name) {
            return vec![FieldError::forbidden(
                "metadata.name",
                format!(
                    "{name:?} is a bootstrap {} that wsgate keeps the same in every workspace; \
                     create one under another name, or extend admin/edit/view with a ClusterRole \
                     labelled rbac.authorization.k8s.io/aggregate-to-<role>: \"true\"",
                    self.kind()
                ),
            )];
        }
        Vec::new()
    }

    fn implicit_objects(&self, ctx: &ImplicitContext<'_>, _namespace: Option<&str>) -> Vec<Object> {
        let values: Vec<Value> = match self.0 {
            ClusterRbacKind::ClusterRole => bootstrap::cluster_roles_resolved()
                .into_iter()
                .filter_map(|r| serde_json::to_value(r).ok())
                .collect(),
            ClusterRbacKind::ClusterRoleBinding => bootstrap::cluster_role_bindings()
                .into_iter()
                .filter_map(|b| serde_json::to_value(b).ok())
                .collect(),
        };
        values
            .into_iter()
            .filter_map(|v| match v {
                Value::Object(mut o) => {
                    o.insert("kind".into(), self.kind().into());
                    o.insert("apiVersion".into(), API_VERSION.into());
                    let name = crate::metadata::name(&o).to_owned();
                    if let Some(Value::Object(m)) = o.get_mut("metadata") {
                        m.insert(
                            "uid".into(),
                            implicit_uid(ctx.cluster, self.kind(), &name).into(),
                        );
                        m.insert("resourceVersion".into(), ctx.revision.to_string().into());
                        m.insert("creationTimestamp".into(), ctx.created.into());
                    }
                    Some(o)
                }
                _ => None,
            })
            .collect()
    }
}
