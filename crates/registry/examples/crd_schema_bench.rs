//! CRD structural schema figures: one compilation of a ~50 KB schema, the
//! memory of 100,000 `SchemaCache::get_or_compile` calls for that same
//! schema (one per workspace carrying the CRD), and prune + default +
//! validate of typical custom resources (with and without CEL rules).
//!
//! `cargo run --release -p wsgate-registry --example crd_schema_bench`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use registry::crd::schema::{CompiledSchema, SchemaCache};
use registry::resource::Object;
use serde_json::{Value, json};

fn manifest(name: &str) -> Value {
    let path = format!("{}/tests/crd_schema/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("fixture");
    serde_saphyr::from_str(&text).expect("yaml")
}

fn schema_of(crd: &Value) -> Value {
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The ServiceMonitor schema grown to at least `bytes` of JSON the way real
/// CRDs are: more documented fields.
fn big_schema(bytes: usize) -> Value {
    let mut s = schema_of(&manifest("servicemonitor.yaml"));
    let doc = "Documentation of this field, as controller-gen copies it from Go comments into every CRD: what it means, its default, and which other fields it interacts with.";
    let mut i = 0;
    while serde_json::to_vec(&s).map(|v| v.len()).unwrap_or(0) < bytes {
        s["properties"]["spec"]["properties"][format!("extraField{i}")] = json!({
            "type": "object", "description": doc,
            "properties": {
                "name": {"type": "string", "description": doc, "maxLength": 253},
                "count": {"type": "integer", "format": "int32", "minimum": 0, "description": doc}
            }
        });
        i += 1;
    }
    s
}

fn object(v: Value) -> Object {
    match v {
        Value::Object(m) => m,
        _ => Object::new(),
    }
}

fn per_op(label: &str, n: u32, mut f: impl FnMut()) {
    for _ in 0..n / 10 {
        f();
    }
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    let ns = t.elapsed().as_nanos() / u128::from(n);
    println!("{label}: {ns} ns/op ({n} ops)");
}

fn main() {
    let big = big_schema(50 * 1024);
    let size = serde_json::to_vec(&big).map(|v| v.len()).unwrap_or(0);
    println!("schema: {size} bytes of JSON");

    let n = 200;
    let t = Instant::now();
    for _ in 0..n {
        black_box(CompiledSchema::compile(&big).expect("compiles"));
    }
    println!(
        "compile (no cache): {} us/op ({n} ops)",
        t.elapsed().as_micros() / n
    );

    let cache = SchemaCache::default();
    let before = rss_kib();
    let t = Instant::now();
    let held: Vec<Arc<CompiledSchema>> = (0..100_000)
        .map(|_| cache.get_or_compile(&big).expect("compiles"))
        .collect();
    let took = t.elapsed();
    let after = rss_kib();
    println!(
        "100,000 get_or_compile of the same schema: {:.2} s ({} us/op, content hash included), live compiled schemas: {}, RSS +{} KiB ({:.1} bytes per holder, the Vec of Arcs included)",
        took.as_secs_f64(),
        took.as_micros() / 100_000,
        cache.live(),
        after.saturating_sub(before),
        (after.saturating_sub(before) * 1024) as f64 / 100_000.0
    );
    assert!(held.iter().all(|s| Arc::ptr_eq(s, &held[0])));
    drop(held);

    let sm = cache
        .get_or_compile(&schema_of(&manifest("servicemonitor.yaml")))
        .expect("compiles");
    let sm_obj = json!({
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": "api", "namespace": "prod", "labels": {"release": "prom"}},
        "spec": {
            "selector": {"matchLabels": {"app": "api"}},
            "namespaceSelector": {"matchNames": ["prod"]},
            "endpoints": [
                {"port": "metrics", "interval": "30s", "scheme": "https",
                 "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "pod"}]},
                {"port": "admin", "path": "/metrics", "params": {"module": ["http_2xx"]}}
            ]
        }
    });
    per_op(
        "ServiceMonitor prune+default+validate (1 CEL rule per endpoint)",
        100_000,
        || {
            let mut o = object(sm_obj.clone());
            black_box(sm.prune(&mut o));
            sm.apply_defaults(&mut o);
            let errs = sm.validate(&o, None);
            assert!(errs.is_empty(), "{errs:?}");
        },
    );
    per_op("ServiceMonitor validate only", 100_000, || {
        let o = object(sm_obj.clone());
        black_box(sm.validate(&o, None));
    });

    let cert = cache
        .get_or_compile(&schema_of(&manifest("certificate.yaml")))
        .expect("compiles");
    let cert_obj = json!({
        "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"secretName": "web-tls", "dnsNames": ["example.com", "www.example.com"],
                 "duration": "2160h", "renewBefore": "360h",
                 "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"},
                 "privateKey": {"algorithm": "ECDSA", "size": 256},
                 "usages": ["server auth", "digital signature"]}
    });
    per_op(
        "Certificate prune+default+validate (2 CEL rules on spec)",
        100_000,
        || {
            let mut o = object(cert_obj.clone());
            black_box(cert.prune(&mut o));
            cert.apply_defaults(&mut o);
            let errs = cert.validate(&o, None);
            assert!(errs.is_empty(), "{errs:?}");
        },
    );
    // A tokio worker has a 2 MiB stack, so there rules run on a grown one.
    let (cert2, obj2) = (cert.clone(), cert_obj.clone());
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            per_op(
                "Certificate validate on a 2 MiB thread (CEL on a grown stack)",
                100_000,
                || {
                    let o = object(obj2.clone());
                    black_box(cert2.validate(&o, None));
                },
            );
        })
        .map(|h| h.join().ok())
        .ok();
    let old = object(cert_obj.clone());
    per_op(
        "Certificate validate on update (old object given)",
        100_000,
        || {
            let o = object(cert_obj.clone());
            black_box(cert.validate(&o, Some(&old)));
        },
    );
}
