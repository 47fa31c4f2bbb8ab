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
/// [`PatchError::code`] gives the HTTP status kube-apiserver answers with
/// (`staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go`):
/// - a body that is not a patch document at all (JSON patch not an array of
///   objects, merge patch not valid JSON, an SMP directive of the wrong
///   shape) → **400 BadRequest** (`errors.NewBadRequest`);
/// - a well-formed patch that cannot be applied to this object (a failed
///   `test`, a missing path, an unknown `op`, a bad index) → **422**, built
///   with `errors.NewGenericServerResponse(422, …)`: reason `Invalid`,
///   message "the server rejected our request due to an error in our
///   request", and this error's text as the one `details.causes[]` entry
///   (reason `UnexpectedServerResponse`);
/// - more than 10,000 JSON-patch operations → **413** RequestEntityTooLarge;
/// - strategic merge patch of a kind without a schema (custom resources) →
///   **415** UnsupportedMediaType.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document is malformed (400).
    #[error("{0}")]
    InvalidPatch(String),
    /// A JSON-patch `test` operation did not match (422).
    #[error("{0}")]
    TestFailed(String),
    /// A path named by the patch does not exist in the document (422).
    #[error("{0}")]
    PathNotFound(String),
    /// Any other failure to apply a well-formed patch (422).
    #[error("{0}")]
    Unprocessable(String),
    /// More JSON-patch operations than kube-apiserver accepts (413).
    #[error("{0}")]
    TooManyOperations(String),
    /// The patch type is not supported for this kind (415).
    #[error("{0}")]
    Unsupported(String),
}

impl PatchError {
    /// The HTTP status code kube-apiserver answers with for this error.
    pub fn code(&self) -> u16 {
        match self {
            PatchError::InvalidPatch(_) => 400,
            PatchError::TestFailed(_)
            | PatchError::PathNotFound(_)
            | PatchError::Unprocessable(_) => 422,
            PatchError::TooManyOperations(_) => 413,
            PatchError::Unsupported(_) => 415,
        }
    }
}
