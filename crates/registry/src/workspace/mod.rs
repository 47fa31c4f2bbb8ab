//! Workspaces: the `Workspace` resource (group `tenancy.wsgate.io`, stored in
//! its parent workspace like any object; creating one is that ONE write), the
//! in-memory path -> logical cluster index every replica keeps (loaded at
//! start-up in pages, kept current by one storage watch), and the background
//! deletion of a terminating workspace's content.
//!
//! Invariants:
//! - A workspace's logical cluster id is random, assigned on create and
//!   immutable; every storage key of the workspace carries it
//!   ([`crate::keys`]). Its path (`acme:team-a`) only maps to the id.
//! - An id is never reused while data under it may remain: a deletion record
//!   per id (`<root>/tenancy.wsgate.io/workspacedeletions/<id>`) exists from
//!   the moment deletion starts, and new ids are checked against the index
//!   and the pending deletions.
//! - Deleting a workspace marks it `Terminating` (writes refused, reads
//!   allowed) and the [`deletion::Deleter`] removes every key under the id in
//!   every ResourcePrefix, nested workspaces first, persisting progress in the
//!   deletion record so a restart resumes; then it records
//!   `deleteCompletedAt` and removes the Workspace object.
//! - The same name can be created again at once, even while the old one is
//!   still terminating: the old object is replaced, the new workspace gets a
//!   new id, and the old content is swept under the old id.

mod claim;
pub mod deletion;
mod index;
mod record;

use kube_core::GroupVersionKind;
use kube_core::discovery::Scope;
use serde_json::{Value, json};

pub use deletion::{Deleter, DeletionRecord};
pub use index::{LoadStats, WorkspaceIndex};
pub use record::{Phase, WorkspaceRecord};

use crate::cluster::WorkspacePath;
use crate::keys::KeyRoot;
use crate::resource::{ALL_VERBS, Object, ResourceDescriptor, Strategy};
use crate::validation::{FieldError, NameRule};

pub const GROUP: &str = "tenancy.wsgate.io";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "Workspace";
pub const PLURAL: &str = "workspaces";
/// The single shard of this installation (sharding is a later issue).
pub const DEFAULT_SHARD: &str = "default";

/// Annotations on objects returned by wildcard (`/clusters/*`) lists and
/// watches: the path a client addresses and the stable id.
pub const PATH_ANNOTATION: &str = "tenancy.wsgate.io/path";
pub const CLUSTER_ANNOTATION: &str = "tenancy.wsgate.io/cluster";
/// kcp's logical-cluster annotation (`logicalcluster.AnnotationKey`), also
/// set on wildcard results so kcp-aware tooling (multicluster providers
/// that read `logicalcluster.From(obj)` and send the next request to
/// `/clusters/<value>`) routes correctly. Its value is the workspace path:
/// kcp accepts a name or a path after `/clusters/`, wsgate only a path.
pub const KCP_CLUSTER_ANNOTATION: &str = "kcp.io/cluster";
/// Keeps a terminating Workspace object until its content is gone.
pub const CONTENT_FINALIZER: &str = "tenancy.wsgate.io/content";

pub fn descriptor(root: &KeyRoot) -> ResourceDescriptor {
    ResourceDescriptor::new(
        root,
        GroupVersionKind::gvk(GROUP, VERSION, KIND),
        PLURAL,
        Scope::Cluster,
        vec!["ws"],
        vec![],
        ALL_VERBS,
    )
    .with_subresource("status", crate::builtin::SUB_VERBS)
}

/// Keeps `spec.cluster` and `spec.owner` immutable; the registry assigns them
/// on create ([`prepare_create`]).
pub struct WorkspaceStrategy;

impl Strategy for WorkspaceStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }

    fn prepare_for_create(&self, obj: &mut Object) {
        let spec = obj.entry("spec").or_insert_with(|| json!({}));
        if !spec.is_object() {
            *spec = json!({});
        }
        // The store drops a client-sent status before this hook; the URL
        // [`prepare_create`] computed travels in `spec.url` and moves here.
        let url = obj
            .get_mut("spec")
            .and_then(Value::as_object_mut)
            .and_then(|s| s.remove("url"));
        let mut status = json!({"phase": Phase::Ready.as_str()});
        if let (Some(u), Value::Object(st)) = (url, &mut status) {
            st.insert("url".into(), u);
        }
        obj.insert("status".into(), status);
    }

    fn prepare_for_update(&self, new: &mut Object, old: &Object) {
        let old_spec = old.get("spec").and_then(Value::as_object);
        let spec = new.entry("spec").or_insert_with(|| json!({}));
        if !spec.is_object() {
            *spec = json!({});
        }
        if let Value::Object(s) = spec {
            s.remove("url");
            for field in ["cluster", "owner"] {
                match old_spec.and_then(|o| o.get(field)) {
                    Some(v) => s.insert(field.into(), v.clone()),
                    None => s.remove(field),
                };
            }
        }
        // Status is the system's: phase, URL and deletion progress.
        match old.get("status") {
            Some(st) => new.insert("status".into(), st.clone()),
            None => new.remove("status"),
        };
    }

    fn validate(&self, obj: &Object) -> Vec<FieldError> {
        if crate::metadata::name(obj) == WorkspacePath::ROOT {
            return vec![FieldError::invalid(
                "metadata.name",
                WorkspacePath::ROOT,
                "is reserved",
            )];
        }
        Vec::new()
    }
}

/// Fills what the system owns in a new Workspace: the fresh cluster id, the
/// owner (the creating user; `None` until authentication is wired, then
/// the authorizer treats the owner as the workspace's admin), and a status
/// with the phase and the URL to use.
pub fn prepare_create(
    obj: &mut Object,
    id: &crate::cluster::ClusterId,
    owner: Option<&str>,
    url: &str,
) {
    let spec = obj.entry("spec").or_insert_with(|| json!({}));
    if !spec.is_object() {
        *spec = json!({});
    }
    if let Value::Object(s) = spec {
        s.insert("cluster".into(), id.as_str().into());
        match owner {
            Some(o) => s.insert("owner".into(), o.into()),
            None => s.remove("owner"),
        };
    }
    if let Some(Value::Object(s)) = obj.get_mut("spec") {
        s.insert("url".into(), url.into());
    }
}
