//! CRD structural schemas end to end: real CRD manifests (a cert-manager-like
//! Certificate, a prometheus-operator-like ServiceMonitor) compiled through
//! the shared `SchemaCache`, then custom objects pruned, defaulted and
//! validated the way the CRD registry does it, and merged by server-side
//! apply with the schema's list and map types.

use std::sync::Arc;

use registry::crd::schema::{CompiledSchema, SchemaCache};
use registry::fieldmanager::{self, ApplyOptions};
use registry::resource::Object;
use serde_json::{Value, json};

fn manifest(name: &str) -> Value {
    let path = format!("{}/tests/crd_schema/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn version_schema(crd: &Value) -> &Value {
    &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
}

fn object(v: Value) -> Object {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn messages(errs: &[registry::validation::FieldError]) -> Vec<String> {
    errs.iter().map(ToString::to_string).collect()
}

/// What the CRD registry does on create: prune, default, validate.
fn admit(schema: &CompiledSchema, obj: Value) -> (Object, Vec<String>, Vec<String>) {
    let mut obj = object(obj);
    let pruned = schema.prune(&mut obj);
    schema.apply_defaults(&mut obj);
    let errs = messages(&schema.validate(&obj, None));
    (obj, pruned, errs)
}

#[test]
fn certificate_objects_are_pruned_defaulted_and_validated() {
    let cache = SchemaCache::default();
    let crd = manifest("certificate.yaml");
    let schema = cache
        .get_or_compile(version_schema(&crd))
        .expect("compiles");

    let (obj, pruned, errs) = admit(
        &schema,
        json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "secretName": "web-tls",
                "dnsNames": ["example.com", "www.example.com"],
                "duration": "2160h", "renewBefore": "360h",
                "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"},
                "privateKey": {"algorithm": "ECDSA", "size": 256},
                "usages": ["server auth", "digital signature"],
                "keystores": {"jks": {"create": true}}
            }
        }),
    );
    assert_eq!(errs, Vec::<String>::new());
    assert_eq!(pruned, vec!["spec.keystores"]);
    assert_eq!(obj["spec"]["privateKey"]["rotationPolicy"], "Always");

    let (_, _, errs) = admit(
        &schema,
        json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": "bad"},
            "spec": {
                "secretName": "x",
                "duration": "90 fortnights",
                "renewBefore": "1h", "renewBeforePercentage": 120,
                "issuerRef": {"kind": "Issuer"},
                "privateKey": {"algorithm": "DSA"},
                "emailAddresses": ["not-an-email"],
                "usages": ["server auth", "world domination"]
            }
        }),
    );
    // The enum violations block the CEL rules, as upstream.
    assert_eq!(
        errs,
        vec![
            "spec.duration: Invalid value: \"90 fortnights\": spec.duration in body must be of type duration: \"90 fortnights\"",
            "spec.emailAddresses[0]: Invalid value: \"not-an-email\": spec.emailAddresses[0] in body must be of type email: \"not-an-email\"",
            "spec.issuerRef.name: Required value",
            "spec.privateKey.algorithm: Unsupported value: \"DSA\": supported values: \"RSA\", \"ECDSA\", \"Ed25519\"",
            "spec.renewBeforePercentage: Invalid value: 120: spec.renewBeforePercentage in body should be less than or equal to 99",
            "spec.usages[1]: Unsupported value: \"world domination\": supported values: \"signing\", \"digital signature\", \"content commitment\", \"key encipherment\", \"key agreement\", \"data encipherment\", \"cert sign\", \"crl sign\", \"encipher only\", \"decipher only\", \"any\", \"server auth\", \"client auth\", \"code signing\", \"email protection\", \"s/mime\", \"ipsec end system\", \"ipsec tunnel\", \"ipsec user\", \"timestamping\", \"ocsp signing\", \"microsoft sgc\", \"netscape sgc\"",
            ": Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        ]
    );

    // Once the values are right, the CEL rules speak.
    let (_, _, errs) = admit(
        &schema,
        json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": "cel"},
            "spec": {"secretName": "x", "renewBefore": "1h", "renewBeforePercentage": 50,
                     "issuerRef": {"name": "ca"}}
        }),
    );
    assert_eq!(
        errs,
        vec![
            "spec: Invalid value: \"object\": at least one of commonName, dnsNames, uris or ipAddresses must be set",
            "spec: Invalid value: \"object\": renewBefore and renewBeforePercentage are mutually exclusive",
        ]
    );

    // Status conditions are a map list keyed by type.
    let mut obj = object(json!({
        "apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "s"},
        "spec": {"secretName": "x", "commonName": "a", "issuerRef": {"name": "ca"}},
        "status": {"conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2024-05-01T10:00:00Z"},
            {"type": "Ready", "status": "False"},
            {"type": "Issuing", "status": "Maybe"}
        ], "notAfter": "soon"}
    }));
    schema.apply_defaults(&mut obj);
    assert_eq!(
        messages(&schema.validate(&obj, None)),
        vec![
            "status.conditions[1]: Duplicate value: {\"type\":\"Ready\"}",
            "status.conditions[2].status: Unsupported value: \"Maybe\": supported values: \"True\", \"False\", \"Unknown\"",
            "status.notAfter: Invalid value: \"soon\": status.notAfter in body must be of type date-time: \"soon\"",
            ": Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        ]
    );
}

