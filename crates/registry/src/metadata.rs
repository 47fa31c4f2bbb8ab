//! Object metadata rules, applied in one fixed order for every resource
//! (upstream `rest.BeforeCreate` / `rest.BeforeUpdate`): system fields
//! first, then the strategy, then validation. No resource can reorder them.

use serde_json::{Map, Value};

use crate::resource::{Object, ResourceDescriptor, Strategy};
use crate::status::{ApiError, ApiResult};
use crate::validation::{FieldError, NameRule, label_value_problems, qualified_name_problems};

/// Annotations may total at most this many bytes (keys plus values).
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// `generateName` bases are cut to this length before the random suffix.
const GENERATE_NAME_BASE_MAX: usize = 58;
const GENERATE_NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Now, RFC 3339 with seconds and `Z`, as Kubernetes writes `metav1.Time`.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn meta(obj: &Object) -> Option<&Object> {
    obj.get("metadata").and_then(Value::as_object)
}

pub fn meta_mut(obj: &mut Object) -> &mut Object {
    let m = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !m.is_object() {
        *m = Value::Object(Map::new());
    }
    match m {
        Value::Object(m) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

pub fn meta_str<'a>(obj: &'a Object, field: &str) -> Option<&'a str> {
    meta(obj).and_then(|m| m.get(field)).and_then(Value::as_str)
}

pub fn name(obj: &Object) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

pub fn finalizers(obj: &Object) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A `<base><5 random chars>` name for `generateName`.
pub fn generate_name(base: &str) -> String {
    use rand::Rng;
    let mut cut = base.len().min(GENERATE_NAME_BASE_MAX);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| GENERATE_NAME_ALPHABET[rng.random_range(0..GENERATE_NAME_ALPHABET.len())] as char)
        .collect();
    format!("{}{suffix}", &base[..cut])
}

/// Checks and fills `apiVersion` and `kind`.
fn check_type(desc: &ResourceDescriptor, obj: &mut Object) -> ApiResult<()> {
    match obj.get("apiVersion").and_then(Value::as_str) {
        Some(v) if !v.is_empty() && v != desc.api_version() => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({})",
                desc.api_version()
            )));
        }
        _ => {}
    }
    match obj.get("kind").and_then(Value::as_str) {
        Some(k) if !k.is_empty() && k != desc.gvk.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                desc.gvk.kind
            )));
        }
        _ => {}
    }
    obj.insert("apiVersion".into(), desc.api_version().into());
    obj.insert("kind".into(), desc.gvk.kind.clone().into());
    Ok(())
}

/// Sets the namespace from the URL, rejecting a different one in the body.
fn check_namespace(
    desc: &ResourceDescriptor,
    url_namespace: Option<&str>,
    obj: &mut Object,
) -> ApiResult<()> {
    let m = meta_mut(obj);
    if desc.namespaced() {
        let body_ns = m.get("namespace").and_then(Value::as_str).unwrap_or("");
        match url_namespace {
            Some(url_ns) if body_ns.is_empty() || body_ns == url_ns => {
                m.insert("namespace".into(), url_ns.into());
            }
            Some(_) => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            None => {
                return Err(ApiError::bad_request(
                    "a namespace is required for this resource",
                ));
            }
        }
    } else {
        m.remove("namespace");
    }
    Ok(())
}

