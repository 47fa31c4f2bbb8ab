//! Compaction: reads and watches below the compacted revision fail with
//! `Compacted`; at and above it they work; latest values are kept.
use storage::{Error, RangeRequest, WatchRequest};

use crate::support::{Ctx, assert_ended, events_through, next_error, value_of};

pub async fn compacted_reads_fail(ctx: &Ctx) {
    let v1 = ctx.create("k", "v1").await;
    let v2 = ctx.update(&v1, "v2").await;
    let v3 = ctx.update(&v2, "v3").await;
    ctx.store.compact(v2.mod_revision).await.expect("compact");
    assert_eq!(
        ctx.store
            .compacted_revision()
            .await
            .expect("compacted revision"),
        v2.mod_revision
    );

    match ctx.store.get(&v1.key, Some(v1.mod_revision)).await {
        Err(Error::Compacted { .. }) => {}
        other => panic!("expected Compacted, got {other:?}"),
    }
    match ctx
        .store
        .range(RangeRequest::prefix(ctx.key("")).at_revision(v1.mod_revision))
        .await
    {
        Err(Error::Compacted { .. }) => {}
        other => panic!("expected Compacted, got {other:?}"),
    }
    // The compacted revision itself is still readable.
    let at = ctx
        .store
        .get(&v1.key, Some(v2.mod_revision))
        .await
        .expect("get at compaction");
    assert_eq!(at.kv.as_ref(), Some(&v2));
    let range = ctx
        .store
        .range(RangeRequest::prefix(ctx.key("")).at_revision(v2.mod_revision))
        .await
        .expect("range at compaction");
    assert_eq!(range.kvs, vec![v2]);
    let latest = ctx.store.get(&v1.key, None).await.expect("get");
    assert_eq!(latest.kv, Some(v3));
}

pub async fn compacted_watch_fails(ctx: &Ctx) {
    let v1 = ctx.create("k", "v1").await;
    let v2 = ctx.update(&v1, "v2").await;
    let v3 = ctx.update(&v2, "v3").await;
    ctx.store.compact(v2.mod_revision).await.expect("compact");

    let mut old = ctx
        .store
        .watch(WatchRequest::prefix(ctx.key("")).from_revision(v1.mod_revision))
        .await
        .expect("watch");
    match next_error(&mut old).await {
        Error::Compacted { compact_revision } => assert_eq!(compact_revision, v2.mod_revision),
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert_ended(&mut old).await;

    // From the compacted revision on, history is still there.
    let mut ok = ctx
        .store
        .watch(WatchRequest::prefix(ctx.key("")).from_revision(v2.mod_revision))
        .await
        .expect("watch");
    let events = events_through(&mut ok, v3.mod_revision).await;
    let revs: Vec<_> = events.iter().map(|e| e.revision()).collect();
    assert_eq!(revs, vec![v2.mod_revision, v3.mod_revision]);
    assert_eq!(events[1].kv, v3);
    assert_eq!(events[1].prev_kv.as_ref(), Some(&v2));
}

pub async fn compact_rejects_bad_revisions(ctx: &Ctx) {
    let v1 = ctx.create("k", "v1").await;
    let v2 = ctx.update(&v1, "v2").await;
    let now = ctx.store.current_revision().await.expect("revision");
    match ctx.store.compact(now + 10).await {
        Err(Error::FutureRevision { .. }) => {}
        other => panic!("expected FutureRevision, got {other:?}"),
    }
    ctx.store.compact(v2.mod_revision).await.expect("compact");
    match ctx.store.compact(v1.mod_revision).await {
        Err(Error::Compacted { .. }) => {}
        other => panic!("expected Compacted for an older compaction, got {other:?}"),
    }
    assert_eq!(
        ctx.store
            .compacted_revision()
            .await
            .expect("compacted revision"),
        v2.mod_revision
    );
}

/// Compacting everything keeps each key's latest value and metadata, and
/// keys deleted before the compaction stay deleted.
pub async fn compaction_keeps_latest_values(ctx: &Ctx) {
    let a1 = ctx.create("a", "a1").await;
    let a2 = ctx.update(&a1, "a2").await;
    let b1 = ctx.create("b", "b1").await;
    ctx.store.delete(&b1.key, None).await.expect("delete");
    let c1 = ctx.create("c", "c1").await;
    let now = ctx.store.current_revision().await.expect("revision");
    ctx.store.compact(now).await.expect("compact");

    let all = ctx.store.range(ctx.all()).await.expect("range");
    assert_eq!(all.kvs, vec![a2.clone(), c1]);
    assert_eq!(ctx.store.get(&b1.key, None).await.expect("get").kv, None);
    let a3 = ctx.update(&a2, "a3").await;
    assert_eq!(a3.version, 3);
    assert_eq!(a3.create_revision, a1.create_revision);
    assert_eq!(
        value_of(&ctx.store.get(&a1.key, None).await.expect("get").kv),
        Some(&b"a3"[..])
    );
}
