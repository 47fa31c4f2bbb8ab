//! Server-side apply and `managedFields`, as kube-apiserver's field manager
//! (`k8s.io/apiserver/pkg/endpoints/handlers/fieldmanager`, over
//! `k8s.io/apimachinery/pkg/util/managedfields` and structured-merge-diff
//! v4) defines them.
//!
//! Two entry points, both pure functions over JSON objects:
//! - [`apply`] for `application/apply-patch+yaml` PATCH requests: merges the
//!   applied configuration into the live object and records ownership, or
//!   fails with [`ApplyError::Conflicts`] (409).
//! - [`update_managed_fields`] for every other write (create, update, any
//!   other patch, subresource writes): records what the writer changed.
//!
//! Both take the kind's [`TypeInfo`] ([`TypeInfo::for_kind`] for built-ins,
//! [`TypeInfo::from_crd_schema`] for custom resources). Both handle only the
//! object's content and `metadata.managedFields`; uid, resourceVersion,
//! timestamps, defaulting and validation are the caller's. Upstream's field
//! manager layers are reproduced: stripping of metadata identity fields
//! from ownership, the `before-first-apply` entry, the cap of ten Update
//! entries (`ancient-changes`), client-supplied and reset managedFields,
//! and the client-side-apply upgrade of `kubectl`'s
//! `last-applied-configuration` annotation.

mod managed;
mod path;
mod set;
mod typed;
mod types;
mod types_table;
mod updater;

pub use managed::Operation;
pub use path::{Path, PathElement};
pub use set::FieldSet;
pub use types::{SchemaError, TypeInfo};

use serde_json::{Map, Value};

use managed::{BEFORE_FIRST_APPLY, Identity, Managed, is_reset, strip_managed_fields};
use updater::{Updater, UpdaterError};

/// The annotation client-side `kubectl apply` keeps its configuration in.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Options of one server-side apply.
#[derive(Clone, Debug, Default)]
pub struct ApplyOptions {
    /// The `fieldManager` query parameter (required for apply).
    pub manager: String,
    /// The request's group/version, e.g. `apps/v1`.
    pub api_version: String,
    /// The `force` query parameter: take conflicting fields over.
    pub force: bool,
    /// `Some("status")` for an apply to the status subresource.
    pub subresource: Option<String>,
    /// The write's time, RFC 3339 with seconds (`2024-01-02T03:04:05Z`).
    pub now: String,
    /// Fields this endpoint never records as owned (upstream's strategy
    /// "reset fields"): typically `.status` on the main resource of a kind
    /// with a status subresource, and `.spec`/`.metadata` on the status
    /// subresource. Excluded with everything below them.
    pub ignored_fields: FieldSet,
}

/// Options of one non-apply write.
#[derive(Clone, Debug, Default)]
pub struct UpdateOptions {
    /// The `fieldManager` query parameter, or the User-Agent up to the first
    /// `/` when absent (the caller's rule).
    pub manager: String,
    pub api_version: String,
    pub subresource: Option<String>,
    pub now: String,
    /// As [`ApplyOptions::ignored_fields`].
    pub ignored_fields: FieldSet,
}

/// Another manager owns a field the apply would change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager's name.
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub subresource: Option<String>,
    /// The field, as upstream prints it: `.spec.replicas`,
    /// `.spec.template.spec.containers[name="nginx"].image`.
    pub field_path_display: String,
}

impl Conflict {
    /// The manager as upstream prints it: `"kubectl"` for an applier,
    /// `"kube-controller-manager" using apps/v1` for an updater, with
    /// ` with subresource "status"` after the name where there is one.
    pub fn manager_display(&self) -> String {
        self.identity().display()
    }

    /// The `details.causes[].message` of the 409 (`conflict with "x"`);
    /// the cause's `reason` is `FieldManagerConflict` and its `field` is
    /// [`Conflict::field_path_display`].
    pub fn cause_message(&self) -> String {
        format!("conflict with {}", self.manager_display())
    }

    fn identity(&self) -> Identity {
        Identity {
            manager: self.manager.clone(),
            operation: self.operation,
            api_version: self.api_version.clone(),
            subresource: self.subresource.clone().unwrap_or_default(),
        }
    }
}

