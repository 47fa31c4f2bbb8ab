//! The generic registry: one [`ResourceStore`] per served resource, built
//! from its descriptor, its strategy and the storage engine. It implements
//! every verb with Kubernetes semantics; per-type rules come only from the
//! strategy, and keys only from the descriptor's [`crate::keys::ResourcePrefix`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value};
use storage::{KeyValue, RangeRequest, Revision, Store};

use crate::cluster::{ClusterId, ClusterScope};
use crate::fieldmanager::{self, ApplyError, FieldSet, Path, TypeInfo};
use crate::keys::ResourcePrefix;
use crate::metadata::{self, meta, meta_mut, meta_str};
use crate::options::{
    ContinueToken, DeleteOptions, ListOptions, Propagation, ReadFrom, WriteOptions,
};
use crate::resource::{ImplicitContext, Object, ResourceDescriptor, Strategy};
use crate::schema::{FieldValidation, RoundTrip};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{self, ApiError, ApiResult, Reason};
use crate::validation::FieldError;
use crate::watch_cache::{WatchCache, WatchCaches};
use crate::workspace::WorkspaceIndex;

/// How often a write that lost an unconditional race is retried.
const MAX_UPDATE_RETRIES: usize = 16;
/// How many times a generated name is re-rolled on collision.
const GENERATE_NAME_RETRIES: usize = 8;
/// Keys read per round trip when selectors filter a paged list.
const MIN_FILTERED_CHUNK: usize = 256;
/// How long objects with a TTL share one storage lease.
const LEASE_REUSE: Duration = Duration::from_secs(60);
/// How long a read "not older than X" waits for X before 504.
const WAIT_FOR_REVISION: Duration = Duration::from_secs(3);

/// What every resource store shares: the engine, the workspace index (for
/// implicit objects), and where namespaces live (for existence checks).
pub struct StoreContext {
    pub store: Arc<dyn Store>,
    pub workspaces: Arc<WorkspaceIndex>,
    pub namespaces: ResourcePrefix,
    pub advertise_address: String,
    /// Where deleted implicit namespaces are remembered (one key per
    /// workspace and namespace), so they stay deleted.
    pub implicit_tombstones: ResourcePrefix,
    /// Per-workspace ClusterIP and NodePort reservations
    /// (`builtin::service_alloc`).
    pub service_allocations: ResourcePrefix,
    /// The watch caches of every resource prefix (created on first use).
    pub watch_caches: Arc<WatchCaches>,
}

/// Which patch format a PATCH carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    /// Server-side apply. Approximated for now: create when absent, else a
    /// strategic (built-ins) merge of the applied configuration; field
    /// ownership and conflicts are not tracked yet.
    Apply,
}

/// Whether a write still needs its managedFields recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Managed {
    /// A non-apply write: record what the writer changed.
    Update,
    /// Server-side apply already rewrote managedFields.
    Applied,
}

/// Which part of an object a write targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    Main,
    Status,
    Scale,
}

/// One item of a list page: the stored bytes when they can be served as
/// they are (no conversion, no annotation), else the decoded object.
enum Item {
    Stored(KeyValue),
    Object(Object),
}

/// A list page before rendering.
struct Page {
    items: Vec<(Vec<u8>, Item)>,
    revision: Revision,
    more: bool,
    remaining: Option<i64>,
}

/// A page of a list.
#[derive(Clone, Debug)]
pub struct ListResult {
    pub items: Vec<Value>,
    pub resource_version: Revision,
    pub continue_token: Option<String>,
    pub remaining_item_count: Option<i64>,
}

/// The outcome of a delete.
#[derive(Clone, Debug)]
pub enum DeleteOutcome {
    /// Gone now; the last state, stamped with the delete revision.
    Deleted(Object),
    /// Still present (finalizers remain); the object with deletionTimestamp.
    Pending(Object),
}

/// A stored (or implicit) object and the revision guards need.
struct Current {
    obj: Object,
    /// `None` for implicit objects that were never written.
    mod_revision: Option<Revision>,
    /// The lease the stored key is attached to (objects with a TTL).
    lease: Option<storage::LeaseId>,
}

/// Parsed selectors of one request.
pub struct Filter {
    label: LabelSelector,
    field: FieldSelector,
    /// For wildcard reads narrowed to one namespace (cannot use the key).
    namespace: Option<String>,
    /// A wildcard (`/clusters/*`) read: objects are annotated with their
    /// workspace, and objects of deleted workspaces are skipped.
    pub(crate) wildcard: bool,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.label.is_empty() && self.field.is_empty() && self.namespace.is_none()
    }
}

/// How a resource's API form maps to its stored form, for resources that
/// share another one's storage (events.k8s.io/v1 Events are core/v1 Events).
pub trait StorageConversion: Send + Sync + 'static {
    fn api_to_storage(&self, obj: Object) -> Object;
    fn storage_to_api(&self, obj: Object) -> Object;
}

pub struct ResourceStore {
    pub descriptor: Arc<ResourceDescriptor>,
    pub strategy: Arc<dyn Strategy>,
    conversion: Option<Arc<dyn StorageConversion>>,
    /// The typed form for field validation (built-ins).
    schema: Option<RoundTrip>,
    /// How fields merge under server-side apply and managedFields.
    types: TypeInfo,
    /// The lease new objects with a TTL share for a while (one lease per
    /// object would be one more write each).
    lease: tokio::sync::Mutex<Option<(storage::LeaseId, tokio::time::Instant)>>,
    ctx: Arc<StoreContext>,
    /// Whether reads may use the prefix's watch cache.
    use_cache: bool,
    /// The prefix's watch cache, once looked up.
    cache: std::sync::OnceLock<Arc<WatchCache>>,
}

pub fn decode(kv: &KeyValue) -> ApiResult<Object> {
    let mut obj: Object = serde_json::from_slice(&kv.value).map_err(|e| {
        tracing::error!(key = %String::from_utf8_lossy(&kv.key), error = %e, "undecodable object in storage");
        ApiError::internal(format!("Internal error occurred: stored object is not valid JSON: {e}"))
    })?;
    set_rv(&mut obj, kv.mod_revision);
    Ok(obj)
}

fn set_rv(obj: &mut Object, rev: Revision) {
    meta_mut(obj).insert("resourceVersion".into(), rev.to_string().into());
}

/// The stored form: the object without its resourceVersion (that is the
/// storage revision, added on every read).
fn encode(obj: &Object) -> ApiResult<Bytes> {
    let rv = meta(obj).and_then(|m| m.get("resourceVersion"));
    let bytes = if rv.is_some() {
        let mut copy = obj.clone();
        meta_mut(&mut copy).remove("resourceVersion");
        serde_json::to_vec(&copy)
    } else {
        serde_json::to_vec(obj)
    };
    bytes
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(format!("Internal error occurred: {e}")))
}

