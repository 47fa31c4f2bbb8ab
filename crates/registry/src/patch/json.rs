//! JSON patch (RFC 6902), with the behaviour kube-apiserver gets from
//! evanphx/json-patch: the patch must be a JSON array of operation objects
//! (else 400), and every failure while applying it is a 422.

use serde_json::{Map, Value};

use super::PatchError;

/// kube-apiserver refuses patches with more operations than this (413).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// Applies an RFC 6902 JSON patch atomically: either every operation applies
/// or the original is left untouched and an error is returned.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Array(ops) = patch else {
        return Err(PatchError::InvalidPatch(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch".into(),
        ));
    };
    if ops.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations(format!(
            "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
            ops.len()
        )));
    }
    if ops.iter().any(|op| !op.is_object()) {
        return Err(PatchError::InvalidPatch(
            "json: cannot unmarshal non-object into Go value of type jsonpatch.Operation".into(),
        ));
    }
    // Working on a copy is what makes the patch all-or-nothing.
    let mut out = doc.clone();
    for op in ops {
        apply_op(&mut out, op)?;
    }
    Ok(out)
}

fn str_field<'a>(op: &'a Value, name: &str) -> Result<&'a str, PatchError> {
    match op.get(name) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(PatchError::Unprocessable(format!(
            "operation missing {name:?} string field: {op}"
        ))),
    }
}

fn value_field(op: &Value) -> Result<&Value, PatchError> {
    op.get("value").ok_or_else(|| {
        PatchError::Unprocessable(format!("operation missing \"value\" field: {op}"))
    })
}

fn apply_op(doc: &mut Value, op: &Value) -> Result<(), PatchError> {
    let kind = str_field(op, "op")?;
    let path = parse_pointer(str_field(op, "path")?)?;
    match kind {
        "add" => add(doc, &path, value_field(op)?.clone()),
        "remove" => remove(doc, &path).map(drop),
        "replace" => {
            let value = value_field(op)?.clone();
            let slot = get_mut(doc, &path).ok_or_else(|| {
                PatchError::PathNotFound(format!(
                    "replace operation does not apply: doc is missing key: {}",
                    render(&path)
                ))
            })?;
            *slot = value;
            Ok(())
        }
        "move" => {
            let from = parse_pointer(str_field(op, "from")?)?;
            if from == path {
                return Ok(());
            }
            if path.len() > from.len() && path[..from.len()] == from[..] {
                return Err(PatchError::Unprocessable(format!(
                    "move operation cannot move {} into its own child {}",
                    render(&from),
                    render(&path)
                )));
            }
            let value = remove(doc, &from)?;
            add(doc, &path, value)
        }
        "copy" => {
            let from = parse_pointer(str_field(op, "from")?)?;
            let value = get(doc, &from)
                .ok_or_else(|| {
                    PatchError::PathNotFound(format!(
                        "copy operation does not apply: doc is missing from path: {}",
                        render(&from)
                    ))
                })?
                .clone();
            add(doc, &path, value)
        }
        "test" => {
            let want = value_field(op)?;
            let ok = match get(doc, &path) {
                Some(actual) => json_equal(actual, want),
                // A missing member tests equal to null, as in evanphx/json-patch.
                None => want.is_null() && parent_exists(doc, &path),
            };
            if ok {
                Ok(())
            } else {
                Err(PatchError::TestFailed(format!(
                    "testing value {} failed: test failed",
                    render(&path)
                )))
            }
        }
        other => Err(PatchError::Unprocessable(format!(
            "Unexpected kind: {other}"
        ))),
    }
}

/// RFC 6901 pointer to reference tokens (`~1` → `/`, `~0` → `~`).
fn parse_pointer(p: &str) -> Result<Vec<String>, PatchError> {
    if p.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = p.strip_prefix('/') else {
        return Err(PatchError::Unprocessable(format!(
            "JSON pointer must be empty or start with a \"/\": {p:?}"
        )));
    };
    rest.split('/')
        .map(|tok| {
            let mut out = String::with_capacity(tok.len());
            let mut chars = tok.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => out.push('~'),
                    Some('1') => out.push('/'),
                    _ => {
                        return Err(PatchError::Unprocessable(format!(
                            "invalid JSON pointer escape in {p:?}"
                        )));
                    }
                }
            }
            Ok(out)
        })
        .collect()
}

