//! Sets of field paths (structured-merge-diff's `fieldpath.Set`) and their
//! `fieldsV1` JSON form.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::path::{Path, PathElement};

/// A set of paths, stored as a tree: `members` are the paths ending at this
/// node, `children` the sets below each element. A node can be both (a list
/// element owned as a whole and also field by field): in `fieldsV1` that is
/// the `".": {}` marker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds `path` (an empty path adds nothing: the root is never a member).
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Whether `path` is a member.
    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    pub(crate) fn has_member(&self, pe: &PathElement) -> bool {
        self.members.contains(pe)
    }

    pub(crate) fn members_iter(&self) -> impl Iterator<Item = &PathElement> {
        self.members.iter()
    }

    pub(crate) fn children_iter(&self) -> impl Iterator<Item = (&PathElement, &FieldSet)> {
        self.children.iter()
    }

    /// The paths below `pe` (relative to it).
    pub(crate) fn child(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.children.get(pe)
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, c) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(c),
                None => c.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    /// Paths in `self` and not in `other` (member by member).
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, c) in &self.children {
            let d = match other.children.get(pe) {
                Some(o) => c.difference(o),
                None => c.clone(),
            };
            if !d.is_empty() {
                children.insert(pe.clone(), d);
            }
        }
        FieldSet { members, children }
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, c) in &self.children {
            if let Some(o) = other.children.get(pe) {
                let i = c.intersection(o);
                if !i.is_empty() {
                    children.insert(pe.clone(), i);
                }
            }
        }
        FieldSet { members, children }
    }

    /// Like [`FieldSet::difference`], but a member of `other` also removes
    /// everything below it (upstream's `RecursiveDifference`, used to
    /// ignore whole subtrees such as `.status`).
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, c) in &self.children {
            if other.members.contains(pe) {
                continue;
            }
            let d = match other.children.get(pe) {
                Some(o) => c.recursive_difference(o),
                None => c.clone(),
            };
            if !d.is_empty() {
                children.insert(pe.clone(), d);
            }
        }
        FieldSet { members, children }
    }

    /// Every member path, in upstream's iteration order (a node's members,
    /// then its children).
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Path>) {
        for pe in &self.members {
            let mut p = prefix.clone();
            p.push(pe.clone());
            out.push(Path(p));
        }
        for (pe, c) in &self.children {
            prefix.push(pe.clone());
            c.collect(prefix, out);
            prefix.pop();
        }
    }

    /// Builds a set from paths.
    pub fn from_paths<'a>(paths: impl IntoIterator<Item = &'a Path>) -> FieldSet {
        let mut s = FieldSet::new();
        for p in paths {
            s.insert(&p.0);
        }
        s
    }

    /// The `fieldsV1` JSON form: one object key per element (`f:`, `k:`,
    /// `v:`, `i:`), `{}` for a leaf and `".": {}` first for a node that is
    /// both a member and has children. Keys are inserted in upstream's order.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.emit(false))
    }

    fn emit(&self, include_self: bool) -> Map<String, Value> {
        let mut out = Map::new();
        if include_self && !self.is_empty() {
            out.insert(".".into(), Value::Object(Map::new()));
        }
        let mut members = self.members.iter().peekable();
        let mut children = self.children.iter().peekable();
        loop {
            let take_member = match (members.peek(), children.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(m), Some((c, _))) => *m < c,
            };
            if take_member {
                if let Some(m) = members.next() {
                    out.insert(m.to_fields_v1_key(), Value::Object(Map::new()));
                }
            } else if let Some((pe, c)) = children.next() {
                let also_member = members.peek().is_some_and(|m| *m == pe);
                if also_member {
                    members.next();
                }
                out.insert(pe.to_fields_v1_key(), Value::Object(c.emit(also_member)));
            }
        }
        out
    }

    /// Parses the `fieldsV1` JSON form.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, String> {
        let (set, _) = Self::read(v)?;
        Ok(set)
    }

    // Returns the set below this node and whether the node itself is a
    // member (an empty object, or one holding ".").
    fn read(v: &Value) -> Result<(FieldSet, bool), String> {
        let Value::Object(m) = v else {
            return Err(format!("fieldsV1 node must be an object, got {v}"));
        };
        let mut set = FieldSet::new();
        let mut is_member = m.is_empty();
        for (k, child) in m {
            if k == "." {
                is_member = true;
                continue;
            }
            let pe = PathElement::from_fields_v1_key(k)?;
            let (sub, child_member) = Self::read(child)?;
            if child_member {
                set.members.insert(pe.clone());
            }
            if !sub.is_empty() {
                set.children.insert(pe, sub);
            }
        }
        Ok((set, is_member))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(paths: &[&[&str]]) -> FieldSet {
        let ps: Vec<Path> = paths.iter().map(|p| Path::fields(p)).collect();
        FieldSet::from_paths(&ps)
    }

    #[test]
    fn fields_v1_round_trip_of_a_deployment() {
        // As kube-apiserver writes it for `kubectl create deployment nginx`.
        let text = r#"{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:replicas":{},"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:name":{}}}}}}}"#;
        let v: Value = serde_json::from_str(text).unwrap();
        let s = FieldSet::from_fields_v1(&v).unwrap();
        assert!(s.has(&Path::fields(&["metadata", "labels"]).0));
        assert!(s.has(&Path::fields(&["metadata", "labels", "app"]).0));
        assert!(!s.has(&Path::fields(&["metadata"]).0));
        let shown: Vec<String> = s.paths().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            shown,
            [
                ".metadata.labels",
                ".metadata.labels.app",
                ".spec.replicas",
                ".spec.template.spec.containers[name=\"nginx\"]",
                ".spec.template.spec.containers[name=\"nginx\"].image",
                ".spec.template.spec.containers[name=\"nginx\"].name",
            ]
        );
        assert_eq!(s.to_fields_v1(), v);
        assert_eq!(serde_json::to_string(&s.to_fields_v1()).unwrap(), text);
    }

    #[test]
    fn set_algebra() {
        let a = set(&[&["a", "b"], &["a", "c"], &["d"]]);
        let b = set(&[&["a", "b"], &["e"]]);
        assert_eq!(
            a.union(&b),
            set(&[&["a", "b"], &["a", "c"], &["d"], &["e"]])
        );
        assert_eq!(a.difference(&b), set(&[&["a", "c"], &["d"]]));
        assert_eq!(a.intersection(&b), set(&[&["a", "b"]]));
        assert!(a.difference(&a).is_empty());
        // A member removes its whole subtree only in the recursive form.
        let prefix = set(&[&["a"]]);
        assert_eq!(a.difference(&prefix), a);
        assert_eq!(a.recursive_difference(&prefix), set(&[&["d"]]));
    }

    #[test]
    fn bad_fields_v1_is_an_error() {
        for bad in [json!([]), json!({"x:1": {}}), json!({"f:a": 1})] {
            assert!(FieldSet::from_fields_v1(&bad).is_err(), "{bad}");
        }
    }
}
