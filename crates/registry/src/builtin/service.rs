//! Services (ClusterIP defaulting, port defaults, field selectors) and the
//! `kubernetes` Service and Endpoints every workspace has in `default`.

use serde_json::{Map, Value, json};

use crate::builtin::namespace::implicit_uid;
use crate::resource::{ImplicitContext, Object, Strategy};
use crate::validation::{FieldError, NameRule};

/// The `kubernetes` Service's address (first address of the service range).
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";

fn split_address(addr: &str) -> (String, u16) {
    match addr.rsplit_once(':') {
        Some((h, p)) => (
            h.trim_start_matches('[').trim_end_matches(']').to_owned(),
            p.parse().unwrap_or(6443),
        ),
        None => (addr.to_owned(), 6443),
    }
}

fn as_object(v: Value) -> Object {
    match v {
        Value::Object(o) => o,
        _ => Map::new(),
    }
}

/// A pseudo-random address in 10.96.0.0/12, skipping the `kubernetes` one:
/// the fallback for Services created by PUT or server-side apply, which do
/// not pass through the allocator (`service_alloc`) that POST uses.
fn allocate_cluster_ip() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    loop {
        let n: u32 = rng.random_range(2..(1 << 20) - 1);
        let ip = format!("10.{}.{}.{}", 96 + (n >> 16), (n >> 8) & 0xff, n & 0xff);
        if ip != KUBERNETES_SERVICE_IP {
            return ip;
        }
    }
}

pub struct ServiceStrategy;

impl Strategy for ServiceStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["spec.clusterIP", "spec.type"]
    }

    fn prepare_for_create(&self, obj: &mut Object) {
        obj.insert("status".into(), json!({"loadBalancer": {}}));
    }

    fn prepare_for_update(&self, new: &mut Object, old: &Object) {
        // The allocated address survives updates that omit it.
        let old_ip = old.get("spec").and_then(|s| s.get("clusterIP")).cloned();
        let old_ips = old.get("spec").and_then(|s| s.get("clusterIPs")).cloned();
        if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut)
            && spec
                .get("clusterIP")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            if let Some(ip) = old_ip {
                spec.insert("clusterIP".into(), ip);
            }
            if let Some(ips) = old_ips {
                spec.insert("clusterIPs".into(), ips);
            }
        }
    }

    fn default(&self, obj: &mut Object) {
        let spec = obj.entry("spec").or_insert_with(|| json!({}));
        let Some(spec) = spec.as_object_mut() else {
            return;
        };
        if spec
            .get("type")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            spec.insert("type".into(), "ClusterIP".into());
        }
        let ty = spec
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_owned();
        if ty != "ExternalName" {
            if spec
                .get("clusterIP")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                let ip = allocate_cluster_ip();
                spec.insert("clusterIP".into(), ip.clone().into());
                spec.insert("clusterIPs".into(), json!([ip]));
            } else if !spec.contains_key("clusterIPs") {
                let ip = spec.get("clusterIP").cloned().unwrap_or(Value::Null);
                spec.insert("clusterIPs".into(), json!([ip]));
            }
            spec.entry("sessionAffinity").or_insert("None".into());
            spec.entry("ipFamilies").or_insert(json!(["IPv4"]));
            spec.entry("ipFamilyPolicy").or_insert("SingleStack".into());
            spec.entry("internalTrafficPolicy")
                .or_insert("Cluster".into());
        }
        if let Some(Value::Array(ports)) = spec.get_mut("ports") {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                p.entry("protocol").or_insert("TCP".into());
                if !p.contains_key("targetPort")
                    && let Some(port) = p.get("port").cloned()
                {
                    p.insert("targetPort".into(), port);
                }
            }
        }
    }

    fn validate(&self, obj: &Object) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let spec = obj.get("spec");
        let ty = spec
            .and_then(|s| s.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP");
        if !matches!(
            ty,
            "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
        ) {
            errs.push(FieldError {
                kind: crate::validation::FieldErrorKind::NotSupported,
                field: "spec.type".into(),
                value: Some(ty.into()),
                detail: "supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"".into(),
            });
        }
        let ports = spec.and_then(|s| s.get("ports")).and_then(Value::as_array);
        let headless = spec
            .and_then(|s| s.get("clusterIP"))
            .and_then(Value::as_str)
            == Some("None");
        if ty != "ExternalName" && !headless && ports.is_none_or(|p| p.is_empty()) {
            errs.push(FieldError::required("spec.ports", ""));
        }
        for (i, p) in ports.into_iter().flatten().enumerate() {
            match p.get("port").and_then(Value::as_i64) {
                Some(1..=65535) => {}
                _ => errs.push(FieldError::invalid(
                    format!("spec.ports[{i}].port"),
                    p.get("port").cloned().unwrap_or(0.into()),
                    "must be between 1 and 65535, inclusive",
                )),
            }
        }
        errs
    }

    fn validate_update(&self, new: &Object, old: &Object) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let ip = |o: &Object| {
            o.get("spec")
                .and_then(|s| s.get("clusterIP"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let ty = |o: &Object| {
            o.get("spec")
                .and_then(|s| s.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let (old_ip, new_ip) = (ip(old), ip(new));
        if !old_ip.is_empty()
            && old_ip != new_ip
            && ty(old) != "ExternalName"
            && ty(new) != "ExternalName"
        {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                new_ip,
                "may not change once set",
            ));
        }
        errs
    }

    fn implicit_objects(&self, ctx: &ImplicitContext<'_>, namespace: Option<&str>) -> Vec<Object> {
        if namespace.is_some_and(|n| n != "default") {
            return Vec::new();
        }
        let (_, port) = split_address(ctx.advertise_address);
        vec![as_object(json!({
            "kind": "Service",
            "apiVersion": "v1",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "uid": implicit_uid(ctx.cluster, "Service", "kubernetes"),
                "resourceVersion": ctx.revision.to_string(),
                "creationTimestamp": ctx.created,
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "ports": [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": port}],
                "clusterIP": KUBERNETES_SERVICE_IP,
                "clusterIPs": [KUBERNETES_SERVICE_IP],
                "type": "ClusterIP",
                "sessionAffinity": "None",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
                "internalTrafficPolicy": "Cluster",
            },
            "status": {"loadBalancer": {}},
        }))]
    }
}

pub struct EndpointsStrategy;

impl Strategy for EndpointsStrategy {
    fn implicit_objects(&self, ctx: &ImplicitContext<'_>, namespace: Option<&str>) -> Vec<Object> {
        if namespace.is_some_and(|n| n != "default") {
            return Vec::new();
        }
        let (host, port) = split_address(ctx.advertise_address);
        vec![as_object(json!({
            "kind": "Endpoints",
            "apiVersion": "v1",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "uid": implicit_uid(ctx.cluster, "Endpoints", "kubernetes"),
                "resourceVersion": ctx.revision.to_string(),
                "creationTimestamp": ctx.created,
                "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
            },
            "subsets": [{
                "addresses": [{"ip": host}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            }],
        }))]
    }
}
