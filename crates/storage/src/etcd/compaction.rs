//! Compaction, and knowing the compacted revision.
//!
//! etcd 3.4 has no request that returns the compacted revision: `Status`
//! omits it and a compacted `Range` fails with text only. Only a watch
//! cancelled for compaction carries the number. So:
//!
//! - [`CompactionTracker`] remembers the highest compacted revision this
//!   client has seen: its own successful compactions and every watch
//!   cancellation. It is a lower bound; other clients (kube-apiserver,
//!   etcd's auto-compaction) may have compacted further.
//! - When the exact number is needed (`compacted_revision()`, or a read that
//!   failed as compacted), it is found from etcd itself: reads at revision
//!   `r` fail exactly when `r` is below the compacted revision, so the
//!   smallest readable revision is the compacted one. Starting at the
//!   tracker's bound, that is one count-only read when nobody else compacted
//!   and a binary search of about log2(current revision) reads otherwise
//!   (about 25 for 30 million revisions, a few milliseconds).
//!
//! The probe reads a key no one writes, so each one is tiny. The result is
//! exact at some instant during the call; compaction only moves forward, so
//! a later answer is never smaller.

use std::sync::atomic::{AtomicI64, Ordering};

use etcd_client::{CompactionOptions, GetOptions};

use super::Inner;
use super::failure::Failure;
use super::kv::PROBE_KEY;
use super::retry::Idempotence;
use crate::{Error, Result, Revision};

/// The highest revision this client knows history was compacted at.
#[derive(Debug, Default)]
pub(super) struct CompactionTracker {
    known: AtomicI64,
}

impl CompactionTracker {
    pub(super) fn note(&self, revision: Revision) {
        self.known.fetch_max(revision, Ordering::AcqRel);
    }

    pub(super) fn known(&self) -> Revision {
        self.known.load(Ordering::Acquire)
    }
}

impl Inner {
    /// Logical compaction: etcd marks the revision at once (reads below it
    /// fail immediately) and frees space in the background.
    pub(super) async fn compact(&self, revision: Revision) -> Result<()> {
        let mut attempts = 0u32;
        let result = self
            .retry
            // Compacting twice at one revision changes nothing: idempotent.
            .run("compact", Idempotence::Idempotent, || {
                attempts += 1;
                let mut kv = self.kv.clone();
                async move { kv.compact(revision, Some(CompactionOptions::new())).await }
            })
            .await;
        match result {
            Ok(_) => {
                self.compaction.note(revision);
                Ok(())
            }
            Err(Failure::Compacted) => {
                let compact_revision = self.compacted_revision_above(revision).await?;
                if attempts > 1 && compact_revision == revision {
                    // An earlier attempt whose answer was lost did it.
                    return Ok(());
                }
                Err(Error::Compacted { compact_revision })
            }
            Err(Failure::FutureRevision) => Err(Error::FutureRevision {
                requested: revision,
                current: self.current_revision().await?,
            }),
            Err(f) => Err(f.into_error("compact")),
        }
    }

    pub(super) async fn compacted_revision(&self) -> Result<Revision> {
        let known = self.compaction.known();
        if known == 0 && self.readable_at(1).await? {
            // Never compacted (or at revision 1, which discards nothing).
            return Ok(0);
        }
        self.compacted_revision_above(known.max(1)).await
    }

    /// The compacted revision, given that it is at least `lower`.
    pub(super) async fn compacted_revision_above(&self, lower: Revision) -> Result<Revision> {
        let mut lo = lower.max(self.compaction.known()).max(1);
        if self.readable_at(lo).await? {
            self.compaction.note(lo);
            return Ok(lo);
        }
        // Invariant: `lo` is compacted away, `hi` is readable (etcd never
        // compacts above its current revision).
        let mut hi = self.current_revision().await?;
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.readable_at(mid).await? {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        self.compaction.note(hi);
        Ok(hi)
    }

    /// Can history still be read at `revision`?
    async fn readable_at(&self, revision: Revision) -> Result<bool> {
        let result = self
            .retry
            .run("compaction probe", Idempotence::Idempotent, || {
                let mut kv = self.kv.clone();
                let options = GetOptions::new().with_count_only().with_revision(revision);
                async move { kv.get(PROBE_KEY, Some(options)).await }
            })
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(Failure::Compacted) => Ok(false),
            Err(f) => Err(f.into_error("reading the compacted revision")),
        }
    }
}