#[test]
fn service_monitor_objects() {
    let cache = SchemaCache::default();
    let crd = manifest("servicemonitor.yaml");
    let schema = cache
        .get_or_compile(version_schema(&crd))
        .expect("compiles");
    let good = json!({
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": "api", "labels": {"release": "prom"}},
        "spec": {
            "selector": {"matchLabels": {"app": "api"}},
            "namespaceSelector": {"matchNames": ["prod", "staging"]},
            "endpoints": [
                {"port": "metrics", "interval": "30s", "scheme": "https",
                 "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "pod"}]},
                {"targetPort": 9090, "path": "/metrics", "params": {"module": ["http_2xx"]}}
            ],
            "sampleLimit": 10000
        }
    });
    let (obj, pruned, errs) = admit(&schema, good);
    assert_eq!(errs, Vec::<String>::new());
    assert!(pruned.is_empty(), "{pruned:?}");
    assert_eq!(
        obj["spec"]["endpoints"][0]["relabelings"][0]["action"],
        "replace"
    );

    let (_, pruned, errs) = admit(
        &schema,
        json!({
            "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": {"name": "bad", "annotations": {"a": "b"}, "color": "blue"},
            "spec": {
                "selector": {"matchExpressions": [{"key": "app"}]},
                "namespaceSelector": {"matchNames": ["prod", "prod"]},
                "endpoints": [
                    {"port": "web", "targetPort": "web", "interval": "30 seconds"},
                    {"targetPort": 8080, "relabelings": [{"action": "explode", "sourceLabels": ["1bad"]}]}
                ],
                "extra": 1
            }
        }),
    );
    assert_eq!(pruned, vec!["metadata.color", "spec.extra"]);
    assert_eq!(
        errs,
        vec![
            "spec.endpoints[0].interval: Invalid value: \"30 seconds\": spec.endpoints[0].interval in body should match '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'",
            "spec.endpoints[1].relabelings[0].action: Unsupported value: \"explode\": supported values: \"replace\", \"Replace\", \"keep\", \"Keep\", \"drop\", \"Drop\", \"hashmod\", \"HashMod\", \"labelmap\", \"LabelMap\", \"labeldrop\", \"LabelDrop\", \"labelkeep\", \"LabelKeep\", \"lowercase\", \"Lowercase\", \"uppercase\", \"Uppercase\", \"keepequal\", \"KeepEqual\", \"dropequal\", \"DropEqual\"",
            "spec.endpoints[1].relabelings[0].sourceLabels[0]: Invalid value: \"1bad\": spec.endpoints[1].relabelings[0].sourceLabels[0] in body should match '^[a-zA-Z_][a-zA-Z0-9_]*$'",
            "spec.namespaceSelector.matchNames[1]: Duplicate value: \"prod\"",
            "spec.selector.matchExpressions[0].operator: Required value",
            ": Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        ]
    );

    // The per-endpoint CEL rule.
    let (_, _, errs) = admit(
        &schema,
        json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "x"},
               "spec": {"selector": {}, "endpoints": [{"port": "a"}, {"port": "b", "targetPort": 1}]}}),
    );
    assert_eq!(
        errs,
        vec![
            "spec.endpoints[1]: Invalid value: \"object\": port and targetPort are mutually exclusive"
        ]
    );
}

