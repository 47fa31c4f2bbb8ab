//! End-to-end tests of the API core's special cases, on the real binary
//! with kube-rs, raw HTTP and kubectl 1.32: pod subresources (binding,
//! eviction with PodDisruptionBudgets, ephemeral containers, the connect
//! subresources without a kubelet), `bindings`, `componentstatuses`, the
//! implicit namespaces' deletion rules, protobuf bodies equal to JSON ones,
//! per-workspace ClusterIP allocation and per-type validation.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, EvictParams, LogParams, Patch, PatchParams, PostParams};
use kube::{Client, Config};
use serde_json::{Value, json};
use wsgate_e2e::{Kubectl, Server, kubectl_or_skip, servers_for};

fn client(server: &Server, workspace: &str) -> Result<Client> {
    let uri: http::Uri = server.workspace_url(workspace).parse()?;
    Ok(Client::try_from(Config::new(uri))?)
}

fn api_err(e: &kube::Error) -> (u16, String, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => (0, String::new(), other.to_string()),
    }
}

/// A raw request with a JSON body; returns the status and the parsed body.
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
    let v = if r.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&r.body).unwrap_or_else(|_| Value::String(r.text()))
    };
    Ok((r.status, v))
}

fn pod(name: &str, labels: Value) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "nginx"}]},
    }))?)
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_subresources_without_a_kubelet() -> Result<()> {
    for (engine, server) in servers_for("pod_subresources_without_a_kubelet")? {
        server.create_workspace("acme")?;
        let c = client(&server, "acme")?;
        let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
        pods.create(&PostParams::default(), &pod("p1", json!({}))?)
            .await?;
        let base = "/clusters/acme/api/v1/namespaces/default/pods";

        // Unscheduled: an empty log (upstream's LogLocation), 400 for the rest.
        let log = pods.logs("p1", &LogParams::default()).await?;
        assert_eq!(log, "", "{engine}");
        for sub in [
            "exec?command=ls&stdout=1",
            "attach?stdout=1",
            "portforward?ports=80",
        ] {
            let (code, body) = call(&server, "POST", &format!("{base}/p1/{sub}"), None)?;
            assert_eq!(code, 400, "{engine} {sub}: {body}");
            assert_eq!(
                body["message"], "pod p1 does not have a host assigned",
                "{engine}"
            );
        }
        let (code, body) = call(
            &server,
            "GET",
            &format!("{base}/p1/exec?container=nope"),
            None,
        )?;
        assert_eq!(code, 400, "{engine}");
        assert_eq!(body["message"], "container nope is not valid for pod p1");
        let (code, body) = call(&server, "GET", &format!("{base}/p1/proxy/index.html"), None)?;
        assert_eq!(
            (code, body["message"].as_str()),
            (400, Some("address not allowed")),
            "{engine}"
        );

        // Binding: once, then 409.
        let binding = |pod: &str, node: &str| {
            json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
        };
        let (code, body) = call(
            &server,
            "POST",
            &format!("{base}/p1/binding"),
            Some(binding("p1", "n1")),
        )?;
        assert_eq!(
            (code, &body["status"]),
            (201, &json!("Success")),
            "{engine}: {body}"
        );
        let bound = pods.get("p1").await?;
        assert_eq!(
            bound.spec.as_ref().and_then(|s| s.node_name.as_deref()),
            Some("n1")
        );
        let scheduled = bound
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True");
        assert!(scheduled, "{engine}: PodScheduled condition");
        let (code, body) = call(
            &server,
            "POST",
            &format!("{base}/p1/binding"),
            Some(binding("p1", "n2")),
        )?;
        assert_eq!(code, 409, "{engine}: {body}");
        assert_eq!(
            body["message"],
            "Operation cannot be fulfilled on pods/binding \"p1\": pod p1 is already assigned to node \"n1\""
        );
        let (code, _) = call(
            &server,
            "POST",
            &format!("{base}/p1/binding"),
            Some(binding("other", "n2")),
        )?;
        assert_eq!(code, 400, "{engine}: name mismatch");
        let (code, body) = call(
            &server,
            "POST",
            &format!("{base}/p1/binding"),
            Some(json!({"metadata": {"name": "p1"}, "target": {}})),
        )?;
        assert_eq!(code, 422, "{engine}: {body}");
        // The `bindings` resource does the same.
        pods.create(&PostParams::default(), &pod("p2", json!({}))?)
            .await?;
        let (code, _) = call(
            &server,
            "POST",
            "/clusters/acme/api/v1/namespaces/default/bindings",
            Some(binding("p2", "n1")),
        )?;
        assert_eq!(code, 201, "{engine}");
        assert_eq!(
            pods.get("p2")
                .await?
                .spec
                .and_then(|s| s.node_name)
                .as_deref(),
            Some("n1")
        );

        // Bound to a node that does not exist, then to one with no kubelet.
        let (code, body) = call(&server, "POST", &format!("{base}/p1/exec?command=ls"), None)?;
        assert_eq!(
            (code, body["reason"].as_str()),
            (404, Some("NotFound")),
            "{engine}: {body}"
        );
        let nodes: Api<Node> = Api::all(c.clone());
        nodes
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "n1"}}))?,
            )
            .await?;
        let (code, body) = call(&server, "POST", &format!("{base}/p1/exec?command=ls"), None)?;
        assert_eq!(
            (code, body["reason"].as_str()),
            (503, Some("ServiceUnavailable")),
            "{engine}: {body}"
        );
        let (code, _) = call(
            &server,
            "GET",
            "/clusters/acme/api/v1/nodes/n1/proxy/healthz",
            None,
        )?;
        assert_eq!(code, 503, "{engine}: node proxy");
        let (code, _) = call(
            &server,
            "GET",
            "/clusters/acme/api/v1/nodes/nope/proxy/",
            None,
        )?;
        assert_eq!(code, 404, "{engine}: proxy to a missing node");
        let svcs: Api<Service> = Api::namespaced(c.clone(), "default");
        svcs.create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}),
            )?,
        )
        .await?;
        let (code, body) = call(
            &server,
            "GET",
            "/clusters/acme/api/v1/namespaces/default/services/web/proxy/",
            None,
        )?;
        assert_eq!(code, 503, "{engine}: {body}");
        assert_eq!(
            body["message"],
            "no endpoints available for service \"web\""
        );

        // Ephemeral containers: added through their subresource, never removed.
        let debugger =
            json!({"spec": {"ephemeralContainers": [{"name": "debugger", "image": "busybox"}]}});
        let r = server.request(
            "PATCH",
            &format!("{base}/p1/ephemeralcontainers"),
            &[("Content-Type", "application/strategic-merge-patch+json")],
            Some(debugger.to_string().as_bytes()),
        )?;
        let (code, body) = (r.status, serde_json::from_slice::<Value>(&r.body)?);
        assert_eq!(code, 200, "{engine}: {body}");
        assert_eq!(body["spec"]["ephemeralContainers"][0]["name"], "debugger");
        let current = pods.get("p1").await?;
        let mut replaced = serde_json::to_value(&current)?;
        replaced["spec"]["ephemeralContainers"] = json!([]);
        let (code, body) = call(
            &server,
            "PUT",
            &format!("{base}/p1/ephemeralcontainers"),
            Some(replaced),
        )?;
        assert_eq!(code, 422, "{engine}: {body}");

        // Discovery lists the subresources like a 1.32 cluster.
        let (_, v1) = server.get_json("/clusters/acme/api/v1", None)?;
        let names: Vec<&str> = v1["resources"]
            .as_array()
            .context("resources")?
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        for want in [
            "bindings",
            "componentstatuses",
            "pods/attach",
            "pods/binding",
            "pods/ephemeralcontainers",
            "pods/eviction",
            "pods/exec",
            "pods/log",
            "pods/portforward",
            "pods/proxy",
            "pods/status",
            "nodes/proxy",
            "services/proxy",
        ] {
            assert!(names.contains(&want), "{engine}: discovery lacks {want}");
        }

        // componentstatuses: storage reported as etcd-0.
        let (code, cs) = server.get_json("/clusters/acme/api/v1/componentstatuses", None)?;
        assert_eq!(code, 200, "{engine}: {cs}");
        assert_eq!(cs["items"][0]["metadata"]["name"], "etcd-0");
        assert_eq!(cs["items"][0]["conditions"][0]["status"], "True");
        let (code, _) = server.get_json("/clusters/acme/api/v1/componentstatuses/etcd-0", None)?;
        assert_eq!(code, 200);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn eviction_honours_disruption_budgets() -> Result<()> {
    for (engine, server) in servers_for("eviction_honours_disruption_budgets")? {
        server.create_workspace("acme")?;
        let c = client(&server, "acme")?;
        let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
        let pdbs: Api<PodDisruptionBudget> = Api::namespaced(c.clone(), "default");
        pdbs.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "web"},
                "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}))?,
        )
        .await?;
        let set_budget = |allowed: i64| {
            json!({"status": {"observedGeneration": 1, "disruptionsAllowed": allowed,
                   "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}})
        };
        pdbs.patch_status("web", &PatchParams::default(), &Patch::Merge(set_budget(0)))
            .await?;
        for name in ["w1", "pending"] {
            pods.create(&PostParams::default(), &pod(name, json!({"app": "web"}))?)
                .await?;
        }
        // Ready: an unready pod would go without a decrement while the
        // budget's application is healthy (upstream's IfHealthyBudget).
        pods.patch_status(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}]}})),
        )
        .await?;

        // Raw HTTP: kube-rs retries 429s with a growing backoff.
        let (code, body) = call(
            &server,
            "POST",
            "/clusters/acme/api/v1/namespaces/default/pods/w1/eviction",
            Some(
                json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "w1"}}),
            ),
        )?;
        assert_eq!(
            (code, body["reason"].as_str()),
            (429, Some("TooManyRequests")),
            "{engine}: {body}"
        );
        assert_eq!(
            body["message"],
            "Cannot evict pod as it would violate the pod's disruption budget."
        );
        assert_eq!(
            body["details"]["causes"][0]["reason"], "DisruptionBudget",
            "{engine}"
        );
        assert!(pods.get_opt("w1").await?.is_some(), "{engine}: pod kept");
        // A pod that never ran is evicted whatever the budget says.
        pods.evict("pending", &EvictParams::default()).await?;

        pdbs.patch_status("web", &PatchParams::default(), &Patch::Merge(set_budget(1)))
            .await?;
        pods.evict("w1", &EvictParams::default()).await?;
        assert!(pods.get_opt("w1").await?.is_none(), "{engine}: evicted");
        let budget = pdbs.get_status("web").await?.status.context("status")?;
        assert_eq!(budget.disruptions_allowed, 0, "{engine}: decremented");
        assert!(
            budget.disrupted_pods.unwrap_or_default().contains_key("w1"),
            "{engine}: disruptedPods records the eviction"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn implicit_namespaces_delete_like_a_cluster() -> Result<()> {
    for (engine, server) in servers_for("implicit_namespaces_delete_like_a_cluster")? {
        server.create_workspace("acme")?;
        server.create_workspace("beta")?;
        let ns: Api<Namespace> = Api::all(client(&server, "acme")?);
        for immortal in ["default", "kube-system", "kube-public"] {
            let err = ns.delete(immortal, &Default::default()).await.unwrap_err();
            let (code, reason, message) = api_err(&err);
            assert_eq!((code, reason.as_str()), (403, "Forbidden"), "{engine}");
            assert_eq!(
                message,
                format!(
                    "namespaces \"{immortal}\" is forbidden: this namespace may not be deleted"
                )
            );
        }
        ns.delete("kube-node-lease", &Default::default()).await?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while ns.get_opt("kube-node-lease").await?.is_some() {
            if Instant::now() > deadline {
                bail!("{engine}: kube-node-lease still there");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Gone for good: not listed, not resurrected, no content allowed.
        tokio::time::sleep(Duration::from_millis(300)).await;
        ensure!(
            ns.get_opt("kube-node-lease").await?.is_none(),
            "{engine}: reappeared"
        );
        let names: Vec<String> = ns
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        assert_eq!(names, ["default", "kube-public", "kube-system"], "{engine}");
        let (code, _) = call(
            &server,
            "POST",
            "/clusters/acme/api/v1/namespaces/kube-node-lease/configmaps",
            Some(json!({"metadata": {"name": "x"}})),
        )?;
        assert_eq!(code, 404, "{engine}: content in a deleted namespace");
        // Another workspace keeps its own.
        let beta: Api<Namespace> = Api::all(client(&server, "beta")?);
        assert!(beta.get_opt("kube-node-lease").await?.is_some(), "{engine}");
        // It can be created again, like any namespace.
        ns.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "kube-node-lease"}}))?,
        )
        .await?;
        assert!(ns.get_opt("kube-node-lease").await?.is_some(), "{engine}");
    }
    Ok(())
}

