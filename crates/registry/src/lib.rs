//! Kubernetes semantics over the storage contract: resource descriptors, the
//! generic `ResourceStore`, object metadata rules, selectors, patches, tables,
//! workspaces. Knows nothing of HTTP or of the concrete storage engine.

pub mod builtin;
pub mod cluster;
pub mod crd;
pub mod discovery;
pub mod fieldmanager;
pub mod gc;
pub mod keys;
pub mod metadata;
mod namespaces;
pub mod openapi;
pub mod options;
pub mod patch;
mod prefix_follower;
pub mod rbac;
pub mod rbac_source;
pub mod registry;
pub mod resource;
pub mod schema;
pub mod selector;
pub mod status;
pub mod store;
pub mod table;
pub mod validation;
pub mod watch;
pub mod watch_cache;
pub mod workspace;

pub use cluster::{ClusterId, ClusterScope, WorkspacePath};
pub use registry::{Registry, RegistryConfig, RegistryError};
pub use status::{ApiError, ApiResult, Reason};
