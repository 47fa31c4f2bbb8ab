//! The two strategies CRDs bring: [`CrdStrategy`] for the
//! CustomResourceDefinition objects themselves (validation, the cleanup
//! finalizer, and the status written in the create itself), and
//! [`CustomStrategy`] for custom objects (pruning, defaulting and schema
//! validation from the CRD version's compiled schema), plus the apiVersion
//! rewrite between served and storage versions.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::CLEANUP_FINALIZER;
use super::definition::{Definition, Names};
use super::index::CrdIndex;
use super::schema::{CompiledSchema, SchemaCache};
use crate::cluster::ClusterId;
use crate::metadata::{self, meta_mut};
use crate::resource::{Object, Strategy};
use crate::schema::FieldValidation;
use crate::status::{ApiError, ApiResult};
use crate::store::StorageConversion;
use crate::validation::FieldError;

/// The workspace a CRD write happens in. A strategy sees only the object,
/// but the names check needs the workspace's other CRDs, so the registry
/// runs CRD writes inside [`in_workspace`].
#[derive(Clone)]
struct WriteScope {
    index: Arc<CrdIndex>,
    cluster: ClusterId,
}

tokio::task_local! {
    static WRITE_SCOPE: WriteScope;
}

/// Runs a CRD write with its workspace known to [`CrdStrategy`].
pub async fn in_workspace<F: std::future::Future>(
    index: Arc<CrdIndex>,
    cluster: ClusterId,
    fut: F,
) -> F::Output {
    WRITE_SCOPE.scope(WriteScope { index, cluster }, fut).await
}

/// Rules of `apiextensions.k8s.io/v1 CustomResourceDefinition`.
pub struct CrdStrategy {
    schemas: Arc<SchemaCache>,
}

impl CrdStrategy {
    pub fn new(schemas: Arc<SchemaCache>) -> Self {
        CrdStrategy { schemas }
    }
}

impl Strategy for CrdStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn allow_unconditional_update(&self) -> bool {
        false
    }

    fn prepare_for_create(&self, obj: &mut Object) {
        let m = meta_mut(obj);
        let mut finalizers: Vec<Value> = m
            .get("finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !finalizers.iter().any(|f| f == CLEANUP_FINALIZER) {
            finalizers.push(CLEANUP_FINALIZER.into());
        }
        m.insert("finalizers".into(), Value::Array(finalizers));
        let status = compute_status(obj, None);
        obj.insert("status".into(), status);
    }

    fn prepare_for_update(&self, new: &mut Object, old: &Object) {
        let status = compute_status(new, old.get("status"));
        new.insert("status".into(), status);
    }

    fn validate(&self, obj: &Object) -> Vec<FieldError> {
        Definition::parse(obj, &self.schemas)
            .err()
            .unwrap_or_default()
    }

    fn validate_update(&self, new: &Object, old: &Object) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let field = |o: &Object, k: &str| {
            o.get("spec")
                .and_then(|s| s.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        for k in ["group", "scope"] {
            if field(new, k) != field(old, k) {
                errs.push(FieldError::invalid(
                    format!("spec.{k}"),
                    field(new, k).unwrap_or_default(),
                    "field is immutable",
                ));
            }
        }
        errs
    }
}

fn condition(type_: &str, status: bool, reason: &str, message: &str, now: &str) -> Value {
    json!({
        "type": type_,
        "status": if status { "True" } else { "False" },
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    })
}

/// Replaces (or adds) the condition of `c`'s type, keeping the old
/// transition time when the status did not change.
pub(crate) fn set_condition(conditions: &mut Vec<Value>, mut c: Value) {
    let type_ = c.get("type").cloned();
    match conditions
        .iter_mut()
        .find(|x| x.get("type") == type_.as_ref())
    {
        Some(old) => {
            if old.get("status") == c.get("status")
                && let (Some(t), Value::Object(m)) =
                    (old.get("lastTransitionTime").cloned(), &mut c)
            {
                m.insert("lastTransitionTime".into(), t);
            }
            *old = c;
        }
        None => conditions.push(c),
    }
}

