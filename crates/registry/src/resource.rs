//! What a resource is: a [`ResourceDescriptor`] (identity, names, scope,
//! verbs, subresources, storage prefix) plus a [`Strategy`] holding the few
//! rules that differ per type. The generic [`crate::store::ResourceStore`]
//! is built from the two.

use kube_core::GroupVersionKind;
use kube_core::discovery::{ApiResource, Scope};
use serde_json::{Map, Value};

use crate::keys::{KeyRoot, ResourcePrefix};
use crate::status::QualifiedResource;
use crate::validation::{FieldError, NameRule};

pub type Object = Map<String, Value>;

/// The verbs a resource serves, in discovery order.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// A subresource such as `status` or `scale`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubresourceDescriptor {
    pub name: &'static str,
    /// The kind the subresource speaks (`autoscaling/v1 Scale` for scale;
    /// the parent's kind for status).
    pub response_kind: GroupVersionKind,
    pub verbs: &'static [&'static str],
}

/// Identity and shape of one served resource (one group-version-resource).
#[derive(Clone, Debug)]
pub struct ResourceDescriptor {
    pub gvk: GroupVersionKind,
    /// kube-core's (group, version, apiVersion, kind, plural).
    pub api: ApiResource,
    pub list_kind: String,
    pub singular: String,
    pub scope: Scope,
    pub short_names: Vec<&'static str>,
    pub categories: Vec<&'static str>,
    pub verbs: &'static [&'static str],
    pub subresources: Vec<SubresourceDescriptor>,
    /// `<root>/<group>/<resource>/`, computed once.
    pub prefix: ResourcePrefix,
    pub qualified: QualifiedResource,
}

impl ResourceDescriptor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        root: &KeyRoot,
        gvk: GroupVersionKind,
        plural: &str,
        scope: Scope,
        short_names: Vec<&'static str>,
        categories: Vec<&'static str>,
        verbs: &'static [&'static str],
    ) -> Self {
        let api = ApiResource::from_gvk_with_plural(&gvk, plural);
        ResourceDescriptor {
            list_kind: format!("{}List", gvk.kind),
            singular: gvk.kind.to_ascii_lowercase(),
            prefix: root.resource_prefix(&gvk.group, plural),
            qualified: QualifiedResource::new(&gvk.group, plural),
            gvk,
            api,
            scope,
            short_names,
            categories,
            verbs,
            subresources: Vec::new(),
        }
    }

    pub fn namespaced(&self) -> bool {
        matches!(self.scope, Scope::Namespaced)
    }

    pub fn plural(&self) -> &str {
        &self.api.plural
    }

    pub fn api_version(&self) -> &str {
        &self.api.api_version
    }

    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.iter().any(|s| s.name == name)
    }

    pub fn has_status(&self) -> bool {
        self.has_subresource("status")
    }

    pub fn serves(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    /// Adds a subresource speaking the parent's own kind.
    #[must_use]
    pub fn with_subresource(mut self, name: &'static str, verbs: &'static [&'static str]) -> Self {
        let response_kind = self.gvk.clone();
        self.subresources.push(SubresourceDescriptor {
            name,
            response_kind,
            verbs,
        });
        self
    }

    #[must_use]
    pub fn with_foreign_subresource(
        mut self,
        name: &'static str,
        response_kind: GroupVersionKind,
        verbs: &'static [&'static str],
    ) -> Self {
        self.subresources.push(SubresourceDescriptor {
            name,
            response_kind,
            verbs,
        });
        self
    }
}

/// What a strategy may need to synthesise a workspace's implicit objects
/// (the default namespaces and the `kubernetes` Service), which exist from a
/// workspace's first moment without being written.
#[derive(Clone, Debug)]
pub struct ImplicitContext<'a> {
    pub cluster: &'a str,
    /// The workspace's creation time (RFC 3339) and revision: implicit
    /// objects report them as their creationTimestamp and resourceVersion.
    pub created: &'a str,
    pub revision: i64,
    /// `host:port` clients reach wsgate on.
    pub advertise_address: &'a str,
}

/// Per-type rules. Strategies never touch storage; every method has the
/// behaviour of a plain built-in as its default.
pub trait Strategy: Send + Sync + 'static {
    fn name_rule(&self) -> NameRule {
        NameRule::Subdomain
    }

    /// Whether `metadata.generation` is maintained (types with a spec that
    /// controllers observe).
    fn tracks_generation(&self) -> bool {
        false
    }

    /// Deployments also bump generation on annotation changes.
    fn generation_includes_annotations(&self) -> bool {
        false
    }

    /// Built-ins accept an update without resourceVersion.
    fn allow_unconditional_update(&self) -> bool {
        true
    }

    /// Whether DELETE answers with the object rather than a success Status.
    fn delete_returns_object(&self) -> bool {
        false
    }

    /// Field selector fields beyond `metadata.name`/`metadata.namespace`.
    fn selectable_fields(&self) -> &'static [&'static str] {
        &[]
    }

    /// The selector value of `field` (overridden where the stored form differs).
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        crate::selector::field_value(obj, field)
    }

    /// Normalise a new object after system metadata is filled in.
    fn prepare_for_create(&self, _obj: &mut Object) {}

    /// Normalise an update; `old` is the stored object.
    fn prepare_for_update(&self, _new: &mut Object, _old: &Object) {}

    /// Upstream defaulting (runs on create and update, before validation).
    fn default(&self, _obj: &mut Object) {}

    fn validate(&self, _obj: &Object) -> Vec<FieldError> {
        Vec::new()
    }

    fn validate_update(&self, new: &Object, _old: &Object) -> Vec<FieldError> {
        self.validate(new)
    }

    /// Objects of this type expire this long after their creation (events).
    fn ttl(&self) -> Option<std::time::Duration> {
        None
    }

    /// Objects that exist in every workspace without a write, in `namespace`
    /// (for cluster-scoped resources `None`). They are served until the first
    /// write of that name replaces them.
    fn implicit_objects(
        &self,
        _ctx: &ImplicitContext<'_>,
        _namespace: Option<&str>,
    ) -> Vec<Object> {
        Vec::new()
    }
}

/// A strategy with every default: most built-ins.
pub struct DefaultStrategy;
impl Strategy for DefaultStrategy {}

/// A built-in with a spec whose generation is tracked.
pub struct GenerationStrategy;
impl Strategy for GenerationStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }
}
