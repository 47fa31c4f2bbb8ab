//! CustomResourceDefinitions: per-workspace APIs that users bring.
//!
//! - `definition`: a CRD object read and validated into a [`Definition`].
//! - `strategy`: the CRD resource's rules (validation, cleanup finalizer,
//!   NamesAccepted/Established written in the create itself) and the custom
//!   objects' rules (prune, default, validate from the compiled schema).
//! - `index`: cluster id -> that workspace's CRDs, loaded at start-up and
//!   kept current by one storage watch over the CRD prefix, and updated
//!   synchronously by CRD writes. It hands out each workspace's `ApiSet`
//!   and custom-resource stores, both shared by content: workspaces with
//!   the same CRDs share one `ApiSet`, and one CRD version's content has one
//!   `ResourceStore` and one compiled schema whatever the number of
//!   workspaces carrying it.
//! - `cleanup`: deleting a CRD (Terminating, its objects deleted honouring
//!   their finalizers, then the finalizer removed).
//!
//! `schema` compiles a CRD version's `openAPIV3Schema` into a
//! [`schema::CompiledSchema`] (structural validation, pruning, defaulting,
//! CEL rules), shared by content across workspaces through
//! [`schema::SchemaCache`].

mod cleanup;
pub mod definition;
pub mod index;
pub mod schema;
pub mod strategy;

use kube_core::GroupVersionKind;
use kube_core::discovery::Scope;

pub use cleanup::sweep_custom_objects;
pub use definition::{Definition, Names};
pub use index::CrdIndex;

use crate::keys::KeyRoot;
use crate::resource::{ALL_VERBS, ResourceDescriptor};

pub const GROUP: &str = "apiextensions.k8s.io";
pub const VERSION: &str = "v1";
pub const KIND: &str = "CustomResourceDefinition";
pub const PLURAL: &str = "customresourcedefinitions";
/// Keeps a deleted CRD until its objects are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// The CustomResourceDefinition resource itself.
pub fn descriptor(root: &KeyRoot) -> ResourceDescriptor {
    ResourceDescriptor::new(
        root,
        GroupVersionKind::gvk(GROUP, VERSION, KIND),
        PLURAL,
        Scope::Cluster,
        vec!["crd", "crds"],
        vec!["api-extensions"],
        ALL_VERBS,
    )
    .with_subresource("status", crate::builtin::SUB_VERBS)
}
