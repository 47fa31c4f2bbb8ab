//! Scenario tests: each runs a sequence of writes against one object and
//! checks the object, its managedFields, or the error after each write.

use serde_json::{Value, json};

use super::*;

const NOW: &str = "2024-05-01T10:00:00Z";

enum Write {
    Apply {
        manager: &'static str,
        body: Value,
        force: bool,
        subresource: Option<&'static str>,
    },
    Update {
        manager: &'static str,
        body: Value,
        subresource: Option<&'static str>,
    },
}

fn apply(manager: &'static str, body: Value) -> Write {
    Write::Apply {
        manager,
        body,
        force: false,
        subresource: None,
    }
}

fn force_apply(manager: &'static str, body: Value) -> Write {
    Write::Apply {
        manager,
        body,
        force: true,
        subresource: None,
    }
}

fn update(manager: &'static str, body: Value) -> Write {
    Write::Update {
        manager,
        body,
        subresource: None,
    }
}

enum Expect {
    /// The object without managedFields.
    Object(Value),
    /// `(manager, operation, subresource, fieldsV1)` per entry, in order.
    Managers(Vec<(&'static str, &'static str, &'static str, Value)>),
    /// Object and managers.
    Both(
        Value,
        Vec<(&'static str, &'static str, &'static str, Value)>,
    ),
    /// An apply error with this message (the object is unchanged).
    Error(&'static str),
    /// Only that the write succeeded.
    Ok,
}

/// Runs `writes` in order from `initial` (None = absent) and checks each
/// expectation; returns the final object.
fn check(types: &TypeInfo, initial: Option<Value>, steps: Vec<(Write, Expect)>) -> Option<Value> {
    let mut live = initial;
    for (i, (write, expect)) in steps.into_iter().enumerate() {
        let result: Result<Value, ApplyError> = match write {
            Write::Apply {
                manager,
                body,
                force,
                subresource,
            } => {
                let opts = ApplyOptions {
                    manager: manager.into(),
                    api_version: api_version_of(&body),
                    force,
                    subresource: subresource.map(str::to_string),
                    now: NOW.into(),
                    ..Default::default()
                };
                super::apply(live.as_ref(), &body, &opts, types)
            }
            Write::Update {
                manager,
                mut body,
                subresource,
            } => {
                let opts = UpdateOptions {
                    manager: manager.into(),
                    api_version: api_version_of(&body),
                    subresource: subresource.map(str::to_string),
                    now: NOW.into(),
                    ..Default::default()
                };
                update_managed_fields(live.as_ref(), &mut body, &opts, types);
                Ok(body)
            }
        };
        match (result, expect) {
            (Err(e), Expect::Error(msg)) => assert_eq!(e.to_string(), msg, "step {i}"),
            (Err(e), _) => panic!("step {i}: unexpected error {e}"),
            (Ok(obj), Expect::Error(msg)) => {
                panic!("step {i}: expected error {msg:?}, got {obj:#}")
            }
            (Ok(obj), expect) => {
                match &expect {
                    Expect::Object(want) | Expect::Both(want, _) => {
                        assert_eq!(&without_managed(&obj), want, "step {i}: object")
                    }
                    _ => {}
                }
                match &expect {
                    Expect::Managers(want) | Expect::Both(_, want) => {
                        assert_eq!(&managers(&obj), want, "step {i}: managedFields")
                    }
                    _ => {}
                }
                live = Some(obj);
            }
        }
    }
    live
}

fn api_version_of(body: &Value) -> String {
    body["apiVersion"].as_str().unwrap_or_default().to_string()
}

fn without_managed(obj: &Value) -> Value {
    let mut o = obj.clone();
    managed::strip_managed_fields(&mut o);
    o
}

fn managers(obj: &Value) -> Vec<(&'static str, &'static str, &'static str, Value)> {
    let leak = |v: &Value| -> &'static str {
        Box::leak(v.as_str().unwrap_or_default().to_string().into_boxed_str())
    };
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    assert_eq!(e["fieldsType"], "FieldsV1");
                    assert_eq!(e["time"], NOW);
                    (
                        leak(&e["manager"]),
                        leak(&e["operation"]),
                        leak(&e["subresource"]),
                        e["fieldsV1"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn fields(text: &str) -> Value {
    serde_json::from_str(text).expect("test fieldsV1")
}

fn deployment_types() -> TypeInfo {
    TypeInfo::for_kind("apps/v1", "Deployment")
}

/// What `kubectl apply --server-side` sends for a small Deployment.
fn nginx(replicas: Option<i64>, image: &str) -> Value {
    let mut d = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "nginx", "namespace": "default", "labels": {"app": "nginx"}},
        "spec": {
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": image}]}
            }
        }
    });
    if let Some(r) = replicas {
        d["spec"]["replicas"] = json!(r);
    }
    d
}

fn replicas_only(manager_value: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "nginx", "namespace": "default"},
        "spec": {"replicas": manager_value}
    })
}

