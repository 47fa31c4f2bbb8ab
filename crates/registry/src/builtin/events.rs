//! events.k8s.io/v1 Events are stored as core/v1 Events (one store behind
//! both APIs, as upstream), so `kubectl get events` and `describe` see what
//! controllers record through either API.

use serde_json::Value;

use crate::resource::Object;
use crate::store::StorageConversion;

/// (events.k8s.io/v1 field, core/v1 field) pairs that differ by name.
const RENAMED: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(mut obj: Object, api_version: &str, to_core: bool) -> Object {
    for (v1, core) in RENAMED {
        let (from, to) = if to_core { (v1, core) } else { (core, v1) };
        if let Some(v) = obj.remove(*from) {
            obj.insert((*to).to_owned(), v);
        }
    }
    obj.insert("apiVersion".into(), Value::String(api_version.to_owned()));
    obj.insert("kind".into(), "Event".into());
    obj
}

pub struct EventsV1Conversion;

impl StorageConversion for EventsV1Conversion {
    fn api_to_storage(&self, obj: Object) -> Object {
        rename(obj, "v1", true)
    }

    fn storage_to_api(&self, obj: Object) -> Object {
        let mut obj = rename(obj, "events.k8s.io/v1", false);
        fill_event_time(&mut obj);
        obj
    }
}

/// Legacy core/v1 Events have no `eventTime`, which events.k8s.io/v1
/// clients require (the Python client refuses the object): it is filled
/// from the last, then first timestamp, then the creation time, as a
/// MicroTime.
fn fill_event_time(obj: &mut Object) {
    if obj.get("eventTime").is_some_and(|t| !t.is_null()) {
        return;
    }
    let from = ["deprecatedLastTimestamp", "deprecatedFirstTimestamp"]
        .iter()
        .filter_map(|k| obj.get(*k).and_then(Value::as_str))
        .next()
        .or_else(|| crate::metadata::meta_str(obj, "creationTimestamp"))
        .map(micro_time);
    if let Some(t) = from {
        obj.insert("eventTime".into(), Value::String(t));
    }
}

/// `2024-01-01T00:00:00Z` -> `2024-01-01T00:00:00.000000Z`.
fn micro_time(t: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(t) {
        Ok(d) => d
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string(),
        Err(_) => t.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "hello", "reason": "Started",
            "reportingController": "c", "reportingInstance": "i", "eventTime": "2024-01-01T00:00:00.000000Z"});
        let Value::Object(o) = v1.clone() else {
            unreachable!()
        };
        let core = EventsV1Conversion.api_to_storage(o);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "hello");
        assert_eq!(core["reportingComponent"], "c");
        assert_eq!(Value::Object(EventsV1Conversion.storage_to_api(core)), v1);
    }

    #[test]
    fn legacy_events_get_an_event_time() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e",
            "creationTimestamp": "2024-01-01T00:00:00Z"}, "lastTimestamp": "2024-01-02T03:04:05Z"});
        let Value::Object(o) = core else {
            unreachable!()
        };
        let v1 = EventsV1Conversion.storage_to_api(o);
        assert_eq!(v1["eventTime"], "2024-01-02T03:04:05.000000Z");
        assert_eq!(v1["deprecatedLastTimestamp"], "2024-01-02T03:04:05Z");
    }
}
