//! Leases: grant, keep-alive, revoke and expiry (keys deleted in one
//! revision, seen by watchers); unknown leases are rejected.
use std::time::Duration;

use bytes::Bytes;
use storage::{Error, EventKind};

use crate::support::{Ctx, PROMPT, next_events};

pub async fn lease_expiry_deletes_keys(ctx: &Ctx) {
    let lease = ctx
        .store
        .lease_grant(Duration::from_secs(1))
        .await
        .expect("grant");
    assert!(lease.id != 0);
    assert!(lease.ttl >= Duration::from_secs(1));
    let a = ctx
        .store
        .create(&ctx.key("l/a"), Bytes::from_static(b"a"), Some(lease.id))
        .await
        .expect("create a");
    assert_eq!(a.lease, Some(lease.id));
    let b = ctx
        .store
        .create(&ctx.key("l/b"), Bytes::from_static(b"b"), Some(lease.id))
        .await
        .expect("create b");
    let keep = ctx.create("l/keep", "no lease").await;
    let (mut watch, _) = ctx.watch_from_now("l/").await;

    // Bounded wait for the timer: the TTL plus the engine's expiry latency.
    let events = tokio::time::timeout(lease.ttl + PROMPT, next_events(&mut watch))
        .await
        .expect("lease expired in time");
    assert_eq!(events.len(), 2, "both keys in one response");
    assert!(events.iter().all(|e| e.kind == EventKind::Delete));
    assert_eq!(events[0].revision(), events[1].revision(), "one revision");
    assert_eq!(events[0].prev_kv.as_ref(), Some(&a));
    assert_eq!(events[1].prev_kv.as_ref(), Some(&b));

    assert_eq!(ctx.store.get(&a.key, None).await.expect("get").kv, None);
    assert_eq!(ctx.store.get(&b.key, None).await.expect("get").kv, None);
    assert_eq!(
        ctx.store.get(&keep.key, None).await.expect("get").kv,
        Some(keep)
    );
    match ctx.store.lease_keep_alive(lease.id).await {
        Err(Error::LeaseNotFound(id)) => assert_eq!(id, lease.id),
        other => panic!("expected LeaseNotFound, got {other:?}"),
    }
}

pub async fn lease_revoke_deletes_attached_keys(ctx: &Ctx) {
    let lease = ctx
        .store
        .lease_grant(Duration::from_secs(60))
        .await
        .expect("grant");
    let mut attached = Vec::new();
    for k in ["r/a", "r/b", "r/c"] {
        attached.push(
            ctx.store
                .create(&ctx.key(k), Bytes::from_static(b"v"), Some(lease.id))
                .await
                .expect("create"),
        );
    }
    let free = ctx.create("r/free", "v").await;
    let (mut watch, _) = ctx.watch_from_now("r/").await;

    ctx.store.lease_revoke(lease.id).await.expect("revoke");
    let events = next_events(&mut watch).await;
    assert_eq!(events.len(), 3);
    for (ev, kv) in events.iter().zip(&attached) {
        assert_eq!(ev.kind, EventKind::Delete);
        assert_eq!(ev.kv.key, kv.key);
        assert_eq!(ev.revision(), events[0].revision());
        assert_eq!(ev.prev_kv.as_ref(), Some(kv));
    }
    let left = ctx.store.range(ctx.all()).await.expect("range");
    assert_eq!(left.kvs, vec![free]);

    match ctx.store.lease_revoke(lease.id).await {
        Err(Error::LeaseNotFound(_)) => {}
        other => panic!("expected LeaseNotFound, got {other:?}"),
    }
}

pub async fn lease_keep_alive_renews(ctx: &Ctx) {
    let lease = ctx
        .store
        .lease_grant(Duration::from_secs(30))
        .await
        .expect("grant");
    assert!(lease.ttl >= Duration::from_secs(30));
    let ttl = ctx
        .store
        .lease_keep_alive(lease.id)
        .await
        .expect("keep alive");
    assert_eq!(ttl, lease.ttl);
    let other = ctx
        .store
        .lease_grant(Duration::from_secs(30))
        .await
        .expect("grant");
    assert_ne!(other.id, lease.id, "lease ids are unique");
    ctx.store.lease_revoke(lease.id).await.expect("revoke");
    ctx.store.lease_revoke(other.id).await.expect("revoke");
}

pub async fn unknown_lease_is_rejected(ctx: &Ctx) {
    let lease = ctx
        .store
        .lease_grant(Duration::from_secs(60))
        .await
        .expect("grant");
    ctx.store.lease_revoke(lease.id).await.expect("revoke");
    match ctx
        .store
        .create(&ctx.key("k"), Bytes::from_static(b"v"), Some(lease.id))
        .await
    {
        Err(Error::LeaseNotFound(id)) => assert_eq!(id, lease.id),
        other => panic!("expected LeaseNotFound, got {other:?}"),
    }
    assert_eq!(
        ctx.store.get(&ctx.key("k"), None).await.expect("get").kv,
        None
    );
    let kv = ctx.create("k", "v").await;
    match ctx
        .store
        .update(
            &kv.key,
            Bytes::from_static(b"v2"),
            kv.mod_revision,
            Some(lease.id),
        )
        .await
    {
        Err(Error::LeaseNotFound(_)) => {}
        other => panic!("expected LeaseNotFound, got {other:?}"),
    }
    match ctx.store.lease_keep_alive(lease.id).await {
        Err(Error::LeaseNotFound(_)) => {}
        other => panic!("expected LeaseNotFound, got {other:?}"),
    }
}

/// An update without a lease detaches the key: revoking the old lease then
/// leaves it alone.
pub async fn update_without_lease_detaches(ctx: &Ctx) {
    let lease = ctx
        .store
        .lease_grant(Duration::from_secs(60))
        .await
        .expect("grant");
    let kv = ctx
        .store
        .create(&ctx.key("k"), Bytes::from_static(b"v1"), Some(lease.id))
        .await
        .expect("create");
    let updated = ctx.update(&kv, "v2").await;
    assert_eq!(updated.lease, None);
    ctx.store.lease_revoke(lease.id).await.expect("revoke");
    assert_eq!(
        ctx.store.get(&kv.key, None).await.expect("get").kv,
        Some(updated)
    );
}
