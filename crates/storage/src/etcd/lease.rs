//! Leases: grant, one keep-alive round trip, revoke.

use std::time::Duration;

use etcd_client::LeaseGrantOptions;

use super::Inner;
use super::failure::Failure;
use super::retry::Idempotence;
use crate::{Error, Lease, LeaseId, Result};

impl Inner {
    /// etcd grants whole seconds: the TTL is rounded up, to at least 1 s.
    pub(super) async fn lease_grant(&self, ttl: Duration) -> Result<Lease> {
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let secs = i64::try_from(secs.max(1))
            .map_err(|_| Error::InvalidArgument(format!("lease TTL {ttl:?} is too long")))?;
        // Granting is not idempotent (each grant is a new lease), so only
        // refused attempts are resent.
        let resp = self
            .retry
            .run("lease_grant", Idempotence::NotIdempotent, || {
                let mut lease = self.lease.clone();
                async move { lease.grant(secs, Some(LeaseGrantOptions::new())).await }
            })
            .await
            .map_err(|f| f.into_error("lease_grant"))?;
        if !resp.error().is_empty() {
            return Err(Error::InvalidArgument(format!(
                "lease_grant: {}",
                resp.error()
            )));
        }
        Ok(Lease {
            id: resp.id(),
            ttl: Duration::from_secs(u64::try_from(resp.ttl()).unwrap_or(0)),
        })
    }

    /// One renewal. etcd answers a keep-alive for an unknown or expired
    /// lease with TTL 0 rather than an error; `etcd-client` turns that into
    /// its own error and drops the TTL, so the renewed TTL is read back with
    /// `TimeToLive` (the granted TTL, which is what a renewal restores).
    pub(super) async fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration> {
        self.retry
            .run("lease_keep_alive", Idempotence::Idempotent, || {
                let mut lease = self.lease.clone();
                async move { lease.keep_alive(id).await.map(drop) }
            })
            .await
            .map_err(|f| lease_error(f, id, "lease_keep_alive"))?;
        let resp = self
            .retry
            .run("lease_time_to_live", Idempotence::Idempotent, || {
                let mut lease = self.lease.clone();
                async move { lease.time_to_live(id, None).await }
            })
            .await
            .map_err(|f| lease_error(f, id, "lease_keep_alive"))?;
        // TTL -1: it expired in between the two calls.
        if resp.ttl() < 0 {
            return Err(Error::LeaseNotFound(id));
        }
        Ok(Duration::from_secs(
            u64::try_from(resp.granted_ttl()).unwrap_or(0),
        ))
    }

    pub(super) async fn lease_revoke(&self, id: LeaseId) -> Result<()> {
        let mut attempts = 0u32;
        let result = self
            .retry
            // Revoking twice leaves the same state: idempotent.
            .run("lease_revoke", Idempotence::Idempotent, || {
                attempts += 1;
                let mut lease = self.lease.clone();
                async move { lease.revoke(id).await }
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            // An earlier attempt whose answer was lost revoked it.
            Err(Failure::LeaseNotFound) if attempts > 1 => Ok(()),
            Err(f) => Err(lease_error(f, id, "lease_revoke")),
        }
    }
}

fn lease_error(failure: Failure, id: LeaseId, what: &str) -> Error {
    match failure {
        Failure::LeaseNotFound => Error::LeaseNotFound(id),
        other => other.into_error(what),
    }
}
