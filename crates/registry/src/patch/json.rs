//! JSON patch (RFC 6902).

use serde_json::Value;

use super::PatchError;

/// Applies an RFC 6902 JSON patch atomically: either every operation applies
/// or the original is left untouched and an error is returned.
pub fn json_patch(_doc: &Value, _patch: &Value) -> Result<Value, PatchError> {
    Err(PatchError::Unsupported(
        "json patch: not implemented yet".into(),
    ))
}