/// Why an apply failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Fields owned by other managers would change (409 Conflict). The
    /// message is upstream's `Apply failed with N conflict(s): …`.
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The request itself is wrong (400): managedFields in the applied
    /// object, an apiVersion other than the endpoint's.
    #[error("{0}")]
    BadRequest(String),
    /// The applied or live object does not fit its type (a map-list element
    /// without its key, duplicate keys, ...). Upstream answers 500.
    #[error("{0}")]
    Invalid(String),
}

impl ApplyError {
    /// The HTTP status kube-apiserver answers with.
    pub fn code(&self) -> u16 {
        match self {
            ApplyError::Conflicts(_) => 409,
            ApplyError::BadRequest(_) => 400,
            ApplyError::Invalid(_) => 500,
        }
    }
}

fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [c] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            c.manager_display(),
            c.field_path_display
        );
    }
    // Grouped by manager, managers in order (conflicts arrive sorted).
    let mut lines: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for c in conflicts {
        let m = c.manager_display();
        if current.as_ref() != Some(&m) {
            lines.push(format!("conflicts with {m}:"));
            current = Some(m);
        }
        lines.push(format!("- {}", c.field_path_display));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

fn to_conflicts(mut by_manager: Vec<updater::ManagerConflicts>) -> Vec<Conflict> {
    // Upstream sorts managers by their identifier ({"manager":…,"operation":…}).
    by_manager.sort_by(|a, b| {
        (
            &a.id.manager,
            a.id.operation,
            &a.id.api_version,
            &a.id.subresource,
        )
            .cmp(&(
                &b.id.manager,
                b.id.operation,
                &b.id.api_version,
                &b.id.subresource,
            ))
    });
    by_manager
        .into_iter()
        .flat_map(|mc| {
            mc.fields.paths().into_iter().map(move |p| Conflict {
                manager: mc.id.manager.clone(),
                operation: mc.id.operation,
                api_version: mc.id.api_version.clone(),
                subresource: (!mc.id.subresource.is_empty()).then(|| mc.id.subresource.clone()),
                field_path_display: p.to_string(),
            })
        })
        .collect()
}

/// Fields the field manager never records as owned (upstream's
/// stripMetaManager): identity and system metadata.
fn strip_set() -> FieldSet {
    let paths = [
        Path::fields(&["apiVersion"]),
        Path::fields(&["kind"]),
        Path::fields(&["metadata"]),
        Path::fields(&["metadata", "name"]),
        Path::fields(&["metadata", "namespace"]),
        Path::fields(&["metadata", "creationTimestamp"]),
        Path::fields(&["metadata", "selfLink"]),
        Path::fields(&["metadata", "uid"]),
        Path::fields(&["metadata", "clusterName"]),
        Path::fields(&["metadata", "generation"]),
        Path::fields(&["metadata", "managedFields"]),
        Path::fields(&["metadata", "resourceVersion"]),
    ];
    FieldSet::from_paths(&paths)
}

fn subresource_of(s: &Option<String>) -> String {
    s.clone().unwrap_or_default()
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

/// Server-side apply of `applied` (the request body, already decoded from
/// YAML or JSON) onto `live` (`None` when the apply creates the object).
///
/// Returns the new object with its `metadata.managedFields`. The caller
/// then fills system metadata, defaults, validates and stores it.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    opts: &ApplyOptions,
    types: &TypeInfo,
) -> Result<Value, ApplyError> {
    if !applied.is_object() {
        return Err(ApplyError::BadRequest(
            "the apply patch must be an object".into(),
        ));
    }
    if applied
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .is_some_and(|m| !m.is_null())
    {
        return Err(ApplyError::BadRequest(
            "metadata.managedFields must be nil".into(),
        ));
    }
    let patch_version = applied
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if patch_version != opts.api_version {
        return Err(ApplyError::BadRequest(format!(
            "Incorrect version specified in apply patch. Specified patch version: {patch_version}, expected: {}",
            opts.api_version
        )));
    }

    // Upstream converts the patch to a typed value first: a malformed
    // configuration fails before anything else, naming its kind.
    if let Err(e) = typed::to_field_set(&types.schema, types.root, applied, false) {
        let kind = applied
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let gv = if patch_version.contains('/') {
            patch_version.to_string()
        } else {
            format!("/{patch_version}")
        };
        return Err(ApplyError::Invalid(format!(
            "failed to create typed patch object ({gv}, Kind={kind}): {e}"
        )));
    }

    let mut live_obj = live.cloned().unwrap_or_else(empty_object);
    let managed = Managed::decode(&live_obj)
        .map_err(|e| ApplyError::Invalid(format!("failed to decode managed fields: {e}")))?;
    strip_managed_fields(&mut live_obj);

    let run = |force: bool| {
        apply_with_skip(
            live.is_some(),
            &live_obj,
            applied,
            &managed,
            opts,
            types,
            force,
        )
    };
    let (mut object, managed) = match run(opts.force) {
        Err(UpdaterError::Conflicts(conflicts)) if opts.manager == "kubectl" => {
            // Upstream's lastAppliedManager: kubectl may take over fields a
            // client-side apply set, where the live value still matches the
            // last-applied annotation.
            let conflicts = to_conflicts(conflicts);
            match allowed_conflicts_from_last_applied(&live_obj, types) {
                Some(allowed) => {
                    let remaining: Vec<Conflict> = conflicts
                        .into_iter()
                        .filter(|c| !allowed.iter().any(|p| p == &c.field_path_display))
                        .collect();
                    if !remaining.is_empty() {
                        return Err(ApplyError::Conflicts(remaining));
                    }
                    run(true).map_err(updater_error)?
                }
                None => return Err(ApplyError::Conflicts(conflicts)),
            }
        }
        other => other.map_err(updater_error)?,
    };

    if opts.manager == "kubectl" {
        sync_last_applied(&mut object, applied);
    }
    managed.encode_into(&mut object);
    Ok(object)
}

fn updater_error(e: UpdaterError) -> ApplyError {
    match e {
        UpdaterError::Conflicts(c) => ApplyError::Conflicts(to_conflicts(c)),
        UpdaterError::Invalid(msg) => ApplyError::Invalid(msg),
    }
}

// skipNonAppliedManager, then the apply itself.
fn apply_with_skip(
    exists: bool,
    live_obj: &Value,
    applied: &Value,
    managed: &Managed,
    opts: &ApplyOptions,
    types: &TypeInfo,
    force: bool,
) -> Result<(Value, Managed), UpdaterError> {
    let mut managed = managed.clone();
    let subresource = subresource_of(&opts.subresource);
    if managed.is_empty() && exists {
        // An object nobody tracked yet: its current fields are attributed to
        // `before-first-apply`, so the first applier does not silently own
        // (and later prune) them.
        record_update(
            &empty_object(),
            live_obj,
            &mut managed,
            BEFORE_FIRST_APPLY,
            &opts.api_version,
            &subresource,
            &opts.now,
            &opts.ignored_fields,
            types,
        )?;
    }
    let me = Identity {
        manager: opts.manager.clone(),
        operation: Operation::Apply,
        api_version: opts.api_version.clone(),
        subresource,
    };
    let updater = Updater {
        types,
        ignored: &opts.ignored_fields,
    };
    let object = updater.apply_op(live_obj, applied, &mut managed, &me, force)?;
    if let Some(e) = managed.find_mut(&me) {
        e.set = e.set.difference(&strip_set());
        e.time = Some(opts.now.clone());
    }
    managed.entries.retain(|e| !e.set.is_empty());
    Ok((object, managed))
}

/// Records a non-apply write in `managed` (upstream's Update chain below
/// the skip layer): the writer's entry gains what changed, others lose it.
#[allow(clippy::too_many_arguments)]
fn record_update(
    old: &Value,
    new: &Value,
    managed: &mut Managed,
    manager: &str,
    api_version: &str,
    subresource: &str,
    now: &str,
    ignored: &FieldSet,
    types: &TypeInfo,
) -> Result<(), UpdaterError> {
    // The write is first recorded under a private name, then merged into the
    // writer's entry, so that the writer's own earlier fields are not lost
    // and its time only moves when it changed something.
    let current = Identity {
        manager: String::new(),
        operation: Operation::Update,
        api_version: "\u{0}current-operation".into(),
        subresource: subresource.to_string(),
    };
    let updater = Updater { types, ignored };
    let (mut old, mut new) = (old.clone(), new.clone());
    typed::fill_present(&types.schema, types.root, &mut old);
    typed::fill_present(&types.schema, types.root, &mut new);
    updater.update_op(&old, &new, managed, &current)?;
    if let Some(op) = managed.remove(&current) {
        let set = op.set.difference(&strip_set());
        if !set.is_empty() {
            let me = Identity {
                manager: manager.to_string(),
                operation: Operation::Update,
                api_version: api_version.to_string(),
                subresource: subresource.to_string(),
            };
            let set = match managed.find(&me) {
                Some(previous) => set.union(&previous.set),
                None => set,
            };
            managed.set(me.clone(), set);
            if let Some(e) = managed.find_mut(&me) {
                e.time = Some(now.to_string());
            }
        }
    }
    managed.cap_update_managers(managed::MAX_UPDATE_MANAGERS);
    Ok(())
}

/// Records ownership for a non-apply write (create, update, JSON/merge/
/// strategic patch, subresource write) of `new` over `old` (`None` for a
/// create), rewriting `new`'s `metadata.managedFields`.
///
/// As upstream:
/// - `managedFields` sent by the client (non-empty, valid) are taken as the
///   starting state, not the stored ones (csaupgrade and helm rewrite
///   them); invalid ones are ignored. Subresource writes always start from
///   the stored ones.
/// - `managedFields: []` (or `[{}]`) clears them; an existing object
///   without managedFields stays untracked until its next apply.
/// - Never fails: if the objects do not fit the type, `managedFields` is
///   dropped (upstream's `UpdateNoErrors`).
pub fn update_managed_fields(
    old: Option<&Value>,
    new: &mut Value,
    opts: &UpdateOptions,
    types: &TypeInfo,
) {
    let subresource = subresource_of(&opts.subresource);
    let stored = || {
        old.map(Managed::decode)
            .unwrap_or_else(|| Ok(Managed::default()))
            .unwrap_or_default()
    };
    let managed = if !subresource.is_empty() {
        stored()
    } else if is_reset(new) {
        Managed::default()
    } else {
        match Managed::decode(new) {
            Ok(m) if !m.is_empty() => m,
            _ => stored(),
        }
    };
    strip_managed_fields(new);
    if managed.is_empty() && old.is_some() {
        return;
    }
    let mut old_obj = old.cloned().unwrap_or_else(empty_object);
    strip_managed_fields(&mut old_obj);
    let mut managed = managed;
    match record_update(
        &old_obj,
        new,
        &mut managed,
        &opts.manager,
        &opts.api_version,
        &subresource,
        &opts.now,
        &opts.ignored_fields,
        types,
    ) {
        Ok(()) => managed.encode_into(new),
        Err(e) => {
            let msg = match e {
                UpdaterError::Invalid(m) => m,
                UpdaterError::Conflicts(_) => "conflicts on a forced update".into(),
            };
            tracing::warn!(error = %msg, manager = %opts.manager, "failed to update managedFields; dropping them");
        }
    }
}

/// The fields kubectl's client-side apply set whose live values still match
/// its last-applied annotation: those a `kubectl` server-side apply may take
/// over without a conflict. `None` without a usable annotation.
fn allowed_conflicts_from_last_applied(live: &Value, types: &TypeInfo) -> Option<Vec<String>> {
    let text = live
        .get("metadata")?
        .get("annotations")?
        .get(LAST_APPLIED_ANNOTATION)?
        .as_str()
        .filter(|s| !s.is_empty())?;
    let last: Value = serde_json::from_str(text).ok()?;
    if !last.is_object() {
        return None;
    }
    let set = typed::to_field_set(&types.schema, types.root, &last, true).ok()?;
    let cmp = typed::compare(&types.schema, types.root, &last, live).ok()?;
    let allowed = set.difference(&cmp.modified);
    Some(allowed.paths().iter().map(|p| p.to_string()).collect())
}

/// Upstream's lastAppliedUpdater: a `kubectl` server-side apply keeps an
/// existing last-applied annotation in step with what it applied, so that
/// a later client-side apply computes the right three-way patch.
fn sync_last_applied(object: &mut Value, applied: &Value) {
    let has = object
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(LAST_APPLIED_ANNOTATION))
        .is_some();
    if !has {
        return;
    }
    let mut config = applied.clone();
    if let Some(annotations) = config
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
    let mut text = String::new();
    path::write_go_json(&mut text, &config);
    text.push('\n');
    let Some(annotations) = object
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    annotations.insert(LAST_APPLIED_ANNOTATION.into(), Value::String(text));
    // Upstream drops the annotation rather than exceed the 256 KiB total.
    let total: usize = annotations
        .iter()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    if total > 256 * 1024 {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
}

#[cfg(test)]
mod tests;
