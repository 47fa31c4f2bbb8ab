//! The built-in catalog: every Kubernetes 1.32 resource wsgate serves, with
//! upstream short names, categories, verbs and subresources, the types whose
//! upstream strategy creates on PUT (`creates_on_put`: endpoints, events,
//! limitranges, services, leases, RBAC, runtimeclasses; every other PUT of
//! a missing object is a 404) and the deprecated ones (`deprecated`:
//! `componentstatuses`, the only 1.32 type served that upstream deprecates). Identity
//! (group, version, kind, plural, scope) comes from k8s-openapi's `Resource`
//! trait; types with rules of their own have a module here, the rest use a
//! default strategy.

use std::sync::Arc;

use k8s_openapi::api::{
    admissionregistration::v1 as admission, apps::v1 as apps, authentication::v1 as authn,
    authorization::v1 as authz, autoscaling::v1 as autoscaling_v1,
    autoscaling::v2 as autoscaling_v2, batch::v1 as batch, certificates::v1 as certificates,
    coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
    events::v1 as events_api, flowcontrol::v1 as flowcontrol, networking::v1 as networking,
    node::v1 as node, policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling,
    storage::v1 as storage_api,
};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube_core::GroupVersionKind;
use kube_core::discovery::Scope;

use crate::keys::KeyRoot;
use crate::resource;
use crate::resource::{
    ALL_VERBS, DefaultStrategy, GenerationStrategy, ResourceDescriptor, Strategy,
};
use crate::schema::{RoundTrip, round_trip};
use crate::store::StorageConversion;

pub mod apps_rules;
pub mod autoscaling;
pub mod componentstatus;
pub mod core_rules;
pub mod events;
pub mod namespace;
pub mod pod_warnings;
pub mod pods;
pub mod rbac_rules;
pub mod service;
pub mod service_alloc;
pub mod type_rules;

/// Verbs of status-like subresources.
pub const SUB_VERBS: &[&str] = &["get", "patch", "update"];

/// Maps k8s-openapi's compile-time scope to kube-core's runtime one.
pub trait ScopeOf {
    const SCOPE: Scope;
}
impl ScopeOf for NamespaceResourceScope {
    const SCOPE: Scope = Scope::Namespaced;
}
impl ScopeOf for ClusterResourceScope {
    const SCOPE: Scope = Scope::Cluster;
}

/// One catalog entry.
pub struct Builtin {
    pub descriptor: ResourceDescriptor,
    pub strategy: Arc<dyn Strategy>,
    /// The k8s-openapi type, for field validation.
    pub schema: RoundTrip,
    /// Set for resources stored in another resource's form.
    pub conversion: Option<Arc<dyn StorageConversion>>,
}

struct Entry {
    descriptor: ResourceDescriptor,
    strategy: Arc<dyn Strategy>,
    schema: RoundTrip,
    conversion: Option<Arc<dyn StorageConversion>>,
}

impl Entry {
    fn new<K>(root: &KeyRoot, short: &[&'static str], cats: &[&'static str]) -> Self
    where
        K: k8s_openapi::Resource + serde::de::DeserializeOwned + serde::Serialize,
        K::Scope: ScopeOf,
    {
        let gvk = GroupVersionKind::gvk(K::GROUP, K::VERSION, K::KIND);
        Entry {
            descriptor: ResourceDescriptor::new(
                root,
                gvk,
                K::URL_PATH_SEGMENT,
                <K::Scope as ScopeOf>::SCOPE,
                short.to_vec(),
                cats.to_vec(),
                ALL_VERBS,
            ),
            strategy: Arc::new(DefaultStrategy),
            schema: round_trip::<K>,
            conversion: None,
        }
    }

    /// Stores this resource under another resource's prefix, converted.
    fn stored_as(
        mut self,
        root: &KeyRoot,
        group: &str,
        plural: &str,
        c: impl StorageConversion,
    ) -> Self {
        self.descriptor.prefix = root.resource_prefix(group, plural);
        self.conversion = Some(Arc::new(c));
        self
    }

    fn strategy(mut self, s: impl Strategy) -> Self {
        self.strategy = Arc::new(s);
        self
    }

    fn status(mut self) -> Self {
        self.descriptor = self.descriptor.with_subresource("status", SUB_VERBS);
        self
    }

    fn scale(mut self) -> Self {
        self.descriptor = self.descriptor.with_foreign_subresource(
            "scale",
            GroupVersionKind::gvk("autoscaling", "v1", "Scale"),
            SUB_VERBS,
        );
        self
    }

