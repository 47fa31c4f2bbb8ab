//! The etcd engine: a real etcd cluster through `etcd-client`.

use crate::{EtcdConfig, Result};

/// Placeholder until the engine lands; see issue 3.
pub struct EtcdStore {}

impl EtcdStore {
    pub async fn connect(config: &EtcdConfig) -> Result<Self> {
        Err(crate::Error::InvalidArgument(format!(
            "etcd engine not built yet ({:?})",
            config.endpoints
        )))
    }
}

crate::placeholder_store!(EtcdStore);
