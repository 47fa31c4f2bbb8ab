//! Duplicate keys in a JSON request body. A JSON object may repeat a key
//! and a parser keeps the last value; Kubernetes' field validation reports
//! each repeat (`duplicate field "spec.replicas"`): Strict refuses the
//! request, Warn (the default) answers with a warning. `serde_json::Value`
//! cannot tell, so the body's raw bytes are walked once more.

use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The dotted paths (`spec.containers[0].name`) of every repeated key in
/// the JSON `bytes`, in document order; empty for a body that is not JSON
/// (its parse error is reported by the decoder).
pub fn find(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let walk = Walk {
        path: String::new(),
        out: &mut out,
    };
    if walk.deserialize(&mut de).is_err() {
        return Vec::new();
    }
    out
}

/// The messages field validation uses for them.
pub fn messages(paths: &[String]) -> Vec<String> {
    paths
        .iter()
        .map(|p| format!("duplicate field \"{p}\""))
        .collect()
}

struct Walk<'a> {
    path: String,
    out: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if !seen.insert(key) {
                self.out.push(path.clone());
            }
            map.next_value_seed(Walk {
                path,
                out: &mut *self.out,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        loop {
            let walk = Walk {
                path: format!("{}[{i}]", self.path),
                out: &mut *self.out,
            };
            if seq.next_element_seed(walk)?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_at_any_depth_are_found_with_their_paths() {
        let body = br#"{"metadata":{"name":"a","name":"b"},"data":{"x":"1"},"data":{"y":"2"},
            "spec":{"containers":[{"name":"c","image":"i","image":"j"}]}}"#;
        assert_eq!(
            find(body),
            ["metadata.name", "data", "spec.containers[0].image"]
        );
        assert_eq!(
            messages(&find(body))[1],
            "duplicate field \"data\"".to_owned()
        );
    }

    #[test]
    fn clean_and_invalid_bodies_have_none() {
        assert!(find(br#"{"a":{"a":1},"b":[{"a":1},{"a":2}],"c":null}"#).is_empty());
        assert!(find(b"{not json").is_empty());
        assert!(find(b"apiVersion: v1\nkind: ConfigMap\n").is_empty());
    }
}
