//! The global revision: shared by all keys, monotonic, one per write (one
//! for a whole delete_range), and reads at past revisions.
use std::collections::BTreeSet;

use bytes::Bytes;
use storage::{Error, EventKind, RangeRequest, prefix_end};

use crate::support::{Ctx, next_events, value_of};

pub async fn revisions_are_global_and_monotonic(ctx: &Ctx) {
    let before = ctx.store.current_revision().await.expect("revision");
    let a1 = ctx.create("a", "1").await;
    let b1 = ctx.create("b", "1").await;
    let a2 = ctx.update(&a1, "2").await;
    let del = ctx.store.delete(&b1.key, None).await.expect("delete");
    assert!(before < a1.mod_revision);
    assert!(a1.mod_revision < b1.mod_revision);
    assert!(b1.mod_revision < a2.mod_revision);
    assert!(a2.mod_revision < del.revision);
    assert_eq!(a2.create_revision, a1.mod_revision);
    let now = ctx.store.current_revision().await.expect("revision");
    assert!(now >= del.revision);
    let got = ctx.store.get(&a1.key, None).await.expect("get");
    assert!(
        got.revision >= del.revision,
        "reads are served at the latest revision"
    );
}

pub async fn concurrent_writes_get_distinct_revisions(ctx: &Ctx) {
    const TASKS: usize = 8;
    const PER_TASK: usize = 20;
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let store = ctx.store.clone();
        let prefix = ctx.key(&format!("t{t}/"));
        handles.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..PER_TASK {
                let mut key = prefix.clone();
                key.extend_from_slice(format!("{i}").as_bytes());
                let kv = store
                    .create(&key, Bytes::from_static(b"v"), None)
                    .await
                    .expect("create");
                revs.push(kv.mod_revision);
            }
            revs
        }));
    }
    let mut all = BTreeSet::new();
    for h in handles {
        let revs = h.await.expect("task");
        assert!(
            revs.windows(2).all(|w| w[0] < w[1]),
            "a task's writes are ordered"
        );
        all.extend(revs);
    }
    assert_eq!(
        all.len(),
        TASKS * PER_TASK,
        "no two writes share a revision"
    );
    let now = ctx.store.current_revision().await.expect("revision");
    assert!(all.last().is_some_and(|last| *last <= now));
}

pub async fn reads_at_past_revisions(ctx: &Ctx) {
    let v1 = ctx.create("k", "v1").await;
    let other = ctx.create("other", "o").await;
    let v2 = ctx.update(&v1, "v2").await;
    let del = ctx.store.delete(&v1.key, None).await.expect("delete");
    let v3 = ctx.create("k", "v3").await;

    let at = |rev| ctx.store.get(&v1.key, Some(rev));
    let r = at(v1.mod_revision).await.expect("get");
    assert_eq!(r.kv.as_ref(), Some(&v1));
    assert_eq!(
        r.revision, v1.mod_revision,
        "served at the requested revision"
    );
    assert_eq!(
        at(other.mod_revision).await.expect("get").kv.as_ref(),
        Some(&v1)
    );
    assert_eq!(
        at(v2.mod_revision).await.expect("get").kv.as_ref(),
        Some(&v2)
    );
    assert_eq!(at(del.revision).await.expect("get").kv, None);
    assert_eq!(
        at(v3.mod_revision).await.expect("get").kv.as_ref(),
        Some(&v3)
    );
    assert_eq!(
        at(v1.mod_revision - 1).await.expect("get").kv,
        None,
        "before its creation the key does not exist"
    );

    // A range at a past revision sees that snapshot.
    let range = ctx
        .store
        .range(RangeRequest::prefix(ctx.key("")).at_revision(v2.mod_revision))
        .await
        .expect("range");
    assert_eq!(range.kvs, vec![v2.clone(), other.clone()]);
    assert_eq!(range.revision, v2.mod_revision);
    let range = ctx
        .store
        .range(RangeRequest::prefix(ctx.key("")).at_revision(del.revision))
        .await
        .expect("range");
    assert_eq!(range.kvs, vec![other]);

    let now = ctx.store.current_revision().await.expect("revision");
    match ctx.store.get(&v1.key, Some(now + 100)).await {
        Err(Error::FutureRevision { .. }) => {}
        other => panic!("expected FutureRevision, got {other:?}"),
    }
    match ctx
        .store
        .range(RangeRequest::prefix(ctx.key("")).at_revision(now + 100))
        .await
    {
        Err(Error::FutureRevision { .. }) => {}
        other => panic!("expected FutureRevision, got {other:?}"),
    }
    assert_eq!(
        value_of(&ctx.store.get(&v1.key, None).await.expect("get").kv),
        Some(&b"v3"[..])
    );
}

/// delete_range removes every key in the range in one revision, and a
/// watcher gets all those deletions in one response.
pub async fn delete_range_is_atomic(ctx: &Ctx) {
    let mut kvs = Vec::new();
    for i in 0..6 {
        kvs.push(ctx.create(&format!("d/{i}"), &format!("v{i}")).await);
    }
    let outside = ctx.create("e", "stays").await;
    let (mut watch, _) = ctx.watch_from_now("").await;

    let prefix = ctx.key("d/");
    let resp = ctx
        .store
        .delete_range(&prefix, &prefix_end(&prefix))
        .await
        .expect("delete_range");
    assert_eq!(resp.deleted, 6);

    let events = next_events(&mut watch).await;
    assert_eq!(events.len(), 6, "all deletions in one response");
    for (ev, kv) in events.iter().zip(&kvs) {
        assert_eq!(ev.kind, EventKind::Delete);
        assert_eq!(ev.kv.key, kv.key);
        assert_eq!(ev.kv.mod_revision, resp.revision, "one revision for all");
        assert!(ev.kv.value.is_empty());
        assert_eq!(ev.prev_kv.as_ref(), Some(kv));
    }

    let before = ctx
        .store
        .range(RangeRequest::prefix(prefix.clone()).at_revision(resp.revision - 1))
        .await
        .expect("range before");
    assert_eq!(before.kvs, kvs);
    let after = ctx
        .store
        .range(RangeRequest::prefix(prefix.clone()))
        .await
        .expect("range after");
    assert_eq!(after.count, 0);
    assert_eq!(
        ctx.store.get(&outside.key, None).await.expect("get").kv,
        Some(outside)
    );

    // Nothing to delete: no new revision, the current one is reported.
    let now = ctx.store.current_revision().await.expect("revision");
    let none = ctx
        .store
        .delete_range(&prefix, &prefix_end(&prefix))
        .await
        .expect("empty delete_range");
    assert_eq!(none.deleted, 0);
    assert!(none.revision >= now);
    assert_eq!(
        ctx.store.current_revision().await.expect("revision"),
        none.revision
    );

    // The watch saw nothing else.
    let marker = ctx.create("marker", "m").await;
    let events = next_events(&mut watch).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kv, marker);
}