/// Fills system metadata and validates a new object.
pub fn before_create(
    desc: &ResourceDescriptor,
    strategy: &dyn Strategy,
    url_namespace: Option<&str>,
    obj: &mut Object,
) -> ApiResult<()> {
    check_type(desc, obj)?;
    check_namespace(desc, url_namespace, obj)?;
    let m = meta_mut(obj);
    if m.get("resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|rv| !rv.is_empty())
    {
        return Err(ApiError::bad_request(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    m.remove("resourceVersion");
    m.remove("selfLink");
    m.remove("deletionTimestamp");
    m.remove("deletionGracePeriodSeconds");
    let name_empty = m
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    if name_empty
        && let Some(base) = m
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    {
        let generated = generate_name(base);
        m.insert("name".into(), generated.into());
    }
    m.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
    m.insert("creationTimestamp".into(), now_rfc3339().into());
    if strategy.tracks_generation() {
        m.insert("generation".into(), 1.into());
    } else {
        m.remove("generation");
    }
    if desc.has_status() {
        obj.remove("status");
    }
    strategy.prepare_for_create(obj);
    strategy.default(obj);
    drop_empty_meta(obj);
    let mut errors = validate_object_meta(desc, strategy, obj);
    errors.extend(strategy.validate(obj));
    invalid_if_any(desc, obj, errors)
}

/// Carries system metadata over from `old`, lets the strategy normalise, and
/// validates. `status_only` is a write through the status subresource.
pub fn before_update(
    desc: &ResourceDescriptor,
    strategy: &dyn Strategy,
    url_namespace: Option<&str>,
    new: &mut Object,
    old: &Object,
    status_only: bool,
) -> ApiResult<()> {
    check_type(desc, new)?;
    check_namespace(desc, url_namespace, new)?;
    if status_only {
        // The status strategy: everything but status (and managedFields)
        // stays as stored.
        let status = new.remove("status");
        let managed = meta(new).and_then(|m| m.get("managedFields")).cloned();
        let rv = meta(new).and_then(|m| m.get("resourceVersion")).cloned();
        *new = old.clone();
        if let Some(s) = status {
            new.insert("status".into(), s);
        }
        let m = meta_mut(new);
        if let Some(mf) = managed {
            m.insert("managedFields".into(), mf);
        }
        if let Some(rv) = rv {
            m.insert("resourceVersion".into(), rv);
        }
    } else if desc.has_status() {
        match old.get("status") {
            Some(s) => new.insert("status".into(), s.clone()),
            None => new.remove("status"),
        };
    }
    let old_meta = meta(old).cloned().unwrap_or_default();
    {
        let m = meta_mut(new);
        m.remove("selfLink");
        for pinned in [
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old_meta.get(pinned) {
                Some(v) => m.insert(pinned.into(), v.clone()),
                None => m.remove(pinned),
            };
        }
        if m.get("uid")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
            && let Some(uid) = old_meta.get("uid")
        {
            m.insert("uid".into(), uid.clone());
        }
    }
    if !status_only {
        strategy.prepare_for_update(new, old);
    }
    // Defaults first (upstream defaults at decoding), so a PUT that omits
    // defaulted fields is not a spec change.
    strategy.default(new);
    if strategy.tracks_generation() && generation_changed(strategy, new, old) {
        let g = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta_mut(new).insert("generation".into(), (g + 1).into());
    }
    drop_empty_meta(new);
    let mut errors = validate_object_meta(desc, strategy, new);
    errors.extend(validate_object_meta_update(new, old));
    errors.extend(strategy.validate_update(new, old));
    invalid_if_any(desc, new, errors)
}

/// Drops the ObjectMeta fields upstream's round trip through the Go type
/// drops (`omitempty`): empty or null `labels`, `annotations`,
/// `ownerReferences`, `finalizers` and `generateName`. Upstream does this
/// for custom resources too (their metadata is coerced through ObjectMeta),
/// so `{"annotations": {}}` from a client or a merge patch (kubectl diff
/// sends one) never shows up in a response. `managedFields` is the field
/// manager's: an empty list there asks it to reset.
fn drop_empty_meta(obj: &mut Object) {
    let Some(Value::Object(m)) = obj.get_mut("metadata") else {
        return;
    };
    m.retain(|k, v| {
        let empty = match v {
            Value::Null => true,
            Value::Object(o) => o.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::String(s) => s.is_empty(),
            _ => false,
        };
        !(empty
            && matches!(
                k.as_str(),
                "labels" | "annotations" | "ownerReferences" | "finalizers" | "generateName"
            ))
    });
}

/// Spec changes bump generation: anything outside metadata and status.
fn generation_changed(strategy: &dyn Strategy, new: &Object, old: &Object) -> bool {
    let differs = new
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind"))
        .any(|(k, v)| old.get(k) != Some(v))
        || old
            .keys()
            .filter(|k| !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind"))
            .any(|k| !new.contains_key(k));
    differs
        || (strategy.generation_includes_annotations()
            && meta(new).and_then(|m| m.get("annotations"))
                != meta(old).and_then(|m| m.get("annotations")))
}

fn invalid_if_any(
    desc: &ResourceDescriptor,
    obj: &Object,
    errors: Vec<FieldError>,
) -> ApiResult<()> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            &desc.gvk.group,
            &desc.gvk.kind,
            name(obj),
            &errors,
        ))
    }
}

/// ObjectMeta validation common to every type.
pub fn validate_object_meta(
    desc: &ResourceDescriptor,
    strategy: &dyn Strategy,
    obj: &Object,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(m) = meta(obj) else {
        return vec![FieldError::required("metadata", "")];
    };
    let name = m.get("name").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        for p in strategy.name_rule().problems(name) {
            errs.push(FieldError::invalid("metadata.name", name, p));
        }
    }
    if desc.namespaced() {
        let ns = m.get("namespace").and_then(Value::as_str).unwrap_or("");
        if ns.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        } else {
            for p in NameRule::Label.problems(ns) {
                errs.push(FieldError::invalid("metadata.namespace", ns, p));
            }
        }
    }
    if let Some(labels) = m.get("labels") {
        match labels.as_object() {
            Some(labels) => {
                for (k, v) in labels {
                    for p in qualified_name_problems(k) {
                        errs.push(FieldError::invalid("metadata.labels", k.as_str(), p));
                    }
                    match v.as_str() {
                        Some(v) => {
                            for p in label_value_problems(v) {
                                errs.push(FieldError::invalid("metadata.labels".to_string(), v, p));
                            }
                        }
                        None => errs.push(FieldError::invalid(
                            "metadata.labels",
                            v.clone(),
                            "label values must be strings",
                        )),
                    }
                }
            }
            None if labels.is_null() => {}
            None => errs.push(FieldError::invalid(
                "metadata.labels",
                labels.clone(),
                "must be an object",
            )),
        }
    }
    if let Some(ann) = m.get("annotations") {
        match ann.as_object() {
            Some(ann) => {
                let mut total = 0;
                for (k, v) in ann {
                    for p in qualified_name_problems(&k.to_ascii_lowercase()) {
                        errs.push(FieldError::invalid("metadata.annotations", k.as_str(), p));
                    }
                    total += k.len() + v.as_str().map_or(0, str::len);
                    if !v.is_string() {
                        errs.push(FieldError::invalid(
                            "metadata.annotations",
                            v.clone(),
                            "annotation values must be strings",
                        ));
                    }
                }
                if total > TOTAL_ANNOTATION_SIZE_LIMIT {
                    errs.push(FieldError {
                        kind: crate::validation::FieldErrorKind::TooLong,
                        field: "metadata.annotations".into(),
                        value: None,
                        detail: format!("must have at most {TOTAL_ANNOTATION_SIZE_LIMIT} bytes"),
                    });
                }
            }
            None if ann.is_null() => {}
            None => errs.push(FieldError::invalid(
                "metadata.annotations",
                ann.clone(),
                "must be an object",
            )),
        }
    }
    if let Some(f) = m.get("finalizers").and_then(Value::as_array) {
        for (i, v) in f.iter().enumerate() {
            let s = v.as_str().unwrap_or("");
            for p in qualified_name_problems(s) {
                errs.push(FieldError::invalid(
                    format!("metadata.finalizers[{i}]"),
                    s,
                    p,
                ));
            }
        }
    }
    if let Some(owners) = m.get("ownerReferences").and_then(Value::as_array) {
        let controllers = owners
            .iter()
            .filter(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
            .count();
        if controllers > 1 {
            errs.push(FieldError::invalid(
                "metadata.ownerReferences",
                Value::Array(owners.clone()),
                "Only one reference can have Controller set to true",
            ));
        }
        for (i, o) in owners.iter().enumerate() {
            for f in ["apiVersion", "kind", "name", "uid"] {
                if o.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                    errs.push(FieldError::invalid(
                        format!("metadata.ownerReferences[{i}].{f}"),
                        "",
                        format!("{f} must not be empty"),
                    ));
                }
            }
        }
    }
    errs
}

fn validate_object_meta_update(new: &Object, old: &Object) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (field, label) in [("uid", "metadata.uid"), ("name", "metadata.name")] {
        let (n, o) = (meta_str(new, field), meta_str(old, field));
        if n != o {
            errs.push(FieldError::invalid(
                label,
                n.unwrap_or(""),
                "field is immutable",
            ));
        }
    }
    if meta(old).is_some_and(|m| m.contains_key("deletionTimestamp")) {
        let old_f = finalizers(old);
        let added: Vec<String> = finalizers(new)
            .into_iter()
            .filter(|f| !old_f.contains(f))
            .collect();
        if !added.is_empty() {
            errs.push(FieldError::forbidden(
                "metadata.finalizers",
                format!("no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"),
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names() {
        let n = generate_name(&"a".repeat(80));
        assert_eq!(n.len(), 63);
        assert!(n.starts_with(&"a".repeat(58)));
    }
}
