//! Authorization in the request path: a request's [`RequestInfo`] to RBAC
//! [`Attributes`], and the compiled [`RbacPolicy`] of the workspace it
//! addresses (cached per workspace, keyed by the workspace's RBAC revision
//! from [`RbacSource`]).
//!
//! Verb mapping is upstream's: GET of one object `get`, of a collection
//! `list`, `?watch` `watch`, POST `create`, PUT `update`, PATCH `patch`,
//! DELETE `delete` or `deletecollection`; for `namespaces` the namespace of
//! the request is the namespace's own name; everything outside the
//! resource tree (discovery, OpenAPI, `/metrics`) is a non-resource URL
//! (`get`), evaluated on the path without its `/clusters/<ws>` prefix.

use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use registry::Registry;
use registry::cluster::ClusterId;
use registry::rbac::{Attributes, PolicyCache, RbacPolicy, UserInfo};
use registry::rbac_source::RbacSource;

use crate::error::ApiError;
use crate::request_info::{ResourceRequest, Verb};

/// The per-workspace policies.
pub struct Authorizer {
    source: Arc<RbacSource>,
    registry: Arc<Registry>,
    cache: PolicyCache,
}

impl Authorizer {
    pub fn new(source: Arc<RbacSource>, registry: Arc<Registry>) -> Self {
        Authorizer {
            source,
            registry,
            cache: PolicyCache::new(),
        }
    }

    pub fn source(&self) -> &Arc<RbacSource> {
        &self.source
    }

    /// The workspace's current policy.
    pub async fn policy(&self, cluster: &ClusterId) -> Result<Arc<RbacPolicy>, ApiError> {
        let revision = self.source.revision(cluster);
        if let Some(p) = self.cache.get(cluster, revision) {
            return Ok(p);
        }
        let mut objects = self.source.objects(cluster).await?;
        // The workspace's creator (its immutable `spec.owner`) is its admin:
        // a binding evaluated here, not stored, so creating a workspace
        // stays one write.
        if let Some(owner) = self
            .registry
            .workspaces()
            .info_by_id(cluster)
            .and_then(|r| r.owner().map(str::to_owned))
        {
            objects.cluster_role_bindings.push(owner_binding(&owner));
        }
        Ok(self
            .cache
            .get_or_build(cluster, revision, || RbacPolicy::compile(&objects)))
    }

    /// A workspace is gone: drop its policy.
    pub fn forget(&self, cluster: &ClusterId) {
        self.cache.invalidate(cluster);
        self.source.forget(cluster);
    }
}

/// The name of the evaluated (never stored) owner binding.
pub const OWNER_BINDING: &str = "wsgate:workspace-owner";

fn owner_binding(owner: &str) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(OWNER_BINDING.to_owned()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "ClusterRole".to_owned(),
            name: "cluster-admin".to_owned(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "User".to_owned(),
            name: owner.to_owned(),
            namespace: None,
        }]),
    }
}

/// The RBAC namespace of a resource request: the namespace segment, or the
/// namespace's own name for `namespaces/<name>` (as upstream).
pub fn rbac_namespace(req: &ResourceRequest) -> &str {
    if req.group.is_empty() && req.resource == "namespaces" {
        return req.name.as_deref().unwrap_or("");
    }
    req.namespace.as_deref().unwrap_or("")
}

/// The attributes of a resource request.
pub fn resource_attributes<'a>(user: &'a UserInfo, req: &'a ResourceRequest) -> Attributes<'a> {
    Attributes::resource(user, req.verb.as_str(), &req.group, &req.resource)
        .namespace(rbac_namespace(req))
        .name(req.name.as_deref().unwrap_or(""))
        .subresource(req.subresource.as_deref().unwrap_or(""))
}

/// Decides a resource request: `Ok` or the upstream 403.
pub fn check_resource(
    policy: &RbacPolicy,
    user: &UserInfo,
    req: &ResourceRequest,
) -> Result<(), ApiError> {
    let attrs = resource_attributes(user, req);
    match policy.authorize(&attrs) {
        registry::rbac::Decision::Allow => Ok(()),
        registry::rbac::Decision::Deny(reason) => Err(attrs.forbidden(&reason).into()),
    }
}

/// Decides a non-resource request (`get` on `path`).
pub fn check_non_resource(
    policy: &RbacPolicy,
    user: &UserInfo,
    path: &str,
) -> Result<(), ApiError> {
    let attrs = Attributes::non_resource(user, "get", path);
    match policy.authorize(&attrs) {
        registry::rbac::Decision::Allow => Ok(()),
        registry::rbac::Decision::Deny(reason) => Err(attrs.forbidden(&reason).into()),
    }
}

/// Whether a verb writes.
pub fn is_write(verb: Verb) -> bool {
    !matches!(verb, Verb::Get | Verb::List | Verb::Watch)
}
