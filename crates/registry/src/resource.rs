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

/// Where the autoscaling/v1 Scale view of an object lives, as dotted JSON
/// paths (`.spec.replicas`); built-ins use the defaults, CRDs their
/// `subresources.scale`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

impl ScalePaths {
    /// The value at a dotted path (`.spec.replicas`).
    pub fn get<'a>(&self, obj: &'a Object, path: &str) -> Option<&'a Value> {
        let mut parts = path.trim_start_matches('.').split('.');
        let mut cur = obj.get(parts.next()?)?;
        for p in parts {
            cur = cur.get(p)?;
        }
        Some(cur)
    }

    /// Sets the value at a dotted path, creating objects on the way.
    pub fn set(&self, obj: &mut Object, path: &str, value: Value) {
        let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
        let Some((last, head)) = parts.split_last() else {
            return;
        };
        let mut cur = obj;
        for p in head {
            let next = cur
                .entry((*p).to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !next.is_object() {
                *next = Value::Object(Map::new());
            }
            let Value::Object(m) = next else { return };
            cur = m;
        }
        cur.insert((*last).to_owned(), value);
    }
}

impl Default for ScalePaths {
    fn default() -> Self {
        ScalePaths {
            spec_replicas: ".spec.replicas".into(),
            status_replicas: ".status.replicas".into(),
            label_selector: None,
        }
    }
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
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub verbs: &'static [&'static str],
    pub subresources: Vec<SubresourceDescriptor>,
    /// The version objects are stored in, when it is not `gvk.version`
    /// (a CRD's storage version): discovery's `storageVersionHash`.
    pub storage_version: Option<String>,
    /// Where the scale subresource reads and writes (CRDs map it anywhere).
    pub scale: ScalePaths,
    /// A CRD version's `additionalPrinterColumns` (Table output).
    pub printer_columns: Vec<crate::table::ColumnSpec>,
    /// The Warning every response of a deprecated version carries.
    pub deprecation_warning: Option<String>,
    /// Whether a PUT of a missing object creates it (upstream's per-type
    /// `AllowCreateOnUpdate()`); otherwise it is a 404.
    pub allow_create_on_update: bool,
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
        short_names: Vec<&str>,
        categories: Vec<&str>,
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
            short_names: short_names.into_iter().map(str::to_owned).collect(),
            categories: categories.into_iter().map(str::to_owned).collect(),
            verbs,
            subresources: Vec::new(),
            storage_version: None,
            scale: ScalePaths::default(),
            printer_columns: Vec::new(),
            deprecation_warning: None,
            allow_create_on_update: false,
        }
    }

    /// Discovery's `storageVersionHash`: base64 of the first 8 bytes of
    /// sha256(`<group>/<storage version>/<Kind>`), as kube-apiserver's
    /// `discovery.StorageVersionHash` (an opaque token migration tools compare).
    pub fn storage_version_hash(&self) -> String {
        use base64::Engine as _;
        use sha2::Digest as _;
        let version = self.storage_version.as_deref().unwrap_or(&self.gvk.version);
        let digest = sha2::Sha256::digest(
            format!("{}/{}/{}", self.gvk.group, version, self.gvk.kind).as_bytes(),
        );
        base64::engine::general_purpose::STANDARD.encode(&digest[..8])
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

    /// `fieldValidation` for types without a typed form (custom resources:
    /// unknown fields are what their schema prunes). Returns the warnings.
    fn check_fields(
        &self,
        _obj: &mut Object,
        _mode: crate::schema::FieldValidation,
    ) -> crate::status::ApiResult<Vec<String>> {
        Ok(Vec::new())
    }

    fn validate_update(&self, new: &Object, _old: &Object) -> Vec<FieldError> {
        self.validate(new)
    }

    /// Upstream's `WarningsOnCreate` (`old` is `None`) and
    /// `WarningsOnUpdate`: field-level `Warning` headers for an accepted write.
    fn warnings(&self, _obj: &Object, _old: Option<&Object>) -> Vec<String> {
        Vec::new()
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
