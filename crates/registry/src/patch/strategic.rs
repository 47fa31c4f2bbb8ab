//! Strategic merge patch for built-in kinds.

use kube_core::GroupVersionKind;
use serde_json::Value;

use super::PatchError;

/// Applies a Kubernetes strategic merge patch to `doc` of kind `gvk`.
pub fn strategic_merge_patch(
    _doc: &Value,
    _patch: &Value,
    _gvk: &GroupVersionKind,
) -> Result<Value, PatchError> {
    Err(PatchError::Unsupported(
        "strategic merge patch: not implemented yet".into(),
    ))
}