/// The stored bytes with `"resourceVersion":"<rev>"` inserted at the top of
/// the top-level `metadata` object: a GET answered without decoding and
/// re-encoding the object. `None` if the document has no such object.
pub fn splice_resource_version(doc: &[u8], rev: Revision) -> Option<Bytes> {
    let n = doc.len();
    let mut depth = 0usize;
    let mut i = 0;
    while i < n {
        match doc[i] {
            b'"' => {
                let start = i + 1;
                // Skip the string: jump from quote or backslash to the next
                // (memchr: long values such as ConfigMap data dominate).
                i = start;
                loop {
                    i += memchr::memchr2(b'"', b'\\', doc.get(i..)?)?;
                    if doc[i] == b'\\' {
                        i += 2;
                    } else {
                        break;
                    }
                }
                if depth == 1 && &doc[start..i] == b"metadata" {
                    let mut j = i + 1;
                    while j < n && doc[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    if j < n && doc[j] == b':' {
                        j += 1;
                        while j < n && doc[j].is_ascii_whitespace() {
                            j += 1;
                        }
                        if j < n && doc[j] == b'{' {
                            let rest = &doc[j + 1..];
                            let empty =
                                rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
                            let mut buf = itoa::Buffer::new();
                            let digits = buf.format(rev).as_bytes();
                            let mut out = Vec::with_capacity(n + digits.len() + 24);
                            out.extend_from_slice(&doc[..=j]);
                            out.extend_from_slice(b"\"resourceVersion\":\"");
                            out.extend_from_slice(digits);
                            out.extend_from_slice(if empty { &b"\""[..] } else { b"\"," });
                            out.extend_from_slice(rest);
                            return Some(Bytes::from(out));
                        }
                    }
                }
                i += 1;
            }
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

/// An object as compared to decide whether a write changes anything: no
/// resourceVersion, and managedFields without their timestamps.
fn comparable(obj: &Object) -> Object {
    let mut o = obj.clone();
    let m = meta_mut(&mut o);
    m.remove("resourceVersion");
    if let Some(Value::Array(entries)) = m.get_mut("managedFields") {
        for e in entries.iter_mut().filter_map(Value::as_object_mut) {
            e.remove("time");
        }
    }
    o
}

impl ResourceStore {
    pub fn new(
        descriptor: Arc<ResourceDescriptor>,
        strategy: Arc<dyn Strategy>,
        ctx: Arc<StoreContext>,
    ) -> Self {
        let types = TypeInfo::for_kind(descriptor.api_version(), &descriptor.gvk.kind);
        ResourceStore {
            descriptor,
            strategy,
            schema: None,
            conversion: None,
            types,
            lease: tokio::sync::Mutex::new(None),
            ctx,
            use_cache: true,
            cache: std::sync::OnceLock::new(),
        }
    }

    /// Reads and watches go to storage only (a resource whose objects are
    /// indexed elsewhere already, such as workspaces).
    #[must_use]
    pub fn without_watch_cache(mut self) -> Self {
        self.use_cache = false;
        self
    }

    /// The prefix's watch cache when it can serve reads (started on first
    /// use; `None` while it loads).
    pub(crate) fn watch_cache(&self) -> Option<&Arc<WatchCache>> {
        if !self.use_cache || !self.ctx.watch_caches.enabled() {
            return None;
        }
        let cache = self
            .cache
            .get_or_init(|| self.ctx.watch_caches.for_prefix(&self.descriptor.prefix));
        cache.is_ready().then_some(cache)
    }

    /// Whether stored bytes are this resource's API form as they are.
    pub(crate) fn serves_stored_bytes(&self, filter: &Filter) -> bool {
        self.conversion.is_none() && !filter.wildcard
    }

    #[must_use]
    pub fn with_conversion(mut self, conversion: Arc<dyn StorageConversion>) -> Self {
        self.conversion = Some(conversion);
        self
    }

    /// How server-side apply merges this resource's fields, when it is not
    /// a built-in kind (a CRD version's schema).
    #[must_use]
    pub fn with_types(mut self, types: TypeInfo) -> Self {
        self.types = types;
        self
    }

    /// Fields an endpoint never records as owned: `.status` on the main
    /// resource of a kind with a status subresource, `.spec` on status.
    fn ignored_fields(&self, sub: Subresource) -> FieldSet {
        match sub {
            Subresource::Main if self.descriptor.has_status() => {
                FieldSet::from_paths(&[Path::fields(&["status"])])
            }
            Subresource::Status => FieldSet::from_paths(&[Path::fields(&["spec"])]),
            _ => FieldSet::new(),
        }
    }

    fn subresource_name(sub: Subresource) -> Option<String> {
        match sub {
            Subresource::Main => None,
            Subresource::Status => Some("status".into()),
            Subresource::Scale => Some("scale".into()),
        }
    }

    /// Records the writer's fields in `new`'s managedFields (non-apply writes).
    fn record_update(
        &self,
        old: Option<&Object>,
        new: Object,
        sub: Subresource,
        opts: &WriteOptions,
    ) -> Object {
        let uopts = fieldmanager::UpdateOptions {
            manager: opts.manager().to_owned(),
            api_version: self.descriptor.api_version().to_owned(),
            subresource: Self::subresource_name(sub),
            now: metadata::now_rfc3339(),
            ignored_fields: self.ignored_fields(sub),
        };
        let old = old.map(|o| Value::Object(o.clone()));
        let mut v = Value::Object(new);
        fieldmanager::update_managed_fields(old.as_ref(), &mut v, &uopts, &self.types);
        match v {
            Value::Object(o) => o,
            _ => Map::new(),
        }
    }

    /// Server-side apply of `applied` onto `live`.
    fn server_side_apply(
        &self,
        live: Option<&Object>,
        applied: &Value,
        sub: Subresource,
        opts: &WriteOptions,
        name: &str,
    ) -> ApiResult<Object> {
        let aopts = fieldmanager::ApplyOptions {
            manager: opts.field_manager.clone().unwrap_or_default(),
            api_version: self.descriptor.api_version().to_owned(),
            force: opts.force.unwrap_or(false),
            subresource: Self::subresource_name(sub),
            now: metadata::now_rfc3339(),
            ignored_fields: self.ignored_fields(sub),
        };
        let live = live.map(|o| Value::Object(o.clone()));
        match fieldmanager::apply(live.as_ref(), applied, &aopts, &self.types) {
            Ok(Value::Object(o)) => Ok(o),
            Ok(_) => Err(ApiError::bad_request(
                "the applied object is not a JSON object",
            )),
            Err(ApplyError::Conflicts(conflicts)) => {
                let message = ApplyError::Conflicts(conflicts.clone()).to_string();
                let causes = conflicts
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "reason": "FieldManagerConflict",
                            "message": c.cause_message(),
                            "field": c.field_path_display,
                        })
                    })
                    .collect();
                Err(
                    ApiError::new(Reason::Conflict, message).with_details(status::StatusDetails {
                        name: Some(name.to_owned()),
                        group: Some(self.descriptor.gvk.group.clone()),
                        kind: Some(self.descriptor.plural().to_owned()),
                        causes,
                        ..Default::default()
                    }),
                )
            }
            Err(e @ ApplyError::BadRequest(_)) => Err(ApiError::bad_request(e.to_string())),
            Err(e) => Err(ApiError::internal(e.to_string())),
        }
    }

    /// The lease for a new object of a type with a TTL (events): shared by
    /// the objects created within [`LEASE_REUSE`], granted for TTL plus
    /// that window so each lives at least its TTL.
    async fn lease_for_new_object(&self) -> ApiResult<Option<storage::LeaseId>> {
        let Some(ttl) = self.strategy.ttl() else {
            return Ok(None);
        };
        let mut cached = self.lease.lock().await;
        if let Some((id, granted)) = *cached
            && granted.elapsed() < LEASE_REUSE
        {
            return Ok(Some(id));
        }
        let lease = self
            .ctx
            .store
            .lease_grant(ttl + LEASE_REUSE)
            .await
            .map_err(|e| status::interpret_create_error(e, self.qr(), ""))?;
        *cached = Some((lease.id, tokio::time::Instant::now()));
        Ok(Some(lease.id))
    }

    /// A stored object in this resource's API form.
    pub(crate) fn read(&self, kv: &KeyValue) -> ApiResult<Object> {
        let obj = decode(kv)?;
        Ok(match &self.conversion {
            Some(c) => c.storage_to_api(obj),
            None => obj,
        })
    }

    /// The stored form of an API object.
    fn write(&self, obj: &Object) -> ApiResult<Bytes> {
        match &self.conversion {
            Some(c) => encode(&c.api_to_storage(obj.clone())),
            None => encode(obj),
        }
    }

    #[must_use]
    pub fn with_schema(mut self, schema: RoundTrip) -> Self {
        self.schema = Some(schema);
        self
    }

    /// Applies `fieldValidation` to a request object: Strict fails on
    /// unknown fields, Warn and Ignore drop them; returns the warnings.
    pub fn check_fields(&self, obj: &mut Object, mode: FieldValidation) -> ApiResult<Vec<String>> {
        match self.schema {
            Some(rt) => crate::schema::check(
                rt,
                self.descriptor.api_version(),
                &self.descriptor.gvk.kind,
                obj,
                mode,
            ),
            // Types without a typed form (custom resources) ask their strategy.
            None => self.strategy.check_fields(obj, mode),
        }
    }

    fn qr(&self) -> &status::QualifiedResource {
        &self.descriptor.qualified
    }

    fn key(&self, cluster: &ClusterId, namespace: Option<&str>, name: &str) -> ApiResult<Vec<u8>> {
        if let Some(p) = crate::validation::path_segment_problem(name).filter(|_| !name.is_empty())
        {
            return Err(ApiError::bad_request(format!(
                "invalid resource name {name:?}: {p}"
            )));
        }
        if name.is_empty() {
            return Err(ApiError::bad_request("resource name may not be empty"));
        }
        let ns = if self.descriptor.namespaced() {
            Some(namespace.ok_or_else(|| {
                ApiError::bad_request("a namespace is required for this resource")
            })?)
        } else {
            None
        };
        Ok(self.descriptor.prefix.object_key(cluster, ns, name))
    }

    fn implicit(&self, cluster: &ClusterId, namespace: Option<&str>) -> Vec<Object> {
        let Some(info) = self.ctx.workspaces.info_by_id(cluster) else {
            return Vec::new();
        };
        let created = info.created_rfc3339();
        let ctx = ImplicitContext {
            cluster: cluster.as_str(),
            created: &created,
            revision: info.revision,
            advertise_address: &self.ctx.advertise_address,
        };
        self.strategy.implicit_objects(&ctx, namespace)
    }

    /// The implicit namespaces deleted in `cluster` (see
    /// [`StoreContext::implicit_tombstones`]).
    pub(crate) async fn deleted_implicit_namespaces(
        &self,
        cluster: &ClusterId,
    ) -> ApiResult<Vec<String>> {
        let tomb = &self.ctx.implicit_tombstones;
        let resp = self
            .ctx
            .store
            .range(
                storage::RangeRequest::prefix(
                    tomb.collection(&ClusterScope::One(cluster.clone()), None),
                )
                .keys_only(),
            )
            .await
            .map_err(|e| status::interpret_list_error(e, self.qr()))?;
        Ok(resp
            .kvs
            .iter()
            .filter_map(|kv| tomb.parse(&kv.key, false).map(|k| k.name.to_owned()))
            .collect())
    }

    /// Implicit objects minus those of deleted implicit namespaces.
    async fn live_implicit(
        &self,
        cluster: &ClusterId,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> ApiResult<Vec<Object>> {
        let mut objs = self.implicit(cluster, namespace);
        if let Some(n) = name {
            objs.retain(|o| metadata::name(o) == n);
        }
        if objs.is_empty() {
            return Ok(objs);
        }
        let deleted = self.deleted_implicit_namespaces(cluster).await?;
        if deleted.is_empty() {
            return Ok(objs);
        }
        let is_namespaces =
            self.descriptor.gvk.group.is_empty() && self.descriptor.plural() == "namespaces";
        objs.retain(|o| {
            let ns = if is_namespaces {
                metadata::name(o)
            } else {
                meta_str(o, "namespace").unwrap_or("")
            };
            !deleted.iter().any(|d| d == ns)
        });
        Ok(objs)
    }

    async fn current(
        &self,
        cluster: &ClusterId,
        namespace: Option<&str>,
        name: &str,
    ) -> ApiResult<Option<Current>> {
        let key = self.key(cluster, namespace, name)?;
        let resp = self
            .ctx
            .store
            .get(&key, None)
            .await
            .map_err(|e| status::interpret_get_error(e, self.qr(), name))?;
        match resp.kv {
            Some(kv) => Ok(Some(Current {
                obj: self.read(&kv)?,
                mod_revision: Some(kv.mod_revision),
                lease: kv.lease,
            })),
            None => Ok(self
                .live_implicit(cluster, namespace, Some(name))
                .await?
                .into_iter()
                .next()
                .map(|obj| Current {
                    obj,
                    mod_revision: None,
                    lease: None,
                })),
        }
    }

    // ---------------------------------------------------------------- get

    /// GET of the latest state (storage), as writers and internal callers
    /// need it.
    pub async fn get(
        &self,
        cluster: &ClusterId,
        namespace: Option<&str>,
        name: &str,
    ) -> ApiResult<Object> {
        self.get_from(cluster, namespace, name, ReadFrom::Latest)
            .await
    }

    /// GET with a `resourceVersion` (see [`crate::options::GetOptions`]).
    pub async fn get_from(
        &self,
        cluster: &ClusterId,
        namespace: Option<&str>,
        name: &str,
        from: ReadFrom,
    ) -> ApiResult<Object> {
        let key = self.key(cluster, namespace, name)?;
        match self.stored_for_get(&key, name, from).await? {
            Some(kv) => self.read(&kv),
            None => self.implicit_or_not_found(cluster, namespace, name).await,
        }
    }

    /// GET as JSON bytes, without decoding the stored object (the hot path).
    pub async fn get_json(
        &self,
        cluster: &ClusterId,
        namespace: Option<&str>,
        name: &str,
        from: ReadFrom,
    ) -> ApiResult<Bytes> {
        let key = self.key(cluster, namespace, name)?;
        let obj = match self.stored_for_get(&key, name, from).await? {
            Some(kv) if self.conversion.is_none() => {
                match splice_resource_version(&kv.value, kv.mod_revision) {
                    Some(b) => return Ok(b),
                    None => decode(&kv)?,
                }
            }
            Some(kv) => self.read(&kv)?,
            None => self.implicit_or_not_found(cluster, namespace, name).await?,
        };
        serde_json::to_vec(&obj)
            .map(Bytes::from)
            .map_err(|e| ApiError::internal(format!("Internal error occurred: {e}")))
    }

    /// The stored object a GET reads (`None`: not stored). Like upstream's
    /// cacher: an unset resourceVersion reads storage (a quorum read);
    /// `0` and `N` are served from the watch cache when it is loaded and,
    /// for `N`, has caught up with N (the cache's own freshness rules, as
    /// for lists); otherwise from storage, which waits a bounded time for
    /// N and then answers 504 "Too large resource version".
    async fn stored_for_get(
        &self,
        key: &[u8],
        name: &str,
        from: ReadFrom,
    ) -> ApiResult<Option<KeyValue>> {
        if from != ReadFrom::Latest
            && let Some(cache) = self.watch_cache()
            && let Some((kv, _)) = cache.get(key, from).await
        {
            return Ok(kv);
        }
        let read = || async {
            self.ctx
                .store
                .get(key, None)
                .await
                .map_err(|e| status::interpret_get_error(e, self.qr(), name))
        };
        let resp = read().await?;
        match from {
            ReadFrom::NotOlderThan(x) if resp.revision < x => {
                self.wait_for_revision(x).await?;
                Ok(read().await?.kv)
            }
            _ => Ok(resp.kv),
        }
    }

    /// An implicit object of this name, or 404 as storage answers it.
    async fn implicit_or_not_found(
        &self,
        cluster: &ClusterId,
        namespace: Option<&str>,
        name: &str,
    ) -> ApiResult<Object> {
        self.live_implicit(cluster, namespace, Some(name))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::not_found(self.qr(), name))
    }

    // --------------------------------------------------------------- list

    pub fn filter(
        &self,
        opts: &ListOptions,
        scope: &ClusterScope,
        namespace: Option<&str>,
    ) -> ApiResult<Filter> {
        let label = match opts.label_selector.as_deref() {
            Some(s) => LabelSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?,
            None => LabelSelector::everything(),
        };
        let field = match opts.field_selector.as_deref() {
            Some(s) => FieldSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?,
            None => FieldSelector::everything(),
        };
        let allowed = self.strategy.selectable_fields();
        for r in field.requirements() {
            let f = r.field.as_str();
            if f != "metadata.name" && f != "metadata.namespace" && !allowed.contains(&f) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {f}"
                )));
            }
        }
        let namespace = match scope {
            ClusterScope::All => namespace.map(str::to_owned),
            ClusterScope::One(_) => None,
        };
        Ok(Filter {
            label,
            field,
            namespace,
            wildcard: matches!(scope, ClusterScope::All),
        })
    }

    pub(crate) fn matches(&self, filter: &Filter, obj: &Object) -> bool {
        if let Some(ns) = &filter.namespace
            && meta_str(obj, "namespace") != Some(ns.as_str())
        {
            return false;
        }
        if !filter.label.matches(
            meta(obj)
                .and_then(|m| m.get("labels"))
                .and_then(Value::as_object),
        ) {
            return false;
        }
        if filter.field.is_empty() {
            return true;
        }
        // Field selectors look at a Value; objects are maps, so wrap once.
        let v = Value::Object(obj.clone());
        filter
            .field
            .matches(&|f: &str| self.strategy.field_value(&v, f))
    }

    async fn resolve_read(&self, from: ReadFrom) -> ApiResult<Option<Revision>> {
        match from {
            ReadFrom::Latest | ReadFrom::Any => Ok(None),
            ReadFrom::Exact(x) => Ok(Some(x)),
            ReadFrom::NotOlderThan(x) => {
                self.wait_for_revision(x).await?;
                Ok(None)
            }
        }
    }

    async fn wait_for_revision(&self, x: Revision) -> ApiResult<()> {
        let deadline = tokio::time::Instant::now() + WAIT_FOR_REVISION;
        loop {
            let current = self
                .ctx
                .store
                .current_revision()
                .await
                .map_err(|e| status::interpret_list_error(e, self.qr()))?;
            if current >= x {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::too_large_resource_version(x, current));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn list(
        &self,
        scope: &ClusterScope,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<ListResult> {
        let from = opts.list_read_from()?;
        let filter = self.filter(opts, scope, namespace)?;
        let (page, token) = self
            .list_page(scope, namespace, opts, from, &filter)
            .await?;
        let items = page
            .items
            .into_iter()
            .map(|(_, item)| match item {
                Item::Object(o) => Ok(Value::Object(o)),
                Item::Stored(kv) => self.read(&kv).map(Value::Object),
            })
            .collect::<ApiResult<Vec<_>>>()?;
        Ok(ListResult {
            items,
            resource_version: page.revision,
            continue_token: token,
            remaining_item_count: if page.more { page.remaining } else { None },
        })
    }

    /// A list as JSON bytes: stored objects are spliced in as they are,
    /// without decoding and re-encoding (the LIST fast path).
    pub async fn list_json(
        &self,
        scope: &ClusterScope,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<Bytes> {
        let from = opts.list_read_from()?;
        let filter = self.filter(opts, scope, namespace)?;
        let (page, token) = self
            .list_page(scope, namespace, opts, from, &filter)
            .await?;
        let mut meta = Map::new();
        meta.insert("resourceVersion".into(), page.revision.to_string().into());
        if let Some(c) = token {
            meta.insert("continue".into(), c.into());
        }
        if let (true, Some(r)) = (page.more, page.remaining) {
            meta.insert("remainingItemCount".into(), r.into());
        }
        let head = serde_json::json!({
            "kind": self.descriptor.list_kind,
            "apiVersion": self.descriptor.api_version(),
            "metadata": meta,
        });
        let internal =
            |e: serde_json::Error| ApiError::internal(format!("Internal error occurred: {e}"));
        let mut out = serde_json::to_vec(&head).map_err(internal)?;
        let size: usize = page
            .items
            .iter()
            .map(|(_, i)| match i {
                Item::Stored(kv) => kv.value.len() + 32,
                Item::Object(_) => 256,
            })
            .sum();
        out.reserve(size + 16);
        out.pop(); // the closing brace; items follow
        out.extend_from_slice(b",\"items\":[");
        for (i, (_, item)) in page.items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match item {
                Item::Stored(kv) => match splice_resource_version(&kv.value, kv.mod_revision) {
                    Some(b) => out.extend_from_slice(&b),
                    None => serde_json::to_writer(&mut out, &self.read(kv)?).map_err(internal)?,
                },
                Item::Object(o) => serde_json::to_writer(&mut out, o).map_err(internal)?,
            }
        }
        out.extend_from_slice(b"]}");
        Ok(Bytes::from(out))
    }

    /// Whether `kv` belongs in a list under `filter`, and in which form.
    fn admit(&self, kv: &KeyValue, filter: &Filter) -> ApiResult<Option<Item>> {
        let Some(parsed) = self
            .descriptor
            .prefix
            .parse(&kv.key, self.descriptor.namespaced())
        else {
            return Ok(None);
        };
        if self.serves_stored_bytes(filter) {
            if filter.is_empty() {
                return Ok(Some(Item::Stored(kv.clone())));
            }
            let obj = self.read(kv)?;
            return Ok(self.matches(filter, &obj).then(|| Item::Stored(kv.clone())));
        }
        let mut obj = self.read(kv)?;
        if filter.wildcard && !self.ctx.workspaces.annotate(&mut obj, parsed.cluster) {
            return Ok(None);
        }
        Ok(self.matches(filter, &obj).then_some(Item::Object(obj)))
    }

    /// One page of a list, from the watch cache when it can answer, else
    /// from storage; and its continue token.
    async fn list_page(
        &self,
        scope: &ClusterScope,
        namespace: Option<&str>,
        opts: &ListOptions,
        from: ReadFrom,
        filter: &Filter,
    ) -> ApiResult<(Page, Option<String>)> {
        let collection = self.descriptor.prefix.collection(scope, namespace);
        let limit = opts.limit();
        let token = match opts.continue_token.as_deref().filter(|t| !t.is_empty()) {
            Some(t) => Some(ContinueToken::decode(t, scope, self.descriptor.plural())?),
            None => None,
        };
        let cached = match self.watch_cache() {
            Some(cache) => {
                self.list_cached(cache, from, filter, token.as_ref(), &collection, limit)
                    .await?
            }
            None => None,
        };
        let mut page = match cached {
            Some(page) => page,
            None => {
                self.list_stored(from, filter, token.as_ref(), &collection, limit)
                    .await?
            }
        };
        if let ClusterScope::One(cluster) = scope
            && !self.implicit(cluster, namespace).is_empty()
        {
            // The stored count no longer describes what remains.
            page.remaining = None;
            self.merge_implicit(
                cluster,
                namespace,
                filter,
                token.as_ref(),
                &collection,
                limit,
                &mut page.items,
                &mut page.more,
            )
            .await?;
        }
        let continue_token = if page.more {
            let last = page
                .items
                .last()
                .map(|(k, _)| k.clone())
                .unwrap_or_default();
            let start = String::from_utf8_lossy(last.get(collection.len()..).unwrap_or_default())
                .into_owned();
            Some(
                ContinueToken {
                    revision: page.revision,
                    start,
                }
                .encode(scope, self.descriptor.plural()),
            )
        } else {
            None
        };
        Ok((page, continue_token))
    }

    /// A page from the watch cache; `None` when it cannot answer for the
    /// requested revision (storage answers then).
    async fn list_cached(
        &self,
        cache: &WatchCache,
        from: ReadFrom,
        filter: &Filter,
        token: Option<&ContinueToken>,
        collection: &[u8],
        limit: usize,
    ) -> ApiResult<Option<Page>> {
        let at = match token {
            Some(t) => t.revision,
            None => match cache.read_at(from).await {
                Some(r) => r,
                None => return Ok(None),
            },
        };
        let end = storage::prefix_end(collection);
        let mut after: Option<Vec<u8>> = token.map(|t| {
            let mut s = collection.to_vec();
            s.extend_from_slice(t.start.as_bytes());
            s
        });
        let mut items = Vec::new();
        let mut more = false;
        let mut remaining = None;
        loop {
            let chunk = if limit == 0 {
                0
            } else if filter.is_empty() {
                limit - items.len()
            } else {
                (limit - items.len()).max(MIN_FILTERED_CHUNK)
            };
            let start = match &after {
                Some(k) => std::ops::Bound::Excluded(k.as_slice()),
                None => std::ops::Bound::Included(collection),
            };
            let Some((kvs, more_in_range)) = cache.range(start, &end, at, chunk) else {
                return Ok(None);
            };
            let n = kvs.len();
            for (i, kv) in kvs.iter().enumerate() {
                after = Some(kv.key.to_vec());
                yield_while_filtering(filter).await;
                if let Some(item) = self.admit(kv, filter)? {
                    items.push((kv.key.to_vec(), item));
                    if limit > 0 && items.len() == limit {
                        more = i + 1 < n || more_in_range;
                        if more && filter.is_empty() {
                            remaining = cache
                                .count(std::ops::Bound::Excluded(&kv.key), &end, at)
                                .map(|c| c as i64);
                        }
                        break;
                    }
                }
            }
            if (limit > 0 && items.len() == limit) || !more_in_range || n == 0 {
                break;
            }
        }
        Ok(Some(Page {
            items,
            revision: at,
            more,
            remaining,
        }))
    }

    /// A page read from storage.
    async fn list_stored(
        &self,
        from: ReadFrom,
        filter: &Filter,
        token: Option<&ContinueToken>,
        collection: &[u8],
        limit: usize,
    ) -> ApiResult<Page> {
        let (mut revision, mut req) = match token {
            Some(t) => {
                let mut start = collection.to_vec();
                start.extend_from_slice(t.start.as_bytes());
                (
                    Some(t.revision),
                    RangeRequest::prefix(collection.to_vec()).starting_after(&start),
                )
            }
            None => (
                self.resolve_read(from).await?,
                RangeRequest::prefix(collection.to_vec()),
            ),
        };
        let continuing = token.is_some();
        let mut items: Vec<(Vec<u8>, Item)> = Vec::new();
        let mut more = false;
        let mut remaining = None;
        let mut read_revision;
        loop {
            if let Some(r) = revision {
                req = req.at_revision(r);
            }
            if limit > 0 {
                // Without selectors every key is an item: read exactly what
                // is missing. With them, read in larger chunks so a rare
                // match does not cost one round trip per key.
                let missing = limit.saturating_sub(items.len()).max(1);
                let chunk = if filter.is_empty() {
                    missing
                } else {
                    missing.max(MIN_FILTERED_CHUNK)
                };
                req = req.limit(chunk);
            }
            let resp = self.ctx.store.range(req.clone()).await.map_err(|e| match e {
                storage::Error::Compacted { .. } if continuing => ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue value from the response to continue listing.",
                ),
                e => status::interpret_list_error(e, self.qr()),
            })?;
            read_revision = resp.revision;
            revision = Some(resp.revision);
            let mut last_key = None;
            let n = resp.kvs.len();
            for (i, kv) in resp.kvs.iter().enumerate() {
                last_key = Some(kv.key.clone());
                yield_while_filtering(filter).await;
                if let Some(item) = self.admit(kv, filter)? {
                    items.push((kv.key.to_vec(), item));
                    if limit > 0 && items.len() == limit {
                        more = i + 1 < n || resp.more;
                        if more && filter.is_empty() {
                            remaining = Some(resp.count - (i as i64 + 1));
                        }
                        break;
                    }
                }
            }
            if (limit > 0 && items.len() == limit) || !resp.more {
                break;
            }
            match last_key {
                Some(k) => req = req.starting_after(&k),
                None => break,
            }
        }
        Ok(Page {
            items,
            revision: read_revision,
            more,
            remaining,
        })
    }

    /// Adds implicit objects (default namespaces, the `kubernetes` Service)
    /// that were never written, in key order, keeping the page size.
    #[allow(clippy::too_many_arguments)]
    async fn merge_implicit(
        &self,
        cluster: &ClusterId,
        namespace: Option<&str>,
        filter: &Filter,
        token: Option<&ContinueToken>,
        collection: &[u8],
        limit: usize,
        items: &mut Vec<(Vec<u8>, Item)>,
        more: &mut bool,
    ) -> ApiResult<()> {
        let implicit = self.live_implicit(cluster, namespace, None).await?;
        if implicit.is_empty() {
            return Ok(());
        }
        let start: Option<Vec<u8>> = token.map(|t| {
            let mut s = collection.to_vec();
            s.extend_from_slice(t.start.as_bytes());
            s
        });
        let page_end = if *more {
            items.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        let mut added = false;
        for obj in implicit {
            let ns = meta_str(&obj, "namespace");
            let key = self
                .descriptor
                .prefix
                .object_key(cluster, ns, metadata::name(&obj));
            if start.as_ref().is_some_and(|s| key <= *s)
                || page_end.as_ref().is_some_and(|e| key > *e)
            {
                continue;
            }
            if !self.matches(filter, &obj) || items.iter().any(|(k, _)| *k == key) {
                continue;
            }
            let stored = self
                .ctx
                .store
                .get(&key, None)
                .await
                .map_err(|e| status::interpret_list_error(e, self.qr()))?;
            if stored.kv.is_none() {
                items.push((key, Item::Object(obj)));
                added = true;
            }
        }
        if added {
            items.sort_by(|a, b| a.0.cmp(&b.0));
            if limit > 0 && items.len() > limit {
                items.truncate(limit);
                *more = true;
            }
        }
        Ok(())
    }

    /// The list body for `result`.
    pub fn list_object(&self, result: ListResult) -> Value {
        let mut meta = Map::new();
        meta.insert(
            "resourceVersion".into(),
            result.resource_version.to_string().into(),
        );
        if let Some(c) = result.continue_token {
            meta.insert("continue".into(), c.into());
        }
        if let Some(r) = result.remaining_item_count {
            meta.insert("remainingItemCount".into(), r.into());
        }
        let mut list = Map::new();
        list.insert("kind".into(), self.descriptor.list_kind.clone().into());
        list.insert("apiVersion".into(), self.descriptor.api_version().into());
        list.insert("metadata".into(), Value::Object(meta));
        list.insert("items".into(), Value::Array(result.items));
        Value::Object(list)
    }

    // ------------------------------------------------------------- create

    /// Checks that `namespace` exists and is not terminating.
    async fn check_namespace(&self, cluster: &ClusterId, namespace: &str) -> ApiResult<()> {
        let key = self.ctx.namespaces.object_key(cluster, None, namespace);
        let ns_qr = status::QualifiedResource::new("", "namespaces");
        let resp = self
            .ctx
            .store
            .get(&key, None)
            .await
            .map_err(|e| status::interpret_get_error(e, &ns_qr, namespace))?;
        match resp.kv {
            None if crate::builtin::namespace::IMPLICIT.contains(&namespace)
                && !self
                    .deleted_implicit_namespaces(cluster)
                    .await?
                    .iter()
                    .any(|d| d == namespace) =>
            {
                Ok(())
            }
            None => Err(ApiError::not_found(&ns_qr, namespace)),
            Some(kv) => {
                let ns = decode(&kv)?;
                if meta(&ns).is_some_and(|m| m.contains_key("deletionTimestamp")) {
                    let mut e = ApiError::forbidden(
                        self.qr(),
                        "",
                        &format!(
                            "unable to create new content in namespace {namespace} because it is being terminated"
                        ),
                    );
                    e.message = format!(
                        "{} \"\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                        self.qr()
                    );
                    if let Some(d) = e.details.as_mut() {
                        d.causes.push(serde_json::json!({
                            "reason": "NamespaceTerminating",
                            "message": format!("namespace {namespace} is being terminated"),
                            "field": "metadata.namespace",
                        }));
                    }
                    Err(e)
                } else {
                    Ok(())
                }
            }
        }
    }

    pub async fn create(
        &self,
        cluster: &ClusterId,
        namespace: Option<&str>,
        obj: Object,
        opts: &WriteOptions,
    ) -> ApiResult<Object> {
        self.create_inner(cluster, namespace, obj, opts, Managed::Update)
            .await
    }

    async fn create_inner(
        &self,
        cluster: &ClusterId,
        namespace: Option<&str>,
        mut obj: Object,
        opts: &WriteOptions,
        managed: Managed,
    ) -> ApiResult<Object> {
        let generated = metadata::meta_str(&obj, "name").is_none_or(str::is_empty);
        metadata::before_create(
            &self.descriptor,
            self.strategy.as_ref(),
            namespace,
            &mut obj,
        )?;
        opts.warnings.extend(self.strategy.warnings(&obj, None));
        if managed == Managed::Update {
            obj = self.record_update(None, obj, Subresource::Main, opts);
        }
        let ns = meta_str(&obj, "namespace").map(str::to_owned);
        if let Some(ns) = ns.as_deref() {
            self.check_namespace(cluster, ns).await?;
        }
        for attempt in 0.. {
            let name = metadata::name(&obj).to_owned();
            let key = self.key(cluster, ns.as_deref(), &name)?;
            let implicit_clash = !self
                .live_implicit(cluster, ns.as_deref(), Some(&name))
                .await?
                .is_empty();
            if implicit_clash {
                let stored = self
                    .ctx
                    .store
                    .get(&key, None)
                    .await
                    .map_err(|e| status::interpret_get_error(e, self.qr(), &name))?;
                if stored.kv.is_none() {
                    return Err(ApiError::already_exists(self.qr(), &name));
                }
            }
            if opts.dry_run {
                let exists = self
                    .ctx
                    .store
                    .get(&key, None)
                    .await
                    .map_err(|e| status::interpret_get_error(e, self.qr(), &name))?;
                if exists.kv.is_some() {
                    return Err(ApiError::already_exists(self.qr(), &name));
                }
                return Ok(obj);
            }
            let bytes = self.write(&obj)?;
            let lease = self.lease_for_new_object().await?;
            match self.ctx.store.create(&key, bytes, lease).await {
                Ok(kv) => {
                    set_rv(&mut obj, kv.mod_revision);
                    return Ok(obj);
                }
                Err(storage::Error::AlreadyExists { .. })
                    if generated && attempt < GENERATE_NAME_RETRIES =>
                {
                    let base = meta_str(&obj, "generateName").unwrap_or("").to_owned();
                    meta_mut(&mut obj).insert("name".into(), metadata::generate_name(&base).into());
                }
                Err(e) => return Err(status::interpret_create_error(e, self.qr(), &name)),
            }
        }
        unreachable!("the create loop returns")
    }

    // ------------------------------------------------------------- update

    /// PUT. Returns the stored object and whether it was created.
    pub async fn update(
        &self,
        cluster: &ClusterId,
        namespace: Option<&str>,
        name: &str,
        mut new: Object,
        sub: Subresource,
        opts: &WriteOptions,
    ) -> ApiResult<(Object, bool)> {
        match meta_str(&new, "name") {
            None | Some("") => {
                meta_mut(&mut new).insert("name".into(), name.into());
            }
            Some(n) if n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            _ => {}
        }
        for _ in 0..MAX_UPDATE_RETRIES {
            let Some(current) = self.current(cluster, namespace, name).await? else {
                if sub != Subresource::Main || !self.descriptor.allow_create_on_update {
                    return Err(ApiError::not_found(self.qr(), name));
                }
                // Upstream's create-on-update: a create of the body, whose
                // resourceVersion (if any) is discarded like any create's.
                let mut obj = new.clone();
                meta_mut(&mut obj).remove("resourceVersion");
                match self
                    .create_inner(cluster, namespace, obj, opts, Managed::Update)
                    .await
                {
                    // Created meanwhile: this PUT is an update after all.
                    Err(e) if e.reason == Reason::AlreadyExists => continue,
                    r => return r.map(|o| (o, true)),
                }
            };
            let candidate = if sub == Subresource::Scale {
                self.apply_scale(&current.obj, &new)?
            } else {
                new.clone()
            };
            let conditional = self.check_precondition(&candidate, &current, name)?;
            match self
                .try_update(
                    cluster,
                    namespace,
                    name,
                    current,
                    candidate,
                    sub,
                    opts,
                    Managed::Update,
                )
                .await?
            {
                Some(done) => return Ok((done, false)),
                None if conditional => return Err(ApiError::modified(self.qr(), name)),
                None => continue,
            }
        }
        Err(ApiError::modified(self.qr(), name))
    }

    /// Enforces a resourceVersion in `new`; returns whether it was conditional.
    fn check_precondition(&self, new: &Object, current: &Current, name: &str) -> ApiResult<bool> {
        match meta_str(new, "resourceVersion").filter(|s| !s.is_empty()) {
            Some(rv) => {
                let current_rv = meta_str(&current.obj, "resourceVersion").unwrap_or("");
                if rv != current_rv {
                    return Err(ApiError::modified(self.qr(), name));
                }
                Ok(true)
            }
            None if self.strategy.allow_unconditional_update() => Ok(false),
            None => Err(ApiError::invalid(
                &self.descriptor.gvk.group,
                &self.descriptor.gvk.kind,
                name,
                &[FieldError::invalid(
                    "metadata.resourceVersion",
                    Value::String("0x0".into()),
                    "must be specified for an update",
                )],
            )),
        }
    }

    /// One guarded write. `Ok(None)` means the object changed underneath.
    #[allow(clippy::too_many_arguments)]
    async fn try_update(
        &self,
        cluster: &ClusterId,
        namespace: Option<&str>,
        name: &str,
        current: Current,
        mut new: Object,
        sub: Subresource,
        opts: &WriteOptions,
        managed: Managed,
    ) -> ApiResult<Option<Object>> {
        metadata::before_update(
            &self.descriptor,
            self.strategy.as_ref(),
            namespace,
            &mut new,
            &current.obj,
            sub == Subresource::Status,
        )?;
        if sub == Subresource::Main {
            opts.warnings
                .extend(self.strategy.warnings(&new, Some(&current.obj)));
        }
        let key = self.key(cluster, namespace, name)?;
        // The write that removes the last finalizer of a deleted object deletes it.
        if self.removed_by_write(&new) {
            if opts.dry_run {
                return Ok(Some(new));
            }
            let Some(rev) = current.mod_revision else {
                return Ok(Some(new));
            };
            return match self.ctx.store.delete(&key, Some(rev)).await {
                Ok(resp) => {
                    set_rv(&mut new, resp.revision);
                    Ok(Some(new))
                }
                Err(storage::Error::Conflict { .. }) => Ok(None),
                Err(e) => Err(status::interpret_delete_error(e, self.qr(), name)),
            };
        }
        if current.mod_revision.is_some() && comparable(&new) == comparable(&current.obj) {
            // No change: no write, no new revision (kubectl apply no-ops).
            return Ok(Some(current.obj));
        }
        if managed == Managed::Update {
            new = self.record_update(Some(&current.obj), new, sub, opts);
        }
        if opts.dry_run {
            return Ok(Some(new));
        }
        let bytes = self.write(&new)?;
        let result = match current.mod_revision {
            Some(rev) => self.ctx.store.update(&key, bytes, rev, current.lease).await,
            None => self.ctx.store.create(&key, bytes, None).await,
        };
        match result {
            Ok(kv) => {
                set_rv(&mut new, kv.mod_revision);
                Ok(Some(new))
            }
            Err(
                storage::Error::Conflict { .. }
                | storage::Error::AlreadyExists { .. }
                | storage::Error::NotFound { .. },
            ) => Ok(None),
            Err(e) => Err(status::interpret_update_error(e, self.qr(), name)),
        }
    }

    // -------------------------------------------------------------- patch

    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        cluster: &ClusterId,
        namespace: Option<&str>,
        name: &str,
        kind: PatchKind,
        patch: &Value,
        sub: Subresource,
        opts: &WriteOptions,
    ) -> ApiResult<(Object, bool)> {
        if kind == PatchKind::Apply {
            if opts.field_manager.as_deref().is_none_or(str::is_empty) {
                return Err(ApiError::invalid(
                    "",
                    "PatchOptions",
                    "",
                    &[FieldError::required(
                        "fieldManager",
                        "is required for apply patch",
                    )],
                ));
            }
        } else if opts.force.is_some() {
            return Err(ApiError::invalid(
                "",
                "PatchOptions",
                "",
                &[FieldError::forbidden(
                    "force",
                    "may not be specified for non-apply patch",
                )],
            ));
        }
        for _ in 0..MAX_UPDATE_RETRIES {
            let current = self.current(cluster, namespace, name).await?;
            let Some(current) = current else {
                if kind == PatchKind::Apply && sub == Subresource::Main {
                    let obj = patch
                        .as_object()
                        .cloned()
                        .ok_or_else(|| ApiError::bad_request("apply patch must be an object"))?;
                    if meta_str(&obj, "name").is_some_and(|n| n != name) {
                        return Err(ApiError::bad_request(format!(
                            "the name of the object ({}) does not match the name on the URL ({name})",
                            meta_str(&obj, "name").unwrap_or("")
                        )));
                    }
                    let mut applied = obj;
                    meta_mut(&mut applied).insert("name".into(), name.into());
                    let mut obj =
                        self.server_side_apply(None, &Value::Object(applied), sub, opts, name)?;
                    opts.warnings
                        .extend(self.check_fields(&mut obj, opts.field_validation)?);
                    return self
                        .create_inner(cluster, namespace, obj, opts, Managed::Applied)
                        .await
                        .map(|o| (o, true));
                }
                return Err(ApiError::not_found(self.qr(), name));
            };
            let target = if sub == Subresource::Scale {
                self.scale_of(&current.obj)?
            } else {
                current.obj.clone()
            };
            let ssa = kind == PatchKind::Apply && sub != Subresource::Scale;
            let patched = if ssa {
                Value::Object(self.server_side_apply(Some(&target), patch, sub, opts, name)?)
            } else {
                self.apply_patch(kind, &Value::Object(target), patch)?
            };
            let Value::Object(mut patched) = patched else {
                return Err(ApiError::bad_request(
                    "the patched object is not a JSON object",
                ));
            };
            if sub == Subresource::Scale {
                patched = self.apply_scale(&current.obj, &patched)?;
            } else {
                opts.warnings
                    .extend(self.check_fields(&mut patched, opts.field_validation)?);
            }
            // A resourceVersion the patch carries is a precondition; one it
            // left alone means "retry on conflict".
            let conditional = match (
                meta_str(&patched, "resourceVersion"),
                meta_str(&current.obj, "resourceVersion"),
            ) {
                (Some(p), Some(c)) if p == c => false,
                (None, _) => false,
                _ => return Err(ApiError::modified(self.qr(), name)),
            };
            match self
                .try_update(
                    cluster,
                    namespace,
                    name,
                    current,
                    patched,
                    sub,
                    opts,
                    if ssa {
                        Managed::Applied
                    } else {
                        Managed::Update
                    },
                )
                .await?
            {
                Some(done) => return Ok((done, false)),
                None if conditional => return Err(ApiError::modified(self.qr(), name)),
                None => continue,
            }
        }
        Err(ApiError::modified(self.qr(), name))
    }

    fn apply_patch(&self, kind: PatchKind, doc: &Value, patch: &Value) -> ApiResult<Value> {
        let result = match kind {
            PatchKind::Json => crate::patch::json_patch(doc, patch),
            PatchKind::Merge => Ok(crate::patch::merge_patch(doc, patch)),
            PatchKind::Strategic | PatchKind::Apply => {
                crate::patch::strategic_merge_patch(doc, patch, &self.descriptor.gvk)
            }
        };
        result.map_err(|e| {
            let reason = match e.code() {
                400 => Reason::BadRequest,
                415 => Reason::UnsupportedMediaType,
                _ => Reason::Invalid,
            };
            ApiError::new(reason, e.to_string())
        })
    }

    // -------------------------------------------------------------- scale

    /// The autoscaling/v1 Scale view of a parent object.
    pub fn scale_of(&self, parent: &Object) -> ApiResult<Object> {
        let m = meta(parent).cloned().unwrap_or_default();
        let mut smeta = Map::new();
        for f in [
            "name",
            "namespace",
            "uid",
            "resourceVersion",
            "creationTimestamp",
        ] {
            if let Some(v) = m.get(f) {
                smeta.insert(f.into(), v.clone());
            }
        }
        // Paths come from the descriptor (CRDs map the scale anywhere).
        let paths = &self.descriptor.scale;
        let spec_replicas = paths
            .get(parent, &paths.spec_replicas)
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let status_replicas = paths
            .get(parent, &paths.status_replicas)
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let custom_selector = paths.label_selector.as_deref().map(|p| {
            paths
                .get(parent, p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        });
        let selector = parent
            .get("spec")
            .and_then(|s| s.get("selector"))
            .map(|s| {
                // Apps types use a LabelSelector object; RCs a plain map.
                let as_selector =
                    if s.get("matchLabels").is_some() || s.get("matchExpressions").is_some() {
                        s.clone()
                    } else {
                        serde_json::json!({"matchLabels": s})
                    };
                LabelSelector::from_json(&as_selector)
                    .map(|l| l.to_string())
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        let selector = custom_selector.unwrap_or(selector);
        let mut status = Map::new();
        status.insert("replicas".into(), status_replicas.into());
        if !selector.is_empty() {
            status.insert("selector".into(), selector.into());
        }
        let mut scale = Map::new();
        scale.insert("kind".into(), "Scale".into());
        scale.insert("apiVersion".into(), "autoscaling/v1".into());
        scale.insert("metadata".into(), Value::Object(smeta));
        scale.insert(
            "spec".into(),
            serde_json::json!({"replicas": spec_replicas}),
        );
        scale.insert("status".into(), Value::Object(status));
        Ok(scale)
    }

    /// The parent with `spec.replicas` (and the precondition) from `scale`.
    fn apply_scale(&self, parent: &Object, scale: &Object) -> ApiResult<Object> {
        let replicas = scale
            .get("spec")
            .and_then(|s| s.get("replicas"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if replicas < 0 {
            return Err(ApiError::invalid(
                "autoscaling",
                "Scale",
                metadata::name(parent),
                &[FieldError::invalid(
                    "spec.replicas",
                    replicas,
                    "must be greater than or equal to 0",
                )],
            ));
        }
        let mut new = parent.clone();
        let paths = &self.descriptor.scale;
        paths.set(&mut new, &paths.spec_replicas, replicas.into());
        match meta_str(scale, "resourceVersion") {
            Some(rv) => meta_mut(&mut new).insert("resourceVersion".into(), rv.into()),
            None => meta_mut(&mut new).remove("resourceVersion"),
        };
        Ok(new)
    }

    // ------------------------------------------------------------- delete

    pub async fn delete(
        &self,
        cluster: &ClusterId,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<DeleteOutcome> {
        let propagation = opts.effective_propagation()?;
        let key = self.key(cluster, namespace, name)?;
        for _ in 0..MAX_UPDATE_RETRIES {
            let Some(current) = self.current(cluster, namespace, name).await? else {
                return Err(ApiError::not_found(self.qr(), name));
            };
            let uid = meta_str(&current.obj, "uid").unwrap_or("").to_owned();
            if let Some(pre) = opts.precondition_uid.as_deref().filter(|u| !u.is_empty())
                && pre != uid
            {
                return Err(ApiError::conflict(
                    self.qr(),
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {pre}, UID in object meta: {uid}"
                    ),
                ));
            }
            if let Some(pre) = opts
                .precondition_resource_version
                .as_deref()
                .filter(|u| !u.is_empty())
            {
                let rv = meta_str(&current.obj, "resourceVersion").unwrap_or("");
                if pre != rv {
                    return Err(ApiError::conflict(
                        self.qr(),
                        name,
                        &format!(
                            "Precondition failed: ResourceVersion in precondition: {pre}, ResourceVersion in object meta: {rv}"
                        ),
                    ));
                }
            }
            let Some(rev) = current.mod_revision else {
                // Implicit objects are re-served at once, as upstream
                // re-creates them; there is nothing stored to delete.
                return Ok(DeleteOutcome::Deleted(current.obj));
            };
            let mut finalizers = metadata::finalizers(&current.obj);
            let extra = match propagation {
                Propagation::Orphan => Some(crate::gc::ORPHAN_FINALIZER),
                Propagation::Foreground => Some(crate::gc::FOREGROUND_FINALIZER),
                Propagation::Background => None,
            };
            let mut changed = false;
            if let Some(f) = extra
                && !finalizers.iter().any(|x| x == f)
                && !meta(&current.obj).is_some_and(|m| m.contains_key("deletionTimestamp"))
            {
                finalizers.push(f.to_owned());
                changed = true;
            }
            if !finalizers.is_empty() {
                let mut obj = current.obj.clone();
                let already = meta(&obj).is_some_and(|m| m.contains_key("deletionTimestamp"));
                if already && !changed {
                    return Ok(DeleteOutcome::Pending(obj));
                }
                {
                    let m = meta_mut(&mut obj);
                    if !already {
                        m.insert("deletionTimestamp".into(), metadata::now_rfc3339().into());
                        m.insert("deletionGracePeriodSeconds".into(), 0.into());
                        if self.strategy.tracks_generation() {
                            let g = m.get("generation").and_then(Value::as_i64).unwrap_or(0);
                            m.insert("generation".into(), (g + 1).into());
                        }
                    }
                    m.insert(
                        "finalizers".into(),
                        Value::Array(finalizers.into_iter().map(Value::String).collect()),
                    );
                }
                if opts.dry_run {
                    return Ok(DeleteOutcome::Pending(obj));
                }
                match self
                    .ctx
                    .store
                    .update(&key, self.write(&obj)?, rev, current.lease)
                    .await
                {
                    Ok(kv) => {
                        set_rv(&mut obj, kv.mod_revision);
                        return Ok(DeleteOutcome::Pending(obj));
                    }
                    Err(storage::Error::Conflict { .. }) => continue,
                    Err(e) => return Err(status::interpret_delete_error(e, self.qr(), name)),
                }
            }
            if opts.dry_run {
                return Ok(DeleteOutcome::Deleted(current.obj));
            }
            match self.ctx.store.delete(&key, Some(rev)).await {
                Ok(resp) => {
                    let mut obj = current.obj;
                    set_rv(&mut obj, resp.revision);
                    return Ok(DeleteOutcome::Deleted(obj));
                }
                Err(storage::Error::Conflict { .. }) => continue,
                Err(storage::Error::NotFound { .. }) => {
                    return Err(ApiError::not_found(self.qr(), name));
                }
                Err(e) => return Err(status::interpret_delete_error(e, self.qr(), name)),
            }
        }
        Err(ApiError::modified(self.qr(), name))
    }

    /// The body a DELETE answers with.
    pub fn delete_body(&self, outcome: &DeleteOutcome) -> Value {
        match outcome {
            DeleteOutcome::Pending(o) => Value::Object(o.clone()),
            DeleteOutcome::Deleted(o) if self.strategy.delete_returns_object() => {
                Value::Object(o.clone())
            }
            DeleteOutcome::Deleted(o) => {
                status::success_status(self.qr(), metadata::name(o), meta_str(o, "uid"))
            }
        }
    }

    /// DELETE on a collection: deletes every object the selectors match.
    pub async fn delete_collection(
        &self,
        cluster: &ClusterId,
        namespace: Option<&str>,
        list_opts: &ListOptions,
        opts: &DeleteOptions,
    ) -> ApiResult<(Value, Vec<DeleteOutcome>)> {
        let scope = ClusterScope::One(cluster.clone());
        let mut lo = list_opts.clone();
        lo.limit = None;
        lo.continue_token = None;
        let listed = self.list(&scope, namespace, &lo).await?;
        let mut outcomes = Vec::new();
        let mut items = Vec::new();
        for item in &listed.items {
            let Some(obj) = item.as_object() else {
                continue;
            };
            let ns = meta_str(obj, "namespace");
            match self.delete(cluster, ns, metadata::name(obj), opts).await {
                Ok(outcome) => {
                    items.push(match &outcome {
                        DeleteOutcome::Deleted(o) | DeleteOutcome::Pending(o) => {
                            Value::Object(o.clone())
                        }
                    });
                    outcomes.push(outcome);
                }
                Err(e) if e.reason == Reason::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let body = self.list_object(ListResult {
            items,
            resource_version: listed.resource_version,
            continue_token: None,
            remaining_item_count: None,
        });
        Ok((body, outcomes))
    }

    pub(crate) fn context(&self) -> &Arc<StoreContext> {
        &self.ctx
    }

    /// Whether writing `obj` removes it: a deleting object without
    /// finalizers. A terminating namespace also waits for its
    /// `spec.finalizers` (cleared only through `/finalize`), as upstream.
    pub(crate) fn removed_by_write(&self, obj: &Object) -> bool {
        let deleting = meta(obj).is_some_and(|m| m.contains_key("deletionTimestamp"));
        deleting
            && metadata::finalizers(obj).is_empty()
            && !(self.is_core_namespaces() && has_spec_finalizers(obj))
    }

    fn is_core_namespaces(&self) -> bool {
        self.descriptor.gvk.group.is_empty() && self.descriptor.plural() == "namespaces"
    }
}

/// A namespace's `spec.finalizers` is non-empty.
pub(crate) fn has_spec_finalizers(obj: &Object) -> bool {
    obj.get("spec")
        .and_then(|s| s.get("finalizers"))
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

impl ResourceStore {
    /// A system write (namespace termination, finalizer and owner-reference
    /// maintenance) that bypasses the request metadata rules: `mutate` edits
    /// the current object and returns whether anything changed. Retries on
    /// conflicts; `Ok(None)` when the object is gone.
    pub async fn system_update(
        &self,
        cluster: &ClusterId,
        namespace: Option<&str>,
        name: &str,
        mut mutate: impl FnMut(&mut Object) -> bool + Send,
    ) -> ApiResult<Option<Object>> {
        let key = self.key(cluster, namespace, name)?;
        for _ in 0..MAX_UPDATE_RETRIES {
            let Some(current) = self.current(cluster, namespace, name).await? else {
                return Ok(None);
            };
            let mut obj = current.obj.clone();
            if !mutate(&mut obj) {
                return Ok(Some(current.obj));
            }
            let bytes = self.write(&obj)?;
            let result = match current.mod_revision {
                Some(rev) => self.ctx.store.update(&key, bytes, rev, current.lease).await,
                None => self.ctx.store.create(&key, bytes, None).await,
            };
            match result {
                Ok(kv) => {
                    set_rv(&mut obj, kv.mod_revision);
                    return Ok(Some(obj));
                }
                Err(storage::Error::Conflict { .. } | storage::Error::AlreadyExists { .. }) => {
                    continue;
                }
                Err(storage::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(status::interpret_update_error(e, self.qr(), name)),
            }
        }
        Err(ApiError::modified(self.qr(), name))
    }

    /// Removes an object whatever its finalizers (the last step of a system
    /// finalization). Missing objects are fine.
    pub async fn system_delete(
        &self,
        cluster: &ClusterId,
        namespace: Option<&str>,
        name: &str,
    ) -> ApiResult<()> {
        let key = self.key(cluster, namespace, name)?;
        match self.ctx.store.delete(&key, None).await {
            Ok(_) | Err(storage::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(status::interpret_delete_error(e, self.qr(), name)),
        }
    }
}

/// A filtered list decodes every object it examines (microseconds each), so
/// a list over thousands of objects would hold its runtime worker for
/// milliseconds without a pause, and a quiet workspace's request waiting on
/// that worker would wait as long. Consuming the task's cooperative budget
/// per object makes the scan yield every ~128 objects.
async fn yield_while_filtering(filter: &Filter) {
    if !filter.is_empty() {
        tokio::task::consume_budget().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splices_into_top_level_metadata() {
        let doc = br#"{"apiVersion":"v1","data":{"metadata":"{\"metadata\":{}}"},"kind":"ConfigMap","metadata":{"name":"x"},"spec":{"template":{"metadata":{}}}}"#;
        let out = splice_resource_version(doc, 42).expect("spliced");
        let v: Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(v["metadata"]["resourceVersion"], "42");
        assert_eq!(v["metadata"]["name"], "x");
        assert!(
            v["spec"]["template"]["metadata"]
                .get("resourceVersion")
                .is_none()
        );
        let empty = splice_resource_version(br#"{"metadata":{}}"#, 7).expect("spliced");
        assert_eq!(&empty[..], br#"{"metadata":{"resourceVersion":"7"}}"#);
        assert!(splice_resource_version(br#"{"kind":"metadata"}"#, 1).is_none());
        // Escapes inside strings, including an escaped backslash before
        // the closing quote; unterminated strings are not spliced.
        let doc = br#"{"a":"x\\","b":"\"metadata\":{","metadata":{"name":"y"}}"#;
        let out = splice_resource_version(doc, 9).expect("spliced");
        let v: Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(v["metadata"]["resourceVersion"], "9");
        assert_eq!(v["b"], "\"metadata\":{");
        assert!(splice_resource_version(br#"{"metadata":"abc"#, 1).is_none());
        assert!(splice_resource_version(br#"{"metadata":"abc\"#, 1).is_none());
    }
}
