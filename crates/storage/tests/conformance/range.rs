//! Range reads: limit, `more`, `count`, keys-only, count-only, bounds,
//! paging, and consistent snapshots at a fixed revision.
use std::collections::BTreeMap;

use bytes::Bytes;
use storage::{RangeRequest, prefix_end};

use crate::support::Ctx;

async fn ten_keys(ctx: &Ctx) -> Vec<storage::KeyValue> {
    let mut kvs = Vec::new();
    // Created out of order: ranges must come back sorted by key.
    for i in [3, 7, 0, 9, 1, 5, 8, 2, 6, 4] {
        kvs.push(ctx.create(&format!("k/{i:02}"), &format!("v{i}")).await);
    }
    kvs.sort_by(|a, b| a.key.cmp(&b.key));
    kvs
}

pub async fn range_limit_more_and_count(ctx: &Ctx) {
    let all = ten_keys(ctx).await;
    let prefix = RangeRequest::prefix(ctx.key("k/"));

    let full = ctx.store.range(prefix.clone()).await.expect("range");
    assert_eq!(full.kvs, all);
    assert_eq!(full.count, 10);
    assert!(!full.more);

    let page = ctx
        .store
        .range(prefix.clone().limit(3))
        .await
        .expect("range");
    assert_eq!(page.kvs, all[..3].to_vec());
    assert_eq!(page.count, 10, "count ignores the limit");
    assert!(page.more);

    for limit in [10, 11, 100] {
        let r = ctx
            .store
            .range(prefix.clone().limit(limit))
            .await
            .expect("range");
        assert_eq!(r.kvs.len(), 10);
        assert!(!r.more, "limit {limit} returns everything");
    }
    let empty = ctx
        .store
        .range(RangeRequest::prefix(ctx.key("nothing/")))
        .await
        .expect("range");
    assert!(empty.kvs.is_empty() && empty.count == 0 && !empty.more);
}

pub async fn range_keys_only_and_count_only(ctx: &Ctx) {
    let all = ten_keys(ctx).await;
    let prefix = RangeRequest::prefix(ctx.key("k/"));

    let keys = ctx
        .store
        .range(prefix.clone().keys_only())
        .await
        .expect("range");
    assert_eq!(keys.kvs.len(), 10);
    for (got, want) in keys.kvs.iter().zip(&all) {
        assert_eq!(got.key, want.key);
        assert!(got.value.is_empty(), "keys_only has no values");
        assert_eq!(got.mod_revision, want.mod_revision);
        assert_eq!(got.create_revision, want.create_revision);
        assert_eq!(got.version, want.version);
    }

    let count = ctx
        .store
        .range(prefix.clone().count_only())
        .await
        .expect("range");
    assert!(count.kvs.is_empty());
    assert_eq!(count.count, 10);
    assert!(!count.more);

    let count = ctx
        .store
        .range(prefix.limit(2).count_only())
        .await
        .expect("range");
    assert!(count.kvs.is_empty());
    assert_eq!(count.count, 10);
}

pub async fn range_respects_bounds(ctx: &Ctx) {
    for k in ["a", "a/x", "a/y", "a0", "ab", "b", "c", "d"] {
        ctx.create(k, k).await;
    }
    let keys = |r: storage::RangeResponse| -> Vec<String> {
        r.kvs
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key[ctx.root.len()..]).into_owned())
            .collect()
    };
    let prefix = ctx
        .store
        .range(RangeRequest::prefix(ctx.key("a/")))
        .await
        .expect("range");
    assert_eq!(keys(prefix), vec!["a/x", "a/y"]);

    // [b, d): the start is inclusive, the end exclusive.
    let mut req = RangeRequest::prefix(ctx.key("b"));
    req.end = Bytes::from(ctx.key("d"));
    assert_eq!(
        keys(ctx.store.range(req).await.expect("range")),
        vec!["b", "c"]
    );

    let mut req = RangeRequest::prefix(ctx.key(""));
    req.end = prefix_end(&ctx.key("a"));
    assert_eq!(
        keys(ctx.store.range(req).await.expect("range")),
        vec!["a", "a/x", "a/y", "a0", "ab"]
    );
}

pub async fn range_pages_with_starting_after(ctx: &Ctx) {
    let all = ten_keys(ctx).await;
    let mut req = RangeRequest::prefix(ctx.key("k/")).limit(3);
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = ctx.store.range(req.clone()).await.expect("range");
        pages += 1;
        seen.extend(page.kvs.iter().cloned());
        if !page.more {
            break;
        }
        let last = page.kvs.last().expect("a page with more has keys");
        req = req.starting_after(&last.key).at_revision(page.revision);
    }
    assert_eq!(pages, 4);
    assert_eq!(seen, all);
}

/// Paging a prefix at the revision of the first page is a consistent
/// snapshot even while other tasks create, update and delete in it.
pub async fn range_paging_is_a_snapshot_under_writes(ctx: &Ctx) {
    let mut initial = BTreeMap::new();
    for i in 0..60 {
        let kv = ctx.create(&format!("p/{i:03}"), &format!("v{i}")).await;
        initial.insert(kv.key.clone(), kv);
    }
    let expected: Vec<_> = initial.values().cloned().collect();

    // The first page fixes the snapshot; the writer starts right after.
    let mut req = RangeRequest::prefix(ctx.key("p/")).limit(7);
    let first = ctx.store.range(req.clone()).await.expect("first page");
    let snapshot = first.revision;
    assert_eq!(first.count, 60);

    let store = ctx.store.clone();
    let keys: Vec<_> = initial.values().cloned().collect();
    let new_key = ctx.key("p/");
    let writer = tokio::spawn(async move {
        for (i, kv) in keys.iter().enumerate() {
            match i % 3 {
                0 => {
                    store
                        .update(
                            &kv.key,
                            Bytes::from_static(b"changed"),
                            kv.mod_revision,
                            None,
                        )
                        .await
                        .expect("update");
                }
                1 => {
                    store.delete(&kv.key, None).await.expect("delete");
                }
                _ => {
                    let mut k = new_key.clone();
                    k.extend_from_slice(format!("{i:03}-new").as_bytes());
                    store
                        .create(&k, Bytes::from_static(b"new"), None)
                        .await
                        .expect("create");
                }
            }
        }
    });

    let mut seen = first.kvs.clone();
    let mut more = first.more;
    let mut last_key = first.kvs.last().map(|kv| kv.key.clone());
    let mut pages_during_writes = 0;
    while more {
        if !writer.is_finished() {
            pages_during_writes += 1;
        }
        let after = last_key.clone().expect("a page with more has keys");
        req = req.starting_after(&after).at_revision(snapshot);
        let page = ctx.store.range(req.clone()).await.expect("page");
        assert_eq!(
            page.revision, snapshot,
            "each page is served at the snapshot"
        );
        assert_eq!(
            page.count + seen.len() as i64,
            first.count,
            "count is stable"
        );
        seen.extend(page.kvs.iter().cloned());
        more = page.more;
        last_key = page.kvs.last().map(|kv| kv.key.clone());
        // Let the writer's commits land between pages.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    writer.await.expect("writer");
    assert_eq!(seen, expected, "the pages are exactly the snapshot");
    assert!(pages_during_writes > 0, "some pages overlapped the writes");

    let now = ctx
        .store
        .range(RangeRequest::prefix(ctx.key("p/")))
        .await
        .expect("range");
    assert_eq!(now.count, 60, "20 deleted, 20 created");
    assert_ne!(now.kvs, expected);
}
