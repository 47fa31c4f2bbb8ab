//! `componentstatuses` (deprecated upstream, still served and listed by
//! `kubectl get cs`): one `ComponentStatus` per component this server has,
//! computed on each read rather than stored. wsgate has no scheduler or
//! controller-manager, so only its storage is reported, as `etcd-0` like a
//! cluster with one etcd member.

use serde_json::{Value, json};

use crate::registry::Registry;
use crate::status::{ApiError, ApiResult, QualifiedResource};

/// The components reported.
pub const COMPONENTS: &[&str] = &["etcd-0"];

fn component(name: &str, healthy: bool) -> Value {
    let (status, message, error) = if healthy {
        ("True", "ok", Value::Null)
    } else {
        ("False", "", Value::from("storage is not reachable"))
    };
    let mut cond = json!({"type": "Healthy", "status": status, "message": message});
    if !error.is_null()
        && let Some(c) = cond.as_object_mut()
    {
        c.insert("error".into(), error);
    }
    json!({
        "kind": "ComponentStatus",
        "apiVersion": "v1",
        "metadata": {"name": name},
        "conditions": [cond],
    })
}

impl Registry {
    /// `GET componentstatuses`.
    pub async fn component_statuses(&self) -> Value {
        // Every list carries a resourceVersion: the storage revision read
        // here doubles as the health probe.
        let revision = match self.stores().first() {
            Some(s) => s.context().store.current_revision().await.ok(),
            None => None,
        };
        let metadata = match revision {
            Some(r) => json!({"resourceVersion": r.to_string()}),
            None => json!({}),
        };
        json!({
            "kind": "ComponentStatusList",
            "apiVersion": "v1",
            "metadata": metadata,
            "items": COMPONENTS
                .iter()
                .map(|c| component(c, revision.is_some()))
                .collect::<Vec<_>>(),
        })
    }

    /// `GET componentstatuses/<name>`.
    pub async fn component_status(&self, name: &str) -> ApiResult<Value> {
        if !COMPONENTS.contains(&name) {
            return Err(ApiError::not_found(
                &QualifiedResource::new("", "componentstatuses"),
                name,
            ));
        }
        Ok(component(name, self.ready().await))
    }
}
