use std::time::Duration;

use crate::{KeyValue, LeaseId, Revision};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The one error type every engine returns. Callers match on the variant,
/// never on message text.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key not found: {}", String::from_utf8_lossy(key))]
    NotFound { key: bytes::Bytes },

    /// A create found the key present; `current` is what it holds.
    #[error("key already exists: {:?}", current)]
    AlreadyExists { current: Box<KeyValue> },

    /// A guarded update or delete found another `mod_revision`; `current` is
    /// the key as it is now (`None` if a guarded delete raced another delete).
    #[error("revision mismatch, key is now {:?}", current)]
    Conflict { current: Option<Box<KeyValue>> },

    /// The requested revision has been compacted away.
    #[error("revision has been compacted; oldest available is {compact_revision}")]
    Compacted { compact_revision: Revision },

    /// The requested revision is newer than the store's.
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },

    #[error("value of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },

    #[error("lease {0} not found")]
    LeaseNotFound(LeaseId),

    /// The engine cannot be reached now; retrying may succeed.
    #[error("storage unavailable: {message}")]
    Unavailable {
        message: String,
        retry_after: Option<Duration>,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// Data on disk or from the server is not what the engine wrote.
    #[error("storage corrupted: {0}")]
    Corrupted(String),

    /// An invalid argument (empty key, bad range, bad configuration).
    #[error("invalid storage request: {0}")]
    InvalidArgument(String),
}

impl Error {
    pub fn unavailable(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Unavailable {
            message: message.into(),
            retry_after: Some(Duration::from_secs(1)),
            source: Some(Box::new(source)),
        }
    }

    /// Worth retrying the same request later.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }
}