const NGINX_APPLY_FIELDS: &str = r#"{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:replicas":{},"f:selector":{},"f:template":{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:name":{}}}}}}}"#;

#[test]
fn server_side_apply_creates_and_records_exactly_the_applied_fields() {
    check(
        &deployment_types(),
        None,
        vec![(
            apply("kubectl", nginx(Some(3), "nginx:1.25")),
            Expect::Both(
                nginx(Some(3), "nginx:1.25"),
                vec![("kubectl", "Apply", "", fields(NGINX_APPLY_FIELDS))],
            ),
        )],
    );
    // The full entry, as kube-apiserver writes it.
    let obj = super::apply(
        None,
        &nginx(Some(3), "nginx:1.25"),
        &ApplyOptions {
            manager: "kubectl".into(),
            api_version: "apps/v1".into(),
            now: NOW.into(),
            ..Default::default()
        },
        &deployment_types(),
    )
    .unwrap();
    assert_eq!(
        obj["metadata"]["managedFields"],
        json!([{
            "manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "time": NOW,
            "fieldsType": "FieldsV1", "fieldsV1": fields(NGINX_APPLY_FIELDS)
        }])
    );
}

#[test]
fn second_applier_conflicts_force_moves_ownership_equal_values_share() {
    let kubectl_without_replicas = r#"{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:selector":{},"f:template":{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:name":{}}}}}}}"#;
    let replicas = r#"{"f:spec":{"f:replicas":{}}}"#;
    check(
        &deployment_types(),
        None,
        vec![
            (apply("kubectl", nginx(Some(3), "nginx:1.25")), Expect::Ok),
            (
                apply("scaler", replicas_only(5)),
                Expect::Error(
                    "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas",
                ),
            ),
            // Same value: no conflict, both own it.
            (
                apply("scaler", replicas_only(3)),
                Expect::Managers(vec![
                    ("kubectl", "Apply", "", fields(NGINX_APPLY_FIELDS)),
                    ("scaler", "Apply", "", fields(replicas)),
                ]),
            ),
            // Force: the value and the sole ownership move to the applier.
            (
                force_apply("scaler", replicas_only(5)),
                Expect::Both(
                    nginx(Some(5), "nginx:1.25"),
                    vec![
                        ("kubectl", "Apply", "", fields(kubectl_without_replicas)),
                        ("scaler", "Apply", "", fields(replicas)),
                    ],
                ),
            ),
            // kubectl re-applying its old value now conflicts with scaler.
            (
                apply("kubectl", nginx(Some(3), "nginx:1.25")),
                Expect::Error(
                    "Apply failed with 1 conflict: conflict with \"scaler\": .spec.replicas",
                ),
            ),
        ],
    );
}

