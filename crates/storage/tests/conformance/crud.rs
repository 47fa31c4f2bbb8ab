//! Create, get, guarded update and delete: the single-key contract.
use std::sync::Arc;

use bytes::Bytes;
use storage::{Error, MAX_VALUE_BYTES};
use tokio::sync::Barrier;

use crate::support::{Ctx, value_of};

pub async fn create_then_get(ctx: &Ctx) {
    let key = ctx.key("a");
    let kv = ctx
        .store
        .create(&key, Bytes::from_static(b"v1"), None)
        .await
        .expect("create");
    assert_eq!(kv.version, 1);
    assert_eq!(kv.create_revision, kv.mod_revision);
    assert_eq!(kv.lease, None);
    assert_eq!(&kv.key[..], &key[..]);
    let got = ctx.store.get(&key, None).await.expect("get");
    assert_eq!(got.kv.as_ref(), Some(&kv));
    assert!(got.revision >= kv.mod_revision);
    let missing = ctx.store.get(&ctx.key("nope"), None).await.expect("get");
    assert_eq!(missing.kv, None);
}

pub async fn create_existing_returns_current(ctx: &Ctx) {
    let first = ctx.create("a", "v1").await;
    let updated = ctx.update(&first, "v2").await;
    match ctx
        .store
        .create(&first.key, Bytes::from_static(b"x"), None)
        .await
    {
        Err(Error::AlreadyExists { current }) => assert_eq!(*current, updated),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    // The failed create changed nothing.
    let got = ctx.store.get(&first.key, None).await.expect("get");
    assert_eq!(got.kv, Some(updated));
}

pub async fn update_is_guarded_by_mod_revision(ctx: &Ctx) {
    let v1 = ctx.create("a", "v1").await;
    let v2 = ctx.update(&v1, "v2").await;
    assert_eq!(v2.version, 2);
    assert_eq!(v2.create_revision, v1.create_revision);
    assert!(v2.mod_revision > v1.mod_revision);
    assert_eq!(&v2.value[..], b"v2");

    // A stale guard fails and reports the key as it is now.
    match ctx
        .store
        .update(&v1.key, Bytes::from_static(b"stale"), v1.mod_revision, None)
        .await
    {
        Err(Error::Conflict { current }) => assert_eq!(current.as_deref(), Some(&v2)),
        other => panic!("expected Conflict, got {other:?}"),
    }
    match ctx
        .store
        .update(&ctx.key("missing"), Bytes::from_static(b"x"), 1, None)
        .await
    {
        Err(Error::NotFound { key }) => assert_eq!(&key[..], &ctx.key("missing")[..]),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let got = ctx.store.get(&v1.key, None).await.expect("get");
    assert_eq!(got.kv, Some(v2));
}

pub async fn delete_is_guarded_and_returns_prev(ctx: &Ctx) {
    let v1 = ctx.create("a", "v1").await;
    let v2 = ctx.update(&v1, "v2").await;
    match ctx.store.delete(&v1.key, Some(v1.mod_revision)).await {
        Err(Error::Conflict { current }) => assert_eq!(current.as_deref(), Some(&v2)),
        other => panic!("expected Conflict, got {other:?}"),
    }
    let deleted = ctx
        .store
        .delete(&v1.key, Some(v2.mod_revision))
        .await
        .expect("guarded delete");
    assert_eq!(deleted.prev, v2);
    assert!(deleted.revision > v2.mod_revision);
    assert_eq!(ctx.store.get(&v1.key, None).await.expect("get").kv, None);

    // Unguarded delete of a missing key: NotFound. Guarded: the key is not
    // at the expected revision, a conflict with nothing current.
    match ctx.store.delete(&v1.key, None).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    match ctx.store.delete(&v1.key, Some(v2.mod_revision)).await {
        Err(Error::Conflict { current: None }) => {}
        other => panic!("expected Conflict without current, got {other:?}"),
    }

    let other = ctx.create("b", "b1").await;
    let deleted = ctx.store.delete(&other.key, None).await.expect("delete");
    assert_eq!(deleted.prev, other);
}

pub async fn recreate_starts_a_new_generation(ctx: &Ctx) {
    let v1 = ctx.create("a", "v1").await;
    let v2 = ctx.update(&v1, "v2").await;
    let del = ctx.store.delete(&v1.key, None).await.expect("delete");
    let again = ctx.create("a", "again").await;
    assert_eq!(again.version, 1);
    assert_eq!(again.create_revision, again.mod_revision);
    assert!(again.create_revision > del.revision);
    assert!(del.revision > v2.mod_revision);
}

/// Rounds of N tasks updating one key with the same guard: exactly one
/// wins each round, and every loser is told the winner's value.
pub async fn racing_guarded_updates_have_one_winner(ctx: &Ctx) {
    const TASKS: usize = 8;
    const ROUNDS: usize = 6;
    let mut current = ctx.create("hot", "0").await;
    let barrier = Arc::new(Barrier::new(TASKS));
    for round in 0..ROUNDS {
        let mut handles = Vec::new();
        for t in 0..TASKS {
            let store = ctx.store.clone();
            let key = current.key.clone();
            let guard = current.mod_revision;
            let barrier = barrier.clone();
            handles.push(tokio::spawn(async move {
                barrier.wait().await;
                let value = Bytes::from(format!("round{round}-task{t}"));
                store.update(&key, value, guard, None).await
            }));
        }
        let mut winners = Vec::new();
        let mut losers = Vec::new();
        for h in handles {
            match h.await.expect("task") {
                Ok(kv) => winners.push(kv),
                Err(Error::Conflict { current }) => losers.push(current),
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one winner");
        let winner = winners.remove(0);
        assert_eq!(winner.version, current.version + 1);
        assert!(winner.mod_revision > current.mod_revision);
        for loser in losers {
            assert_eq!(loser.as_deref(), Some(&winner), "losers see the winner");
        }
        current = winner;
    }
    let got = ctx.store.get(&current.key, None).await.expect("get");
    assert_eq!(got.kv, Some(current));
}

pub async fn too_large_values_are_rejected(ctx: &Ctx) {
    let big = Bytes::from(vec![7u8; MAX_VALUE_BYTES + 1]);
    match ctx.store.create(&ctx.key("big"), big.clone(), None).await {
        Err(Error::TooLarge { size, limit }) => {
            assert_eq!(size, MAX_VALUE_BYTES + 1);
            assert_eq!(limit, MAX_VALUE_BYTES);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // A large value under the limit round-trips.
    let ok = Bytes::from(vec![9u8; 1024 * 1024]);
    let kv = ctx
        .store
        .create(&ctx.key("big"), ok.clone(), None)
        .await
        .expect("1 MiB value");
    match ctx.store.update(&kv.key, big, kv.mod_revision, None).await {
        Err(Error::TooLarge { .. }) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let got = ctx.store.get(&kv.key, None).await.expect("get");
    assert_eq!(value_of(&got.kv), Some(&ok[..]));
}

pub async fn empty_key_is_invalid(ctx: &Ctx) {
    match ctx.store.create(b"", Bytes::from_static(b"v"), None).await {
        Err(Error::InvalidArgument(_)) => {}
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    match ctx.store.get(b"", None).await {
        Err(Error::InvalidArgument(_)) => {}
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}
