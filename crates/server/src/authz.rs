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

use registry::cluster::ClusterId;
use registry::rbac::{Attributes, PolicyCache, RbacPolicy, UserInfo};
use registry::rbac_source::RbacSource;

use crate::error::ApiError;
use crate::request_info::{ResourceRequest, Verb};

/// The per-workspace policies.
pub struct Authorizer {
    source: Arc<RbacSource>,
    cache: PolicyCache,
}

impl Authorizer {
    pub fn new(source: Arc<RbacSource>) -> Self {
        Authorizer {
            source,
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
        let objects = self.source.objects(cluster).await?;
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