fn render(path: &[String]) -> String {
    path.iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// An array index token: decimal without leading zeros, below `len`
/// (`allow_end` also admits `len` itself and `-`, for insertion).
fn array_index(tok: &str, len: usize, allow_end: bool) -> Option<usize> {
    if allow_end && tok == "-" {
        return Some(len);
    }
    if tok.is_empty()
        || !tok.bytes().all(|b| b.is_ascii_digit())
        || (tok.len() > 1 && tok.starts_with('0'))
    {
        return None;
    }
    let i: usize = tok.parse().ok()?;
    if i < len || (allow_end && i == len) {
        Some(i)
    } else {
        None
    }
}

fn get<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = doc;
    for tok in path {
        cur = match cur {
            Value::Object(m) => m.get(tok)?,
            Value::Array(a) => a.get(array_index(tok, a.len(), false)?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn get_mut<'a>(doc: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = doc;
    for tok in path {
        cur = match cur {
            Value::Object(m) => m.get_mut(tok)?,
            Value::Array(a) => {
                let i = array_index(tok, a.len(), false)?;
                a.get_mut(i)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

fn parent_exists(doc: &Value, path: &[String]) -> bool {
    match path.split_last() {
        Some((_, parent)) => matches!(get(doc, parent), Some(Value::Object(_))),
        None => true,
    }
}

fn add(doc: &mut Value, path: &[String], value: Value) -> Result<(), PatchError> {
    let Some((last, parent)) = path.split_last() else {
        *doc = value;
        return Ok(());
    };
    let missing = || {
        PatchError::PathNotFound(format!(
            "add operation does not apply: doc is missing path: {:?}",
            render(path)
        ))
    };
    match get_mut(doc, parent).ok_or_else(missing)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            let i = array_index(last, a.len(), true).ok_or_else(|| {
                PatchError::Unprocessable(format!(
                    "Unable to access invalid index: {last} in {}",
                    render(path)
                ))
            })?;
            a.insert(i, value);
            Ok(())
        }
        _ => Err(missing()),
    }
}

fn remove(doc: &mut Value, path: &[String]) -> Result<Value, PatchError> {
    let missing = || {
        PatchError::PathNotFound(format!(
            "remove operation does not apply: doc is missing path: {:?}",
            render(path)
        ))
    };
    let Some((last, parent)) = path.split_last() else {
        return Ok(std::mem::take(doc));
    };
    match get_mut(doc, parent).ok_or_else(missing)? {
        Value::Object(m) => m.remove(last).ok_or_else(missing),
        Value::Array(a) => {
            let i = array_index(last, a.len(), false).ok_or_else(missing)?;
            Ok(a.remove(i))
        }
        _ => Err(missing()),
    }
}

/// JSON value equality where numbers compare by value (`1` equals `1.0`).
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(i), Some(j)) => i == j,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => objects_equal(x, y),
        _ => a == b,
    }
}

fn objects_equal(x: &Map<String, Value>, y: &Map<String, Value>) -> bool {
    x.len() == y.len()
        && x.iter()
            .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[track_caller]
    fn check(doc: Value, patch: Value, expected: Value) {
        match json_patch(&doc, &patch) {
            Ok(got) => assert_eq!(got, expected, "patch {patch}"),
            Err(e) => panic!("patch {patch} failed: {e}"),
        }
    }

    #[track_caller]
    fn check_err(doc: Value, patch: Value) -> PatchError {
        match json_patch(&doc, &patch) {
            Ok(got) => panic!("patch {patch} should fail, gave {got}"),
            Err(e) => e,
        }
    }

    // RFC 6902 appendix A, one test per example.
    #[test]
    fn rfc_a1_add_object_member() {
        check(
            json!({"foo":"bar"}),
            json!([{"op":"add","path":"/baz","value":"qux"}]),
            json!({"baz":"qux","foo":"bar"}),
        );
    }
    #[test]
    fn rfc_a2_add_array_element() {
        check(
            json!({"foo":["bar","baz"]}),
            json!([{"op":"add","path":"/foo/1","value":"qux"}]),
            json!({"foo":["bar","qux","baz"]}),
        );
    }
    #[test]
    fn rfc_a3_remove_object_member() {
        check(
            json!({"baz":"qux","foo":"bar"}),
            json!([{"op":"remove","path":"/baz"}]),
            json!({"foo":"bar"}),
        );
    }
    #[test]
    fn rfc_a4_remove_array_element() {
        check(
            json!({"foo":["bar","qux","baz"]}),
            json!([{"op":"remove","path":"/foo/1"}]),
            json!({"foo":["bar","baz"]}),
        );
    }
    #[test]
    fn rfc_a5_replace() {
        check(
            json!({"baz":"qux","foo":"bar"}),
            json!([{"op":"replace","path":"/baz","value":"boo"}]),
            json!({"baz":"boo","foo":"bar"}),
        );
    }
    #[test]
    fn rfc_a6_move_value() {
        check(
            json!({"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}}),
            json!([{"op":"move","from":"/foo/waldo","path":"/qux/thud"}]),
            json!({"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}}),
        );
    }
    #[test]
    fn rfc_a7_move_array_element() {
        check(
            json!({"foo":["all","grass","cows","eat"]}),
            json!([{"op":"move","from":"/foo/1","path":"/foo/3"}]),
            json!({"foo":["all","cows","eat","grass"]}),
        );
    }
    #[test]
    fn rfc_a8_test_success() {
        let doc = json!({"baz":"qux","foo":["a",2,"c"]});
        check(
            doc.clone(),
            json!([{"op":"test","path":"/baz","value":"qux"},{"op":"test","path":"/foo/1","value":2}]),
            doc,
        );
    }
    #[test]
    fn rfc_a9_test_error() {
        let e = check_err(
            json!({"baz":"qux"}),
            json!([{"op":"test","path":"/baz","value":"bar"}]),
        );
        assert!(matches!(e, PatchError::TestFailed(_)));
        assert_eq!(e.code(), 422);
    }
    #[test]
    fn rfc_a10_add_nested_member() {
        check(
            json!({"foo":"bar"}),
            json!([{"op":"add","path":"/child","value":{"grandchild":{}}}]),
            json!({"foo":"bar","child":{"grandchild":{}}}),
        );
    }
    #[test]
    fn rfc_a11_ignore_unrecognized_elements() {
        check(
            json!({"foo":"bar"}),
            json!([{"op":"add","path":"/baz","value":"qux","xyz":123}]),
            json!({"foo":"bar","baz":"qux"}),
        );
    }
    #[test]
    fn rfc_a12_add_to_nonexistent_target() {
        let e = check_err(
            json!({"foo":"bar"}),
            json!([{"op":"add","path":"/baz/bat","value":"qux"}]),
        );
        assert!(matches!(e, PatchError::PathNotFound(_)));
    }
    #[test]
    fn rfc_a14_escape_ordering() {
        let doc = json!({"/":9,"~1":10});
        check(
            doc.clone(),
            json!([{"op":"test","path":"/~01","value":10}]),
            doc,
        );
    }
    #[test]
    fn rfc_a15_comparing_strings_and_numbers() {
        let e = check_err(
            json!({"/":9,"~1":10}),
            json!([{"op":"test","path":"/~01","value":"10"}]),
        );
        assert!(matches!(e, PatchError::TestFailed(_)));
    }
    #[test]
    fn rfc_a16_add_array_value() {
        check(
            json!({"foo":["bar"]}),
            json!([{"op":"add","path":"/foo/-","value":["abc","def"]}]),
            json!({"foo":["bar",["abc","def"]]}),
        );
    }

    #[test]
    fn copy_and_root_operations() {
        check(
            json!({"a":{"b":1}}),
            json!([{"op":"copy","from":"/a","path":"/c"}]),
            json!({"a":{"b":1},"c":{"b":1}}),
        );
        check(
            json!({"a":1}),
            json!([{"op":"replace","path":"","value":[1]}]),
            json!([1]),
        );
        check(
            json!({"a":1}),
            json!([{"op":"add","path":"","value":{"x":2}}]),
            json!({"x":2}),
        );
        check(
            json!({"a/b":1}),
            json!([{"op":"remove","path":"/a~1b"}]),
            json!({}),
        );
        check(
            json!({"a":[1,2]}),
            json!([{"op":"add","path":"/a/2","value":3}]),
            json!({"a":[1,2,3]}),
        );
        check(
            json!({"a":1.0}),
            json!([{"op":"test","path":"/a","value":1}]),
            json!({"a":1.0}),
        );
        check(
            json!({"a":1}),
            json!([{"op":"move","from":"/a","path":"/a"}]),
            json!({"a":1}),
        );
        check(json!({"a":1}), json!([]), json!({"a":1}));
    }

    #[test]
    fn kube_rs_finalizer_shapes() {
        // kube-rs adds a finalizer guarded by a test on the current list.
        let doc = json!({"metadata":{"name":"x","finalizers":["a"]}});
        check(
            doc.clone(),
            json!([
                {"op":"test","path":"/metadata/finalizers","value":["a"]},
                {"op":"add","path":"/metadata/finalizers/-","value":"b"}
            ]),
            json!({"metadata":{"name":"x","finalizers":["a","b"]}}),
        );
        // ...and removes one by index after testing it is the expected one.
        check(
            doc,
            json!([
                {"op":"test","path":"/metadata/finalizers/0","value":"a"},
                {"op":"remove","path":"/metadata/finalizers/0"}
            ]),
            json!({"metadata":{"name":"x","finalizers":[]}}),
        );
        // The first finalizer on an object without the list: test null, then add.
        check(
            json!({"metadata":{"name":"x"}}),
            json!([
                {"op":"test","path":"/metadata/finalizers","value":null},
                {"op":"add","path":"/metadata/finalizers","value":["a"]}
            ]),
            json!({"metadata":{"name":"x","finalizers":["a"]}}),
        );
    }

    #[test]
    fn atomic_on_failure() {
        let doc = json!({"a":1});
        let e = check_err(
            doc.clone(),
            json!([
                {"op":"add","path":"/b","value":2},
                {"op":"remove","path":"/zzz"}
            ]),
        );
        assert!(matches!(e, PatchError::PathNotFound(_)));
        assert_eq!(doc, json!({"a":1}));
    }

    #[test]
    fn application_errors_are_422() {
        for patch in [
            json!([{"op":"remove","path":"/nope"}]),
            json!([{"op":"replace","path":"/nope","value":1}]),
            json!([{"op":"move","from":"/nope","path":"/x"}]),
            json!([{"op":"copy","from":"/nope","path":"/x"}]),
            json!([{"op":"add","path":"/arr/5","value":1}]),
            json!([{"op":"add","path":"/arr/01","value":1}]),
            json!([{"op":"remove","path":"/arr/-"}]),
            json!([{"op":"bogus","path":"/a"}]),
            json!([{"path":"/a"}]),
            json!([{"op":"add","value":1}]),
            json!([{"op":"add","path":"/a"}]),
            json!([{"op":"add","path":"a","value":1}]),
            json!([{"op":"add","path":"/~2","value":1}]),
            json!([{"op":"move","from":"/obj","path":"/obj/child"}]),
            json!([{"op":"test","path":"/a/b","value":null}]),
        ] {
            let e = check_err(json!({"a":1,"arr":[0],"obj":{}}), patch.clone());
            assert_eq!(e.code(), 422, "{patch}: {e}");
        }
    }

    #[test]
    fn malformed_documents_are_400() {
        for patch in [json!({"op":"add"}), json!("x"), json!([1])] {
            let e = check_err(json!({}), patch.clone());
            assert_eq!(e.code(), 400, "{patch}: {e}");
        }
        let many: Vec<Value> = (0..=MAX_JSON_PATCH_OPERATIONS)
            .map(|_| json!({"op":"test","path":"","value":{}}))
            .collect();
        assert_eq!(check_err(json!({}), Value::Array(many)).code(), 413);
    }
}
