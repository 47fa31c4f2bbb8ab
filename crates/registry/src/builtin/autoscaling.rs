//! autoscaling/v1 HorizontalPodAutoscalers are served from the autoscaling/v2
//! objects (the storage form), as upstream does. What v1 cannot express
//! (other metrics, behavior, conditions) rides in annotations so a v1
//! round trip loses nothing.

use serde_json::{Map, Value, json};

use crate::resource::Object;
use crate::store::StorageConversion;

const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";

fn is_cpu_utilization(m: &Value, target: &str) -> bool {
    m.get("type").and_then(Value::as_str) == Some("Resource")
        && m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
        && m.pointer(&format!("/resource/{target}/averageUtilization"))
            .is_some()
}

fn annotations(obj: &mut Object) -> &mut Map<String, Value> {
    let m = crate::metadata::meta_mut(obj);
    let a = m.entry("annotations").or_insert_with(|| json!({}));
    if !a.is_object() {
        *a = json!({});
    }
    match a {
        Value::Object(a) => a,
        _ => unreachable!("just made an object"),
    }
}

fn stash(obj: &mut Object, key: &str, v: Value) {
    annotations(obj).insert(key.into(), Value::String(v.to_string()));
}

fn unstash(obj: &mut Object, key: &str) -> Option<Value> {
    let a = crate::metadata::meta_mut(obj)
        .get_mut("annotations")?
        .as_object_mut()?;
    let raw = a.remove(key)?;
    raw.as_str().and_then(|s| serde_json::from_str(s).ok())
}

fn drop_empty_annotations(obj: &mut Object) {
    let m = crate::metadata::meta_mut(obj);
    if m.get("annotations")
        .and_then(Value::as_object)
        .is_some_and(Map::is_empty)
    {
        m.remove("annotations");
    }
}

fn obj_mut<'a>(o: &'a mut Object, key: &str) -> Option<&'a mut Map<String, Value>> {
    o.get_mut(key).and_then(Value::as_object_mut)
}

pub struct HpaV1Conversion;

impl StorageConversion for HpaV1Conversion {
    /// v1 -> v2.
    fn api_to_storage(&self, mut obj: Object) -> Object {
        obj.insert("apiVersion".into(), "autoscaling/v2".into());
        let metrics = unstash(&mut obj, METRICS);
        let behavior = unstash(&mut obj, BEHAVIOR);
        let current = unstash(&mut obj, CURRENT_METRICS);
        let conditions = unstash(&mut obj, CONDITIONS);
        drop_empty_annotations(&mut obj);
        if let Some(spec) = obj_mut(&mut obj, "spec") {
            let mut all: Vec<Value> = metrics
                .and_then(|m| m.as_array().cloned())
                .unwrap_or_default();
            if let Some(cpu) = spec.remove("targetCPUUtilizationPercentage") {
                all.insert(
                    0,
                    json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu}}}),
                );
            }
            if !all.is_empty() {
                spec.insert("metrics".into(), Value::Array(all));
            }
            if let Some(b) = behavior {
                spec.insert("behavior".into(), b);
            }
        }
        if let Some(status) = obj_mut(&mut obj, "status") {
            let mut all: Vec<Value> = current
                .and_then(|m| m.as_array().cloned())
                .unwrap_or_default();
            if let Some(cpu) = status.remove("currentCPUUtilizationPercentage") {
                all.insert(
                    0,
                    json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": cpu}}}),
                );
            }
            if !all.is_empty() {
                status.insert("currentMetrics".into(), Value::Array(all));
            }
            if let Some(c) = conditions {
                status.insert("conditions".into(), c);
            }
        }
        obj
    }

    /// v2 -> v1.
    fn storage_to_api(&self, mut obj: Object) -> Object {
        obj.insert("apiVersion".into(), "autoscaling/v1".into());
        let mut stashed = Vec::new();
        if let Some(spec) = obj_mut(&mut obj, "spec") {
            if let Some(Value::Array(metrics)) = spec.remove("metrics") {
                let (cpu, rest): (Vec<Value>, Vec<Value>) = metrics
                    .into_iter()
                    .partition(|m| is_cpu_utilization(m, "target"));
                if let Some(u) = cpu
                    .first()
                    .and_then(|m| m.pointer("/resource/target/averageUtilization"))
                {
                    spec.insert("targetCPUUtilizationPercentage".into(), u.clone());
                }
                if !rest.is_empty() {
                    stashed.push((METRICS, Value::Array(rest)));
                }
            }
            if let Some(b) = spec.remove("behavior") {
                stashed.push((BEHAVIOR, b));
            }
        }
        if let Some(status) = obj_mut(&mut obj, "status") {
            if let Some(Value::Array(metrics)) = status.remove("currentMetrics") {
                let (cpu, rest): (Vec<Value>, Vec<Value>) = metrics
                    .into_iter()
                    .partition(|m| is_cpu_utilization(m, "current"));
                if let Some(u) = cpu
                    .first()
                    .and_then(|m| m.pointer("/resource/current/averageUtilization"))
                {
                    status.insert("currentCPUUtilizationPercentage".into(), u.clone());
                }
                if !rest.is_empty() {
                    stashed.push((CURRENT_METRICS, Value::Array(rest)));
                }
            }
            if let Some(c) = status.remove("conditions") {
                stashed.push((CONDITIONS, c));
            }
        }
        for (k, v) in stashed {
            stash(&mut obj, k, v);
        }
        obj
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_round_trips_through_v1() {
        let v2 = json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "h"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1Gi"}}},
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 30}},
            },
        });
        let Value::Object(o) = v2.clone() else {
            unreachable!()
        };
        let v1 = HpaV1Conversion.storage_to_api(o);
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
        assert!(v1["spec"].get("metrics").is_none());
        assert!(v1["metadata"]["annotations"][METRICS].is_string());
        assert_eq!(Value::Object(HpaV1Conversion.api_to_storage(v1)), v2);
    }
}