fn kubectl(server: &Server, workspace: &str, test: &str) -> Result<Option<Kubectl>> {
    Ok(match kubectl_or_skip(test) {
        Some(bin) => Some(Kubectl::new(bin, server.workspace_url(workspace))?),
        None => None,
    })
}

/// The parts of an object two creates of the same manifest share.
fn comparable(mut v: Value) -> Value {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "namespace",
        ] {
            m.remove(k);
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn protobuf_and_json_creates_agree() -> Result<()> {
    for (engine, server) in servers_for("protobuf_and_json_creates_agree")? {
        server.create_workspace("acme")?;
        let Some(k) = kubectl(&server, "acme", "protobuf_and_json_creates_agree")? else {
            return Ok(());
        };
        k.ok(&["create", "namespace", "pb"])?;
        k.ok(&["create", "namespace", "js"])?;
        // kubectl's typed create sends protobuf ...
        k.ok(&["create", "deployment", "web", "--image=nginx", "-n", "pb"])?;
        // ... and its client-side rendering is the same object as JSON.
        let manifest = k.ok(&[
            "create",
            "deployment",
            "web",
            "--image=nginx",
            "-n",
            "js",
            "--dry-run=client",
            "-o",
            "json",
        ])?;
        let (code, _) = call(
            &server,
            "POST",
            "/clusters/acme/apis/apps/v1/namespaces/js/deployments",
            Some(serde_json::from_str(&manifest)?),
        )?;
        ensure!(code == 201, "{engine}: JSON create: {code}");
        let (_, pb) = server.get_json(
            "/clusters/acme/apis/apps/v1/namespaces/pb/deployments/web",
            None,
        )?;
        let (_, js) = server.get_json(
            "/clusters/acme/apis/apps/v1/namespaces/js/deployments/web",
            None,
        )?;
        assert_eq!(comparable(pb.clone()), comparable(js), "{engine}");
        assert!(
            pb["spec"].get("minReadySeconds").is_none(),
            "{engine}: {pb}"
        );
        assert!(pb["spec"].get("paused").is_none(), "{engine}: {pb}");
        assert!(
            pb["spec"]["template"]["metadata"]
                .get("generation")
                .is_none(),
            "{engine}: {pb}"
        );
        assert_eq!(pb["metadata"]["generation"], 1, "{engine}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_ips_are_unique_per_workspace() -> Result<()> {
    for (engine, server) in servers_for("cluster_ips_are_unique_per_workspace")? {
        server.create_workspace("acme")?;
        server.create_workspace("beta")?;
        let svc = |ws: &str, name: &str, spec: Value| -> Result<(u16, Value)> {
            call(
                &server,
                "POST",
                &format!("/clusters/{ws}/api/v1/namespaces/default/services"),
                Some(json!({"metadata": {"name": name}, "spec": spec})),
            )
        };
        let port = json!([{"port": 80}]);
        let (code, _) = svc(
            "acme",
            "a",
            json!({"clusterIP": "10.96.5.5", "ports": port}),
        )?;
        assert_eq!(code, 201, "{engine}");
        let (code, body) = svc(
            "acme",
            "b",
            json!({"clusterIP": "10.96.5.5", "ports": port}),
        )?;
        assert_eq!(code, 422, "{engine}: {body}");
        assert_eq!(
            body["message"],
            "Service \"b\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.96.5.5\"}: failed to allocate IP 10.96.5.5: provided IP is already allocated"
        );
        let (code, _) = svc(
            "acme",
            "k",
            json!({"clusterIP": "10.96.0.1", "ports": port}),
        )?;
        assert_eq!(code, 422, "{engine}: the kubernetes Service's address");
        let (code, body) = svc(
            "acme",
            "out",
            json!({"clusterIP": "192.168.0.1", "ports": port}),
        )?;
        assert_eq!(code, 422, "{engine}: {body}");
        // Each workspace is its own cluster.
        let (code, _) = svc(
            "beta",
            "a",
            json!({"clusterIP": "10.96.5.5", "ports": port}),
        )?;
        assert_eq!(code, 201, "{engine}");
        let mut seen =
            std::collections::HashSet::from(["10.96.0.1".to_owned(), "10.96.5.5".to_owned()]);
        for i in 0..20 {
            let (code, body) = svc("acme", &format!("s{i}"), json!({"ports": port}))?;
            assert_eq!(code, 201, "{engine}: {body}");
            let ip = body["spec"]["clusterIP"]
                .as_str()
                .context("clusterIP")?
                .to_owned();
            assert!(ip.starts_with("10."), "{engine}: {ip}");
            assert!(seen.insert(ip.clone()), "{engine}: {ip} handed out twice");
        }
        for name in ["h1", "h2"] {
            let (code, body) = svc("acme", name, json!({"clusterIP": "None", "ports": port}))?;
            assert_eq!(
                (code, &body["spec"]["clusterIP"]),
                (201, &json!("None")),
                "{engine}"
            );
        }
        // Deleting releases the address.
        let (code, _) = call(
            &server,
            "DELETE",
            "/clusters/acme/api/v1/namespaces/default/services/a",
            None,
        )?;
        assert_eq!(code, 200, "{engine}");
        let (code, body) = svc(
            "acme",
            "b",
            json!({"clusterIP": "10.96.5.5", "ports": port}),
        )?;
        assert_eq!(code, 201, "{engine}: {body}");
        // The address cannot change afterwards.
        let (code, _) = call(
            &server,
            "PATCH",
            "/clusters/acme/api/v1/namespaces/default/services/b",
            None,
        )
        .and_then(|_| {
            let r = server.request(
                "PATCH",
                "/clusters/acme/api/v1/namespaces/default/services/b",
                &[("Content-Type", "application/merge-patch+json")],
                Some(br#"{"spec":{"clusterIP":"10.96.6.6","clusterIPs":["10.96.6.6"]}}"#),
            )?;
            Ok((r.status, Value::Null))
        })?;
        assert_eq!(code, 422, "{engine}: clusterIP is immutable");
        // NodePorts likewise.
        let np = |name: &str, port: Option<i64>| {
            let mut p = json!({"port": 80});
            if let Some(n) = port {
                p["nodePort"] = n.into();
            }
            svc("acme", name, json!({"type": "NodePort", "ports": [p]}))
        };
        let (code, _) = np("np1", Some(30080))?;
        assert_eq!(code, 201, "{engine}");
        let (code, body) = np("np2", Some(30080))?;
        assert_eq!(code, 422, "{engine}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or("")
                .contains("provided port is already allocated")
        );
        let (code, body) = np("np3", None)?;
        assert_eq!(code, 201, "{engine}: {body}");
        let auto = body["spec"]["ports"][0]["nodePort"]
            .as_i64()
            .context("nodePort")?;
        assert!(
            (30000..=32767).contains(&auto) && auto != 30080,
            "{engine}: {auto}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn per_type_validation_speaks_like_upstream() -> Result<()> {
    for (engine, server) in servers_for("per_type_validation_speaks_like_upstream")? {
        server.create_workspace("acme")?;
        let ns = "/clusters/acme/api/v1/namespaces/default";
        let apis = "/clusters/acme/apis";
        let containers = json!([{"name": "c", "image": "busybox"}]);
        let cases: Vec<(String, Value, &str)> = vec![
            (
                format!("{ns}/configmaps"),
                json!({"metadata": {"name": "cm"}, "data": {"bad key": "v"}}),
                "ConfigMap \"cm\" is invalid: data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            ),
            (
                format!("{apis}/batch/v1/namespaces/default/cronjobs"),
                json!({"metadata": {"name": "cj"}, "spec": {"schedule": "61 * * * *",
                    "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": containers}}}}}}),
                "CronJob.batch \"cj\" is invalid: spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61",
            ),
            (
                format!("{apis}/batch/v1/namespaces/default/jobs"),
                json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {"containers": containers}}}}),
                "Job.batch \"j\" is invalid: spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"",
            ),
            (
                format!("{ns}/persistentvolumeclaims"),
                json!({"metadata": {"name": "pvc"}, "spec": {"resources": {"requests": {"storage": "1Gi"}}}}),
                "PersistentVolumeClaim \"pvc\" is invalid: spec.accessModes: Required value: at least 1 access mode is required",
            ),
            (
                format!("{apis}/autoscaling/v2/namespaces/default/horizontalpodautoscalers"),
                json!({"metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"}, "minReplicas": 5, "maxReplicas": 3}}),
                "HorizontalPodAutoscaler.autoscaling \"h\" is invalid: spec.minReplicas: Invalid value: 5: must be less than or equal to maxReplicas",
            ),
            (
                format!("{apis}/coordination.k8s.io/v1/namespaces/default/leases"),
                json!({"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 0}}),
                "Lease.coordination.k8s.io \"l\" is invalid: spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
            ),
            (
                format!("{apis}/scheduling.k8s.io/v1/priorityclasses"),
                json!({"metadata": {"name": "system-mine"}, "value": 10}),
                "PriorityClass.scheduling.k8s.io \"system-mine\" is invalid: metadata.name: Invalid value: \"system-mine\": priority class names with 'system-' prefix are reserved",
            ),
            (
                format!("{apis}/networking.k8s.io/v1/namespaces/default/ingresses"),
                json!({"metadata": {"name": "ing"}, "spec": {"rules": [{"http": {"paths": [{"path": "web", "pathType": "Prefix",
                    "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
                "Ingress.networking.k8s.io \"ing\" is invalid: spec.rules[0].http.paths[0].path: Invalid value: \"web\": must be an absolute path",
            ),
            (
                format!("{apis}/apps/v1/namespaces/default/statefulsets"),
                json!({"metadata": {"name": "sts"}, "spec": {"selector": {"matchLabels": {"app": "db"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}}}}),
                "StatefulSet.apps \"sts\" is invalid: spec.template.metadata.labels: Invalid value: {\"app\":\"web\"}: `selector` does not match template `labels`",
            ),
        ];
        for (path, body, want) in cases {
            let (code, got) = call(&server, "POST", &path, Some(body))?;
            assert_eq!(code, 422, "{engine} {path}: {got}");
            assert_eq!(got["message"], want, "{engine} {path}");
            assert!(
                got["details"]["causes"][0]["field"].is_string(),
                "{engine}: {got}"
            );
        }
        let (code, got) = call(
            &server,
            "POST",
            &format!("{apis}/policy/v1/namespaces/default/poddisruptionbudgets"),
            Some(
                json!({"metadata": {"name": "p"}, "spec": {"minAvailable": 1, "maxUnavailable": 1}}),
            ),
        )?;
        assert_eq!(code, 422, "{engine}: {got}");

        // PATCH with fieldValidation=Warn (the default) drops unknown fields
        // and says so in a Warning header, like POST and PUT.
        let (code, _) = call(
            &server,
            "POST",
            &format!("{ns}/configmaps"),
            Some(json!({"metadata": {"name": "w"}})),
        )?;
        assert_eq!(code, 201, "{engine}");
        let r = server.request(
            "PATCH",
            &format!("{ns}/configmaps/w"),
            &[("Content-Type", "application/merge-patch+json")],
            Some(br#"{"data": {"a": "b"}, "bogus": 1}"#),
        )?;
        assert_eq!(r.status, 200, "{engine}: {}", r.text());
        assert_eq!(
            r.header("Warning"),
            Some("299 - \"unknown field \\\"bogus\\\"\""),
            "{engine}"
        );
        let patched: Value = serde_json::from_slice(&r.body)?;
        assert!(
            patched.get("bogus").is_none() && patched["data"]["a"] == "b",
            "{engine}: {patched}"
        );

        // A legacy event read through events.k8s.io/v1 has an eventTime.
        let (code, _) = call(
            &server,
            "POST",
            &format!("{ns}/events"),
            Some(
                json!({"metadata": {"name": "e1"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
                "reason": "Started", "message": "hi", "type": "Normal",
                "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:05Z"}),
            ),
        )?;
        assert_eq!(code, 201, "{engine}");
        let (_, ev) = server.get_json(
            &format!("{apis}/events.k8s.io/v1/namespaces/default/events/e1"),
            None,
        )?;
        assert_eq!(
            ev["eventTime"], "2026-01-01T00:00:05.000000Z",
            "{engine}: {ev}"
        );

        // kubectl prints the server's words.
        if let Some(k) = kubectl(&server, "acme", "per_type_validation_speaks_like_upstream")? {
            let out = k.run(&[
                "create",
                "cronjob",
                "cj2",
                "--image=busybox",
                "--schedule=bad",
            ])?;
            assert_ne!(out.code, Some(0), "{engine}");
            assert!(
                out.stderr.contains("spec.schedule: Invalid value: \"bad\": expected exactly 5 fields, found 1: [bad]"),
                "{engine}: {}",
                out.stderr
            );
        }
    }
    Ok(())
}

/// A server-side apply patch; returns the status and the parsed body.
fn apply(server: &Server, path: &str, body: Value) -> Result<(u16, Value)> {
    let bytes = body.to_string().into_bytes();
    let r = server.request(
        "PATCH",
        &format!("{path}?fieldManager=test"),
        &[
            ("Content-Type", "application/apply-patch+yaml"),
            ("Accept", "application/json"),
        ],
        Some(&bytes),
    )?;
    let v = serde_json::from_slice(&r.body).unwrap_or_else(|_| Value::String(r.text()));
    Ok((r.status, v))
}

#[tokio::test(flavor = "multi_thread")]
async fn services_applied_or_purged_go_through_the_allocator() -> Result<()> {
    for (engine, server) in servers_for("services_applied_or_purged_go_through_the_allocator")? {
        server.create_workspace("acme")?;
        let base = "/clusters/acme/api/v1/namespaces";
        let port = json!([{"port": 80}]);
        let svc = |name: &str, spec: Value| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec});
        let (code, _) = call(
            &server,
            "POST",
            &format!("{base}/default/services"),
            Some(svc("a", json!({"clusterIP": "10.96.5.5", "ports": port}))),
        )?;
        assert_eq!(code, 201, "{engine}");
        // An apply that creates checks the address it asks for...
        let (code, body) = apply(
            &server,
            &format!("{base}/default/services/b"),
            svc("b", json!({"clusterIP": "10.96.5.5", "ports": port})),
        )?;
        assert_eq!(code, 422, "{engine}: {body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.ends_with("provided IP is already allocated")),
            "{engine}: {body}"
        );
        // ... and reserves the ones it is given: a POST cannot take them.
        let mut seen = std::collections::HashSet::from(["10.96.5.5".to_owned()]);
        for i in 0..5 {
            let (code, body) = apply(
                &server,
                &format!("{base}/default/services/s{i}"),
                svc(&format!("s{i}"), json!({"type": "NodePort", "ports": port})),
            )?;
            assert_eq!(code, 201, "{engine}: {body}");
            let ip = body["spec"]["clusterIP"].as_str().context("clusterIP")?;
            assert!(
                seen.insert(ip.to_owned()),
                "{engine}: {ip} handed out twice"
            );
            let node_port = &body["spec"]["ports"][0]["nodePort"];
            let (code, again) = call(
                &server,
                "POST",
                &format!("{base}/default/services"),
                Some(svc(
                    &format!("p{i}"),
                    json!({"clusterIP": ip, "ports": port}),
                )),
            )?;
            assert_eq!(code, 422, "{engine}: {again}");
            let (code, again) = call(
                &server,
                "POST",
                &format!("{base}/default/services"),
                Some(svc(
                    &format!("q{i}"),
                    json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": node_port}]}),
                )),
            )?;
            assert_eq!(code, 422, "{engine}: {again}");
        }
        // Re-applying keeps the address.
        let (code, body) = apply(
            &server,
            &format!("{base}/default/services/s0"),
            svc("s0", json!({"type": "NodePort", "ports": port})),
        )?;
        assert_eq!(code, 200, "{engine}: {body}");
        // A PUT creates Services (as upstream's strategy allows), through
        // the allocator: a taken address is refused like a POST's.
        let (code, body) = call(
            &server,
            "PUT",
            &format!("{base}/default/services/put"),
            Some(svc("put", json!({"clusterIP": "10.96.5.5", "ports": port}))),
        )?;
        assert_eq!(code, 422, "{engine}: {body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.ends_with("provided IP is already allocated")),
            "{engine}: {body}"
        );
        // A namespace's purge frees its Services' addresses at once.
        let (code, _) = call(
            &server,
            "POST",
            base,
            Some(json!({"metadata": {"name": "gone"}})),
        )?;
        assert_eq!(code, 201, "{engine}");
        let (code, _) = call(
            &server,
            "POST",
            &format!("{base}/gone/services"),
            Some(svc("x", json!({"clusterIP": "10.96.7.7", "ports": port}))),
        )?;
        assert_eq!(code, 201, "{engine}");
        call(&server, "DELETE", &format!("{base}/gone"), None)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (code, _) = call(&server, "GET", &format!("{base}/gone"), None)?;
            if code == 404 {
                break;
            }
            ensure!(Instant::now() < deadline, "{engine}: namespace not purged");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (code, body) = call(
            &server,
            "POST",
            &format!("{base}/default/services"),
            Some(svc("y", json!({"clusterIP": "10.96.7.7", "ports": port}))),
        )?;
        assert_eq!(code, 201, "{engine}: {body}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn statefulset_updates_touch_only_the_mutable_spec() -> Result<()> {
    for (engine, server) in servers_for("statefulset_updates_touch_only_the_mutable_spec")? {
        server.create_workspace("acme")?;
        let path = "/clusters/acme/apis/apps/v1/namespaces/default/statefulsets";
        let (code, body) = call(
            &server,
            "POST",
            path,
            Some(json!({"metadata": {"name": "db"}, "spec": {
                "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "db", "image": "postgres"}]}}}})),
        )?;
        assert_eq!(code, 201, "{engine}: {body}");
        let patch = |body: Value| -> Result<(u16, Value)> {
            let r = server.request(
                "PATCH",
                &format!("{path}/db"),
                &[
                    ("Content-Type", "application/merge-patch+json"),
                    ("Accept", "application/json"),
                ],
                Some(body.to_string().as_bytes()),
            )?;
            let v = serde_json::from_slice(&r.body).unwrap_or_else(|_| Value::String(r.text()));
            Ok((r.status, v))
        };
        let (code, body) = patch(json!({"spec": {"replicas": 3, "minReadySeconds": 5}}))?;
        assert_eq!(code, 200, "{engine}: {body}");
        let (code, body) = patch(json!({"spec": {"serviceName": "other"}}))?;
        assert_eq!(code, 422, "{engine}: {body}");
        assert_eq!(
            body["message"],
            "StatefulSet.apps \"db\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            "{engine}"
        );
    }
    Ok(())
}

/// The storage revision as a consistent list reports it: a write anywhere
/// in the store moves it.
fn store_revision(server: &Server, path: &str) -> Result<String> {
    let (code, list) = server.get_json(path, None)?;
    ensure!(code == 200, "{path}: {code} {list}");
    list["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_owned)
        .context("list resourceVersion")
}

fn rv_of(v: &Value) -> String {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn eviction_dry_run_and_unhealthy_pod_policy() -> Result<()> {
    for (engine, server) in servers_for("eviction_dry_run_and_unhealthy_pod_policy")? {
        server.create_workspace("acme")?;
        let c = client(&server, "acme")?;
        let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
        let pdbs: Api<PodDisruptionBudget> = Api::namespaced(c.clone(), "default");
        let base = "/clusters/acme/api/v1/namespaces/default/pods";
        let pdb_path = "/clusters/acme/apis/policy/v1/namespaces/default/poddisruptionbudgets/web";
        pdbs.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "web"},
                "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}}))?,
        )
        .await?;
        let budget = |generation: i64, allowed: i64, current: i64| {
            Patch::Merge(json!({"status": {"observedGeneration": generation,
                "disruptionsAllowed": allowed, "currentHealthy": current,
                "desiredHealthy": 2, "expectedPods": 3}}))
        };
        pdbs.patch_status("web", &PatchParams::default(), &budget(1, 1, 3))
            .await?;
        // A running pod: Ready or not, as a kubelet would report it.
        let running = |ready: &str| {
            Patch::Merge(json!({"status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": ready}]}}))
        };
        for (name, ready) in [("ready", "True"), ("unready", "False")] {
            pods.create(&PostParams::default(), &pod(name, json!({"app": "web"}))?)
                .await?;
            pods.patch_status(name, &PatchParams::default(), &running(ready))
                .await?;
        }
        let evict = |name: &str, query: &str, dry_body: bool| -> Result<(u16, Value)> {
            let mut body = json!({"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": name}});
            if dry_body {
                body["deleteOptions"] = json!({"dryRun": ["All"]});
            }
            call(
                &server,
                "POST",
                &format!("{base}/{name}/eviction{query}"),
                Some(body),
            )
        };

        // dryRun, in the query or in deleteOptions: answered like the real
        // eviction, nothing written anywhere.
        let revision = store_revision(&server, "/clusters/acme/api/v1/namespaces/default/pods")?;
        let (_, pdb_before) = server.get_json(pdb_path, None)?;
        let (_, pod_before) = server.get_json(&format!("{base}/ready"), None)?;
        for (query, in_body) in [("?dryRun=All", false), ("", true)] {
            let (code, body) = evict("ready", query, in_body)?;
            assert_eq!(
                (code, body["status"].as_str()),
                (201, Some("Success")),
                "{engine} {query} {in_body}: {body}"
            );
        }
        let (_, pdb_after) = server.get_json(pdb_path, None)?;
        let (code, pod_after) = server.get_json(&format!("{base}/ready"), None)?;
        assert_eq!(code, 200, "{engine}: a dry-run eviction deleted the pod");
        assert_eq!(
            rv_of(&pod_after),
            rv_of(&pod_before),
            "{engine}: pod written"
        );
        assert_eq!(
            rv_of(&pdb_after),
            rv_of(&pdb_before),
            "{engine}: budget written"
        );
        assert_eq!(pdb_after["status"]["disruptionsAllowed"], 1, "{engine}");
        assert_eq!(
            store_revision(&server, "/clusters/acme/api/v1/namespaces/default/pods")?,
            revision,
            "{engine}: a dry run moved the storage revision"
        );

        // An exhausted budget refuses the dry run exactly as the real one,
        // with upstream's message and no Retry-After.
        pdbs.patch_status("web", &PatchParams::default(), &budget(1, 0, 2))
            .await?;
        for query in ["?dryRun=All", ""] {
            let r = server.request(
                "POST",
                &format!("{base}/ready/eviction{query}"),
                &[("Content-Type", "application/json")],
                Some(
                    json!({"apiVersion": "policy/v1", "kind": "Eviction",
                        "metadata": {"name": "ready"}})
                    .to_string()
                    .as_bytes(),
                ),
            )?;
            let body: Value = serde_json::from_slice(&r.body)?;
            assert_eq!(r.status, 429, "{engine} {query}: {body}");
            assert_eq!(
                body["details"]["causes"][0]["message"],
                "The disruption budget web needs 2 healthy pods and has 2 currently",
                "{engine}"
            );
            assert!(body["details"].get("retryAfterSeconds").is_none(), "{body}");
            assert_eq!(r.header("Retry-After"), None, "{engine}");
        }

        // The unready pod under the default IfHealthyBudget: refused while
        // the application is short of healthy pods.
        pdbs.patch_status("web", &PatchParams::default(), &budget(1, 0, 1))
            .await?;
        let (code, body) = evict("unready", "", false)?;
        assert_eq!(code, 429, "{engine}: {body}");

        // A spec change the controller has not observed yet: 429 saying so,
        // with Retry-After 10, for the ready pod.
        pdbs.patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"unhealthyPodEvictionPolicy": "AlwaysAllow"}})),
        )
        .await?;
        let r = server.request(
            "POST",
            &format!("{base}/ready/eviction?dryRun=All"),
            &[("Content-Type", "application/json")],
            Some(
                json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "ready"}})
                    .to_string()
                    .as_bytes(),
            ),
        )?;
        let body: Value = serde_json::from_slice(&r.body)?;
        assert_eq!(r.status, 429, "{engine}: {body}");
        assert_eq!(
            body["details"]["causes"][0]["message"],
            "The disruption budget web is still being processed by the server.",
            "{engine}"
        );
        assert_eq!(body["details"]["retryAfterSeconds"], 10, "{engine}");
        assert_eq!(r.header("Retry-After"), Some("10"), "{engine}");

        // AlwaysAllow: the unready pod goes although the budget is spent,
        // and takes nothing from it.
        pdbs.patch_status("web", &PatchParams::default(), &budget(2, 0, 1))
            .await?;
        let (code, body) = evict("unready", "?dryRun=All", false)?;
        assert_eq!(code, 201, "{engine}: {body}");
        assert!(
            pods.get_opt("unready").await?.is_some(),
            "{engine}: dry run"
        );
        let (code, body) = evict("unready", "", false)?;
        assert_eq!(code, 201, "{engine}: {body}");
        assert!(
            pods.get_opt("unready").await?.is_none(),
            "{engine}: evicted"
        );
        let status = pdbs.get_status("web").await?.status.context("status")?;
        assert_eq!(status.disruptions_allowed, 0, "{engine}: no decrement");
        assert!(
            !status
                .disrupted_pods
                .unwrap_or_default()
                .contains_key("unready"),
            "{engine}"
        );
        // ... but the policy is for unready pods only.
        let (code, _) = evict("ready", "", false)?;
        assert_eq!(code, 429, "{engine}: a ready pod is still protected");

        // IfHealthyBudget with a healthy application: an unready pod goes
        // without a decrement.
        pdbs.patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"unhealthyPodEvictionPolicy": "IfHealthyBudget"}})),
        )
        .await?;
        pdbs.patch_status("web", &PatchParams::default(), &budget(3, 0, 2))
            .await?;
        pods.create(&PostParams::default(), &pod("late", json!({"app": "web"}))?)
            .await?;
        pods.patch_status("late", &PatchParams::default(), &running("False"))
            .await?;
        let (code, body) = evict("late", "", false)?;
        assert_eq!(code, 201, "{engine}: {body}");
        assert!(pods.get_opt("late").await?.is_none(), "{engine}");

        // A real eviction of the ready pod takes the last disruption and
        // marks the budget.
        pdbs.patch_status("web", &PatchParams::default(), &budget(3, 1, 3))
            .await?;
        let (code, body) = evict("ready", "", false)?;
        assert_eq!(code, 201, "{engine}: {body}");
        assert!(pods.get_opt("ready").await?.is_none(), "{engine}");
        let (_, pdb) = server.get_json(pdb_path, None)?;
        assert_eq!(pdb["status"]["disruptionsAllowed"], 0, "{engine}");
        let cond = pdb["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "DisruptionAllowed")
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            (cond["status"].as_str(), cond["reason"].as_str()),
            (Some("False"), Some("InsufficientPods")),
            "{engine}: {pdb}"
        );

        // Two budgets for one pod: upstream's 500 Status, pod kept.
        pdbs.create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "everything"}, "spec": {"selector": {}}}),
            )?,
        )
        .await?;
        pods.create(&PostParams::default(), &pod("both", json!({"app": "web"}))?)
            .await?;
        pods.patch_status("both", &PatchParams::default(), &running("True"))
            .await?;
        let (code, body) = evict("both", "?dryRun=All", false)?;
        assert_eq!(code, 500, "{engine}: {body}");
        assert_eq!(
            (body["status"].as_str(), body["message"].as_str()),
            (
                Some("Failure"),
                Some(
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
                )
            ),
            "{engine}"
        );
        assert!(pods.get_opt("both").await?.is_some(), "{engine}");
        // The name in the body must be the pod's.
        let (code, _) = call(
            &server,
            "POST",
            &format!("{base}/both/eviction"),
            Some(
                json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "other"}}),
            ),
        )?;
        assert_eq!(code, 400, "{engine}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_drain_server_dry_run_evicts_nothing() -> Result<()> {
    for (engine, server) in servers_for("kubectl_drain_server_dry_run_evicts_nothing")? {
        server.create_workspace("acme")?;
        let Some(k) = kubectl(
            &server,
            "acme",
            "kubectl_drain_server_dry_run_evicts_nothing",
        )?
        else {
            return Ok(());
        };
        let c = client(&server, "acme")?;
        let nodes: Api<Node> = Api::all(c.clone());
        nodes
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "n1"}}))?,
            )
            .await?;
        let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
        let mut p = pod("on-n1", json!({"app": "web"}))?;
        if let Some(spec) = p.spec.as_mut() {
            spec.node_name = Some("n1".into());
        }
        pods.create(&PostParams::default(), &p).await?;
        pods.patch_status(
            "on-n1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}]}})),
        )
        .await?;
        let before = pods.get("on-n1").await?.metadata.resource_version;

        let out = k.run(&[
            "drain",
            "n1",
            "--dry-run=server",
            "--force",
            "--timeout=20s",
        ])?;
        println!(
            "{engine}: drain stdout {} stderr {}",
            out.stdout, out.stderr
        );
        assert!(out.success, "{engine}: {}{}", out.stderr, out.stdout);
        assert!(
            out.stdout
                .contains("evicting pod default/on-n1 (server dry run)"),
            "{engine}: {}",
            out.stdout
        );
        let after = pods.get("on-n1").await?;
        assert_eq!(
            after.metadata.resource_version, before,
            "{engine}: pod written"
        );
        let node = nodes.get("n1").await?;
        assert_ne!(
            node.spec.and_then(|s| s.unschedulable),
            Some(true),
            "{engine}: a server dry run cordoned the node"
        );

        // With a budget that allows nothing the dry run is refused (kubectl
        // retries the 429 until its timeout).
        let pdbs: Api<PodDisruptionBudget> = Api::namespaced(c.clone(), "default");
        pdbs.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "web"},
                "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "web"}}}}))?,
        )
        .await?;
        pdbs.patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"observedGeneration": 1, "disruptionsAllowed": 0,
                "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}}),
            ),
        )
        .await?;
        let out = k.run(&["drain", "n1", "--dry-run=server", "--force", "--timeout=3s"])?;
        println!(
            "{engine}: blocked drain stdout {} stderr {}",
            out.stdout, out.stderr
        );
        assert!(!out.success, "{engine}: drain passed a zero budget");
        assert!(
            out.stderr
                .contains("Cannot evict pod as it would violate the pod's disruption budget"),
            "{engine}: {}",
            out.stderr
        );
        assert!(pods.get_opt("on-n1").await?.is_some(), "{engine}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn deprecated_types_and_fields_warn() -> Result<()> {
    for (engine, server) in servers_for("deprecated_types_and_fields_warn")? {
        server.create_workspace("acme")?;
        let warnings = |r: &wsgate_e2e::RawResponse| -> Vec<String> {
            r.headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("warning"))
                .map(|(_, v)| v.clone())
                .collect()
        };
        // componentstatuses: deprecated in 1.19, served in 1.32; every verb warns.
        for path in [
            "/clusters/acme/api/v1/componentstatuses",
            "/clusters/acme/api/v1/componentstatuses/etcd-0",
        ] {
            let r = server.request("GET", path, &[], None)?;
            assert_eq!(r.status, 200, "{engine} {path}");
            assert_eq!(
                warnings(&r),
                [r#"299 - "v1 ComponentStatus is deprecated in v1.19+""#],
                "{engine} {path}"
            );
        }
        let r = server.request("GET", "/clusters/acme/api/v1/configmaps", &[], None)?;
        assert!(warnings(&r).is_empty(), "{engine}: {:?}", warnings(&r));

        // A pod using a deprecated node label and volume plugin: created, with
        // upstream's field warnings.
        let (pod_body, _) = (
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "old"},
                "spec": {"nodeSelector": {"beta.kubernetes.io/arch": "amd64"},
                    "volumes": [{"name": "src", "gitRepo": {"repository": "https://example.com/r"}}],
                    "containers": [{"name": "c", "image": "nginx"}]}}),
            (),
        );
        let r = server.request(
            "POST",
            "/clusters/acme/api/v1/namespaces/default/pods",
            &[("Content-Type", "application/json")],
            Some(pod_body.to_string().as_bytes()),
        )?;
        assert_eq!(r.status, 201, "{engine}: {}", r.text());
        assert_eq!(
            warnings(&r),
            [
                r#"299 - "spec.nodeSelector[beta.kubernetes.io/arch]: deprecated since v1.14; use \"kubernetes.io/arch\" instead""#,
                r#"299 - "spec.volumes[0].gitRepo: deprecated in v1.11""#,
            ],
            "{engine}"
        );
        // A dry-run create warns the same; a clean pod does not.
        let r = server.request(
            "POST",
            "/clusters/acme/api/v1/namespaces/default/pods?dryRun=All",
            &[("Content-Type", "application/json")],
            Some(
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "new"},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
                .to_string()
                .as_bytes(),
            ),
        )?;
        assert_eq!(r.status, 201, "{engine}");
        assert!(warnings(&r).is_empty(), "{engine}: {:?}", warnings(&r));

        // The legacy Ingress class annotation warns on create, not on update.
        let ing = "/clusters/acme/apis/networking.k8s.io/v1/namespaces/default/ingresses";
        let ing_body = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "legacy", "annotations": {"kubernetes.io/ingress.class": "nginx"}},
            "spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}});
        let r = server.request(
            "POST",
            ing,
            &[("Content-Type", "application/json")],
            Some(ing_body.to_string().as_bytes()),
        )?;
        assert_eq!(r.status, 201, "{engine}: {}", r.text());
        assert_eq!(
            warnings(&r),
            [
                r#"299 - "annotation \"kubernetes.io/ingress.class\" is deprecated, please use 'spec.ingressClassName' instead""#
            ],
            "{engine}"
        );
        let mut updated: Value = serde_json::from_slice(&r.body)?;
        updated["metadata"]["labels"] = json!({"touched": "yes"});
        let r = server.request(
            "PUT",
            &format!("{ing}/legacy"),
            &[("Content-Type", "application/json")],
            Some(updated.to_string().as_bytes()),
        )?;
        assert_eq!(r.status, 200, "{engine}: {}", r.text());
        assert!(warnings(&r).is_empty(), "{engine}: {:?}", warnings(&r));

        // kubectl prints them.
        let Some(k) = kubectl(&server, "acme", "deprecated_types_and_fields_warn")? else {
            continue;
        };
        let out = k.run(&["get", "componentstatuses"])?;
        assert!(out.success, "{engine}: {}", out.stderr);
        assert!(
            out.stderr
                .contains("Warning: v1 ComponentStatus is deprecated in v1.19+"),
            "{engine}: {}",
            out.stderr
        );
        let dir = tempfile::tempdir()?;
        let manifest = dir.path().join("deploy.yaml");
        std::fs::write(
            &manifest,
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: legacy\nspec:\n  selector:\n    matchLabels: {app: legacy}\n  template:\n    metadata:\n      labels: {app: legacy}\n    spec:\n      nodeSelector:\n        beta.kubernetes.io/os: linux\n      containers:\n      - name: c\n        image: nginx\n",
        )?;
        let path = manifest.to_string_lossy().into_owned();
        let out = k.run(&["apply", "-f", &path])?;
        assert!(out.success, "{engine}: {}", out.stderr);
        assert!(
            out.stderr.contains(
                r#"Warning: spec.template.spec.nodeSelector[beta.kubernetes.io/os]: deprecated since v1.14; use "kubernetes.io/os" instead"#
            ),
            "{engine}: {}",
            out.stderr
        );
        // Re-applying the same template changes nothing and warns of nothing.
        let out = k.run(&["apply", "-f", &path])?;
        assert!(out.success, "{engine}: {}", out.stderr);
        assert!(!out.stderr.contains("Warning:"), "{engine}: {}", out.stderr);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn put_creates_only_where_upstream_allows() -> Result<()> {
    for (engine, server) in servers_for("put_creates_only_where_upstream_allows")? {
        server.create_workspace("acme")?;
        let ns = "/clusters/acme/api/v1/namespaces/default";
        let apis = "/clusters/acme/apis";
        // Upstream strategies with AllowCreateOnUpdate() == false: 404.
        let refused = [
            (
                format!("{ns}/configmaps/cm"),
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}),
            ),
            (
                format!("{ns}/pods/p"),
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}),
            ),
            (
                format!("{ns}/secrets/s"),
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}),
            ),
            (
                format!("{apis}/apps/v1/namespaces/default/deployments/d"),
                json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
            ),
            (
                format!("{apis}/scheduling.k8s.io/v1/priorityclasses/pc"),
                json!({"apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass", "metadata": {"name": "pc"}, "value": 10}),
            ),
            (
                format!("{apis}/storage.k8s.io/v1/storageclasses/sc"),
                json!({"apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass", "metadata": {"name": "sc"}, "provisioner": "x"}),
            ),
        ];
        for (path, body) in refused {
            let (code, status) = call(&server, "PUT", &path, Some(body))?;
            assert_eq!(
                (code, status["reason"].as_str()),
                (404, Some("NotFound")),
                "{engine} {path}: {status}"
            );
            let (code, _) = server.get_json(&path, None)?;
            assert_eq!(code, 404, "{engine} {path}: created anyway");
        }
        // ... and true: 201 Created, then 200 for the next PUT.
        let allowed = [
            (
                format!("{apis}/coordination.k8s.io/v1/namespaces/default/leases/l"),
                json!({"apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease", "metadata": {"name": "l"}, "spec": {"holderIdentity": "me"}}),
            ),
            (
                format!("{apis}/rbac.authorization.k8s.io/v1/namespaces/default/roles/r"),
                json!({"apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role", "metadata": {"name": "r"}, "rules": []}),
            ),
            (
                format!("{apis}/rbac.authorization.k8s.io/v1/clusterroles/cr"),
                json!({"apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole", "metadata": {"name": "cr"}, "rules": []}),
            ),
            (
                format!("{ns}/endpoints/ep"),
                json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "ep"}}),
            ),
            (
                format!("{ns}/limitranges/lr"),
                json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "lr"},
                "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}}]}}),
            ),
            (
                format!("{ns}/events/ev"),
                json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "ev"},
                "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}, "reason": "Test", "message": "m", "type": "Normal"}),
            ),
            (
                format!("{apis}/node.k8s.io/v1/runtimeclasses/rc"),
                json!({"apiVersion": "node.k8s.io/v1",
                "kind": "RuntimeClass", "metadata": {"name": "rc"}, "handler": "runc"}),
            ),
            (
                format!("{ns}/services/svc"),
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"},
                "spec": {"ports": [{"port": 80}]}}),
            ),
        ];
        for (path, body) in allowed {
            // A dry run answers 201 and stores nothing.
            let (code, created) = call(
                &server,
                "PUT",
                &format!("{path}?dryRun=All"),
                Some(body.clone()),
            )?;
            assert_eq!(code, 201, "{engine} {path}: {created}");
            let (code, _) = server.get_json(&path, None)?;
            assert_eq!(code, 404, "{engine} {path}: dry run stored");
            // A resourceVersion in the body of a create is ignored, as upstream.
            let mut with_rv = body.clone();
            with_rv["metadata"]["resourceVersion"] = json!("12345");
            let (code, created) = call(&server, "PUT", &path, Some(with_rv))?;
            assert_eq!(code, 201, "{engine} {path}: {created}");
            assert!(created["metadata"]["uid"].is_string(), "{engine} {path}");
            let (code, got) = server.get_json(&path, None)?;
            assert_eq!(
                (code, rv_of(&got)),
                (200, rv_of(&created)),
                "{engine} {path}"
            );
            let (code, again) = call(&server, "PUT", &path, Some(got))?;
            assert_eq!(code, 200, "{engine} {path}: {again}");
        }
        // A create by PUT obeys the namespace lifecycle like a POST.
        let (code, status) = call(
            &server,
            "PUT",
            &format!("{apis}/coordination.k8s.io/v1/namespaces/nope/leases/l"),
            Some(
                json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": "l", "namespace": "nope"}}),
            ),
        )?;
        assert_eq!(
            (code, status["message"].as_str()),
            (404, Some("namespaces \"nope\" not found")),
            "{engine}: {status}"
        );
        // The Service PUT created was allocated its ClusterIP like a POST.
        let (_, svc) = server.get_json(&format!("{ns}/services/svc"), None)?;
        let ip = svc["spec"]["clusterIP"].as_str().unwrap_or_default();
        assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{engine}: {svc}");

        // kube-rs `replace` of a missing Lease creates it.
        let c = client(&server, "acme")?;
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(c.clone(), "default");
        let lease: k8s_openapi::api::coordination::v1::Lease = serde_json::from_value(
            json!({"metadata": {"name": "kube"}, "spec": {"holderIdentity": "a"}}),
        )?;
        leases
            .replace("kube", &PostParams::default(), &lease)
            .await?;
        assert!(leases.get_opt("kube").await?.is_some(), "{engine}");
        let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(c, "default");
        let cm: k8s_openapi::api::core::v1::ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "kube"}}))?;
        let err = cms
            .replace("kube", &PostParams::default(), &cm)
            .await
            .expect_err("a ConfigMap PUT must not create");
        assert_eq!(api_err(&err).0, 404, "{engine}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_resize_is_not_served_in_1_32() -> Result<()> {
    for (engine, server) in servers_for("pod_resize_is_not_served_in_1_32")? {
        server.create_workspace("acme")?;
        let c = client(&server, "acme")?;
        let pods: Api<Pod> = Api::namespaced(c, "default");
        pods.create(&PostParams::default(), &pod("p", json!({}))?)
            .await?;
        // Legacy discovery: ephemeralcontainers yes, resize no.
        let (_, v1) = server.get_json("/clusters/acme/api/v1", None)?;
        let names: Vec<&str> = v1["resources"]
            .as_array()
            .context("resources")?
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert!(names.contains(&"pods/ephemeralcontainers"), "{engine}");
        assert!(!names.contains(&"pods/resize"), "{engine}: {names:?}");
        // Aggregated discovery agrees.
        let (_, agg) = server.get_json(
            "/clusters/acme/api",
            Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"),
        )?;
        let subs: Vec<String> = agg["items"][0]["versions"][0]["resources"]
            .as_array()
            .context("aggregated resources")?
            .iter()
            .filter(|r| r["resource"] == "pods")
            .flat_map(|r| r["subresources"].as_array().cloned().unwrap_or_default())
            .filter_map(|s| s["subresource"].as_str().map(str::to_owned))
            .collect();
        assert!(
            subs.iter().any(|s| s == "ephemeralcontainers"),
            "{engine}: {subs:?}"
        );
        assert!(!subs.iter().any(|s| s == "resize"), "{engine}: {subs:?}");
        // And routing agrees with both: no resize route.
        let path = "/clusters/acme/api/v1/namespaces/default/pods/p/resize";
        let (code, _) = server.get_json(path, None)?;
        assert_eq!(code, 404, "{engine}: GET resize");
        let r = server.request(
            "PATCH",
            path,
            &[("Content-Type", "application/strategic-merge-patch+json")],
            Some(br#"{"spec":{"containers":[{"name":"app","resources":{"limits":{"cpu":"1"}}}]}}"#),
        )?;
        assert_eq!(r.status, 404, "{engine}: PATCH resize {}", r.text());
    }
    Ok(())
}

/// A minimal protobuf writer for request bodies no client here can send:
/// kubectl's typed creates (protobuf) cannot set volumes, probes or webhook
/// rules, and kube-rs speaks JSON only. Field numbers are those of
/// Kubernetes' `generated.proto`.
#[derive(Default)]
struct Pb(Vec<u8>);

impl Pb {
    fn raw_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn int(mut self, tag: u32, v: u64) -> Self {
        self.raw_varint(u64::from(tag) << 3);
        self.raw_varint(v);
        self
    }

    fn bytes(mut self, tag: u32, b: &[u8]) -> Self {
        self.raw_varint((u64::from(tag) << 3) | 2);
        self.raw_varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    fn str(self, tag: u32, s: &str) -> Self {
        self.bytes(tag, s.as_bytes())
    }

    fn msg(self, tag: u32, m: Pb) -> Self {
        self.bytes(tag, &m.0)
    }

    /// A `map<string, string>` entry.
    fn entry(self, tag: u32, k: &str, v: &str) -> Self {
        self.msg(tag, Pb::default().str(1, k).str(2, v))
    }

    /// `k8s\0` + `runtime.Unknown{typeMeta, raw, contentEncoding, contentType}`.
    fn k8s_body(self, api_version: &str, kind: &str) -> Vec<u8> {
        let unknown = Pb::default()
            .msg(1, Pb::default().str(1, api_version).str(2, kind))
            .bytes(2, &self.0)
            .str(3, "")
            .str(4, "");
        let mut out = b"k8s\0".to_vec();
        out.extend(unknown.0);
        out
    }
}

/// POSTs a protobuf body without `fieldValidation`, as controllers do.
fn post_protobuf(server: &Server, path: &str, body: &[u8]) -> Result<(u16, Value)> {
    let r = server.request(
        "POST",
        path,
        &[
            ("Content-Type", "application/vnd.kubernetes.protobuf"),
            ("Accept", "application/json"),
        ],
        Some(body),
    )?;
    let v = serde_json::from_slice(&r.body).unwrap_or_else(|_| Value::String(r.text()));
    Ok((r.status, v))
}

#[tokio::test(flavor = "multi_thread")]
async fn protobuf_ingress_rules_from_kubectl_keep_their_paths() -> Result<()> {
    for (engine, server) in servers_for("protobuf_ingress_rules_from_kubectl_keep_their_paths")? {
        server.create_workspace("acme")?;
        let Some(k) = kubectl(
            &server,
            "acme",
            "protobuf_ingress_rules_from_kubectl_keep_their_paths",
        )?
        else {
            return Ok(());
        };
        // kubectl 1.32 sends this as protobuf with fieldValidation=Strict:
        // the rule's inlined IngressRuleValue must not be an unknown field.
        k.ok(&["create", "ingress", "ing1", "--rule=foo.com/bar=svc1:80"])?;
        let (code, pb) = server.get_json(
            "/clusters/acme/apis/networking.k8s.io/v1/namespaces/default/ingresses/ing1",
            None,
        )?;
        ensure!(code == 200, "{engine}: GET: {code} {pb}");
        assert_eq!(
            pb["spec"]["rules"],
            json!([{
                "host": "foo.com",
                "http": {"paths": [{
                    "path": "/bar",
                    "pathType": "Exact",
                    "backend": {"service": {"name": "svc1", "port": {"number": 80}}},
                }]},
            }]),
            "{engine}: {pb}"
        );
        // The same manifest sent as JSON is the same object.
        let manifest = k.ok(&[
            "create",
            "ingress",
            "ing2",
            "--rule=foo.com/bar=svc1:80",
            "--dry-run=client",
            "-o",
            "json",
        ])?;
        let (code, js) = call(
            &server,
            "POST",
            "/clusters/acme/apis/networking.k8s.io/v1/namespaces/default/ingresses",
            Some(serde_json::from_str(&manifest)?),
        )?;
        ensure!(code == 201, "{engine}: JSON create: {code} {js}");
        assert_eq!(pb["spec"], js["spec"], "{engine}");
    }
    Ok(())
}

/// A Deployment whose pod has an emptyDir and a hostPath volume (inlined
/// VolumeSource), an exec liveness and an httpGet readiness probe (inlined
/// ProbeHandler) and an env var from a Secret (inlined
/// LocalObjectReference).
fn deployment_pb() -> Vec<u8> {
    let labels = || Pb::default().entry(11, "app", "web");
    let volume = |name: &str, source: Pb| Pb::default().str(1, name).msg(2, source);
    let container = Pb::default()
        .str(1, "app")
        .str(2, "nginx")
        // env: name, valueFrom.secretKeyRef{localObjectReference{name}, key}
        .msg(
            7,
            Pb::default().str(1, "TOKEN").msg(
                3,
                Pb::default().msg(
                    4,
                    Pb::default()
                        .msg(1, Pb::default().str(1, "creds"))
                        .str(2, "token"),
                ),
            ),
        )
        // livenessProbe: handler.exec.command, periodSeconds
        .msg(
            10,
            Pb::default()
                .msg(1, Pb::default().msg(1, Pb::default().str(1, "true")))
                .int(4, 7),
        )
        // readinessProbe: handler.httpGet{path, port: IntOrString{type 0, intVal}}
        .msg(
            11,
            Pb::default().msg(
                1,
                Pb::default().msg(
                    2,
                    Pb::default()
                        .str(1, "/healthz")
                        .msg(2, Pb::default().int(1, 0).int(2, 8080)),
                ),
            ),
        );
    let pod_spec = Pb::default()
        .msg(1, volume("scratch", Pb::default().msg(2, Pb::default())))
        .msg(
            1,
            volume(
                "host",
                Pb::default().msg(1, Pb::default().str(1, "/data").str(2, "Directory")),
            ),
        )
        .msg(2, container);
    Pb::default()
        .msg(1, Pb::default().str(1, "web"))
        .msg(
            2,
            Pb::default()
                .int(1, 1)
                .msg(2, Pb::default().entry(1, "app", "web"))
                .msg(3, Pb::default().msg(1, labels()).msg(2, pod_spec)),
        )
        .k8s_body("apps/v1", "Deployment")
}

fn deployment_json() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "volumes": [
                        {"name": "scratch", "emptyDir": {}},
                        {"name": "host", "hostPath": {"path": "/data", "type": "Directory"}},
                    ],
                    "containers": [{
                        "name": "app",
                        "image": "nginx",
                        "env": [{
                            "name": "TOKEN",
                            "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}},
                        }],
                        "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 7},
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                    }],
                },
            },
        },
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn protobuf_inlined_volume_and_probe_fields_survive() -> Result<()> {
    for (engine, server) in servers_for("protobuf_inlined_volume_and_probe_fields_survive")? {
        server.create_workspace("acme")?;
        for ns in ["pb", "js"] {
            let (code, body) = call(
                &server,
                "POST",
                "/clusters/acme/api/v1/namespaces",
                Some(json!({"metadata": {"name": ns}})),
            )?;
            ensure!(code == 201, "{engine}: namespace {ns}: {code} {body}");
        }
        let (code, created) = post_protobuf(
            &server,
            "/clusters/acme/apis/apps/v1/namespaces/pb/deployments",
            &deployment_pb(),
        )?;
        ensure!(code == 201, "{engine}: protobuf create: {code} {created}");
        let (code, body) = call(
            &server,
            "POST",
            "/clusters/acme/apis/apps/v1/namespaces/js/deployments",
            Some(deployment_json()),
        )?;
        ensure!(code == 201, "{engine}: JSON create: {code} {body}");
        let (_, pb) = server.get_json(
            "/clusters/acme/apis/apps/v1/namespaces/pb/deployments/web",
            None,
        )?;
        let (_, js) = server.get_json(
            "/clusters/acme/apis/apps/v1/namespaces/js/deployments/web",
            None,
        )?;
        assert_eq!(comparable(pb.clone()), comparable(js), "{engine}");
        // Not merely equal: the inlined fields are there (defaulted).
        let spec = &pb["spec"]["template"]["spec"];
        assert_eq!(spec["volumes"][0]["emptyDir"], json!({}), "{engine}: {pb}");
        assert_eq!(spec["volumes"][1]["hostPath"]["path"], "/data", "{engine}");
        let c = &spec["containers"][0];
        assert_eq!(
            c["livenessProbe"]["exec"]["command"],
            json!(["true"]),
            "{engine}"
        );
        assert_eq!(c["readinessProbe"]["httpGet"]["port"], 8080, "{engine}");
        assert_eq!(
            c["env"][0]["valueFrom"]["secretKeyRef"],
            json!({"name": "creds", "key": "token"}),
            "{engine}"
        );
        // Strict field validation finds no unknown (Go field name) field.
        let (code, body) = post_protobuf(
            &server,
            "/clusters/acme/apis/apps/v1/namespaces/default/deployments?fieldValidation=Strict",
            &deployment_pb(),
        )?;
        assert_eq!(code, 201, "{engine}: strict: {body}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn protobuf_webhook_rules_keep_their_resources() -> Result<()> {
    for (engine, server) in servers_for("protobuf_webhook_rules_keep_their_resources")? {
        server.create_workspace("acme")?;
        // Rules on a group nothing here serves, so the webhook (which does
        // not exist) is never called.
        let rule = Pb::default().str(1, "CREATE").str(1, "UPDATE").msg(
            2,
            Pb::default()
                .str(1, "example.com")
                .str(2, "v1")
                .str(3, "widgets")
                .str(3, "gadgets")
                .str(4, "Namespaced"),
        );
        let webhook = Pb::default()
            .str(1, "check.example.com")
            .msg(2, Pb::default().str(3, "https://127.0.0.1:9/validate"))
            .msg(3, rule)
            .str(4, "Ignore")
            .str(6, "None")
            .str(8, "v1");
        let body = Pb::default()
            .msg(1, Pb::default().str(1, "pb"))
            .msg(2, webhook)
            .k8s_body(
                "admissionregistration.k8s.io/v1",
                "ValidatingWebhookConfiguration",
            );
        let base =
            "/clusters/acme/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations";
        let (code, created) = post_protobuf(&server, base, &body)?;
        ensure!(code == 201, "{engine}: protobuf create: {code} {created}");
        let (code, body) = call(
            &server,
            "POST",
            base,
            Some(json!({
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": "js"},
                "webhooks": [{
                    "name": "check.example.com",
                    "clientConfig": {"url": "https://127.0.0.1:9/validate"},
                    "rules": [{
                        "operations": ["CREATE", "UPDATE"],
                        "apiGroups": ["example.com"],
                        "apiVersions": ["v1"],
                        "resources": ["widgets", "gadgets"],
                        "scope": "Namespaced",
                    }],
                    "failurePolicy": "Ignore",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                }],
            })),
        )?;
        ensure!(code == 201, "{engine}: JSON create: {code} {body}");
        let (_, pb) = server.get_json(&format!("{base}/pb"), None)?;
        let (_, js) = server.get_json(&format!("{base}/js"), None)?;
        assert_eq!(
            pb["webhooks"][0]["rules"],
            json!([{
                "operations": ["CREATE", "UPDATE"],
                "apiGroups": ["example.com"],
                "apiVersions": ["v1"],
                "resources": ["widgets", "gadgets"],
                "scope": "Namespaced",
            }]),
            "{engine}: {pb}"
        );
        assert_eq!(pb["webhooks"], js["webhooks"], "{engine}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn protobuf_admission_policy_rules_flatten_two_levels() -> Result<()> {
    for (engine, server) in servers_for("protobuf_admission_policy_rules_flatten_two_levels")? {
        server.create_workspace("acme")?;
        // NamedRuleWithOperations inlines RuleWithOperations, which inlines
        // Rule: all their fields are one JSON object.
        let named_rule = Pb::default().str(1, "only-this").msg(
            2,
            Pb::default().str(1, "CREATE").msg(
                2,
                Pb::default()
                    .str(1, "example.com")
                    .str(2, "v1")
                    .str(3, "widgets")
                    .str(4, "*"),
            ),
        );
        let body = Pb::default()
            .msg(1, Pb::default().str(1, "policy"))
            .msg(
                2,
                Pb::default()
                    .msg(2, Pb::default().msg(3, named_rule))
                    .msg(3, Pb::default().str(1, "true")),
            )
            .k8s_body(
                "admissionregistration.k8s.io/v1",
                "ValidatingAdmissionPolicy",
            );
        let base =
            "/clusters/acme/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies";
        let (code, created) = post_protobuf(&server, base, &body)?;
        ensure!(code == 201, "{engine}: protobuf create: {code} {created}");
        let (_, got) = server.get_json(&format!("{base}/policy"), None)?;
        assert_eq!(
            got["spec"]["matchConstraints"]["resourceRules"],
            json!([{
                "resourceNames": ["only-this"],
                "operations": ["CREATE"],
                "apiGroups": ["example.com"],
                "apiVersions": ["v1"],
                "resources": ["widgets"],
                "scope": "*",
            }]),
            "{engine}: {got}"
        );
    }
    Ok(())
}

/// A JSON body that repeats a key (the last value wins in a parser):
/// Strict refuses it with upstream's `duplicate field` message and stores
/// nothing, Warn (the default) stores it and warns, Ignore says nothing
/// (the check sits before the per-type one, for every resource).
#[test]
fn duplicate_fields_follow_field_validation() -> Result<()> {
    for (engine, s) in servers_for("duplicate_fields_follow_field_validation")? {
        s.create_workspace("acme")?;
        let base = "/clusters/acme/api/v1/namespaces/default/configmaps";
        let json = [("Content-Type", "application/json")];
        let body = |name: &str| {
            format!(r#"{{"metadata":{{"name":"{name}"}},"data":{{"a":"1"}},"data":{{"b":"2"}}}}"#)
        };
        // Strict: 400, nothing stored.
        let r = s.request(
            "POST",
            &format!("{base}?fieldValidation=Strict"),
            &json,
            Some(body("strict").as_bytes()),
        )?;
        ensure!(
            r.status == 400
                && r.text()
                    .contains(r#"strict decoding error: duplicate field \"data\""#),
            "{engine}: strict: {} {}",
            r.status,
            r.text()
        );
        let r = s.request("GET", &format!("{base}/strict"), &[], None)?;
        ensure!(
            r.status == 404,
            "{engine}: a refused create stored something"
        );
        // Warn (the default): created with the last value, and a warning.
        let r = s.request("POST", base, &json, Some(body("warned").as_bytes()))?;
        let warning = r.header("warning").unwrap_or_default().to_owned();
        ensure!(
            r.status == 201 && warning.contains(r#"duplicate field \"data\""#),
            "{engine}: warn: {} {warning:?} {}",
            r.status,
            r.text()
        );
        let stored: Value = serde_json::from_slice(&r.body)?;
        ensure!(stored["data"] == json!({"b": "2"}), "{engine}: {stored}");
        // Ignore: created, no warning.
        let r = s.request(
            "POST",
            &format!("{base}?fieldValidation=Ignore"),
            &json,
            Some(body("ignored").as_bytes()),
        )?;
        ensure!(
            r.status == 201 && r.header("warning").is_none(),
            "{engine}: ignore: {} {:?}",
            r.status,
            r.header("warning")
        );
        // An update (PUT) is checked the same way, at any depth.
        let put = br#"{"metadata":{"name":"warned","labels":{"x":"1","x":"2"}},"data":{"b":"3"}}"#;
        let r = s.request(
            "PUT",
            &format!("{base}/warned?fieldValidation=Strict"),
            &json,
            Some(put),
        )?;
        ensure!(
            r.status == 400
                && r.text()
                    .contains(r#"duplicate field \"metadata.labels.x\""#),
            "{engine}: strict update: {} {}",
            r.status,
            r.text()
        );
    }
    Ok(())
}
