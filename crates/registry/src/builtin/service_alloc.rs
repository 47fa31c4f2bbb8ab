//! ClusterIP and NodePort allocation, per workspace (each workspace is its
//! own cluster, with its own service range).
//!
//! An address or port in use is a storage key under
//! `StoreContext::service_allocations` (`<cluster>/<ip>` or
//! `<cluster>/port-<n>`), created with create-if-absent before the Service
//! is written: two creates racing for one address cannot both win. A
//! Service's delete removes its keys. Services written before the keys
//! existed are seen by one scan of the workspace's Services, so their
//! addresses are never handed out again either. A reservation that no
//! stored Service backs (a create in flight, or a Service removed without
//! the registry) is honoured for a minute and then reused. POST, an apply
//! that creates, and namespace purge all go through the registry (PUT does
//! not create Services).

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use crate::cluster::{ClusterId, ClusterScope};
use crate::options::ListOptions;
use crate::options::WriteOptions;
use crate::registry::Registry;
use crate::resource::Object;
use crate::status::{ApiError, ApiResult};
use crate::store::{PatchKind, ResourceStore, StoreContext, Subresource};
use crate::validation::FieldError;

/// The service range: 10.96.0.0/12, as kubeadm's default.
pub const SERVICE_CIDR: &str = "10.96.0.0/12";
const RANGE_BASE: u32 = u32::from_be_bytes([10, 96, 0, 0]);
const RANGE_BITS: u32 = 20;
/// The NodePort range (`--service-node-port-range` default).
pub const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;
/// How long a reservation no stored Service backs is honoured.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(60);
/// Random picks before a linear search for a free address.
const RANDOM_TRIES: usize = 64;

/// Whether `ip` lies in the service range.
pub fn in_range(ip: Ipv4Addr) -> bool {
    u32::from(ip) >> RANGE_BITS == RANGE_BASE >> RANGE_BITS
}

fn is_services(rs: &ResourceStore) -> bool {
    rs.descriptor.gvk.group.is_empty() && rs.descriptor.plural() == "services"
}

fn spec(obj: &Object) -> Option<&serde_json::Map<String, Value>> {
    obj.get("spec").and_then(Value::as_object)
}

fn service_type(obj: &Object) -> &str {
    spec(obj)
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .unwrap_or("ClusterIP")
}

fn requested_ip(obj: &Object) -> Option<String> {
    let s = spec(obj)?;
    s.get("clusterIP")
        .and_then(Value::as_str)
        .filter(|ip| !ip.is_empty())
        .or_else(|| {
            s.get("clusterIPs")
                .and_then(|v| v.get(0))
                .and_then(Value::as_str)
                .filter(|ip| !ip.is_empty())
        })
        .map(str::to_owned)
}

fn node_ports(obj: &Object) -> Vec<(usize, Option<i64>)> {
    spec(obj)
        .and_then(|s| s.get("ports"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, p)| {
            (
                i,
                p.get("nodePort")
                    .and_then(Value::as_i64)
                    .filter(|n| *n != 0),
            )
        })
        .collect()
}

fn ip_key(ctx: &StoreContext, cluster: &ClusterId, ip: &str) -> Vec<u8> {
    ctx.service_allocations.object_key(cluster, None, ip)
}

fn port_key(ctx: &StoreContext, cluster: &ClusterId, port: i64) -> Vec<u8> {
    ctx.service_allocations
        .object_key(cluster, None, &format!("port-{port}"))
}

