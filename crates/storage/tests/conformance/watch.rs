//! Watches: ordering, prev_kv, range filtering, replay from any retained
//! revision with a gap-free hand-off to live events, and progress.
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use futures::StreamExt;
use storage::{EventKind, Revision, WatchRequest, WatchResponse, prefix_end};
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::support::{
    Ctx, EventSig, PROGRESS_INTERVAL, delete_sig, events_through, next_events, put_sig, sig,
};

pub async fn watch_reports_puts_and_deletes_with_prev_kv(ctx: &Ctx) {
    let (mut watch, _) = ctx.watch_from_now("").await;
    let v1 = ctx.create("a", "v1").await;
    let v2 = ctx.update(&v1, "v2").await;
    let del = ctx.store.delete(&v1.key, None).await.expect("delete");

    let events = events_through(&mut watch, del.revision).await;
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].kind, EventKind::Put);
    assert_eq!(events[0].kv, v1);
    assert_eq!(events[0].prev_kv, None, "a create has no previous value");
    assert_eq!(events[1].kind, EventKind::Put);
    assert_eq!(events[1].kv, v2);
    assert_eq!(events[1].prev_kv.as_ref(), Some(&v1));
    assert_eq!(events[2].kind, EventKind::Delete);
    assert_eq!(events[2].kv.key, v1.key);
    assert_eq!(events[2].kv.mod_revision, del.revision);
    assert!(events[2].kv.value.is_empty());
    assert_eq!(events[2].prev_kv.as_ref(), Some(&v2));
    assert_eq!(events[2].revision(), del.revision);
}

pub async fn watch_without_start_sees_only_new_events(ctx: &Ctx) {
    let old = ctx.create("w/old", "o").await;
    let mut watch = ctx
        .store
        .watch(WatchRequest::prefix(ctx.key("w/")))
        .await
        .expect("watch");
    // "No start revision" means after the revision current when `watch`
    // returned: a write made now must be seen.
    let new = ctx.create("w/new", "n").await;
    let events = next_events(&mut watch).await;
    assert_eq!(events[0].kv, new);
    assert!(events.iter().all(|e| e.kv.key != old.key));
}

pub async fn watch_filters_to_its_range(ctx: &Ctx) {
    let (mut watch, _) = ctx.watch_from_now("in/").await;
    ctx.create("in", "not under in/").await;
    ctx.create("in0", "not under in/").await;
    ctx.create("out/x", "no").await;
    let mine = ctx.create("in/x", "yes").await;
    let events = next_events(&mut watch).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kv, mine);

    // An explicit [start, end) range.
    let start = ctx.key("r/b");
    let end = ctx.key("r/d");
    let now = ctx.store.current_revision().await.expect("revision");
    let mut req = WatchRequest::prefix(start.clone()).from_revision(now + 1);
    req.end = Bytes::from(end);
    let mut ranged = ctx.store.watch(req).await.expect("watch");
    for k in ["r/a", "r/b", "r/c", "r/d", "r/e"] {
        ctx.create(k, k).await;
    }
    let last = ctx.create("r/bb", "bb").await;
    let events = events_through(&mut ranged, last.mod_revision).await;
    let keys: Vec<_> = events
        .iter()
        .map(|e| String::from_utf8_lossy(&e.kv.key[ctx.root.len()..]).into_owned())
        .collect();
    assert_eq!(keys, vec!["r/b", "r/c", "r/bb"]);
}

