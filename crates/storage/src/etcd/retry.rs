//! Bounded retries with exponential backoff.
//!
//! Policy (the engine's only retry rules):
//! - Reads (get, range, current revision, compaction probes, keep-alive) are
//!   idempotent: any transient failure is retried.
//! - Writes, guarded or not, are resent only when etcd certainly did not
//!   apply them ([`Outcome::NotApplied`]: no connection was made, the member
//!   knows no leader, the apply queue is full; etcd's Go client has the same
//!   rule). When the outcome is unknown (connection lost mid-call, timeout,
//!   "leader changed") the write fails with [`crate::Error::Unavailable`]
//!   saying it may have been applied, and the caller re-reads. Reading the
//!   key back cannot settle it: a proposal the client gave up on can still
//!   commit after the read-back, so a resend could apply twice or report a
//!   conflict with its own first attempt.
//!
//! Every attempt is bounded by the request timeout, and no attempt starts
//! after the whole budget (also the request timeout) has run out, so a call
//! never takes much more than twice the configured timeout.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::failure::{Failure, Outcome};

/// Which failures a call may be repeated after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Idempotence {
    /// Safe to repeat whatever happened (reads).
    Idempotent,
    /// Repeat only what etcd certainly did not apply (writes).
    NotIdempotent,
}

#[derive(Clone, Debug)]
pub(super) struct RetryPolicy {
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Per attempt, and the time after which no new attempt starts.
    pub timeout: Duration,
}

impl RetryPolicy {
    pub(super) fn new(request_timeout: Duration) -> Self {
        RetryPolicy {
            attempts: 6,
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            timeout: request_timeout,
        }
    }

    /// Keeps trying until `budget` has passed, however many attempts that
    /// takes (waiting for etcd to come up).
    pub(super) fn until(budget: Duration) -> Self {
        RetryPolicy {
            attempts: u32::MAX,
            ..RetryPolicy::new(budget)
        }
    }

    /// The delay before attempt `n + 1` (n starts at 1).
    pub(super) fn backoff(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.first_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    /// Runs `call` until it succeeds, fails permanently, or the policy is
    /// exhausted; returns the last failure.
    pub(super) async fn run<T, F, Fut>(
        &self,
        what: &str,
        idempotence: Idempotence,
        mut call: F,
    ) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + self.timeout;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.once(what, call()).await {
                Ok(v) => return Ok(v),
                Err(f) => f,
            };
            let may_repeat = match idempotence {
                Idempotence::Idempotent => failure.is_transient(),
                Idempotence::NotIdempotent => {
                    failure.is_transient() && failure.outcome() == Outcome::NotApplied
                }
            };
            let pause = self.backoff(attempt);
            if !may_repeat || attempt >= self.attempts || Instant::now() + pause > deadline {
                return Err(failure);
            }
            tracing::debug!(
                what,
                attempt,
                ?pause,
                ?failure,
                "etcd call failed; retrying"
            );
            tokio::time::sleep(pause).await;
        }
    }

    /// One attempt, bounded by the request timeout. tonic's own per-request
    /// timeout does not cover waiting for a connection when every endpoint
    /// is down, so this outer bound is what guarantees an answer.
    pub(super) async fn once<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Failure::from(e)),
            Err(_) => Err(Failure::timed_out(what, self.timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::new(Duration::from_secs(10));
        assert_eq!(p.backoff(1), Duration::from_millis(50));
        assert_eq!(p.backoff(2), Duration::from_millis(100));
        assert_eq!(p.backoff(5), Duration::from_millis(800));
        assert_eq!(p.backoff(6), Duration::from_secs(1));
        assert_eq!(p.backoff(60), Duration::from_secs(1));
    }
}
