//! Consistent reads from the cache: an unset `resourceVersion` must see
//! every write acknowledged before the request, like a quorum read.
//!
//! Two ways to know the cache has caught up:
//! - Fence (engines whose watch delivery is trustworthy: the embedded one
//!   queues every event for its watchers under the lock that makes the
//!   write visible). A reader takes a ticket; the dispatcher then reads the
//!   store's revision, drains its storage watch until nothing is queued,
//!   and raises the cache revision to what it read. Many readers share one
//!   drain.
//! - Revision check (etcd, whose progress notifications before 3.4.31 may
//!   run ahead of undelivered events): read the current revision with a
//!   quorum read and serve from the cache only if it has applied that
//!   revision already; otherwise the caller reads storage.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

/// How long a reader waits for the dispatcher's drain before it reads
/// storage instead.
pub(crate) const FENCE_TIMEOUT: Duration = Duration::from_millis(500);

pub(crate) struct Fence {
    requested: AtomicU64,
    drained: watch::Sender<u64>,
    pub(crate) wake: Notify,
}

impl Fence {
    pub(crate) fn new() -> Self {
        Fence {
            requested: AtomicU64::new(0),
            drained: watch::Sender::new(0),
            wake: Notify::new(),
        }
    }

    /// Asks the dispatcher for a drain; the ticket it answers.
    pub(crate) fn ticket(&self) -> u64 {
        let t = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.wake.notify_one();
        t
    }

    /// The newest ticket, read by the dispatcher before it drains.
    pub(crate) fn pending(&self) -> u64 {
        self.requested.load(Ordering::SeqCst)
    }

    /// Marks every ticket up to `upto` answered.
    pub(crate) fn answered(&self, upto: u64) {
        self.drained.send_if_modified(|d| {
            if upto > *d {
                *d = upto;
                true
            } else {
                false
            }
        });
    }

    /// Waits until `ticket` is answered; false on timeout.
    pub(crate) async fn wait(&self, ticket: u64) -> bool {
        let mut rx = self.drained.subscribe();
        tokio::time::timeout(FENCE_TIMEOUT, rx.wait_for(|d| *d >= ticket))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}