/// Many tasks write concurrently; one watch sees every acknowledged write
/// exactly once, in revision order, each key's versions in order.
pub async fn watch_orders_concurrent_writers(ctx: &Ctx) {
    const TASKS: usize = 8;
    const KEYS: usize = 10;
    let (mut watch, _) = ctx.watch_from_now("").await;
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let store = ctx.store.clone();
        let prefix = ctx.key(&format!("t{t}/"));
        handles.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..KEYS {
                let mut key = prefix.clone();
                key.extend_from_slice(format!("{i}").as_bytes());
                let created = store
                    .create(&key, Bytes::from(format!("c{i}")), None)
                    .await
                    .expect("create");
                let updated = store
                    .update(
                        &key,
                        Bytes::from(format!("u{i}")),
                        created.mod_revision,
                        None,
                    )
                    .await
                    .expect("update");
                acks.push(put_sig(&created, None));
                acks.push(put_sig(&updated, Some(&created)));
            }
            acks
        }));
    }
    let mut expected: BTreeMap<Revision, EventSig> = BTreeMap::new();
    for h in handles {
        for s in h.await.expect("task") {
            expected.insert(s.2, s);
        }
    }
    assert_eq!(expected.len(), TASKS * KEYS * 2);
    let last = *expected.keys().last().expect("writes");
    let events = events_through(&mut watch, last).await;
    let revisions: Vec<_> = events.iter().map(|e| e.revision()).collect();
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "events arrive in revision order, each once"
    );
    let got: Vec<EventSig> = events.iter().map(sig).collect();
    let want: Vec<EventSig> = expected.into_values().collect();
    assert_eq!(got, want);
}

/// Builds a history of puts, updates, deletes and a delete_range, then
/// watches from every revision in it: each start gives exactly the suffix,
/// then live events.
pub async fn watch_replays_from_every_revision(ctx: &Ctx) {
    let mut expected: Vec<EventSig> = Vec::new();
    let a1 = ctx.create("h/a", "a1").await;
    expected.push(put_sig(&a1, None));
    let b1 = ctx.create("h/b", "b1").await;
    expected.push(put_sig(&b1, None));
    let a2 = ctx.update(&a1, "a2").await;
    expected.push(put_sig(&a2, Some(&a1)));
    let c1 = ctx.create("h/c", "c1").await;
    expected.push(put_sig(&c1, None));
    let del = ctx.store.delete(&b1.key, None).await.expect("delete");
    expected.push(delete_sig(&b1, del.revision));
    let c2 = ctx.update(&c1, "c2").await;
    expected.push(put_sig(&c2, Some(&c1)));
    let b2 = ctx.create("h/b", "b2").await;
    expected.push(put_sig(&b2, None));
    let a3 = ctx.update(&a2, "a3").await;
    expected.push(put_sig(&a3, Some(&a2)));
    let prefix = ctx.key("h/");
    let dr = ctx
        .store
        .delete_range(&prefix, &prefix_end(&prefix))
        .await
        .expect("delete_range");
    assert_eq!(dr.deleted, 3);
    for prev in [&a3, &b2, &c2] {
        expected.push(delete_sig(prev, dr.revision));
    }
    let d1 = ctx.create("h/d", "d1").await;
    expected.push(put_sig(&d1, None));

    let first = a1.mod_revision;
    let last = d1.mod_revision;
    let mut watches = Vec::new();
    for start in first..=last + 1 {
        let w = ctx
            .store
            .watch(WatchRequest::prefix(prefix.clone()).from_revision(start))
            .await
            .expect("watch");
        watches.push((start, w));
    }
    let marker = ctx.create("h/marker", "m").await;
    for (start, mut w) in watches {
        let got: Vec<EventSig> = events_through(&mut w, marker.mod_revision)
            .await
            .iter()
            .map(sig)
            .collect();
        let mut want: Vec<EventSig> = expected.iter().filter(|e| e.2 >= start).cloned().collect();
        want.push(put_sig(&marker, None));
        assert_eq!(got, want, "watch from revision {start}");
    }
}

