//! Which replica sweeps a terminating workspace.
//!
//! Every replica on one store runs a deletion worker and every one of them
//! hears about every deletion. Sweeping twice is safe (each step is
//! idempotent) but wasteful, so a worker first claims the cluster: it
//! creates `<claims prefix><cluster-id>` (create-if-absent) attached to a
//! storage lease it keeps alive while it works. The loser waits and looks
//! again later. A replica that dies stops renewing; the storage expires
//! the lease, which deletes the claim, and another replica takes over from
//! the persisted progress.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use storage::{LeaseId, Store};

use crate::cluster::ClusterId;
use crate::keys::DeletionPrefix;

/// How long a claim outlives a replica that stopped renewing it.
pub const CLAIM_TTL: Duration = Duration::from_secs(15);

/// Claims of one replica.
pub struct Claims {
    store: Arc<dyn Store>,
    prefix: DeletionPrefix,
    /// This replica, as written into its claims (for operators reading them).
    holder: Bytes,
    ttl: Duration,
}

/// A held claim: renewed in the background until dropped, then released
/// (the lease is revoked, which deletes the claim key).
pub struct Claim {
    store: Arc<dyn Store>,
    lease: LeaseId,
    renew: tokio::task::JoinHandle<()>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.renew.abort();
        let (store, lease) = (self.store.clone(), self.lease);
        // Best effort: if this fails the claim still expires with its lease.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = store.lease_revoke(lease).await;
            });
        }
    }
}

impl Claims {
    pub fn new(store: Arc<dyn Store>, prefix: DeletionPrefix, ttl: Duration) -> Self {
        Claims {
            store,
            prefix,
            holder: Bytes::from(uuid::Uuid::new_v4().to_string()),
            ttl,
        }
    }

    /// Claims `cluster` for this replica; `None` when another replica
    /// holds it.
    pub async fn try_claim(&self, cluster: &ClusterId) -> Result<Option<Claim>, storage::Error> {
        let lease = self.store.lease_grant(self.ttl).await?;
        let key = self.prefix.key(cluster);
        match self
            .store
            .create(&key, self.holder.clone(), Some(lease.id))
            .await
        {
            Ok(_) => {
                let (store, ttl) = (self.store.clone(), lease.ttl.max(Duration::from_secs(1)));
                let renew = tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(ttl / 3).await;
                        if let Err(e) = store.lease_keep_alive(lease.id).await {
                            // The claim may lapse; another replica may then
                            // sweep too, which is safe.
                            tracing::warn!(lease = lease.id, error = %e, "renewing a workspace deletion claim failed");
                        }
                    }
                });
                Ok(Some(Claim {
                    store: self.store.clone(),
                    lease: lease.id,
                    renew,
                }))
            }
            Err(storage::Error::AlreadyExists { .. }) => {
                let _ = self.store.lease_revoke(lease.id).await;
                Ok(None)
            }
            Err(e) => {
                let _ = self.store.lease_revoke(lease.id).await;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyRoot;
    use storage::EmbeddedConfig;
    use storage::embedded::EmbeddedStore;

    /// Two replicas on one store: one claim at a time; a released claim is
    /// free at once; a claim whose holder stopped renewing (a crashed
    /// replica) is free once its lease expires.
    #[tokio::test]
    async fn one_replica_at_a_time_and_takeover_after_expiry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(
            EmbeddedStore::open(&EmbeddedConfig::new(dir.path()))
                .await
                .expect("open"),
        );
        let prefix = KeyRoot::default().workspace_deletion_claims();
        let ttl = Duration::from_secs(1);
        let a = Claims::new(store.clone(), prefix.clone(), ttl);
        let b = Claims::new(store.clone(), prefix.clone(), ttl);
        let id = ClusterId::parse("c1aim0000000test").expect("id");

        let held = a.try_claim(&id).await.expect("claim").expect("free");
        assert!(b.try_claim(&id).await.expect("claim").is_none());
        // Renewed past several TTLs: still held.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(b.try_claim(&id).await.expect("claim").is_none());
        drop(held);
        let mut taken = None;
        for _ in 0..50 {
            if let Some(c) = b.try_claim(&id).await.expect("claim") {
                taken = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let taken = taken.expect("released claim is free");
        assert!(a.try_claim(&id).await.expect("claim").is_none());

        // A holder that stops renewing without releasing (crash).
        taken.renew.abort();
        std::mem::forget(taken);
        let started = std::time::Instant::now();
        loop {
            if a.try_claim(&id).await.expect("claim").is_some() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "an abandoned claim never expired"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(started.elapsed() >= Duration::from_millis(500));
    }
}
