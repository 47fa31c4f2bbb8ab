//! Kubernetes semantics over the storage contract.