/// Watches opened from past revisions while a writer is running: the
/// switch from replay to live events must lose and repeat nothing.
pub async fn watch_hand_off_under_writes(ctx: &Ctx) {
    const WRITES: usize = 120;
    let (tx, mut acks) = mpsc::unbounded_channel();
    let store = ctx.store.clone();
    let keys: Vec<Vec<u8>> = (0..3).map(|i| ctx.key(&format!("x/{i}"))).collect();
    let writer = tokio::spawn(async move {
        let mut current = Vec::new();
        for key in &keys {
            let kv = store
                .create(key, Bytes::from_static(b"0"), None)
                .await
                .expect("create");
            let _ = tx.send(kv.mod_revision);
            current.push(kv);
        }
        for i in 0..WRITES {
            let slot = i % current.len();
            let kv = &current[slot];
            let next = store
                .update(&kv.key, Bytes::from(format!("{i}")), kv.mod_revision, None)
                .await
                .expect("update");
            let _ = tx.send(next.mod_revision);
            current[slot] = next;
        }
    });

    let mut acked = Vec::new();
    let mut watches = Vec::new();
    while let Some(rev) = acks.recv().await {
        acked.push(rev);
        if acked.len() % 10 == 0 {
            // Alternately from a few revisions back (replay, then live)
            // and from the next revision (live only).
            let start = if acked.len() % 20 == 0 {
                acked[acked.len() - 5]
            } else {
                rev + 1
            };
            let w = ctx
                .store
                .watch(WatchRequest::prefix(ctx.key("x/")).from_revision(start))
                .await
                .expect("watch");
            watches.push((start, w));
        }
    }
    writer.await.expect("writer");
    let last = *acked.last().expect("writes");
    assert!(watches.len() >= 10);
    for (start, mut w) in watches {
        let want: Vec<Revision> = acked.iter().copied().filter(|r| *r >= start).collect();
        if want.is_empty() {
            continue;
        }
        let got: Vec<Revision> = events_through(&mut w, last)
            .await
            .iter()
            .map(|e| e.revision())
            .collect();
        assert_eq!(got, want, "watch from {start}");
    }
}

/// An idle watch with progress notification hears the current revision.
pub async fn watch_progress_on_idle(ctx: &Ctx) {
    let kv = ctx.create("p/a", "v").await;
    let mut watch = ctx
        .store
        .watch(
            WatchRequest::prefix(ctx.key("p/"))
                .from_revision(kv.mod_revision + 1)
                .with_progress_notify(),
        )
        .await
        .expect("watch");
    let wait = PROGRESS_INTERVAL * 6;
    match timeout(wait, watch.next()).await {
        Ok(Some(Ok(WatchResponse::Progress { revision }))) => {
            assert!(revision >= kv.mod_revision);
        }
        Ok(Some(Ok(WatchResponse::Events(events)))) => panic!("idle watch got events: {events:?}"),
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no progress notification within {wait:?}"),
    }
    // Progress does not stand in for events: a write still arrives.
    let next = ctx.create("p/b", "v").await;
    let events = next_events(&mut watch).await;
    assert_eq!(events[0].kv, next);
    let seen: BTreeSet<_> = events.iter().map(|e| e.revision()).collect();
    assert_eq!(seen.len(), 1);
}

/// A start revision in the future waits for it: nothing earlier is sent.
pub async fn watch_from_a_future_revision(ctx: &Ctx) {
    let now = ctx.store.current_revision().await.expect("revision");
    let mut watch = ctx
        .store
        .watch(WatchRequest::prefix(ctx.key("f/")).from_revision(now + 3))
        .await
        .expect("watch");
    let mut written = Vec::new();
    for i in 0..4 {
        written.push(ctx.create(&format!("f/{i}"), "v").await);
    }
    let from = now + 3;
    let want: Vec<_> = written
        .iter()
        .filter(|kv| kv.mod_revision >= from)
        .map(|kv| kv.mod_revision)
        .collect();
    let last = written.last().expect("writes").mod_revision;
    let got: Vec<_> = events_through(&mut watch, last)
        .await
        .iter()
        .map(|e| e.revision())
        .collect();
    assert_eq!(got, want);
}

