//! Kubernetes RBAC for one workspace, as a pure evaluator.
//!
//! The registry lists the workspace's Roles, ClusterRoles, RoleBindings and
//! ClusterRoleBindings into [`RbacObjects`]; [`RbacPolicy::compile`] merges
//! them with the [`bootstrap`] roles and bindings (present in every
//! workspace), resolves aggregation, and indexes the grants by subject. A
//! compiled policy is immutable: cache it per workspace in a
//! [`PolicyCache`] keyed by the revision of the RBAC objects, and rebuild
//! when that revision moves. Evaluating a request is hash lookups plus a
//! scan of the rules bound to the user and its groups; nothing is parsed.
//!
//! Nothing here knows about other workspaces: a policy only sees one
//! workspace's objects, so a denial can only mention that workspace.

pub mod bootstrap;
mod escalation;
mod policy;
mod rule;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use escalation::{EscalationError, covers, uncovered};
pub use policy::{PolicyCache, RbacObjects, RbacPolicy, RoleKind};
pub use rule::Rule;

use crate::status::{ApiError, QualifiedResource, Reason};

/// The authenticated identity, as RBAC sees it. The server's user type
/// converts into this; the registry never sees tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn new(name: impl Into<String>, groups: &[&str]) -> Self {
        UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// What a request is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// `namespace` is empty for cluster-scoped requests (and for requests
    /// across all namespaces); `name` is empty for collections.
    Resource(ResourceAttributes<'a>),
    /// A path outside the resource tree (`/version`, `/healthz`, `/apis`).
    NonResource { path: &'a str },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResourceAttributes<'a> {
    pub api_group: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub name: &'a str,
    pub namespace: &'a str,
}

/// One authorization question: may `user` do `verb` on `target`?
/// `verb` is the Kubernetes verb (`get`, `list`, `watch`, `create`,
/// `update`, `patch`, `delete`, `deletecollection`, or a special verb such
/// as `escalate`, `bind`, `impersonate`; `get` for non-resource GETs).
#[derive(Clone, Copy, Debug)]
pub struct Attributes<'a> {
    pub user: &'a UserInfo,
    pub verb: &'a str,
    pub target: Target<'a>,
}

impl<'a> Attributes<'a> {
    pub fn resource(
        user: &'a UserInfo,
        verb: &'a str,
        api_group: &'a str,
        resource: &'a str,
    ) -> Self {
        Attributes {
            user,
            verb,
            target: Target::Resource(ResourceAttributes {
                api_group,
                resource,
                ..Default::default()
            }),
        }
    }

    pub fn non_resource(user: &'a UserInfo, verb: &'a str, path: &'a str) -> Self {
        Attributes {
            user,
            verb,
            target: Target::NonResource { path },
        }
    }

    #[must_use]
    pub fn namespace(mut self, namespace: &'a str) -> Self {
        if let Target::Resource(r) = &mut self.target {
            r.namespace = namespace;
        }
        self
    }

    #[must_use]
    pub fn name(mut self, name: &'a str) -> Self {
        if let Target::Resource(r) = &mut self.target {
            r.name = name;
        }
        self
    }

    #[must_use]
    pub fn subresource(mut self, subresource: &'a str) -> Self {
        if let Target::Resource(r) = &mut self.target {
            r.subresource = subresource;
        }
        self
    }

    pub(crate) fn namespace_str(&self) -> &'a str {
        match self.target {
            Target::Resource(r) => r.namespace,
            Target::NonResource { .. } => "",
        }
    }

    /// Upstream's `forbiddenMessage`: `User "u" cannot get resource
    /// "configmaps" in API group "" in the namespace "ns"`.
    pub fn forbidden_message(&self) -> String {
        let user = &self.user.name;
        match self.target {
            Target::NonResource { path } => {
                format!("User {user:?} cannot {} path {path:?}", self.verb)
            }
            Target::Resource(r) => {
                let resource = if r.subresource.is_empty() {
                    r.resource.to_owned()
                } else {
                    format!("{}/{}", r.resource, r.subresource)
                };
                let scope = if r.namespace.is_empty() {
                    "at the cluster scope".to_owned()
                } else {
                    format!("in the namespace {:?}", r.namespace)
                };
                format!(
                    "User {user:?} cannot {} resource {resource:?} in API group {:?} {scope}",
                    self.verb, r.api_group
                )
            }
        }
    }

    /// The 403 `Status` for a denial, as kube-apiserver writes it:
    /// `configmaps "x" is forbidden: User "u" cannot get resource ...`, with
    /// the denial reason appended when there is one.
    pub fn forbidden(&self, reason: &str) -> ApiError {
        let mut why = self.forbidden_message();
        if !reason.is_empty() {
            why.push_str(": ");
            why.push_str(reason);
        }
        match self.target {
            Target::Resource(r) => ApiError::forbidden(
                &QualifiedResource::new(r.api_group, r.resource),
                r.name,
                &why,
            ),
            Target::NonResource { .. } => {
                ApiError::new(Reason::Forbidden, format!("forbidden: {why}"))
            }
        }
    }
}

/// The answer. `Deny` carries the reason text upstream appends to the
/// forbidden message (empty when no rule matched and nothing was broken).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(String),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}
