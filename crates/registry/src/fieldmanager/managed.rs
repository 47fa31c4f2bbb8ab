//! `metadata.managedFields`: decoding into per-manager field sets, encoding
//! back in upstream's order, and the cap on the number of Update entries.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::set::FieldSet;

/// The operation of a managedFields entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// Who a managedFields entry belongs to. Two entries are the same manager
/// when manager, operation and subresource agree and, for Update only, the
/// apiVersion too (upstream's `BuildManagerIdentifier`: an applier keeps one
/// entry across versions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub subresource: String,
}

impl Identity {
    pub(crate) fn same(&self, other: &Identity) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == Operation::Apply || self.api_version == other.api_version)
    }

    /// Upstream's `printManager`, used in conflict messages.
    pub(crate) fn display(&self) -> String {
        let mut s = serde_json::to_string(&self.manager).unwrap_or_default();
        if !self.subresource.is_empty() {
            s.push_str(&format!(
                " with subresource {}",
                serde_json::to_string(&self.subresource).unwrap_or_default()
            ));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub id: Identity,
    pub time: Option<String>,
    pub set: FieldSet,
}

/// The managers of one object.
#[derive(Clone, Debug, Default)]
pub(crate) struct Managed {
    pub entries: Vec<Entry>,
}

pub(crate) const BEFORE_FIRST_APPLY: &str = "before-first-apply";
const ANCIENT_CHANGES: &str = "ancient-changes";
/// Upstream's `DefaultMaxUpdateManagers`.
pub(crate) const MAX_UPDATE_MANAGERS: usize = 10;

impl Managed {
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn find(&self, id: &Identity) -> Option<&Entry> {
        self.entries.iter().find(|e| e.id.same(id))
    }

    pub(crate) fn find_mut(&mut self, id: &Identity) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.id.same(id))
    }

    pub(crate) fn remove(&mut self, id: &Identity) -> Option<Entry> {
        let i = self.entries.iter().position(|e| e.id.same(id))?;
        Some(self.entries.remove(i))
    }

    /// Replaces (or adds) the entry of `id`, keeping a previous time.
    pub(crate) fn set(&mut self, id: Identity, set: FieldSet) {
        match self.find_mut(&id) {
            Some(e) => {
                e.id = id;
                e.set = set;
            }
            None => self.entries.push(Entry {
                id,
                time: None,
                set,
            }),
        }
    }

    /// Decodes `metadata.managedFields` of `obj` (absent or null = none).
    pub(crate) fn decode(obj: &Value) -> Result<Managed, String> {
        let raw = obj.get("metadata").and_then(|m| m.get("managedFields"));
        let entries = match raw {
            None | Some(Value::Null) => return Ok(Managed::default()),
            Some(Value::Array(a)) => a,
            Some(_) => return Err("managedFields must be a list".into()),
        };
        let mut managed = Managed::default();
        for (i, e) in entries.iter().enumerate() {
            let get = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default();
            let operation = match get("operation") {
                "Apply" => Operation::Apply,
                "Update" => Operation::Update,
                _ => return Err("operation must be `Apply` or `Update`".into()),
            };
            if get("apiVersion").is_empty() {
                return Err("apiVersion must not be empty".into());
            }
            match get("fieldsType") {
                "FieldsV1" => {}
                "" => return Err(format!("missing fieldsType in managed fields entry {i}")),
                other => {
                    return Err(format!(
                        "invalid fieldsType {other:?} in managed fields entry {i}"
                    ));
                }
            }
            let set = match e.get("fieldsV1") {
                None | Some(Value::Null) => FieldSet::new(),
                Some(v) => FieldSet::from_fields_v1(v)
                    .map_err(|err| format!("error decoding versioned set from {e}: {err}"))?,
            };
            let id = Identity {
                manager: get("manager").to_string(),
                operation,
                api_version: get("apiVersion").to_string(),
                subresource: get("subresource").to_string(),
            };
            let time = e.get("time").and_then(Value::as_str).map(str::to_string);
            // A repeated identity: the later entry wins, as in upstream's map.
            managed.entries.retain(|x| !x.id.same(&id));
            managed.entries.push(Entry { id, time, set });
        }
        Ok(managed)
    }

    /// Writes the entries into `metadata.managedFields` (removed when there
    /// are none), sorted as upstream sorts them: operation, time, manager,
    /// apiVersion, subresource.
    pub(crate) fn encode_into(&self, obj: &mut Value) {
        let mut entries: Vec<&Entry> = self.entries.iter().filter(|e| !e.set.is_empty()).collect();
        entries.sort_by(|a, b| {
            a.id.operation
                .cmp(&b.id.operation)
                .then_with(|| seconds(&a.time).cmp(&seconds(&b.time)))
                .then_with(|| a.id.manager.cmp(&b.id.manager))
                .then_with(|| a.id.api_version.cmp(&b.id.api_version))
                .then_with(|| a.id.subresource.cmp(&b.id.subresource))
        });
        let list: Vec<Value> = entries
            .into_iter()
            .map(|e| {
                let mut m = Map::new();
                m.insert("manager".into(), json!(e.id.manager));
                m.insert("operation".into(), json!(e.id.operation.as_str()));
                m.insert("apiVersion".into(), json!(e.id.api_version));
                if let Some(t) = &e.time {
                    m.insert("time".into(), json!(t));
                }
                m.insert("fieldsType".into(), json!("FieldsV1"));
                m.insert("fieldsV1".into(), e.set.to_fields_v1());
                if !e.id.subresource.is_empty() {
                    m.insert("subresource".into(), json!(e.id.subresource));
                }
                Value::Object(m)
            })
            .collect();
        let Some(meta) = obj.as_object_mut().map(|o| {
            o.entry("metadata")
                .or_insert_with(|| Value::Object(Map::new()))
        }) else {
            return;
        };
        if let Some(meta) = meta.as_object_mut() {
            if list.is_empty() {
                meta.remove("managedFields");
            } else {
                meta.insert("managedFields".into(), Value::Array(list));
            }
        }
    }

    /// Upstream's capManagersManager: when there are more than `max` Update
    /// entries, the oldest are merged, per apiVersion, into one
    /// `ancient-changes` entry until at most `max` remain.
    pub(crate) fn cap_update_managers(&mut self, max: usize) {
        let mut updaters: Vec<(i64, Identity)> = self
            .entries
            .iter()
            .filter(|e| e.id.operation == Operation::Update)
            .map(|e| (seconds(&e.time), e.id.clone()))
            .collect();
        if updaters.len() <= max {
            return;
        }
        updaters.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.manager.cmp(&b.1.manager)));
        let mut first_of_version: HashMap<String, Identity> = HashMap::new();
        let mut length = updaters.len();
        for (_, id) in updaters {
            if length <= max {
                break;
            }
            let version = id.api_version.clone();
            let bucket = Identity {
                manager: ANCIENT_CHANGES.into(),
                operation: Operation::Update,
                api_version: version.clone(),
                subresource: String::new(),
            };
            let Some(first) = first_of_version.get(&version) else {
                first_of_version.insert(version, id);
                continue;
            };
            if self.find(&bucket).is_none()
                && let Some(mut e) = self.remove(first)
            {
                e.id = bucket.clone();
                self.entries.push(e);
            }
            let Some(merged) = self.remove(&id) else {
                continue;
            };
            length -= 1;
            if let Some(b) = self.find_mut(&bucket) {
                b.set = merged.set.union(&b.set);
                b.time = merged.time;
            }
        }
    }
}

fn seconds(t: &Option<String>) -> i64 {
    t.as_deref()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.timestamp())
        .unwrap_or(0)
}

/// Whether a client's `managedFields` asks for a reset: an empty list, or
/// a list of one empty entry (upstream's `isResetManagedFields`).
pub(crate) fn is_reset(obj: &Value) -> bool {
    match obj.get("metadata").and_then(|m| m.get("managedFields")) {
        Some(Value::Array(a)) => {
            a.is_empty() || (a.len() == 1 && a[0].as_object().is_some_and(|o| o.is_empty()))
        }
        _ => false,
    }
}

pub(crate) fn strip_managed_fields(obj: &mut Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
}
