//! Printer columns: rendering objects as `meta.k8s.io/v1` Tables.