/// Addresses and ports held by a Service object.
fn held(obj: &Object) -> (Vec<String>, Vec<i64>) {
    let ips = spec(obj)
        .and_then(|s| s.get("clusterIPs"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .or_else(|| requested_ip(obj).map(|ip| vec![ip]))
        .unwrap_or_default()
        .into_iter()
        .filter(|ip| ip != "None")
        .collect();
    let ports = node_ports(obj).into_iter().filter_map(|(_, p)| p).collect();
    (ips, ports)
}

fn invalid(obj: &Object, errs: Vec<FieldError>) -> ApiError {
    ApiError::invalid("", "Service", crate::metadata::name(obj), &errs)
}

fn ip_error(ip: &str, why: &str) -> FieldError {
    FieldError::invalid(
        "spec.clusterIPs",
        json!([ip]),
        format!("failed to allocate IP {ip}: {why}"),
    )
}

/// What one create reserved, released again if the create fails.
#[derive(Debug, Default)]
pub struct Reservation {
    keys: Vec<Vec<u8>>,
}

impl Registry {
    fn service_ctx(&self) -> ApiResult<std::sync::Arc<StoreContext>> {
        self.stores()
            .iter()
            .find(|s| s.descriptor.gvk.group.is_empty() && s.descriptor.plural() == "services")
            .map(|s| s.context().clone())
            .ok_or_else(ApiError::route_not_found)
    }

    /// Addresses and ports of the workspace's stored Services (those written
    /// before reservations existed included).
    async fn services_in_use(
        &self,
        cluster: &ClusterId,
    ) -> ApiResult<(HashSet<String>, HashSet<i64>)> {
        let mut ips = HashSet::from([crate::builtin::service::KUBERNETES_SERVICE_IP.to_owned()]);
        let mut ports = HashSet::new();
        let Some(services) = self.resource("", "v1", "services") else {
            return Ok((ips, ports));
        };
        let list = services
            .list(
                &ClusterScope::One(cluster.clone()),
                None,
                &ListOptions::default(),
            )
            .await?;
        for item in list.items {
            if let Value::Object(o) = item {
                let (i, p) = held(&o);
                ips.extend(i);
                ports.extend(p);
            }
        }
        Ok((ips, ports))
    }

    /// Takes the key of an address no stored Service holds (callers check
    /// that first). A key that exists anyway is a create in flight, or a
    /// leak (a Service removed by namespace purge or a crash between the
    /// two writes): after [`STALE_AFTER`] it is taken over.
    async fn reserve(
        &self,
        ctx: &StoreContext,
        key: Vec<u8>,
        r: &mut Reservation,
    ) -> ApiResult<bool> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let value = bytes::Bytes::from(json!({"reservedAt": now}).to_string());
        let qr = crate::status::QualifiedResource::new("", "services");
        let result = match ctx.store.create(&key, value.clone(), None).await {
            Err(storage::Error::AlreadyExists { current }) => {
                let at = serde_json::from_slice::<Value>(&current.value)
                    .ok()
                    .and_then(|v| v.get("reservedAt").and_then(Value::as_u64))
                    .unwrap_or(0);
                if now.saturating_sub(at) < STALE_AFTER.as_secs() {
                    return Ok(false);
                }
                ctx.store
                    .update(&key, value, current.mod_revision, None)
                    .await
            }
            other => other,
        };
        match result {
            Ok(_) => {
                r.keys.push(key);
                Ok(true)
            }
            Err(storage::Error::Conflict { .. } | storage::Error::AlreadyExists { .. }) => {
                Ok(false)
            }
            Err(e) => Err(crate::status::interpret_create_error(e, &qr, "")),
        }
    }

    /// Gives a new Service its ClusterIP (and NodePorts for NodePort and
    /// LoadBalancer Services), or checks and reserves the ones it asks for:
    /// 422 `provided IP is already allocated` when taken.
    pub(crate) async fn allocate_service(
        &self,
        cluster: &ClusterId,
        obj: &mut Object,
        dry_run: bool,
    ) -> ApiResult<Reservation> {
        let mut r = Reservation::default();
        let ty = service_type(obj).to_owned();
        if ty == "ExternalName" {
            return Ok(r);
        }
        let ctx = self.service_ctx()?;
        let (in_use_ips, in_use_ports) = self.services_in_use(cluster).await?;
        let result = self
            .allocate_into(
                cluster,
                obj,
                &ty,
                &ctx,
                &in_use_ips,
                &in_use_ports,
                dry_run,
                &mut r,
            )
            .await;
        if result.is_err() {
            self.release_reservation(cluster, r).await;
            return result.map(|_| Reservation::default());
        }
        Ok(r)
    }

    #[allow(clippy::too_many_arguments)]
    async fn allocate_into(
        &self,
        cluster: &ClusterId,
        obj: &mut Object,
        ty: &str,
        ctx: &StoreContext,
        in_use_ips: &HashSet<String>,
        in_use_ports: &HashSet<i64>,
        dry_run: bool,
        r: &mut Reservation,
    ) -> ApiResult<()> {
        match requested_ip(obj) {
            Some(ip) if ip == "None" => {}
            Some(ip) => {
                let Ok(addr) = ip.parse::<Ipv4Addr>() else {
                    return Err(invalid(
                        obj,
                        vec![FieldError::invalid(
                            "spec.clusterIPs[0]",
                            ip.clone(),
                            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                        )],
                    ));
                };
                if !in_range(addr) {
                    return Err(invalid(
                        obj,
                        vec![ip_error(
                            &ip,
                            &format!(
                                "the provided IP ({ip}) is not in the valid range. The range of valid IPs is {SERVICE_CIDR}"
                            ),
                        )],
                    ));
                }
                let taken = in_use_ips.contains(&ip)
                    || (!dry_run && !self.reserve(ctx, ip_key(ctx, cluster, &ip), r).await?);
                if taken {
                    return Err(invalid(
                        obj,
                        vec![ip_error(&ip, "provided IP is already allocated")],
                    ));
                }
            }
            None => {
                let ip = self.pick_ip(cluster, ctx, in_use_ips, dry_run, r).await?;
                if let Some(s) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                    s.insert("clusterIP".into(), ip.clone().into());
                    s.insert("clusterIPs".into(), json!([ip]));
                }
            }
        }
        if ty != "NodePort" && ty != "LoadBalancer" {
            return Ok(());
        }
        let mut taken_now: HashSet<i64> = HashSet::new();
        for (i, port) in node_ports(obj) {
            let chosen = match port {
                Some(p) => {
                    if !NODE_PORTS.contains(&p) {
                        return Err(invalid(
                            obj,
                            vec![FieldError::invalid(
                                format!("spec.ports[{i}].nodePort"),
                                p,
                                format!(
                                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                                    NODE_PORTS.start(),
                                    NODE_PORTS.end()
                                ),
                            )],
                        ));
                    }
                    let taken = in_use_ports.contains(&p)
                        || taken_now.contains(&p)
                        || (!dry_run && !self.reserve(ctx, port_key(ctx, cluster, p), r).await?);
                    if taken {
                        return Err(invalid(
                            obj,
                            vec![FieldError::invalid(
                                format!("spec.ports[{i}].nodePort"),
                                p,
                                "provided port is already allocated",
                            )],
                        ));
                    }
                    p
                }
                None => {
                    let mut found = None;
                    for _ in 0..RANDOM_TRIES * 4 {
                        let p = rand::random_range(NODE_PORTS);
                        if in_use_ports.contains(&p) || taken_now.contains(&p) {
                            continue;
                        }
                        if dry_run || self.reserve(ctx, port_key(ctx, cluster, p), r).await? {
                            found = Some(p);
                            break;
                        }
                    }
                    let Some(p) = found else {
                        return Err(ApiError::internal(
                            "failed to allocate a nodePort: range is full",
                        ));
                    };
                    if let Some(Value::Array(ps)) =
                        obj.get_mut("spec").and_then(|s| s.get_mut("ports"))
                        && let Some(Value::Object(po)) = ps.get_mut(i)
                    {
                        po.insert("nodePort".into(), p.into());
                    }
                    p
                }
            };
            taken_now.insert(chosen);
        }
        Ok(())
    }

    async fn pick_ip(
        &self,
        cluster: &ClusterId,
        ctx: &StoreContext,
        in_use: &HashSet<String>,
        dry_run: bool,
        r: &mut Reservation,
    ) -> ApiResult<String> {
        let size = 1u32 << RANGE_BITS;
        let candidate = |offset: u32| Ipv4Addr::from(RANGE_BASE + offset).to_string();
        // Random first (cheap while the range is sparse), then in order.
        let random = (0..RANDOM_TRIES).map(|_| rand::random_range(2..size - 1));
        for offset in random.chain(2..size - 1) {
            let ip = candidate(offset);
            if in_use.contains(&ip) {
                continue;
            }
            if dry_run || self.reserve(ctx, ip_key(ctx, cluster, &ip), r).await? {
                return Ok(ip);
            }
        }
        Err(ApiError::internal(
            "failed to allocate a serviceIP: range is full",
        ))
    }

    /// `rs.create`, with Service addresses allocated first (and released
    /// if the create fails).
    pub(crate) async fn create_allocating(
        &self,
        rs: &ResourceStore,
        cluster: &ClusterId,
        namespace: Option<&str>,
        mut obj: Object,
        opts: &WriteOptions,
    ) -> ApiResult<Object> {
        if !is_services(rs) {
            return rs.create(cluster, namespace, obj, opts).await;
        }
        let r = self
            .allocate_service(cluster, &mut obj, opts.dry_run)
            .await?;
        match rs.create(cluster, namespace, obj, opts).await {
            Ok(o) => Ok(o),
            Err(e) => {
                self.release_reservation(cluster, r).await;
                Err(e)
            }
        }
    }

    /// `rs.patch`, where an apply that creates a Service allocates its
    /// addresses first, as a POST does (released if the apply fails).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn patch_allocating(
        &self,
        rs: &ResourceStore,
        cluster: &ClusterId,
        namespace: Option<&str>,
        name: &str,
        kind: PatchKind,
        patch: &Value,
        sub: Subresource,
        opts: &WriteOptions,
    ) -> ApiResult<(Object, bool)> {
        let creates = is_services(rs)
            && kind == PatchKind::Apply
            && sub == Subresource::Main
            && matches!(rs.get(cluster, namespace, name).await, Err(e) if e.code() == 404);
        let applied = patch.as_object().filter(|_| creates).cloned();
        let Some(mut obj) = applied else {
            return rs
                .patch(cluster, namespace, name, kind, patch, sub, opts)
                .await;
        };
        obj.entry("spec").or_insert_with(|| json!({}));
        let r = self
            .allocate_service(cluster, &mut obj, opts.dry_run)
            .await?;
        // A create racing this one makes the apply an update; the stored
        // Service then backs the reservation or it goes stale.
        let result = rs
            .patch(
                cluster,
                namespace,
                name,
                kind,
                &Value::Object(obj),
                sub,
                opts,
            )
            .await;
        if result.is_err() {
            self.release_reservation(cluster, r).await;
        }
        result
    }

    /// `rs.update`, where a PUT that creates a Service (upstream's service
    /// strategy allows create-on-update) allocates its addresses first, as a
    /// POST does (released if the write fails).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn update_allocating(
        &self,
        rs: &ResourceStore,
        cluster: &ClusterId,
        namespace: Option<&str>,
        name: &str,
        mut obj: Object,
        sub: Subresource,
        opts: &WriteOptions,
    ) -> ApiResult<(Object, bool)> {
        let creates = is_services(rs)
            && sub == Subresource::Main
            && matches!(rs.get(cluster, namespace, name).await, Err(e) if e.code() == 404);
        if !creates {
            return rs.update(cluster, namespace, name, obj, sub, opts).await;
        }
        obj.entry("spec").or_insert_with(|| json!({}));
        let r = self
            .allocate_service(cluster, &mut obj, opts.dry_run)
            .await?;
        // A create racing this one makes the PUT an update; the stored
        // Service then backs the reservation or it goes stale.
        let result = rs.update(cluster, namespace, name, obj, sub, opts).await;
        if result.is_err() {
            self.release_reservation(cluster, r).await;
        }
        result
    }

    /// After a delete: frees what a Service held (other kinds: nothing).
    pub(crate) async fn release_service_of(
        &self,
        rs: &ResourceStore,
        cluster: &ClusterId,
        obj: &Object,
    ) {
        if is_services(rs) {
            self.release_service(cluster, obj).await;
        }
    }

    /// Undoes a reservation whose Service was not written.
    pub(crate) async fn release_reservation(&self, _cluster: &ClusterId, r: Reservation) {
        let Ok(ctx) = self.service_ctx() else { return };
        for key in r.keys {
            if let Err(e) = ctx.store.delete(&key, None).await {
                tracing::warn!(error = %e, "service allocation: release failed");
            }
        }
    }

    /// Frees what a deleted Service held.
    pub(crate) async fn release_service(&self, cluster: &ClusterId, obj: &Object) {
        let Ok(ctx) = self.service_ctx() else { return };
        let (ips, ports) = held(obj);
        let keys = ips
            .iter()
            .map(|ip| ip_key(&ctx, cluster, ip))
            .chain(ports.iter().map(|p| port_key(&ctx, cluster, *p)));
        for key in keys {
            match ctx.store.delete(&key, None).await {
                Ok(_) | Err(storage::Error::NotFound { .. }) => {}
                Err(e) => tracing::warn!(error = %e, "service allocation: release failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_membership() {
        assert!(in_range(
            "10.96.0.1".parse().unwrap_or(Ipv4Addr::UNSPECIFIED)
        ));
        assert!(in_range(
            "10.111.255.254".parse().unwrap_or(Ipv4Addr::UNSPECIFIED)
        ));
        assert!(!in_range(
            "10.112.0.1".parse().unwrap_or(Ipv4Addr::UNSPECIFIED)
        ));
        assert!(!in_range(
            "192.168.0.1".parse().unwrap_or(Ipv4Addr::UNSPECIFIED)
        ));
    }

    #[test]
    fn held_addresses() {
        let svc = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.9"],
            "ports": [{"port": 80, "nodePort": 30080}, {"port": 81}]}});
        let Value::Object(o) = svc else { return };
        assert_eq!(held(&o), (vec!["10.96.0.9".to_owned()], vec![30080]));
        let headless = json!({"spec": {"clusterIP": "None"}});
        let Value::Object(h) = headless else { return };
        assert_eq!(held(&h), (vec![], vec![]));
    }
}
