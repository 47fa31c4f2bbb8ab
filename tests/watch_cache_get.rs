//! End-to-end tests of GET with a `resourceVersion`, on the real binary
//! over real HTTP, embedded and etcd, with the watch cache on (the
//! default) and switched off (`--watch-cache=false`, every read from
//! storage). Upstream's rules: unset reads the latest state, `0` any state
//! (the cache), `N` a state at least as new as N (504 `Timeout` with cause
//! `ResourceVersionTooLarge` when N does not arrive), anything else 400.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use wsgate_e2e::{Engine, Server, etcd_or_skip};

const CM: &str = "/api/v1/namespaces/default/configmaps";

/// A raw request with a JSON body; the status and the parsed body.
fn call(server: &Server, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
    let bytes = body.map(|b| b.to_string().into_bytes());
    let r = server.request(
        method,
        path,
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
        ],
        bytes.as_deref(),
    )?;
    let v = serde_json::from_slice(&r.body)
        .with_context(|| format!("{method} {path}: not JSON: {}", r.text()))?;
    Ok((r.status, v))
}

fn rv_of(obj: &Value) -> Result<i64> {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no resourceVersion in {obj}"))
}

/// Servers on every engine available, with the watch cache on or off.
fn servers(test: &str, cache: bool) -> Result<Vec<(String, Server)>> {
    let args: &[&str] = if cache { &[] } else { &["--watch-cache=false"] };
    let mut out = vec![(
        format!("embedded, cache {cache}"),
        Server::start_with(Engine::Embedded, args)?,
    )];
    if let Some(etcd) = etcd_or_skip(test) {
        out.push((
            format!("etcd, cache {cache}"),
            Server::start_with(Engine::Etcd(etcd), args)?,
        ));
    }
    Ok(out)
}

