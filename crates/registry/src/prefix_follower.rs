//! Keeping in-memory state current from one key prefix: a storage watch
//! from the revision the state was loaded at, its events applied in order,
//! and after any failure (a compaction, a lost connection, an engine error)
//! a short pause, a full reload (nothing that happened in the gap can be
//! missed that way) and a new watch from the reloaded revision.
//!
//! The workspace index and the CRD index follow their prefixes this way;
//! each says only how to apply an event and how to reload.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use storage::{Event, Revision, Store, WatchRequest, WatchResponse};

/// Pause before reloading after a failed watch, so a storage outage is not
/// met with a tight reload loop.
const RETRY_AFTER: Duration = Duration::from_millis(500);

#[async_trait::async_trait]
pub trait PrefixFollower: Send + Sync + 'static {
    /// Names the follower in logs ("workspace", "CRD").
    const WHAT: &'static str;

    /// Applies one event, in revision order.
    async fn apply(this: &Arc<Self>, event: Event, store: &dyn Store);

    /// Reloads the whole state; returns the revision it reflects.
    async fn reload(this: &Arc<Self>, store: &dyn Store) -> Result<Revision, storage::Error>;
}

/// Follows `prefix` from after revision `from` for as long as the process
/// runs (one task).
pub fn spawn<F: PrefixFollower>(
    follower: Arc<F>,
    prefix: Vec<u8>,
    store: Arc<dyn Store>,
    mut from: Revision,
) {
    tokio::spawn(async move {
        loop {
            let req = WatchRequest::prefix(prefix.clone()).from_revision(from + 1);
            match store.watch(req).await {
                Ok(mut stream) => {
                    while let Some(item) = stream.next().await {
                        match item {
                            Ok(WatchResponse::Events(events)) => {
                                for ev in events {
                                    from = from.max(ev.revision());
                                    F::apply(&follower, ev, store.as_ref()).await;
                                }
                            }
                            Ok(WatchResponse::Progress { revision }) => from = from.max(revision),
                            Err(e) => {
                                tracing::warn!(error = %e, "{} watch failed; reloading", F::WHAT);
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "{} watch could not start", F::WHAT),
            }
            tokio::time::sleep(RETRY_AFTER).await;
            match F::reload(&follower, store.as_ref()).await {
                Ok(revision) => from = revision,
                Err(e) => tracing::warn!(error = %e, "{} reload failed", F::WHAT),
            }
        }
    });
}
