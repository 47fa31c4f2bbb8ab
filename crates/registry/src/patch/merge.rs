//! JSON merge patch (RFC 7386).

use serde_json::Value;

/// Applies an RFC 7386 merge patch: objects merge recursively, `null`
/// deletes a key, anything else replaces.
pub fn merge_patch(doc: &Value, patch: &Value) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    let mut out = match doc {
        Value::Object(d) => d.clone(),
        _ => serde_json::Map::new(),
    };
    for (k, v) in p {
        if v.is_null() {
            out.remove(k);
        } else {
            let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), v);
            out.insert(k.clone(), merged);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[track_caller]
    fn check(doc: Value, patch: Value, expected: Value) {
        assert_eq!(merge_patch(&doc, &patch), expected, "patch {patch}");
    }

    /// RFC 7386 appendix A, every row.
    #[test]
    fn rfc7386_appendix_a() {
        check(json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"}));
        check(json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"}));
        check(json!({"a":"b"}), json!({"a":null}), json!({}));
        check(
            json!({"a":"b","b":"c"}),
            json!({"a":null}),
            json!({"b":"c"}),
        );
        check(json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"}));
        check(json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]}));
        check(
            json!({"a":{"b":"c"}}),
            json!({"a":{"b":"d","c":null}}),
            json!({"a":{"b":"d"}}),
        );
        check(json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]}));
        check(json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"]));
        check(json!({"a":"b"}), json!(["c"]), json!(["c"]));
        check(json!({"a":"foo"}), json!(null), json!(null));
        check(json!({"a":"foo"}), json!("bar"), json!("bar"));
        check(json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1}));
        check(json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"}));
        check(
            json!({}),
            json!({"a":{"bb":{"ccc":null}}}),
            json!({"a":{"bb":{}}}),
        );
    }

    #[test]
    fn kubectl_scale_and_label_removal() {
        check(
            json!({"spec":{"replicas":1,"template":{"x":1}},"metadata":{"labels":{"a":"1","b":"2"}}}),
            json!({"spec":{"replicas":3},"metadata":{"labels":{"a":null}}}),
            json!({"spec":{"replicas":3,"template":{"x":1}},"metadata":{"labels":{"b":"2"}}}),
        );
    }
}