    fn foreign_sub(
        mut self,
        name: &'static str,
        kind: GroupVersionKind,
        verbs: &'static [&'static str],
    ) -> Self {
        self.descriptor = self.descriptor.with_foreign_subresource(name, kind, verbs);
        self
    }

    fn sub(mut self, name: &'static str, verbs: &'static [&'static str]) -> Self {
        self.descriptor = self.descriptor.with_subresource(name, verbs);
        self
    }

    /// A PUT of a missing object creates it, as upstream's strategy for
    /// this type allows (`AllowCreateOnUpdate() == true`).
    fn creates_on_put(mut self) -> Self {
        self.descriptor.allow_create_on_update = true;
        self
    }

    /// Upstream marks this type deprecated in `since` (`1.19`): every
    /// response carries the Warning its `deprecation.WarningMessage` builds.
    fn deprecated(mut self, since: &str, removed: Option<&str>, replacement: Option<&str>) -> Self {
        self.descriptor.deprecation_warning = Some(deprecation_warning(
            self.descriptor.api_version(),
            &self.descriptor.gvk.kind,
            since,
            removed,
            replacement,
        ));
        self
    }

    /// Restricts the verbs (create-only review APIs).
    fn verbs(mut self, verbs: &'static [&'static str]) -> Self {
        self.descriptor.verbs = verbs;
        self
    }

    fn done(self) -> Builtin {
        Builtin {
            descriptor: self.descriptor,
            strategy: self.strategy,
            schema: self.schema,
            conversion: self.conversion,
        }
    }
}

/// `<apiVersion> <Kind> is deprecated in v<since>+[, unavailable in
/// v<removed>+][; use <replacement>]`, upstream's deprecation Warning text.
pub fn deprecation_warning(
    api_version: &str,
    kind: &str,
    since: &str,
    removed: Option<&str>,
    replacement: Option<&str>,
) -> String {
    let mut msg = format!("{api_version} {kind} is deprecated in v{since}+");
    if let Some(r) = removed {
        msg.push_str(&format!(", unavailable in v{r}+"));
    }
    if let Some(r) = replacement {
        msg.push_str(&format!("; use {r}"));
    }
    msg
}

const ALL: &[&str] = &["all"];
const CREATE: &[&str] = &["create"];
/// Connect subresources a client opens with GET (websocket) or POST (SPDY).
const CONNECT_VERBS: &[&str] = &["create", "get"];
const PROXY_VERBS: &[&str] = &["create", "delete", "get", "patch", "update"];

fn validated(
    generation: bool,
    validate: fn(&resource::Object) -> Vec<crate::validation::FieldError>,
) -> type_rules::Validated {
    type_rules::Validated {
        generation,
        validate,
        warnings: None,
    }
}

fn core_kind(kind: &str) -> GroupVersionKind {
    GroupVersionKind::gvk("", "v1", kind)
}

