//! The storage conformance suite: every case runs against every engine.
//!
//! A case is an `async fn(&Ctx)` in the module of the capability it covers.
//! Add it to the `conformance!` list below and it runs once per engine
//! (`embedded::<case>` and `etcd::<case>`). Each case gets a fresh engine
//! and a unique key root; compare errors by variant, never by message.

mod support;

mod compaction;
mod crud;
mod leases;
mod range;
mod revisions;
mod watch;

macro_rules! conformance {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let ctx = crate::support::Ctx::embedded().await;
                    crate::$module::$case(&ctx).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(ctx) = crate::support::Ctx::etcd(stringify!($case)).await else {
                        return;
                    };
                    crate::$module::$case(&ctx).await;
                }
            )*
        }
    };
}

conformance! {
    crud::create_then_get,
    crud::create_existing_returns_current,
    crud::update_is_guarded_by_mod_revision,
    crud::delete_is_guarded_and_returns_prev,
    crud::recreate_starts_a_new_generation,
    crud::racing_guarded_updates_have_one_winner,
    crud::too_large_values_are_rejected,
    crud::empty_key_is_invalid,
    range::range_limit_more_and_count,
    range::range_keys_only_and_count_only,
    range::range_respects_bounds,
    range::range_pages_with_starting_after,
    range::range_paging_is_a_snapshot_under_writes,
    revisions::revisions_are_global_and_monotonic,
    revisions::concurrent_writes_get_distinct_revisions,
    revisions::reads_at_past_revisions,
    revisions::delete_range_is_atomic,
    watch::watch_reports_puts_and_deletes_with_prev_kv,
    watch::watch_without_start_sees_only_new_events,
    watch::watch_filters_to_its_range,
    watch::watch_orders_concurrent_writers,
    watch::watch_replays_from_every_revision,
    watch::watch_hand_off_under_writes,
    watch::watch_progress_on_idle,
    watch::watch_from_a_future_revision,
    watch::watch_many_overlapping_ranges,
    compaction::compacted_reads_fail,
    compaction::compacted_watch_fails,
    compaction::compact_rejects_bad_revisions,
    compaction::compaction_keeps_latest_values,
    leases::lease_expiry_deletes_keys,
    leases::lease_revoke_deletes_attached_keys,
    leases::lease_keep_alive_renews,
    leases::unknown_lease_is_rejected,
    leases::update_without_lease_detaches,
}
