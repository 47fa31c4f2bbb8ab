//! Field validation for built-ins: an object is decoded into its
//! k8s-openapi type and encoded back; fields the type does not know are
//! absent from the result. That gives `fieldValidation` (Strict: 400, Warn:
//! drop with a warning, Ignore: drop) without a schema walker, and turns
//! type errors (`"replicas": "x"`) into 400s as upstream decoding does.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::resource::Object;
use crate::status::{ApiError, ApiResult};

/// Decode into the typed form and encode again.
pub type RoundTrip = fn(&Value) -> Result<Value, serde_json::Error>;

pub fn round_trip<K: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, serde_json::Error> {
    let typed = K::deserialize(v)?;
    serde_json::to_value(&typed)
}

/// `fieldValidation`: what to do with unknown fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    /// The default when the parameter is absent.
    #[default]
    Warn,
    Ignore,
}

impl FieldValidation {
    pub fn parse(v: Option<&str>) -> ApiResult<Self> {
        match v {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
            ))),
        }
    }
}

/// Removes from `input` every field absent from `typed`, recording its path.
fn prune(input: &mut Value, typed: &Value, path: &str, unknown: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(m), Value::Object(t)) => {
            let mut drop = Vec::new();
            for (k, v) in m.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match t.get(k) {
                    Some(tv) => prune(v, tv, &p, unknown),
                    // Nulls decode to "unset" and are not unknown fields.
                    None if v.is_null() => {}
                    None => {
                        unknown.push(p);
                        drop.push(k.clone());
                    }
                }
            }
            for k in drop {
                m.remove(&k);
            }
        }
        (Value::Array(a), Value::Array(t)) => {
            for (i, (v, tv)) in a.iter_mut().zip(t.iter()).enumerate() {
                prune(v, tv, &format!("{path}[{i}]"), unknown);
            }
        }
        _ => {}
    }
}

/// Checks `obj` against its type and drops unknown fields according to
/// `mode`. Returns the warnings to send (`unknown field "spec.foo"`).
pub fn check(
    round_trip: RoundTrip,
    api_version: &str,
    kind: &str,
    obj: &mut Object,
    mode: FieldValidation,
) -> ApiResult<Vec<String>> {
    let mut probe = obj.clone();
    probe.insert("apiVersion".into(), api_version.into());
    probe.insert("kind".into(), kind.into());
    let mut probe = Value::Object(probe);
    let version = api_version.rsplit('/').next().unwrap_or(api_version);
    let typed = round_trip(&probe).map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {e}"
        ))
    })?;
    let mut unknown = Vec::new();
    prune(&mut probe, &typed, "", &mut unknown);
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
        FieldValidation::Warn | FieldValidation::Ignore => {
            if let Value::Object(mut pruned) = probe {
                // Keep the caller's own apiVersion/kind handling.
                for k in ["apiVersion", "kind"] {
                    match obj.get(k) {
                        Some(v) => pruned.insert(k.into(), v.clone()),
                        None => pruned.remove(k),
                    };
                }
                *obj = pruned;
            }
            Ok(if mode == FieldValidation::Warn {
                messages
            } else {
                Vec::new()
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use serde_json::json;

    fn o(v: Value) -> Object {
        match v {
            Value::Object(o) => o,
            _ => unreachable!(),
        }
    }

    #[test]
    fn unknown_fields_by_mode() {
        let body = json!({"metadata": {"name": "d", "bogus": 1}, "spec": {"replicas": 1, "foo": "x", "template": {"spec": {"containers": [{"name": "c", "zap": true}]}}}});
        let rt: RoundTrip = round_trip::<Deployment>;
        let e = check(
            rt,
            "apps/v1",
            "Deployment",
            &mut o(body.clone()),
            FieldValidation::Strict,
        )
        .unwrap_err();
        assert_eq!(e.code(), 400);
        assert!(
            e.message
                .starts_with("strict decoding error: unknown field \"metadata.bogus\""),
            "{}",
            e.message
        );
        assert!(
            e.message
                .contains("unknown field \"spec.template.spec.containers[0].zap\"")
        );
        let mut w = o(body.clone());
        let warnings = check(rt, "apps/v1", "Deployment", &mut w, FieldValidation::Warn).unwrap();
        assert_eq!(warnings.len(), 3);
        assert!(w["spec"].get("foo").is_none() && w.get("apiVersion").is_none());
        let mut i = o(body);
        assert!(
            check(rt, "apps/v1", "Deployment", &mut i, FieldValidation::Ignore)
                .unwrap()
                .is_empty()
        );
        let bad = json!({"metadata": {"name": "d"}, "spec": {"replicas": "three"}});
        assert_eq!(
            check(
                rt,
                "apps/v1",
                "Deployment",
                &mut o(bad),
                FieldValidation::Ignore
            )
            .unwrap_err()
            .code(),
            400
        );
    }
}