/// Many watches at once with nested, duplicate, non-`/`-boundary prefix,
/// single-key and arbitrary ranges, some starting in the future: each gets
/// exactly the events in its range, in order, every revision whole (a
/// delete_range's events in one message).
pub async fn watch_many_overlapping_ranges(ctx: &Ctx) {
    let now = ctx.store.current_revision().await.expect("revision");
    // (description, start, end, start revision)
    let mut specs: Vec<(String, Vec<u8>, Vec<u8>, Revision)> = Vec::new();
    let mut prefix = |p: &str, from: Revision| {
        let start = ctx.key(p);
        let end = prefix_end(&start).to_vec();
        specs.push((format!("prefix {p} from {from}"), start, end, from));
    };
    prefix("m/", now + 1);
    prefix("m/", now + 1);
    prefix("m/", now + 6);
    prefix("m/c1", now + 1); // also matches m/c1x/, m/c10/
    for c in ["c0", "c1", "c1x", "c10", "c2"] {
        prefix(&format!("m/{c}/"), now + 1);
        prefix(&format!("m/{c}/n0/"), now + 1);
    }
    prefix("m/c1/", now + 1);
    prefix("m/c2/n1/k", now + 4);
    specs.push((
        "key m/c2/n1/k0".into(),
        ctx.key("m/c2/n1/k0"),
        Vec::new(),
        now + 1,
    ));
    specs.push((
        "range [m/c1/n0/k1, m/c2/n0/k0)".into(),
        ctx.key("m/c1/n0/k1"),
        ctx.key("m/c2/n0/k0"),
        now + 1,
    ));
    specs.push((
        "range [m/c0/n1/, m/c10/)".into(),
        ctx.key("m/c0/n1/"),
        ctx.key("m/c10/"),
        now + 1,
    ));
    let mut watches = Vec::new();
    for (_, start, end, from) in &specs {
        let mut req = WatchRequest::prefix(Bytes::from(start.clone())).from_revision(*from);
        req.end = Bytes::from(end.clone());
        watches.push(ctx.store.watch(req).await.expect("watch"));
    }

    // Writes over every range, then updates, then a multi-key delete.
    let mut written: Vec<EventSig> = Vec::new();
    let mut current: BTreeMap<Bytes, storage::KeyValue> = BTreeMap::new();
    for c in ["c0", "c1", "c1x", "c10", "c2", "c3"] {
        for n in ["n0", "n1"] {
            for k in ["k0", "k1", "k2"] {
                let kv = ctx.create(&format!("m/{c}/{n}/{k}"), "v").await;
                written.push(put_sig(&kv, None));
                current.insert(kv.key.clone(), kv);
            }
        }
    }
    for suffix in ["m/c2/n1/k0", "m/c1/n0/k2", "m/c10/n1/k1"] {
        let key = Bytes::from(ctx.key(suffix));
        let old = current.get(&key).cloned().expect("written");
        let kv = ctx.update(&old, "v2").await;
        written.push(put_sig(&kv, Some(&old)));
        current.insert(key, kv);
    }
    let (start, end) = (ctx.key("m/c1/"), prefix_end(&ctx.key("m/c1/")));
    let deleted = ctx
        .store
        .delete_range(&start, &end)
        .await
        .expect("delete_range");
    assert_eq!(deleted.deleted, 6);
    for (key, kv) in current.range(Bytes::from(start)..Bytes::from(end.to_vec())) {
        assert!(key.starts_with(&ctx.key("m/c1/")));
        written.push(delete_sig(kv, deleted.revision));
    }

    for ((what, start, end, from), mut watch) in specs.iter().zip(watches) {
        let want: Vec<EventSig> = written
            .iter()
            .filter(|e| e.2 >= *from)
            .filter(|e| {
                if end.is_empty() {
                    e.1[..] == start[..]
                } else {
                    storage::in_range(&e.1, start, end)
                }
            })
            .cloned()
            .collect();
        assert!(!want.is_empty(), "{what}: the test writes into every range");
        let mut got: Vec<EventSig> = Vec::new();
        while got.len() < want.len() {
            let events = next_events(&mut watch).await;
            let first = events[0].revision();
            if let Some(prev) = got.last() {
                assert!(prev.2 < first, "{what}: a revision split over messages");
            }
            got.extend(events.iter().map(sig));
        }
        assert_eq!(got, want, "{what}");
    }
}
