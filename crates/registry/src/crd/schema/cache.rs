//! Compiled schemas shared by content: the same CRD installed in many
//! workspaces is compiled once. Entries are `Weak`, so a schema no CRD uses
//! any more is freed; dead entries are swept as the map grows.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::CompiledSchema;
use crate::validation::FieldError;

/// A SHA-256 over the schema's canonical form (object keys sorted).
pub type ContentHash = [u8; 32];

/// The content hash of a schema: equal for equal JSON whatever the key
/// order in which it arrived.
pub fn content_hash(v: &Value) -> ContentHash {
    let mut h = Sha256::new();
    feed(&mut h, v);
    h.finalize().into()
}

// Tagged and length-prefixed, so that distinct values cannot collide by
// concatenation.
fn feed(h: &mut Sha256, v: &Value) {
    match v {
        Value::Null => h.update(b"n"),
        Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            let s = n.to_string();
            h.update(b"#");
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        Value::String(s) => {
            h.update(b"s");
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        Value::Array(a) => {
            h.update(b"[");
            h.update((a.len() as u64).to_le_bytes());
            for x in a {
                feed(h, x);
            }
        }
        Value::Object(o) => {
            h.update(b"{");
            h.update((o.len() as u64).to_le_bytes());
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            for k in keys {
                h.update((k.len() as u64).to_le_bytes());
                h.update(k.as_bytes());
                feed(h, &o[k.as_str()]);
            }
        }
    }
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<ContentHash, Weak<CompiledSchema>>,
    /// Sweep dead entries when the map reaches this size.
    sweep_at: usize,
}

/// Compiled schemas keyed by content; entries live while some CRD uses them.
#[derive(Debug, Default)]
pub struct SchemaCache {
    entries: Mutex<Entries>,
}

impl SchemaCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The compiled schema for `schema`, compiling it only if no live entry
    /// has the same content. Compilation runs outside the lock; if two
    /// callers race, the first entry stored wins and both get it.
    pub fn get_or_compile(&self, schema: &Value) -> Result<Arc<CompiledSchema>, Vec<FieldError>> {
        let key = content_hash(schema);
        if let Some(hit) = self.entries.lock().map.get(&key).and_then(Weak::upgrade) {
            return Ok(hit);
        }
        let compiled = Arc::new(CompiledSchema::compile_with_hash(schema, key)?);
        let mut e = self.entries.lock();
        if let Some(hit) = e.map.get(&key).and_then(Weak::upgrade) {
            return Ok(hit);
        }
        e.map.insert(key, Arc::downgrade(&compiled));
        if e.map.len() >= e.sweep_at {
            e.map.retain(|_, w| w.strong_count() > 0);
            e.sweep_at = (e.map.len() * 2).max(64);
        }
        Ok(compiled)
    }

    /// Live distinct schemas (for metrics and tests).
    pub fn live(&self) -> usize {
        self.entries
            .lock()
            .map
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn same_content_is_one_compilation_and_unused_entries_go() {
        let cache = SchemaCache::new();
        let a = json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}});
        // Same content, other key order.
        let b: Value = serde_json::from_str(
            r#"{"properties": {"b": {"type": "integer"}, "a": {"type": "string"}}, "type": "object"}"#,
        )
        .unwrap();
        let x = cache.get_or_compile(&a).unwrap();
        let y = cache.get_or_compile(&b).unwrap();
        assert!(Arc::ptr_eq(&x, &y));
        assert_eq!(cache.live(), 1);
        let other = cache
            .get_or_compile(&json!({"type": "object", "properties": {"a": {"type": "integer"}}}))
            .unwrap();
        assert!(!Arc::ptr_eq(&x, &other));
        assert_eq!(cache.live(), 2);
        drop((x, y));
        assert_eq!(cache.live(), 1);
        assert!(cache.get_or_compile(&json!({"properties": {}})).is_err());
    }

    #[test]
    fn hashes_tell_values_apart() {
        assert_ne!(
            content_hash(&json!(["ab", "c"])),
            content_hash(&json!(["a", "bc"]))
        );
        assert_ne!(
            content_hash(&json!({"a": 1})),
            content_hash(&json!({"a": "1"}))
        );
        assert_eq!(
            content_hash(&json!({"a": 1, "b": 2})),
            content_hash(&json!({"b": 2, "a": 1}))
        );
    }
}