#[test]
fn dropping_a_field_from_the_config_removes_it_unless_another_manager_owns_it() {
    let types = deployment_types();
    // Unshared: removed.
    check(
        &types,
        None,
        vec![
            (apply("kubectl", nginx(Some(3), "nginx:1.25")), Expect::Ok),
            (
                apply("kubectl", nginx(None, "nginx:1.25")),
                Expect::Object(nginx(None, "nginx:1.25")),
            ),
        ],
    );
    // Shared with another applier: kept, now owned by that one only.
    check(
        &types,
        None,
        vec![
            (apply("kubectl", nginx(Some(3), "nginx:1.25")), Expect::Ok),
            (apply("scaler", replicas_only(3)), Expect::Ok),
            (
                apply("kubectl", nginx(None, "nginx:1.25")),
                Expect::Object(nginx(Some(3), "nginx:1.25")),
            ),
        ],
    );
    // Owned by an updater (e.g. `kubectl scale`): kept too.
    check(
        &types,
        None,
        vec![
            (apply("kubectl", nginx(Some(3), "nginx:1.25")), Expect::Ok),
            (
                update("kubectl-scale", nginx(Some(4), "nginx:1.25")),
                Expect::Ok,
            ),
            (
                apply("kubectl", nginx(None, "nginx:1.25")),
                Expect::Object(nginx(Some(4), "nginx:1.25")),
            ),
        ],
    );
    // Labels are granular: dropping one label leaves the others.
    let mut two_labels = nginx(Some(1), "nginx:1.25");
    two_labels["metadata"]["labels"]["tier"] = json!("web");
    check(
        &types,
        None,
        vec![
            (apply("kubectl", two_labels), Expect::Ok),
            (
                apply("kubectl", nginx(Some(1), "nginx:1.25")),
                Expect::Object(nginx(Some(1), "nginx:1.25")),
            ),
        ],
    );
}

#[test]
fn containers_merge_per_element_by_name() {
    let sidecar = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "nginx", "namespace": "default"},
        "spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "envoy"}]}}}
    });
    let mut both = nginx(Some(1), "nginx:1.26");
    both["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "nginx", "image": "nginx:1.26"},
        {"name": "proxy", "image": "envoy"}
    ]);
    check(
        &deployment_types(),
        None,
        vec![
            (apply("kubectl", nginx(Some(1), "nginx:1.25")), Expect::Ok),
            (apply("mesh", sidecar), Expect::Ok),
            // kubectl changes its own container; the sidecar stays.
            (
                apply("kubectl", nginx(Some(1), "nginx:1.26")),
                Expect::Object(both),
            ),
            // Changing another manager's element field conflicts, with the
            // element printed by key.
            (
                apply(
                    "mesh",
                    json!({
                        "apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "nginx", "namespace": "default"},
                        "spec": {"template": {"spec": {"containers": [
                            {"name": "proxy", "image": "envoy"},
                            {"name": "nginx", "image": "nginx:evil"}]}}}
                    }),
                ),
                Expect::Error(
                    "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.template.spec.containers[name=\"nginx\"].image",
                ),
            ),
        ],
    );
}

#[test]
fn ports_are_keyed_by_port_and_defaulted_protocol() {
    let mut d = nginx(Some(1), "nginx");
    d["spec"]["template"]["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80}]);
    let out = check(
        &deployment_types(),
        None,
        vec![(apply("kubectl", d), Expect::Ok)],
    )
    .unwrap();
    let f = &out["metadata"]["managedFields"][0]["fieldsV1"];
    let container = &f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"];
    assert_eq!(
        container["f:ports"],
        json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}})
    );
}

fn with_finalizers(list: &[&str]) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "default", "finalizers": list}
    })
}