/// The status a CRD write stores: NamesAccepted and Established decided
/// now (against the workspace's other CRDs and the built-ins), accepted
/// names, and the storage version added to storedVersions.
fn compute_status(obj: &Object, old: Option<&Value>) -> Value {
    let now = metadata::now_rfc3339();
    let names = Names::from_value(obj.get("spec").and_then(|s| s.get("names")));
    let group = obj
        .get("spec")
        .and_then(|s| s.get("group"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let name = metadata::name(obj);
    let conflict = WRITE_SCOPE
        .try_with(|w| w.index.names_conflict(&w.cluster, name, group, &names))
        .ok()
        .flatten();
    let mut conditions: Vec<Value> = old
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let was_established = conditions.iter().any(|c| {
        c.get("type").and_then(Value::as_str) == Some("Established")
            && c.get("status").and_then(Value::as_str) == Some("True")
    });
    let mut accepted = old
        .and_then(|s| s.get("acceptedNames"))
        .cloned()
        .unwrap_or_else(|| json!({"plural": "", "kind": ""}));
    match &conflict {
        None => {
            set_condition(
                &mut conditions,
                condition(
                    "NamesAccepted",
                    true,
                    "NoConflicts",
                    "no conflicts found",
                    &now,
                ),
            );
            accepted = names.to_value();
            set_condition(
                &mut conditions,
                condition(
                    "Established",
                    true,
                    "InitialNamesAccepted",
                    "the initial names have been accepted",
                    &now,
                ),
            );
        }
        Some((reason, message)) => {
            set_condition(
                &mut conditions,
                condition("NamesAccepted", false, reason, message, &now),
            );
            if !was_established {
                set_condition(
                    &mut conditions,
                    condition(
                        "Established",
                        false,
                        "NotAccepted",
                        "not all names are accepted",
                        &now,
                    ),
                );
            }
        }
    }
    let mut stored: Vec<Value> = old
        .and_then(|s| s.get("storedVersions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(storage) = obj
        .get("spec")
        .and_then(|s| s.get("versions"))
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter()
                .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        })
        .and_then(|v| v.get("name"))
        .and_then(Value::as_str)
        && !stored.iter().any(|s| s == storage)
    {
        stored.push(storage.into());
    }
    json!({
        "conditions": conditions,
        "acceptedNames": accepted,
        "storedVersions": stored,
    })
}

/// Rules of one custom resource version, from its compiled schema.
pub struct CustomStrategy {
    schema: Arc<CompiledSchema>,
}

impl CustomStrategy {
    pub fn new(schema: Arc<CompiledSchema>) -> Self {
        CustomStrategy { schema }
    }

    /// Pruning, then defaults (upstream prunes and defaults when decoding).
    fn normalise(&self, obj: &mut Object) {
        self.schema.prune(obj);
        self.schema.apply_defaults(obj);
    }
}

impl Strategy for CustomStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn allow_unconditional_update(&self) -> bool {
        false
    }

    fn default(&self, obj: &mut Object) {
        self.normalise(obj);
    }

    fn validate(&self, obj: &Object) -> Vec<FieldError> {
        self.schema.validate(obj, None)
    }

    fn validate_update(&self, new: &Object, old: &Object) -> Vec<FieldError> {
        self.schema.validate(new, Some(old))
    }

    fn check_fields(&self, obj: &mut Object, mode: FieldValidation) -> ApiResult<Vec<String>> {
        let mut probe = obj.clone();
        let unknown = self.schema.prune(&mut probe);
        report_unknown(unknown, mode, obj, probe)
    }
}

/// `fieldValidation` over the paths pruning removed: Strict fails with
/// upstream's message, Warn drops them and warns, Ignore drops them.
fn report_unknown(
    unknown: Vec<String>,
    mode: FieldValidation,
    obj: &mut Object,
    pruned: Object,
) -> ApiResult<Vec<String>> {
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let messages: Vec<String> = unknown
        .iter()
        .map(|p| format!("unknown field \"{p}\""))
        .collect();
    match mode {
        FieldValidation::Strict => Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            messages.join(", ")
        ))),
        FieldValidation::Warn => {
            *obj = pruned;
            Ok(messages)
        }
        FieldValidation::Ignore => {
            *obj = pruned;
            Ok(Vec::new())
        }
    }
}

/// Conversion strategy `None` between a served version and the storage
/// version: only `apiVersion` changes.
pub struct VersionConversion {
    pub served: String,
    pub storage: String,
}

impl StorageConversion for VersionConversion {
    fn api_to_storage(&self, mut obj: Object) -> Object {
        obj.insert("apiVersion".into(), self.storage.clone().into());
        obj
    }

    fn storage_to_api(&self, mut obj: Object) -> Object {
        obj.insert("apiVersion".into(), self.served.clone().into());
        obj
    }
}

/// Adds the Terminating condition (the cleanup has started).
pub(crate) fn mark_terminating(obj: &mut Object) -> bool {
    let now = metadata::now_rfc3339();
    let status = obj
        .entry("status")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(status) = status else {
        return false;
    };
    let mut conditions: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if conditions.iter().any(|c| {
        c.get("type").and_then(Value::as_str) == Some("Terminating")
            && c.get("status").and_then(Value::as_str) == Some("True")
    }) {
        return false;
    }
    set_condition(
        &mut conditions,
        condition(
            "Terminating",
            true,
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress",
            &now,
        ),
    );
    status.insert("conditions".into(), Value::Array(conditions));
    true
}

/// Drops the cleanup finalizer; true when it was there.
pub(crate) fn remove_cleanup_finalizer(obj: &mut Object) -> bool {
    let Some(Value::Array(f)) = meta_mut(obj).get_mut("finalizers") else {
        return false;
    };
    let before = f.len();
    f.retain(|x| x != CLEANUP_FINALIZER);
    before != f.len()
}