#[test]
fn identical_crds_share_one_compilation() {
    let cache = SchemaCache::default();
    let crd = manifest("servicemonitor.yaml");
    // The same manifest parsed again per workspace: equal content, new values.
    let per_workspace: Vec<Arc<CompiledSchema>> = (0..50)
        .map(|_| {
            let again = manifest("servicemonitor.yaml");
            cache.get_or_compile(version_schema(&again)).unwrap()
        })
        .collect();
    assert!(
        per_workspace
            .iter()
            .all(|s| Arc::ptr_eq(s, &per_workspace[0]))
    );
    assert_eq!(cache.live(), 1);
    let cert = cache
        .get_or_compile(version_schema(&manifest("certificate.yaml")))
        .unwrap();
    assert_eq!(cache.live(), 2);
    drop(per_workspace);
    assert_eq!(cache.live(), 1, "an unused schema is freed");
    drop((cert, crd));
}

#[test]
fn non_structural_crds_are_rejected_with_paths() {
    let mut crd = manifest("servicemonitor.yaml");
    let schema = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    schema["properties"]["spec"]["properties"]["jobLabel"] = json!({"description": "untyped"});
    schema["properties"]["spec"]["properties"]["endpoints"]["items"]["x-kubernetes-validations"] =
        json!([{"rule": "self.port =="}]);
    let errs = messages(&SchemaCache::default().get_or_compile(schema).unwrap_err());
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs[0].starts_with(
        "properties[spec].properties[endpoints].items.x-kubernetes-validations[0].rule: Invalid value: \"self.port ==\": compilation failed"
    ), "{errs:#?}");
    assert_eq!(
        errs[1],
        "properties[spec].properties[jobLabel].type: Required value: must not be empty for specified object fields"
    );
}

#[test]
fn server_side_apply_merges_by_the_schema() {
    let schema = SchemaCache::default()
        .get_or_compile(version_schema(&manifest("certificate.yaml")))
        .unwrap();
    let types = schema.type_info();
    let opts = |manager: &str| ApplyOptions {
        manager: manager.into(),
        api_version: "cert-manager.io/v1".into(),
        now: "2024-01-01T00:00:00Z".into(),
        ..ApplyOptions::default()
    };
    let cert = |extra: Value| {
        let mut v = json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                           "metadata": {"name": "c", "namespace": "default"}});
        if let (Value::Object(o), Value::Object(e)) = (&mut v, extra) {
            o.extend(e);
        }
        v
    };
    let first = fieldmanager::apply(
        None,
        &cert(json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})),
        &opts("cert-controller"),
        types,
    )
    .unwrap();
    // Another manager adds a condition of another type: the keyed list merges.
    let second = fieldmanager::apply(
        Some(&first),
        &cert(json!({"status": {"conditions": [{"type": "Issuing", "status": "False"}]}})),
        &opts("issuer"),
        types,
    )
    .unwrap();
    assert_eq!(
        second["status"]["conditions"],
        json!([{"type": "Ready", "status": "True"}, {"type": "Issuing", "status": "False"}])
    );
    // issuerRef is an atomic map: a second manager setting it conflicts on
    // the whole map, not on one key.
    let with_ref = fieldmanager::apply(
        Some(&second),
        &cert(json!({"spec": {"issuerRef": {"name": "a"}}})),
        &opts("one"),
        types,
    )
    .unwrap();
    let err = fieldmanager::apply(
        Some(&with_ref),
        &cert(json!({"spec": {"issuerRef": {"name": "a", "kind": "Issuer"}}})),
        &opts("two"),
        types,
    )
    .unwrap_err();
    assert!(err.to_string().contains(".spec.issuerRef"), "{err}");
}