/// Every behaviour of GET with a resourceVersion on one server.
fn check_get_semantics(what: &str, server: &Server, cache: bool) -> Result<()> {
    server.create_workspace("ws-a")?;
    server.create_workspace("ws-b")?;
    let a = format!("/clusters/ws-a{CM}");
    let b = format!("/clusters/ws-b{CM}");

    // The same name and namespace in two workspaces: each GET (rv=0, so
    // from the cache when it is on) returns its own workspace's object.
    for (base, owner) in [(&a, "a"), (&b, "b")] {
        let (code, body) = call(
            server,
            "POST",
            base,
            Some(json!({"metadata": {"name": "same"}, "data": {"owner": owner}})),
        )?;
        ensure!(code == 201, "{what}: create in {owner}: {code} {body}");
    }
    for (base, owner) in [(&a, "a"), (&b, "b")] {
        let (code, body) = call(
            server,
            "GET",
            &format!("{base}/same?resourceVersion=0"),
            None,
        )?;
        ensure!(code == 200, "{what}: GET rv=0 in {owner}: {code} {body}");
        ensure!(
            body["data"]["owner"] == owner,
            "{what}: workspace {owner} read {body}"
        );
        ensure!(body["metadata"]["name"] == "same", "{what}: {body}");
        rv_of(&body)?;
    }

    // Write, then GET at the written revision: always that write or newer,
    // never an older state (the cache is caught up or storage answers).
    let (code, created) = call(
        server,
        "POST",
        &a,
        Some(json!({"metadata": {"name": "counter"}, "data": {"n": "0"}})),
    )?;
    ensure!(code == 201, "{what}: create counter: {code} {created}");
    let mut slowest = Duration::ZERO;
    for i in 1..=60 {
        let r = server.request(
            "PATCH",
            &format!("{a}/counter"),
            &[("Content-Type", "application/merge-patch+json")],
            Some(json!({"data": {"n": i.to_string()}}).to_string().as_bytes()),
        )?;
        let code = r.status;
        let written: Value = serde_json::from_slice(&r.body)
            .with_context(|| format!("{what}: patch {i}: {}", r.text()))?;
        ensure!(code == 200, "{what}: patch {i}: {code} {written}");
        let rv = rv_of(&written)?;
        let started = Instant::now();
        let (code, got) = call(
            server,
            "GET",
            &format!("{a}/counter?resourceVersion={rv}"),
            None,
        )?;
        slowest = slowest.max(started.elapsed());
        ensure!(code == 200, "{what}: GET rv={rv}: {code} {got}");
        ensure!(
            got["data"]["n"].as_str() == Some(i.to_string().as_str()),
            "{what}: GET rv={rv} after write {i} returned a stale object: {got}"
        );
        ensure!(rv_of(&got)? >= rv, "{what}: {got} older than {rv}");
        // And the same from the other workspace's cache key range: its
        // own object, not this one.
        let (code, other) = call(
            server,
            "GET",
            &format!("{b}/same?resourceVersion={rv}"),
            None,
        )?;
        ensure!(
            code == 200 && other["data"]["owner"] == "b",
            "{what}: {code} {other}"
        );
    }
    println!("{what}: slowest GET at a just-written resourceVersion: {slowest:?}");

    // Unset: the latest; rv=0: some version of the object.
    let (code, latest) = call(server, "GET", &format!("{a}/counter"), None)?;
    ensure!(
        code == 200 && latest["data"]["n"] == "60",
        "{what}: {latest}"
    );
    let (code, any) = call(
        server,
        "GET",
        &format!("{a}/counter?resourceVersion=0"),
        None,
    )?;
    ensure!(
        code == 200 && any["metadata"]["name"] == "counter",
        "{what}: {code} {any}"
    );

    // Far in the future: upstream's 504 Timeout, cause ResourceVersionTooLarge.
    let future = rv_of(&latest)? + 1_000_000;
    let started = Instant::now();
    let (code, st) = call(
        server,
        "GET",
        &format!("{a}/counter?resourceVersion={future}"),
        None,
    )?;
    println!(
        "{what}: GET at a future resourceVersion answered after {:?}",
        started.elapsed()
    );
    ensure!(code == 504, "{what}: future rv: {code} {st}");
    ensure!(
        st["kind"] == "Status" && st["reason"] == "Timeout" && st["code"] == 504,
        "{what}: {st}"
    );
    ensure!(
        st["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge",
        "{what}: {st}"
    );
    let msg = st["message"].as_str().unwrap_or_default();
    ensure!(
        msg.starts_with(&format!("Too large resource version: {future}, current: ")),
        "{what}: {msg}"
    );

    // Not a revision: 400 BadRequest.
    for bad in ["abc", "-1", "1e3", "99999999999999999999"] {
        let (code, st) = call(
            server,
            "GET",
            &format!("{a}/counter?resourceVersion={bad}"),
            None,
        )?;
        ensure!(
            code == 400 && st["reason"] == "BadRequest" && st["kind"] == "Status",
            "{what}: rv={bad}: {code} {st}"
        );
    }

    // A missing object: the same 404 Status from the cache and storage.
    let (code, from_storage) = call(server, "GET", &format!("{a}/missing"), None)?;
    ensure!(code == 404, "{what}: {code} {from_storage}");
    ensure!(
        from_storage["reason"] == "NotFound"
            && from_storage["message"] == "configmaps \"missing\" not found"
            && from_storage["details"]["name"] == "missing"
            && from_storage["details"]["kind"] == "configmaps",
        "{what}: {from_storage}"
    );
    for rv in ["0".to_owned(), rv_of(&latest)?.to_string()] {
        let (code, st) = call(
            server,
            "GET",
            &format!("{a}/missing?resourceVersion={rv}"),
            None,
        )?;
        ensure!(code == 404, "{what}: rv={rv}: {code} {st}");
        ensure!(
            st == from_storage,
            "{what}: rv={rv}: {st} differs from {from_storage}"
        );
    }
    // Another workspace's object is missing here, whatever the rv.
    let (code, st) = call(
        server,
        "GET",
        &format!("/clusters/ws-b{CM}/counter?resourceVersion=0"),
        None,
    )?;
    ensure!(
        code == 404 && st["reason"] == "NotFound",
        "{what}: {code} {st}"
    );

    // A custom resource read through its non-storage version: the cache
    // holds the stored (v1) bytes, the answer is still converted.
    check_conversion(what, server, cache)?;

    // Implicit objects (never stored) at rv=0 equal the latest read.
    for path in [
        "/api/v1/namespaces/default".to_owned(),
        "/api/v1/namespaces/default/services/kubernetes".to_owned(),
        "/api/v1/namespaces/default/serviceaccounts/default".to_owned(),
    ] {
        let full = format!("/clusters/ws-b{path}");
        let (code, latest) = call(server, "GET", &full, None)?;
        ensure!(code == 200, "{what}: {full}: {code} {latest}");
        let (code, any) = call(server, "GET", &format!("{full}?resourceVersion=0"), None)?;
        ensure!(code == 200, "{what}: {full}?rv=0: {code} {any}");
        ensure!(any == latest, "{what}: {full}: {any} != {latest}");
    }
    Ok(())
}

/// A two-version CRD (v1 stored, v1beta1 served too): GET at rv=0 and
/// rv=N through v1beta1 answers v1beta1, like the storage read.
fn check_conversion(what: &str, server: &Server, cache: bool) -> Result<()> {
    let schema = json!({"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}});
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {"name": "v1beta1", "served": true, "storage": false, "schema": schema},
                {"name": "v1", "served": true, "storage": true, "schema": schema},
            ],
        },
    });
    let (code, body) = call(
        server,
        "POST",
        "/clusters/ws-a/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        Some(crd),
    )?;
    ensure!(code == 201, "{what}: CRD: {code} {body}");
    let base = "/clusters/ws-a/apis/example.com";
    let deadline = Instant::now() + Duration::from_secs(30);
    let created = loop {
        let (code, body) = call(
            server,
            "POST",
            &format!("{base}/v1/namespaces/default/widgets"),
            Some(json!({"apiVersion": "example.com/v1", "kind": "Widget",
                        "metadata": {"name": "w"}, "spec": {"size": 3}})),
        )?;
        if code == 201 {
            break body;
        }
        if Instant::now() > deadline {
            bail!("{what}: widget: {code} {body}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let rv = rv_of(&created)?;
    let path = format!("{base}/v1beta1/namespaces/default/widgets/w");
    let (code, latest) = call(server, "GET", &path, None)?;
    ensure!(code == 200, "{what}: {code} {latest}");
    for q in ["0".to_owned(), rv.to_string()] {
        let (code, got) = call(server, "GET", &format!("{path}?resourceVersion={q}"), None)?;
        ensure!(code == 200, "{what}: rv={q}: {code} {got}");
        ensure!(
            got["apiVersion"] == "example.com/v1beta1" && got["spec"]["size"] == 3,
            "{what}: rv={q}: not converted: {got}"
        );
        ensure!(got == latest, "{what}: rv={q}: {got} != {latest}");
    }
    // The first rv=0 read started the widgets cache (and was answered by
    // storage while it loaded); once loaded, the cache answers, converted.
    std::thread::sleep(Duration::from_millis(500));
    let before = storage_gets(server)?;
    for _ in 0..10 {
        let (code, got) = call(server, "GET", &format!("{path}?resourceVersion=0"), None)?;
        ensure!(
            code == 200 && got == latest,
            "{what}: from the cache: {code} {got}"
        );
    }
    let gets = storage_gets(server)? - before;
    ensure!(
        if cache { gets < 10 } else { gets >= 10 },
        "{what}: 10 converted GETs at rv=0 read storage {gets} times"
    );
    Ok(())
}

/// Storage reads of single keys so far (`wsgate_storage_operations_total`
/// with `op="get"`, every result).
fn storage_gets(server: &Server) -> Result<u64> {
    let text = server.request("GET", "/metrics", &[], None)?.text();
    Ok(text
        .lines()
        .filter(|l| l.starts_with("wsgate_storage_operations_total{op=\"get\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum())
}

/// How many storage gets 20 GETs of an existing object at rv=0 cost.
fn storage_gets_of_rv0_reads(server: &Server) -> Result<u64> {
    let path = format!("/clusters/ws-a{CM}/counter?resourceVersion=0");
    let before = storage_gets(server)?;
    for _ in 0..20 {
        let (code, body) = call(server, "GET", &path, None)?;
        ensure!(code == 200, "{code} {body}");
    }
    Ok(storage_gets(server)? - before)
}

/// Whether `/metrics` shows a watch cache for configmaps, read once the
/// gauges have been refreshed after every read above (a workspace created
/// now must show in the workspace gauge first).
fn configmaps_cache_in_metrics(server: &Server) -> Result<bool> {
    server.create_workspace("ws-last")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = server.request("GET", "/metrics", &[], None)?;
        let text = r.text();
        // root, ws-a, ws-b, ws-last
        if text.contains("wsgate_workspaces{phase=\"Ready\"} 4") {
            return Ok(
                text.contains("wsgate_watch_cache_objects{group=\"\",resource=\"configmaps\"}")
            );
        }
        if Instant::now() > deadline {
            bail!("the workspace gauge never showed 4 Ready workspaces:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn get_with_resource_version_from_the_watch_cache() -> Result<()> {
    for (what, server) in servers("get_with_resource_version_from_the_watch_cache", true)? {
        check_get_semantics(&what, &server, true)?;
        // Served from memory: (almost) no storage reads; a few may come
        // from background work.
        let gets = storage_gets_of_rv0_reads(&server)?;
        ensure!(
            gets < 10,
            "{what}: 20 GETs at rv=0 read storage {gets} times"
        );
        ensure!(
            configmaps_cache_in_metrics(&server)?,
            "{what}: the configmaps watch cache is not running"
        );
    }
    Ok(())
}

#[test]
fn get_with_resource_version_with_the_watch_cache_off() -> Result<()> {
    for (what, server) in servers("get_with_resource_version_with_the_watch_cache_off", false)? {
        check_get_semantics(&what, &server, false)?;
        let gets = storage_gets_of_rv0_reads(&server)?;
        ensure!(
            gets >= 20,
            "{what}: 20 GETs at rv=0 read storage {gets} times"
        );
        ensure!(
            !configmaps_cache_in_metrics(&server)?,
            "{what}: --watch-cache=false still started a configmaps watch cache"
        );
    }
    Ok(())
}
