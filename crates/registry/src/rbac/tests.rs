use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef,
};
use serde_json::json;

use super::*;

fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

/// The workspace used by most cases.
fn objects() -> RbacObjects {
    RbacObjects {
        roles: vec![
            from_json::<Role>(
                json!({"metadata": {"name": "cm-reader", "namespace": "ns"}, "rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]}),
            ),
            from_json(
                json!({"metadata": {"name": "one-cm", "namespace": "ns"}, "rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["x"], "verbs": ["get", "update"]}]}),
            ),
            from_json(
                json!({"metadata": {"name": "logs", "namespace": "ns"}, "rules": [
                {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
                {"apiGroups": [""], "resources": ["*/status"], "verbs": ["get"]}]}),
            ),
            from_json(
                json!({"metadata": {"name": "all-apps", "namespace": "ns"}, "rules": [
                {"apiGroups": ["apps"], "resources": ["*"], "verbs": ["*"]}]}),
            ),
        ],
        cluster_roles: vec![
            from_json::<ClusterRole>(json!({"metadata": {"name": "metrics"}, "rules": [
                {"nonResourceURLs": ["/metrics", "/debug/*"], "verbs": ["get"]}]})),
            from_json(json!({"metadata": {"name": "widgets-view", "labels": {
                "rbac.authorization.k8s.io/aggregate-to-view": "true"}}, "rules": [
                {"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get", "list", "watch"]}]})),
            from_json(json!({"metadata": {"name": "role-writer"}, "rules": [
                {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["create", "update"]},
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]})),
            from_json(json!({"metadata": {"name": "escalator"}, "rules": [
                {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["create", "escalate"]}]})),
            from_json(json!({"metadata": {"name": "binder"}, "rules": [
                {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings"], "verbs": ["create"]},
                {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": ["edit"]}]})),
            // Stored objects cannot redefine a bootstrap role.
            from_json(json!({"metadata": {"name": "view"}, "rules": [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]})),
        ],
        role_bindings: vec![
            from_json::<RoleBinding>(json!({"metadata": {"name": "b1", "namespace": "ns"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
                "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]})),
            from_json(json!({"metadata": {"name": "b2", "namespace": "ns"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "one-cm"},
                "subjects": [{"kind": "Group", "name": "team", "apiGroup": "rbac.authorization.k8s.io"}]})),
            from_json(json!({"metadata": {"name": "b3", "namespace": "ns"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "logs"},
                "subjects": [{"kind": "ServiceAccount", "name": "builder"}]})),
            from_json(json!({"metadata": {"name": "b4", "namespace": "ns"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                "subjects": [{"kind": "User", "name": "viewer", "apiGroup": "rbac.authorization.k8s.io"}]})),
            from_json(json!({"metadata": {"name": "b5", "namespace": "ns"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "all-apps"},
                "subjects": [{"kind": "User", "name": "apps", "apiGroup": "rbac.authorization.k8s.io"}]})),
            from_json(json!({"metadata": {"name": "b6", "namespace": "ns"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
                "subjects": [{"kind": "User", "name": "nsadmin", "apiGroup": "rbac.authorization.k8s.io"}]})),
            from_json(json!({"metadata": {"name": "dangling", "namespace": "ns"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gone"},
                "subjects": [{"kind": "User", "name": "carol", "apiGroup": "rbac.authorization.k8s.io"}]})),
        ],
        cluster_role_bindings: vec![
            from_json::<ClusterRoleBinding>(json!({"metadata": {"name": "metrics"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "metrics"},
                "subjects": [{"kind": "Group", "name": "monitoring", "apiGroup": "rbac.authorization.k8s.io"}]})),
            from_json(json!({"metadata": {"name": "role-writer"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "role-writer"},
                "subjects": [{"kind": "User", "name": "writer", "apiGroup": "rbac.authorization.k8s.io"}]})),
            from_json(json!({"metadata": {"name": "escalator"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "escalator"},
                "subjects": [{"kind": "User", "name": "escalator", "apiGroup": "rbac.authorization.k8s.io"}]})),
            from_json(json!({"metadata": {"name": "binder"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "binder"},
                "subjects": [{"kind": "User", "name": "binder", "apiGroup": "rbac.authorization.k8s.io"}]})),
            // A ClusterRoleBinding to a ServiceAccount without a namespace matches nobody.
            from_json(json!({"metadata": {"name": "sa-no-ns"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "ServiceAccount", "name": "builder"}]})),
        ],
    }
}

fn user(name: &str, groups: &[&str]) -> UserInfo {
    let mut all: Vec<&str> = groups.to_vec();
    all.push("system:authenticated");
    UserInfo::new(name, &all)
}

/// (user, groups, verb, group, resource, subresource, namespace, name, allowed)
type Case = (
    &'static str,
    &'static [&'static str],
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
);

#[test]
fn resource_requests() {
    let policy = RbacPolicy::compile(&objects());
    let cases: &[Case] = &[
        // Role in a namespace, not elsewhere, not other verbs.
        ("alice", &[], "get", "", "configmaps", "", "ns", "x", true),
        ("alice", &[], "list", "", "configmaps", "", "ns", "", true),
        (
            "alice",
            &[],
            "delete",
            "",
            "configmaps",
            "",
            "ns",
            "x",
            false,
        ),
        (
            "alice",
            &[],
            "get",
            "",
            "configmaps",
            "",
            "other",
            "x",
            false,
        ),
        ("alice", &[], "get", "", "configmaps", "", "", "", false),
        ("alice", &[], "get", "", "secrets", "", "ns", "x", false),
        (
            "alice",
            &[],
            "get",
            "apps",
            "configmaps",
            "",
            "ns",
            "x",
            false,
        ),
        // resourceNames: only the named object; never a list.
        (
            "bob",
            &["team"],
            "get",
            "",
            "configmaps",
            "",
            "ns",
            "x",
            true,
        ),
        (
            "bob",
            &["team"],
            "update",
            "",
            "configmaps",
            "",
            "ns",
            "x",
            true,
        ),
        (
            "bob",
            &["team"],
            "get",
            "",
            "configmaps",
            "",
            "ns",
            "y",
            false,
        ),
        (
            "bob",
            &["team"],
            "list",
            "",
            "configmaps",
            "",
            "ns",
            "",
            false,
        ),
        ("bob", &[], "get", "", "configmaps", "", "ns", "x", false),
        // Subresources: pods/log does not give pods, */status gives any status.
        (
            "system:serviceaccount:ns:builder",
            &[],
            "get",
            "",
            "pods",
            "log",
            "ns",
            "p",
            true,
        ),
        (
            "system:serviceaccount:ns:builder",
            &[],
            "get",
            "",
            "pods",
            "",
            "ns",
            "p",
            false,
        ),
        (
            "system:serviceaccount:ns:builder",
            &[],
            "get",
            "",
            "pods",
            "exec",
            "ns",
            "p",
            false,
        ),
        (
            "system:serviceaccount:ns:builder",
            &[],
            "get",
            "apps",
            "deployments",
            "status",
            "ns",
            "d",
            false,
        ),
        (
            "system:serviceaccount:ns:builder",
            &[],
            "get",
            "",
            "services",
            "status",
            "ns",
            "s",
            true,
        ),
        (
            "system:serviceaccount:other:builder",
            &[],
            "get",
            "",
            "pods",
            "log",
            "ns",
            "p",
            false,
        ),
        // Wildcards: resources * covers subresources; apiGroups fixed.
        (
            "apps",
            &[],
            "delete",
            "apps",
            "deployments",
            "",
            "ns",
            "d",
            true,
        ),
        (
            "apps",
            &[],
            "patch",
            "apps",
            "deployments",
            "scale",
            "ns",
            "d",
            true,
        ),
        ("apps", &[], "get", "", "pods", "", "ns", "p", false),
        // Bootstrap roles and aggregation.
        ("viewer", &[], "get", "", "pods", "", "ns", "p", true),
        ("viewer", &[], "get", "", "pods", "log", "ns", "p", true),
        ("viewer", &[], "get", "", "secrets", "", "ns", "s", false),
        ("viewer", &[], "create", "", "pods", "", "ns", "", false),
        (
            "viewer",
            &[],
            "list",
            "example.com",
            "widgets",
            "",
            "ns",
            "",
            true,
        ),
        (
            "viewer",
            &[],
            "list",
            "example.com",
            "widgets",
            "",
            "other",
            "",
            false,
        ),
        (
            "nsadmin",
            &[],
            "create",
            "rbac.authorization.k8s.io",
            "roles",
            "",
            "ns",
            "",
            true,
        ),
        ("nsadmin", &[], "delete", "", "secrets", "", "ns", "s", true),
        (
            "nsadmin",
            &[],
            "watch",
            "example.com",
            "widgets",
            "",
            "ns",
            "",
            true,
        ),
        (
            "nsadmin",
            &[],
            "create",
            "",
            "namespaces",
            "",
            "",
            "",
            false,
        ),
        // Every authenticated user: the self-reviews.
        (
            "anyone",
            &[],
            "create",
            "authorization.k8s.io",
            "selfsubjectaccessreviews",
            "",
            "",
            "",
            true,
        ),
        (
            "anyone",
            &[],
            "create",
            "authorization.k8s.io",
            "selfsubjectrulesreviews",
            "",
            "",
            "",
            true,
        ),
        (
            "anyone",
            &[],
            "create",
            "authentication.k8s.io",
            "selfsubjectreviews",
            "",
            "",
            "",
            true,
        ),
        ("anyone", &[], "get", "", "configmaps", "", "ns", "x", false),
        // system:masters may do anything.
        (
            "root",
            &["system:masters"],
            "delete",
            "",
            "namespaces",
            "",
            "",
            "ns",
            true,
        ),
        (
            "root",
            &["system:masters"],
            "escalate",
            "rbac.authorization.k8s.io",
            "clusterroles",
            "",
            "",
            "x",
            true,
        ),
    ];
    for &(name, groups, verb, group, resource, sub, ns, obj, want) in cases {
        let u = user(name, groups);
        let attrs = Attributes::resource(&u, verb, group, resource)
            .subresource(sub)
            .namespace(ns)
            .name(obj);
        assert_eq!(
            policy.allows(&attrs),
            want,
            "{name} {groups:?} {verb} {group}/{resource}/{sub} ns={ns} name={obj}"
        );
    }
}

#[test]
fn non_resource_requests() {
    let policy = RbacPolicy::compile(&objects());
    let anon = UserInfo::new("system:anonymous", &["system:unauthenticated"]);
    let cases: &[(&UserInfo, &str, &str, bool)] = &[
        (&user("m", &["monitoring"]), "get", "/metrics", true),
        (
            &user("m", &["monitoring"]),
            "get",
            "/debug/pprof/heap",
            true,
        ),
        (&user("m", &["monitoring"]), "get", "/debug", false),
        (&user("m", &["monitoring"]), "post", "/metrics", false),
        (&user("x", &[]), "get", "/metrics", false),
        (&user("x", &[]), "get", "/apis/apps/v1", true),
        (&user("x", &[]), "get", "/openapi/v3", true),
        (&user("x", &[]), "get", "/version", true),
        (&anon, "get", "/version", true),
        (&anon, "get", "/healthz", true),
        (&anon, "get", "/apis", false),
        (
            &user("root", &["system:masters"]),
            "delete",
            "/anything",
            true,
        ),
    ];
    for &(u, verb, path, want) in cases {
        assert_eq!(
            policy.allows(&Attributes::non_resource(u, verb, path)),
            want,
            "{} {verb} {path}",
            u.name
        );
    }
}

#[test]
fn deny_messages_have_the_upstream_form() {
    let policy = RbacPolicy::compile(&objects());
    let u = user("u", &[]);
    let attrs = Attributes::resource(&u, "get", "", "configmaps")
        .namespace("ns")
        .name("x");
    let Decision::Deny(reason) = policy.authorize(&attrs) else {
        panic!("allowed")
    };
    assert_eq!(reason, "");
    let err = attrs.forbidden(&reason);
    assert_eq!(err.code(), 403);
    assert_eq!(
        err.message,
        r#"configmaps "x" is forbidden: User "u" cannot get resource "configmaps" in API group "" in the namespace "ns""#
    );
    let details = err.details.unwrap();
    assert_eq!(details.kind.as_deref(), Some("configmaps"));
    assert_eq!(details.name.as_deref(), Some("x"));

    let attrs = Attributes::resource(&u, "list", "apps", "deployments").subresource("scale");
    assert_eq!(
        attrs.forbidden("").message,
        r#"deployments.apps is forbidden: User "u" cannot list resource "deployments/scale" in API group "apps" at the cluster scope"#
    );
    let attrs = Attributes::non_resource(&u, "get", "/metrics");
    assert_eq!(
        attrs.forbidden("").message,
        r#"forbidden: User "u" cannot get path "/metrics""#
    );

    // A binding to a missing role is reported, naming only this workspace's objects.
    let carol = user("carol", &[]);
    let attrs = Attributes::resource(&carol, "get", "", "pods").namespace("ns");
    assert_eq!(
        policy.authorize(&attrs),
        Decision::Deny(r#"RBAC: role.rbac.authorization.k8s.io "gone" not found"#.into())
    );
}

#[test]
fn aggregation_builds_admin_edit_view() {
    let policy = RbacPolicy::compile(&RbacObjects::default());
    let view = policy
        .role_rules(RoleKind::ClusterRole, "", "view")
        .unwrap();
    let edit = policy
        .role_rules(RoleKind::ClusterRole, "", "edit")
        .unwrap();
    let admin = policy
        .role_rules(RoleKind::ClusterRole, "", "admin")
        .unwrap();
    assert!(covers(&edit, &view), "edit ⊇ view");
    assert!(covers(&admin, &edit), "admin ⊇ edit");
    assert!(!covers(&view, &edit));
    assert!(!covers(&edit, &admin));
    let secrets = Rule::new(&["get"]).groups(&[""]).resources(&["secrets"]);
    assert!(!covers(&view, std::slice::from_ref(&secrets)));
    assert!(covers(&edit, &[secrets]));

    // A user-defined aggregating role, including a cycle.
    let objects = RbacObjects {
        cluster_roles: vec![
            from_json(json!({"metadata": {"name": "a", "labels": {"agg": "x"}},
                "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "x"}}]}})),
            from_json(
                json!({"metadata": {"name": "b", "labels": {"agg": "x"}}, "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
            ),
            from_json(json!({"metadata": {"name": "c"},
                "aggregationRule": {"clusterRoleSelectors": [
                    {"matchExpressions": [{"key": "agg", "operator": "In", "values": ["x"]}]}]}})),
        ],
        ..Default::default()
    };
    let policy = RbacPolicy::compile(&objects);
    let pods = [Rule::new(&["get"]).groups(&[""]).resources(&["pods"])];
    assert!(covers(
        &policy.role_rules(RoleKind::ClusterRole, "", "a").unwrap(),
        &pods
    ));
    assert!(covers(
        &policy.role_rules(RoleKind::ClusterRole, "", "c").unwrap(),
        &pods
    ));
}

#[test]
fn stored_objects_cannot_redefine_bootstrap_roles() {
    let policy = RbacPolicy::compile(&objects());
    let u = user("viewer", &[]);
    // The stored "view" grants everything; the bootstrap one wins.
    let attrs = Attributes::resource(&u, "delete", "", "pods").namespace("ns");
    assert!(!policy.allows(&attrs));
}

#[test]
fn service_account_subject_without_namespace_in_cluster_binding_matches_nobody() {
    let policy = RbacPolicy::compile(&objects());
    let sa = user(
        "system:serviceaccount:ns:builder",
        &["system:serviceaccounts"],
    );
    let attrs = Attributes::resource(&sa, "delete", "", "pods").namespace("ns");
    assert!(!policy.allows(&attrs));
}

fn rules(v: serde_json::Value) -> Vec<PolicyRule> {
    from_json(v)
}

#[test]
fn role_escalation() {
    let policy = RbacPolicy::compile(&objects());
    let writer = user("writer", &[]);
    // writer holds get configmaps cluster-wide: may grant it, not more.
    let ok = rules(json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]));
    assert_eq!(
        policy.check_role_write(&writer, RoleKind::Role, "ns", "r", &ok, false),
        Ok(())
    );
    let too_much = rules(
        json!([{"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get", "delete"]}]),
    );
    let err = policy
        .check_role_write(&writer, RoleKind::Role, "ns", "r", &too_much, false)
        .unwrap_err();
    let EscalationError::NotHeld { missing, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(missing.len(), 3, "{missing:?}");
    let api = err.forbidden("roles", "r");
    assert_eq!(api.code(), 403);
    assert!(
        api.message.starts_with(
            "roles.rbac.authorization.k8s.io \"r\" is forbidden: user \"writer\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n"
        ),
        "{}",
        api.message
    );
    assert!(
        api.message
            .contains(r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}"#),
        "{}",
        api.message
    );

    // resourceNames: holding one name does not cover all names.
    let bob = user("bob", &["team"]);
    let named = rules(
        json!([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["x"], "verbs": ["get"]}]),
    );
    assert_eq!(
        policy.check_role_write(&bob, RoleKind::Role, "ns", "r", &named, false),
        Ok(())
    );
    let unnamed =
        rules(json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]));
    assert!(
        policy
            .check_role_write(&bob, RoleKind::Role, "ns", "r", &unnamed, false)
            .is_err()
    );
    // Namespace matters: bob's role is only in "ns".
    assert!(
        policy
            .check_role_write(&bob, RoleKind::Role, "other", "r", &named, false)
            .is_err()
    );

    // The escalate verb allows anything.
    let esc = user("escalator", &[]);
    let all = rules(json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]));
    assert_eq!(
        policy.check_role_write(&esc, RoleKind::Role, "ns", "r", &all, false),
        Ok(())
    );
    assert!(
        policy
            .check_role_write(&esc, RoleKind::ClusterRole, "", "r", &all, false)
            .is_err()
    );

    // system:masters may do anything; aggregationRule needs full authority.
    let root = user("root", &["system:masters"]);
    assert_eq!(
        policy.check_role_write(&root, RoleKind::ClusterRole, "", "r", &all, true),
        Ok(())
    );
    assert_eq!(
        policy.check_role_write(&writer, RoleKind::ClusterRole, "", "agg", &[], true),
        Err(EscalationError::AggregationRule)
    );

    // Subresources: */status covers pods/status; pods/log does not cover pods.
    let sa = user("system:serviceaccount:ns:builder", &[]);
    let status = rules(
        json!([{"apiGroups": [""], "resources": ["pods/status", "pods/log"], "verbs": ["get"]}]),
    );
    assert_eq!(
        policy.check_role_write(&sa, RoleKind::Role, "ns", "r", &status, false),
        Ok(())
    );
    let pods = rules(json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]));
    assert!(
        policy
            .check_role_write(&sa, RoleKind::Role, "ns", "r", &pods, false)
            .is_err()
    );

    // Non-resource URLs: a prefix rule covers longer paths only.
    let m = user("m", &["monitoring"]);
    let urls = rules(json!([{"nonResourceURLs": ["/debug/pprof", "/metrics"], "verbs": ["get"]}]));
    assert_eq!(
        policy.check_role_write(&m, RoleKind::ClusterRole, "", "r", &urls, false),
        Ok(())
    );
    let wider = rules(json!([{"nonResourceURLs": ["/*"], "verbs": ["get"]}]));
    assert!(
        policy
            .check_role_write(&m, RoleKind::ClusterRole, "", "r", &wider, false)
            .is_err()
    );
}

#[test]
fn binding_escalation() {
    let policy = RbacPolicy::compile(&objects());
    let role_ref = |kind: &str, name: &str| RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: kind.into(),
        name: name.into(),
    };
    let nsadmin = user("nsadmin", &[]);
    // admin in ns holds view's rules in ns: may bind view there, not cluster-wide.
    assert_eq!(
        policy.check_binding_write(&nsadmin, "ns", &role_ref("ClusterRole", "view")),
        Ok(())
    );
    assert_eq!(
        policy.check_binding_write(&nsadmin, "ns", &role_ref("Role", "cm-reader")),
        Ok(())
    );
    assert!(
        policy
            .check_binding_write(&nsadmin, "", &role_ref("ClusterRole", "view"))
            .is_err()
    );
    assert!(
        policy
            .check_binding_write(&nsadmin, "ns", &role_ref("ClusterRole", "cluster-admin"))
            .is_err()
    );
    assert!(
        policy
            .check_binding_write(&nsadmin, "other", &role_ref("ClusterRole", "view"))
            .is_err()
    );

    // The bind verb on a named role allows binding it without holding it.
    let binder = user("binder", &[]);
    assert_eq!(
        policy.check_binding_write(&binder, "ns", &role_ref("ClusterRole", "edit")),
        Ok(())
    );
    assert!(
        policy
            .check_binding_write(&binder, "ns", &role_ref("ClusterRole", "admin"))
            .is_err()
    );

    // A missing role is an error, not an empty grant.
    assert!(matches!(
        policy.check_binding_write(&nsadmin, "ns", &role_ref("Role", "nope")),
        Err(EscalationError::RoleNotFound(_))
    ));
    let root = user("root", &["system:masters"]);
    assert_eq!(
        policy.check_binding_write(&root, "", &role_ref("ClusterRole", "cluster-admin")),
        Ok(())
    );
}

#[test]
fn rules_review_lists_cluster_and_namespace_rules() {
    let policy = RbacPolicy::compile(&objects());
    let alice = user("alice", &[]);
    let review = policy.rules_review(&alice, "ns");
    assert!(!review.incomplete);
    assert!(
        review
            .resource_rules
            .iter()
            .any(|r| r.resources.as_deref() == Some(&["configmaps".to_string()][..]))
    );
    assert!(review.resource_rules.iter().any(|r| {
        r.resources
            .as_deref()
            .is_some_and(|r| r.contains(&"selfsubjectaccessreviews".to_string()))
    }));
    assert!(review.non_resource_rules.iter().any(|r| {
        r.non_resource_urls
            .as_deref()
            .is_some_and(|u| u.contains(&"/api".to_string()))
    }));
    let elsewhere = policy.rules_review(&alice, "other");
    assert!(
        !elsewhere
            .resource_rules
            .iter()
            .any(|r| r.resources.as_deref() == Some(&["configmaps".to_string()][..]))
    );

    let carol = user("carol", &[]);
    let review = policy.rules_review(&carol, "ns");
    assert!(review.incomplete);
    assert!(
        review
            .evaluation_error
            .unwrap()
            .contains("\"gone\" not found")
    );
}

#[test]
fn objects_from_stored_json_and_the_cache() {
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "r", "namespace": "ns"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]});
    let bad = json!({"metadata": {"name": "bad"}, "roleRef": 5});
    let binding = json!({"metadata": {"name": "b", "namespace": "ns"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
        "subjects": [{"kind": "User", "name": "u", "apiGroup": "rbac.authorization.k8s.io"}]});
    let (objects, skipped) = RbacObjects::from_values([&role], [], [&binding, &bad], []);
    assert_eq!(skipped, 1);

    let cache = PolicyCache::new();
    let cluster = crate::cluster::ClusterId::parse("abc").unwrap();
    let mut builds = 0;
    let p1 = cache.get_or_build(&cluster, 7, || {
        builds += 1;
        RbacPolicy::compile(&objects)
    });
    let p2 = cache.get_or_build(&cluster, 7, || {
        builds += 1;
        RbacPolicy::compile(&objects)
    });
    assert!(std::sync::Arc::ptr_eq(&p1, &p2));
    assert_eq!(builds, 1);
    let u = user("u", &[]);
    assert!(p1.allows(&Attributes::resource(&u, "get", "", "pods").namespace("ns")));
    // A newer revision rebuilds; an older build does not replace it.
    let p3 = cache.get_or_build(&cluster, 8, || RbacPolicy::compile(&RbacObjects::default()));
    assert!(!p3.allows(&Attributes::resource(&u, "get", "", "pods").namespace("ns")));
    cache.get_or_build(&cluster, 7, || RbacPolicy::compile(&objects));
    assert!(cache.get(&cluster, 8).is_some());
    cache.invalidate(&cluster);
    assert!(cache.is_empty());
}

#[test]
fn access_grants_are_bindings_naming_the_user_or_a_group() {
    let p = RbacPolicy::compile(&objects());
    let has = |name: &str, groups: &[&str]| p.has_access(&UserInfo::new(name, groups));
    // Named in a RoleBinding (any namespace), by group, as a ServiceAccount
    // (namespace defaulted from the binding), or by a ClusterRoleBinding.
    assert!(has("alice", &["system:authenticated"]));
    assert!(has("someone", &["team", "system:authenticated"]));
    assert!(has(
        "system:serviceaccount:ns:builder",
        &["system:authenticated"]
    ));
    assert!(has("someone", &["monitoring"]));
    // A binding to a role that does not exist still names carol.
    assert!(has("carol", &[]));
    assert!(has("root", &["system:masters"]));
    // The bootstrap everybody-bindings (discovery, basic-user,
    // public-info-viewer) are no access grant.
    assert!(!has("stranger", &["system:authenticated"]));
    assert!(!has("system:anonymous", &["system:unauthenticated"]));
    assert!(!has(
        "system:serviceaccount:other:builder",
        &["system:authenticated"]
    ));
    assert!(
        !RbacPolicy::compile(&RbacObjects::default())
            .has_access(&UserInfo::new("alice", &["system:authenticated"]))
    );
}

#[test]
fn served_bootstrap_roles_carry_their_aggregated_rules() {
    let roles = bootstrap::cluster_roles_resolved();
    let rules_of = |n: &str| {
        roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(n))
            .and_then(|r| r.rules.clone())
            .unwrap_or_default()
    };
    for name in ["admin", "edit", "view"] {
        assert!(!rules_of(name).is_empty(), "{name}");
    }
    // admin includes what edit has, which includes what view has.
    assert!(rules_of("admin").len() >= rules_of("edit").len());
    assert!(rules_of("edit").len() >= rules_of("view").len());
    assert!(!rules_of("cluster-admin").is_empty());
}
