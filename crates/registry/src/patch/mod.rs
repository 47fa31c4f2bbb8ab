//! Patches: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and
//! strategic merge patch for built-in types.

mod json;
mod merge;
mod strategic;

pub use json::json_patch;
pub use merge::merge_patch;
pub use strategic::strategic_merge_patch;

/// A patch that could not be applied.
///
/// How kube-apiserver answers each kind (and so how the HTTP layer should):
/// - [`PatchError::InvalidPatch`]: the patch document itself is malformed
///   (not an array of operations, unknown `op`, missing `path`, bad pointer
///   syntax, bad `$patch` directive value) → **400 BadRequest**.
/// - [`PatchError::TestFailed`] and [`PatchError::PathNotFound`]: the patch is
///   well formed but cannot be applied to this object → kube-apiserver wraps
///   these in `errors.NewInvalid`-free form: `patcher.applyJSPatch` returns
///   `errors.NewGenericServerResponse(422, ...)`? No: see `code()`; upstream
///   answers **422 Invalid** for application failures of JSON patch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document is malformed.
    #[error("{0}")]
    InvalidPatch(String),
    /// A JSON-patch `test` operation did not match.
    #[error("{0}")]
    TestFailed(String),
    /// A path named by the patch does not exist in the document.
    #[error("{0}")]
    PathNotFound(String),
    /// The patch is not supported for this kind (e.g. strategic merge patch
    /// of a custom resource: upstream answers 415 UnsupportedMediaType).
    #[error("{0}")]
    Unsupported(String),
}

impl PatchError {
    /// The HTTP status code kube-apiserver answers with for this error.
    pub fn code(&self) -> u16 {
        match self {
            PatchError::InvalidPatch(_) => 400,
            PatchError::TestFailed(_) | PatchError::PathNotFound(_) => 422,
            PatchError::Unsupported(_) => 415,
        }
    }
}