/// Every built-in resource, in discovery order (groups as upstream lists
/// them, resources alphabetically within a group-version).
pub fn catalog(root: &KeyRoot) -> Vec<Builtin> {
    use apps_rules::*;
    use core_rules::*;
    let r = root;
    let entries = vec![
        // core/v1
        Entry::new::<core::Binding>(r, &[], &[]).verbs(CREATE),
        Entry::new::<core::ComponentStatus>(r, &["cs"], &[])
            .verbs(&["get", "list"])
            .deprecated("1.19", None, None),
        Entry::new::<core::ConfigMap>(r, &["cm"], &[]).strategy(type_rules::ConfigMapStrategy),
        Entry::new::<core::Endpoints>(r, &["ep"], &[])
            .strategy(service::EndpointsStrategy)
            .creates_on_put(),
        Entry::new::<core::Event>(r, &["ev"], &[])
            .strategy(CoreEventStrategy)
            .creates_on_put(),
        Entry::new::<core::LimitRange>(r, &["limits"], &[]).creates_on_put(),
        Entry::new::<core::Namespace>(r, &["ns"], &[])
            .strategy(namespace::NamespaceStrategy)
            .status()
            .sub("finalize", &["update"]),
        Entry::new::<core::Node>(r, &["no"], &[])
            .strategy(NodeStrategy)
            .foreign_sub("proxy", core_kind("NodeProxyOptions"), PROXY_VERBS)
            .status(),
        Entry::new::<core::PersistentVolumeClaim>(r, &["pvc"], &[])
            .strategy(type_rules::PvcStrategy)
            .status(),
        Entry::new::<core::PersistentVolume>(r, &["pv"], &[]).status(),
        Entry::new::<core::Pod>(r, &["po"], ALL)
            .strategy(PodStrategy)
            .foreign_sub("attach", core_kind("PodAttachOptions"), CONNECT_VERBS)
            .foreign_sub("binding", core_kind("Binding"), CREATE)
            .sub("ephemeralcontainers", SUB_VERBS)
            .foreign_sub(
                "eviction",
                GroupVersionKind::gvk("policy", "v1", "Eviction"),
                CREATE,
            )
            .foreign_sub("exec", core_kind("PodExecOptions"), CONNECT_VERBS)
            .sub("log", &["get"])
            .foreign_sub(
                "portforward",
                core_kind("PodPortForwardOptions"),
                CONNECT_VERBS,
            )
            .foreign_sub("proxy", core_kind("PodProxyOptions"), PROXY_VERBS)
            // No `resize`: alpha (InPlacePodVerticalScaling, off) in 1.32.
            .status(),
        Entry::new::<core::PodTemplate>(r, &[], &[]).strategy(PodTemplateStrategy),
        Entry::new::<core::ReplicationController>(r, &["rc"], ALL)
            .strategy(ReplicaCountStrategy)
            .status()
            .scale(),
        Entry::new::<core::ResourceQuota>(r, &["quota"], &[]).status(),
        Entry::new::<core::Secret>(r, &[], &[]).strategy(SecretStrategy),
        Entry::new::<core::ServiceAccount>(r, &["sa"], &[])
            .strategy(ServiceAccountStrategy)
            .foreign_sub(
                "token",
                GroupVersionKind::gvk("authentication.k8s.io", "v1", "TokenRequest"),
                &["create"],
            ),
        Entry::new::<core::Service>(r, &["svc"], ALL)
            .strategy(service::ServiceStrategy)
            .creates_on_put()
            .foreign_sub("proxy", core_kind("ServiceProxyOptions"), PROXY_VERBS)
            .status(),
        // apiregistration.k8s.io/v1
        Entry::new::<apiregistration::APIService>(r, &[], &[]).status(),
        // apps/v1
        Entry::new::<apps::ControllerRevision>(r, &[], &[]),
        Entry::new::<apps::DaemonSet>(r, &["ds"], ALL)
            .strategy(DaemonSetStrategy)
            .status(),
        Entry::new::<apps::Deployment>(r, &["deploy"], ALL)
            .strategy(DeploymentStrategy)
            .status()
            .scale(),
        Entry::new::<apps::ReplicaSet>(r, &["rs"], ALL)
            .strategy(ReplicaCountStrategy)
            .status()
            .scale(),
        Entry::new::<apps::StatefulSet>(r, &["sts"], ALL)
            .strategy(StatefulSetStrategy)
            .status()
            .scale(),
        // events.k8s.io/v1
        Entry::new::<events_api::Event>(r, &["ev"], &[])
            .strategy(EventsV1Strategy)
            .creates_on_put()
            .stored_as(r, "", "events", events::EventsV1Conversion),
        // authentication.k8s.io/v1 and authorization.k8s.io/v1: create-only
        // reviews, answered by the server's authenticator and authorizer
        // (never stored).
        Entry::new::<authn::SelfSubjectReview>(r, &[], &[]).verbs(CREATE),
        Entry::new::<authn::TokenReview>(r, &[], &[]).verbs(CREATE),
        Entry::new::<authz::LocalSubjectAccessReview>(r, &[], &[]).verbs(CREATE),
        Entry::new::<authz::SelfSubjectAccessReview>(r, &[], &[]).verbs(CREATE),
        Entry::new::<authz::SelfSubjectRulesReview>(r, &[], &[]).verbs(CREATE),
        Entry::new::<authz::SubjectAccessReview>(r, &[], &[]).verbs(CREATE),
        // autoscaling/v2 (stored) and v1 (converted)
        Entry::new::<autoscaling_v2::HorizontalPodAutoscaler>(r, &["hpa"], ALL)
            .strategy(validated(false, type_rules::validate_hpa))
            .status(),
        Entry::new::<autoscaling_v1::HorizontalPodAutoscaler>(r, &["hpa"], ALL)
            .status()
            .stored_as(
                r,
                "autoscaling",
                "horizontalpodautoscalers",
                autoscaling::HpaV1Conversion,
            ),
        // batch/v1
        Entry::new::<batch::CronJob>(r, &["cj"], ALL)
            .strategy(CronJobStrategy)
            .status(),
        Entry::new::<batch::Job>(r, &[], ALL)
            .strategy(JobStrategy)
            .status(),
        // certificates.k8s.io/v1
        Entry::new::<certificates::CertificateSigningRequest>(r, &["csr"], &[])
            .status()
            .sub("approval", SUB_VERBS),
        // networking.k8s.io/v1
        Entry::new::<networking::IngressClass>(r, &[], &[]),
        Entry::new::<networking::Ingress>(r, &["ing"], &[])
            .strategy(type_rules::Validated {
                warnings: Some(type_rules::ingress_warnings),
                ..validated(true, type_rules::validate_ingress)
            })
            .status(),
        Entry::new::<networking::NetworkPolicy>(r, &["netpol"], &[])
            .strategy(validated(true, type_rules::validate_network_policy)),
        // policy/v1
        Entry::new::<policy::PodDisruptionBudget>(r, &["pdb"], &[])
            .strategy(validated(true, type_rules::validate_pdb))
            .status(),
        // rbac.authorization.k8s.io/v1
        Entry::new::<rbac::ClusterRoleBinding>(r, &[], &[])
            .strategy(rbac_rules::ClusterRbacStrategy(
                rbac_rules::ClusterRbacKind::ClusterRoleBinding,
            ))
            .creates_on_put(),
        Entry::new::<rbac::ClusterRole>(r, &[], &[])
            .strategy(rbac_rules::ClusterRbacStrategy(
                rbac_rules::ClusterRbacKind::ClusterRole,
            ))
            .creates_on_put(),
        Entry::new::<rbac::RoleBinding>(r, &[], &[])
            .strategy(RbacStrategy)
            .creates_on_put(),
        Entry::new::<rbac::Role>(r, &[], &[])
            .strategy(RbacStrategy)
            .creates_on_put(),
        // storage.k8s.io/v1
        Entry::new::<storage_api::CSIDriver>(r, &[], &[]),
        Entry::new::<storage_api::CSINode>(r, &[], &[]),
        Entry::new::<storage_api::CSIStorageCapacity>(r, &[], &[]),
        Entry::new::<storage_api::StorageClass>(r, &["sc"], &[]).strategy(ReturnsObjectStrategy),
        Entry::new::<storage_api::VolumeAttachment>(r, &[], &[]).status(),
        // admissionregistration.k8s.io/v1
        Entry::new::<admission::MutatingWebhookConfiguration>(r, &[], &[])
            .strategy(GenerationStrategy),
        Entry::new::<admission::ValidatingAdmissionPolicy>(r, &[], &[])
            .strategy(GenerationStrategy)
            .status(),
        Entry::new::<admission::ValidatingAdmissionPolicyBinding>(r, &[], &[])
            .strategy(GenerationStrategy),
        Entry::new::<admission::ValidatingWebhookConfiguration>(r, &[], &[])
            .strategy(GenerationStrategy),
        // scheduling.k8s.io/v1
        Entry::new::<scheduling::PriorityClass>(r, &["pc"], &[])
            .strategy(type_rules::PriorityClassStrategy),
        // coordination.k8s.io/v1
        Entry::new::<coordination::Lease>(r, &[], &[])
            .strategy(validated(false, type_rules::validate_lease))
            .creates_on_put(),
        // node.k8s.io/v1
        Entry::new::<node::RuntimeClass>(r, &[], &[]).creates_on_put(),
        // discovery.k8s.io/v1
        Entry::new::<discovery::EndpointSlice>(r, &[], &[]),
        // flowcontrol.apiserver.k8s.io/v1
        Entry::new::<flowcontrol::FlowSchema>(r, &[], &[])
            .strategy(GenerationStrategy)
            .status(),
        Entry::new::<flowcontrol::PriorityLevelConfiguration>(r, &[], &[])
            .strategy(GenerationStrategy)
            .status(),
    ];
    entries.into_iter().map(Entry::done).collect()
}

/// The order groups appear in discovery (upstream's priority order, most of
/// it); groups not listed sort after, alphabetically.
pub const GROUP_ORDER: &[&str] = &[
    "",
    "apiregistration.k8s.io",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "node.k8s.io",
    "discovery.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "tenancy.wsgate.io",
];