#[test]
fn set_lists_merge_by_value() {
    let types = TypeInfo::for_kind("v1", "ConfigMap");
    check(
        &types,
        None,
        vec![
            (apply("a", with_finalizers(&["example.com/a"])), Expect::Ok),
            (
                apply("b", with_finalizers(&["example.com/b"])),
                Expect::Both(
                    with_finalizers(&["example.com/a", "example.com/b"]),
                    vec![
                        (
                            "a",
                            "Apply",
                            "",
                            fields(r#"{"f:metadata":{"f:finalizers":{"v:\"example.com/a\"":{}}}}"#),
                        ),
                        (
                            "b",
                            "Apply",
                            "",
                            fields(r#"{"f:metadata":{"f:finalizers":{"v:\"example.com/b\"":{}}}}"#),
                        ),
                    ],
                ),
            ),
            // a drops its finalizer: only its own value goes.
            (
                apply(
                    "a",
                    json!({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "c", "namespace": "default"}, "data": {"k": "v"}}),
                ),
                Expect::Object(json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "c", "namespace": "default", "finalizers": ["example.com/b"]},
                    "data": {"k": "v"}
                })),
            ),
        ],
    );
}

#[test]
fn atomic_lists_are_replaced_whole_and_owned_whole() {
    let with_args = |args: Value| {
        let mut d = nginx(Some(1), "nginx");
        d["spec"]["template"]["spec"]["containers"][0]["args"] = args;
        d
    };
    let args_only = |args: Value| {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "nginx", "namespace": "default"},
            "spec": {"template": {"spec": {"containers": [{"name": "nginx", "args": args}]}}}
        })
    };
    check(
        &deployment_types(),
        None,
        vec![
            (apply("kubectl", with_args(json!(["-a", "-b"]))), Expect::Ok),
            (
                apply("other", args_only(json!(["-c"]))),
                Expect::Error(
                    "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.template.spec.containers[name=\"nginx\"].args",
                ),
            ),
            (
                force_apply("other", args_only(json!(["-c"]))),
                Expect::Object(with_args(json!(["-c"]))),
            ),
        ],
    );
}

#[test]
fn several_conflicts_are_grouped_by_manager() {
    let mut d = nginx(Some(3), "nginx:1.25");
    d["metadata"]["labels"]["app"] = json!("web");
    check(
        &deployment_types(),
        None,
        vec![
            (apply("kubectl", nginx(Some(3), "nginx:1.25")), Expect::Ok),
            (apply("helm", replicas_only(3)), Expect::Ok),
            (
                update("kube-controller-manager", nginx(Some(3), "nginx:1.24")),
                Expect::Ok,
            ),
            (
                apply("other", {
                    let mut d = nginx(Some(4), "nginx:1.26");
                    d["metadata"]["labels"]["app"] = json!("web");
                    d
                }),
                Expect::Error(
                    "Apply failed with 4 conflicts: conflicts with \"helm\":\n- .spec.replicas\nconflicts with \"kube-controller-manager\" using apps/v1:\n- .spec.template.spec.containers[name=\"nginx\"].image\nconflicts with \"kubectl\":\n- .metadata.labels.app\n- .spec.replicas",
                ),
            ),
        ],
    );
}

