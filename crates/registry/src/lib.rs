//! Kubernetes semantics over the storage contract: resource descriptors, the
//! generic `ResourceStore`, object metadata rules, selectors, patches, tables,
//! workspaces. Knows nothing of HTTP or of the concrete storage engine.

pub mod patch;
pub mod selector;
pub mod table;
