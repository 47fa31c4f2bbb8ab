//! The embedded engine: one redb file in the data directory.

use crate::{EmbeddedConfig, Result};

/// Placeholder until the engine lands; see issue 3.
pub struct EmbeddedStore {}

impl EmbeddedStore {
    pub async fn open(config: &EmbeddedConfig) -> Result<Self> {
        Err(crate::Error::InvalidArgument(format!(
            "embedded engine not built yet ({})",
            config.data_dir.display()
        )))
    }
}

crate::placeholder_store!(EmbeddedStore);