#[test]
fn client_side_apply_then_server_side_apply() {
    // kubectl create/apply (client-side) records an Update entry.
    // As kube-apiserver records it (typed objects: `.spec`, `.template` and
    // `.containers` always exist, so only their contents are "added"; a
    // container always has `resources`).
    let csa_fields = r#"{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:replicas":{},"f:selector":{},"f:template":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:name":{},"f:resources":{}}}}}}}"#;
    let types = deployment_types();
    check(
        &types,
        None,
        vec![
            (
                update("kubectl-client-side-apply", nginx(Some(3), "nginx:1.25")),
                Expect::Managers(vec![(
                    "kubectl-client-side-apply",
                    "Update",
                    "",
                    fields(csa_fields),
                )]),
            ),
            (
                apply("kubectl", nginx(Some(5), "nginx:1.25")),
                Expect::Error(
                    "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas",
                ),
            ),
        ],
    );

    // With the last-applied annotation still matching the live object,
    // `kubectl` (and only kubectl) takes the fields over, and the annotation
    // follows what it applied.
    let annotated = |replicas: i64, last: &Value| {
        let mut d = nginx(Some(replicas), "nginx:1.25");
        let mut text = String::new();
        path::write_go_json(&mut text, last);
        text.push('\n');
        d["metadata"]["annotations"] = json!({ LAST_APPLIED_ANNOTATION: text });
        d
    };
    let csa = annotated(3, &nginx(Some(3), "nginx:1.25"));
    let out = check(
        &types,
        None,
        vec![
            (update("kubectl-client-side-apply", csa.clone()), Expect::Ok),
            (
                apply("helm", nginx(Some(5), "nginx:1.25")),
                Expect::Error("Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"),
            ),
            (apply("kubectl", nginx(Some(5), "nginx:1.25")), Expect::Ok),
        ],
    )
    .unwrap();
    assert_eq!(out["spec"]["replicas"], 5);
    let last: Value = serde_json::from_str(
        out["metadata"]["annotations"][LAST_APPLIED_ANNOTATION]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(last, nginx(Some(5), "nginx:1.25"));
}

#[test]
fn status_subresource_apply_is_recorded_with_its_subresource() {
    let status = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "nginx", "namespace": "default"},
        "status": {"replicas": 2}
    });
    check(
        &deployment_types(),
        None,
        vec![
            (apply("kubectl", nginx(Some(3), "nginx:1.25")), Expect::Ok),
            (
                Write::Apply {
                    manager: "controller",
                    body: status,
                    force: false,
                    subresource: Some("status"),
                },
                Expect::Managers(vec![
                    (
                        "controller",
                        "Apply",
                        "status",
                        fields(r#"{"f:status":{"f:replicas":{}}}"#),
                    ),
                    ("kubectl", "Apply", "", fields(NGINX_APPLY_FIELDS)),
                ]),
            ),
            (
                Write::Update {
                    manager: "kube-controller-manager",
                    body: {
                        let mut d = nginx(Some(3), "nginx:1.25");
                        d["status"] = json!({"replicas": 3, "readyReplicas": 3});
                        d
                    },
                    subresource: Some("status"),
                },
                Expect::Managers(vec![
                    ("kubectl", "Apply", "", fields(NGINX_APPLY_FIELDS)),
                    (
                        "kube-controller-manager",
                        "Update",
                        "status",
                        fields(r#"{"f:status":{"f:readyReplicas":{},"f:replicas":{}}}"#),
                    ),
                ]),
            ),
        ],
    );
}

#[test]
fn ignored_fields_are_never_owned() {
    let mut d = nginx(Some(1), "nginx");
    d["status"] = json!({"replicas": 1});
    let opts = ApplyOptions {
        manager: "kubectl".into(),
        api_version: "apps/v1".into(),
        now: NOW.into(),
        ignored_fields: FieldSet::from_paths(&[Path::fields(&["status"])]),
        ..Default::default()
    };
    let out = super::apply(None, &d, &opts, &deployment_types()).unwrap();
    assert!(
        out["metadata"]["managedFields"][0]["fieldsV1"]
            .get("f:status")
            .is_none()
    );
}

#[test]
fn updates_track_changes_and_accept_client_managed_fields() {
    let types = TypeInfo::for_kind("v1", "ConfigMap");
    let cm = |data: Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "c", "namespace": "default"}, "data": data})
    };
    let out = check(
        &types,
        None,
        vec![
            (
                update("kubectl-create", cm(json!({"a": "1"}))),
                Expect::Managers(vec![(
                    "kubectl-create",
                    "Update",
                    "",
                    fields(r#"{"f:data":{".":{},"f:a":{}}}"#),
                )]),
            ),
            // Another writer changes a and adds b: both move to it.
            (
                update("kubectl-edit", cm(json!({"a": "2", "b": "1"}))),
                // The creator keeps the map itself (".").
                Expect::Managers(vec![
                    ("kubectl-create", "Update", "", fields(r#"{"f:data":{}}"#)),
                    (
                        "kubectl-edit",
                        "Update",
                        "",
                        fields(r#"{"f:data":{"f:a":{},"f:b":{}}}"#),
                    ),
                ]),
            ),
            // Same writer again: its entry grows.
            (
                update("kubectl-edit", cm(json!({"a": "2", "b": "1", "c": "1"}))),
                Expect::Managers(vec![
                    ("kubectl-create", "Update", "", fields(r#"{"f:data":{}}"#)),
                    (
                        "kubectl-edit",
                        "Update",
                        "",
                        fields(r#"{"f:data":{"f:a":{},"f:b":{},"f:c":{}}}"#),
                    ),
                ]),
            ),
            // A write that changes nothing adds no entry.
            (
                update("noop", cm(json!({"a": "2", "b": "1", "c": "1"}))),
                Expect::Managers(vec![
                    ("kubectl-create", "Update", "", fields(r#"{"f:data":{}}"#)),
                    (
                        "kubectl-edit",
                        "Update",
                        "",
                        fields(r#"{"f:data":{"f:a":{},"f:b":{},"f:c":{}}}"#),
                    ),
                ]),
            ),
        ],
    )
    .unwrap();

    // Client-supplied managedFields replace the stored ones (csaupgrade).
    let mut rewritten = out.clone();
    rewritten["metadata"]["managedFields"] = json!([{
        "manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": NOW,
        "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}
    }]);
    let after = check(
        &types,
        Some(out.clone()),
        vec![(
            update("kubectl-client-side-apply", rewritten),
            Expect::Managers(vec![(
                "kubectl",
                "Apply",
                "",
                fields(r#"{"f:data":{"f:a":{}}}"#),
            )]),
        )],
    )
    .unwrap();

    // `[]` resets; the object then stays untracked by updates.
    let mut reset = after.clone();
    reset["metadata"]["managedFields"] = json!([]);
    check(
        &types,
        Some(after.clone()),
        vec![
            (update("x", reset), Expect::Managers(vec![])),
            (update("y", cm(json!({"z": "1"}))), Expect::Managers(vec![])),
            // ... until an apply: the existing fields go to before-first-apply.
            (
                apply("kubectl", cm(json!({"q": "1"}))),
                Expect::Managers(vec![
                    ("kubectl", "Apply", "", fields(r#"{"f:data":{"f:q":{}}}"#)),
                    (
                        "before-first-apply",
                        "Update",
                        "",
                        fields(r#"{"f:data":{".":{},"f:z":{}}}"#),
                    ),
                ]),
            ),
        ],
    );
    // Omitted managedFields keep the stored ones.
    check(
        &types,
        Some(after),
        vec![(
            update("kubectl-edit", cm(json!({"a": "2", "b": "1", "c": "1"}))),
            Expect::Managers(vec![(
                "kubectl",
                "Apply",
                "",
                fields(r#"{"f:data":{"f:a":{}}}"#),
            )]),
        )],
    );
}

#[test]
fn more_than_ten_updaters_are_folded_into_ancient_changes() {
    let types = TypeInfo::for_kind("v1", "ConfigMap");
    let mut live: Option<Value> = None;
    for i in 0..12 {
        let mut data = serde_json::Map::new();
        for j in 0..=i {
            data.insert(format!("k{j}"), json!("v"));
        }
        let mut new = json!({"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": "c"}, "data": data});
        let opts = UpdateOptions {
            manager: format!("writer-{i:02}"),
            api_version: "v1".into(),
            now: format!("2024-05-01T10:00:{i:02}Z"),
            ..Default::default()
        };
        update_managed_fields(live.as_ref(), &mut new, &opts, &types);
        live = Some(new);
    }
    let entries = live.unwrap()["metadata"]["managedFields"].clone();
    let names: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["manager"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 10);
    assert_eq!(names[0], "ancient-changes");
    assert_eq!(
        entries[0]["fieldsV1"],
        json!({"f:data": {".": {}, "f:k0": {}, "f:k1": {}, "f:k2": {}}})
    );
    assert_eq!(names[9], "writer-11");
}

#[test]
fn custom_resources_use_their_schema_markers() {
    let types = TypeInfo::from_crd_schema(&json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {
            "rules": {"type": "array", "x-kubernetes-list-type": "map",
                      "x-kubernetes-list-map-keys": ["id"],
                      "items": {"type": "object", "properties": {
                          "id": {"type": "string"}, "allow": {"type": "boolean"}}}}
        }}}
    }))
    .unwrap();
    let cr = |rules: Value| {
        json!({"apiVersion": "example.com/v1", "kind": "Widget",
               "metadata": {"name": "w"}, "spec": {"rules": rules}})
    };
    check(
        &types,
        None,
        vec![
            (
                apply("a", cr(json!([{"id": "x", "allow": true}]))),
                Expect::Ok,
            ),
            (
                apply("b", cr(json!([{"id": "y", "allow": false}]))),
                Expect::Object(cr(json!([
                    {"id": "x", "allow": true}, {"id": "y", "allow": false}
                ]))),
            ),
        ],
    );
    // Without a schema lists are atomic: the second applier conflicts.
    check(
        &TypeInfo::deduced(),
        None,
        vec![
            (apply("a", cr(json!([{"id": "x"}]))), Expect::Ok),
            (
                apply("b", cr(json!([{"id": "y"}]))),
                Expect::Error("Apply failed with 1 conflict: conflict with \"a\": .spec.rules"),
            ),
        ],
    );
}

#[test]
fn bad_requests_and_invalid_objects() {
    let types = deployment_types();
    let mut with_mf = nginx(Some(1), "nginx");
    with_mf["metadata"]["managedFields"] = json!([]);
    let mut no_name = nginx(Some(1), "nginx");
    no_name["spec"]["template"]["spec"]["containers"] = json!([{"image": "nginx"}]);
    let mut dup = nginx(Some(1), "nginx");
    dup["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]);
    let cases: Vec<(Value, &str, u16)> = vec![
        (with_mf, "metadata.managedFields must be nil", 400),
        (
            json!({"apiVersion": "apps/v1beta1", "kind": "Deployment"}),
            "Incorrect version specified in apply patch. Specified patch version: apps/v1beta1, expected: apps/v1",
            400,
        ),
        (
            no_name,
            "failed to create typed patch object (apps/v1, Kind=Deployment): .spec.template.spec.containers: element 0: associative list with keys has an element that omits key field \"name\" (and doesn't have default value)",
            500,
        ),
        (
            dup,
            "failed to create typed patch object (apps/v1, Kind=Deployment): .spec.template.spec.containers: duplicate entries for key [name=\"a\"]",
            500,
        ),
    ];
    for (body, msg, code) in cases {
        let opts = ApplyOptions {
            manager: "kubectl".into(),
            api_version: "apps/v1".into(),
            now: NOW.into(),
            ..Default::default()
        };
        let err = super::apply(None, &body, &opts, &types).unwrap_err();
        assert_eq!((err.to_string().as_str(), err.code()), (msg, code));
    }
}

#[test]
fn apply_never_removes_identity_metadata() {
    let out = check(
        &deployment_types(),
        None,
        vec![
            (apply("kubectl", nginx(Some(1), "nginx")), Expect::Ok),
            (
                apply(
                    "kubectl",
                    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {}}),
                ),
                Expect::Ok,
            ),
        ],
    )
    .unwrap();
    assert_eq!(out["metadata"]["name"], "nginx");
    assert_eq!(out["metadata"]["namespace"], "default");
    assert_eq!(out["kind"], "Deployment");
    assert!(out.get("spec").is_none(), "{out:#}");
}
