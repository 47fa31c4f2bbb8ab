//! Typed walks over JSON values, as structured-merge-diff's `typed` package
//! defines them: the field set of a value, the merge of two values, the
//! comparison of two values, and the removal of a field set from a value.

use serde_json::{Map, Value};

use super::path::{PathElement, values_equal};
use super::set::FieldSet;
use super::types::{Atom, DEDUCED, ListKind, Schema, TypeId};

/// How a value of a type is walked.
enum Shape<'s> {
    Leaf,
    Map {
        atomic: bool,
        t: TypeId,
    },
    List {
        atomic: bool,
        elem: TypeId,
        kind: &'s ListKind,
    },
}

static ATOMIC: ListKind = ListKind::Atomic;

// Upstream's deduceAtom/handleAtom: the declared atom decides, except that a
// value of the wrong JSON kind is handled as a leaf (upstream rejects it in
// validation; leniency here keeps odd objects writable).
fn shape<'s>(schema: &'s Schema, t: TypeId, v: Option<&Value>) -> Shape<'s> {
    match schema.atom(t) {
        Atom::Scalar => Shape::Leaf,
        Atom::Deduced => match v {
            Some(Value::Object(_)) => Shape::Map {
                atomic: false,
                t: DEDUCED,
            },
            Some(Value::Array(_)) => Shape::List {
                atomic: true,
                elem: DEDUCED,
                kind: &ATOMIC,
            },
            _ => Shape::Leaf,
        },
        Atom::Map { atomic, .. } => match v {
            None | Some(Value::Null) | Some(Value::Object(_)) => Shape::Map { atomic: *atomic, t },
            _ => Shape::Leaf,
        },
        Atom::List { elem, kind } => match v {
            None | Some(Value::Null) | Some(Value::Array(_)) => Shape::List {
                atomic: matches!(kind, ListKind::Atomic),
                elem: *elem,
                kind,
            },
            _ => Shape::Leaf,
        },
    }
}

fn as_map(v: Option<&Value>) -> Option<&Map<String, Value>> {
    match v {
        Some(Value::Object(m)) => Some(m),
        _ => None,
    }
}

fn as_list(v: Option<&Value>) -> Option<&Vec<Value>> {
    match v {
        Some(Value::Array(l)) => Some(l),
        _ => None,
    }
}

/// The path element of one element of a set or map list.
pub(crate) fn list_item_element(kind: &ListKind, item: &Value) -> Result<PathElement, String> {
    match kind {
        ListKind::Map(keys) => {
            let Value::Object(m) = item else {
                return Err(if item.is_null() {
                    "associative list with keys may not have a null element".into()
                } else {
                    "associative list with keys may not have non-map elements".into()
                });
            };
            let mut fields = Vec::with_capacity(keys.len());
            for (name, default) in keys {
                match (m.get(name), default) {
                    (Some(v), _) => fields.push((name.clone(), v.clone())),
                    (None, Some(d)) => fields.push((name.clone(), d.clone())),
                    (None, None) => {
                        return Err(format!(
                            "associative list with keys has an element that omits key field {name:?} (and doesn't have default value)"
                        ));
                    }
                }
            }
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(PathElement::Key(fields))
        }
        ListKind::Set => match item {
            Value::Object(_) => {
                Err("associative list without keys has an element that's a map type".into())
            }
            Value::Array(_) => Err("not supported: associative list with lists as elements".into()),
            Value::Null => {
                Err("associative list without keys has an element that's an explicit null".into())
            }
            v => Ok(PathElement::Value(v.clone())),
        },
        // Atomic lists are never descended into.
        ListKind::Atomic => Err("invalid atom".into()),
    }
}

/// A typed walk failure, with the path where it happened.
pub(crate) fn at(path: &[PathElement], msg: impl std::fmt::Display) -> String {
    let p: String = path.iter().map(|pe| pe.to_string()).collect();
    if p.is_empty() {
        msg.to_string()
    } else {
        format!("{p}: {msg}")
    }
}

/// The set of fields a value sets (upstream's `ToFieldSet`): leaves, every
/// set/map-list element, map entries that are not declared struct fields,
/// and empty or null values. With `allow_duplicates` (live objects) a
/// repeated list key is owned as a whole; without it (applied
/// configurations) it is an error.
pub(crate) fn to_field_set(
    schema: &Schema,
    t: TypeId,
    v: &Value,
    allow_duplicates: bool,
) -> Result<FieldSet, String> {
    let mut out = FieldSet::new();
    let mut path = Vec::new();
    field_set_walk(schema, t, v, allow_duplicates, &mut path, &mut out)?;
    Ok(out)
}

fn field_set_walk(
    schema: &Schema,
    t: TypeId,
    v: &Value,
    dups: bool,
    path: &mut Vec<PathElement>,
    out: &mut FieldSet,
) -> Result<(), String> {
    match shape(schema, t, Some(v)) {
        Shape::Leaf => out.insert(path),
        Shape::List { atomic: true, .. } => out.insert(path),
        Shape::List { elem, kind, .. } => {
            let Some(items) = as_list(Some(v)) else {
                return Ok(());
            };
            let mut pes = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let pe = list_item_element(kind, item)
                    .map_err(|e| at(path, format!("element {i}: {e}")))?;
                pes.push(pe);
            }
            let mut duplicated = Vec::new();
            for (i, pe) in pes.iter().enumerate() {
                if pes[..i].contains(pe) && !duplicated.contains(pe) {
                    if !dups {
                        return Err(at(path, format!("duplicate entries for key {pe}")));
                    }
                    duplicated.push(pe.clone());
                }
            }
            for pe in &duplicated {
                path.push(pe.clone());
                out.insert(path);
                path.pop();
            }
            for (item, pe) in items.iter().zip(pes) {
                if duplicated.contains(&pe) {
                    continue;
                }
                path.push(pe);
                field_set_walk(schema, elem, item, dups, path, out)?;
                out.insert(path);
                path.pop();
            }
        }
        Shape::Map { atomic: true, .. } => out.insert(path),
        Shape::Map { t, .. } => {
            let Some(m) = as_map(Some(v)) else {
                return Ok(());
            };
            for (k, child) in m {
                let (ft, declared) = schema.field(t, k);
                path.push(PathElement::Field(k.clone()));
                field_set_walk(schema, ft, child, dups, path, out)?;
                let empty_map = matches!(child, Value::Object(c) if c.is_empty());
                if child.is_null() || empty_map || !declared {
                    out.insert(path);
                }
                path.pop();
            }
        }
    }
    Ok(())
}

/// Merges `rhs` into `lhs` (upstream's `Merge` with the keep-RHS rule):
/// leaves and atomic values from `rhs` win; maps merge key by key; set and
/// map lists merge element by element, keeping `rhs`'s order for its
/// elements and interleaving those only in `lhs`.
pub(crate) fn merge(
    schema: &Schema,
    t: TypeId,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
) -> Result<Option<Value>, String> {
    merge_walk(schema, t, lhs, rhs, &mut Vec::new())
}

fn merge_walk(
    schema: &Schema,
    t: TypeId,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    path: &mut Vec<PathElement>,
) -> Result<Option<Value>, String> {
    let leaf = || Ok(rhs.or(lhs).cloned());
    match shape(schema, t, rhs.or(lhs)) {
        Shape::Leaf | Shape::Map { atomic: true, .. } | Shape::List { atomic: true, .. } => leaf(),
        Shape::Map { t, .. } => {
            let (l, r) = (as_map(lhs), as_map(rhs));
            if l.is_none_or(|m| m.is_empty()) && r.is_none_or(|m| m.is_empty()) {
                return leaf();
            }
            let mut out = Map::new();
            let keys = l.into_iter().flat_map(|m| m.keys()).chain(
                r.into_iter()
                    .flat_map(|m| m.keys().filter(|k| !l.is_some_and(|l| l.contains_key(*k)))),
            );
            for k in keys {
                let (ft, _) = schema.field(t, k);
                path.push(PathElement::Field(k.clone()));
                let merged = merge_walk(
                    schema,
                    ft,
                    l.and_then(|m| m.get(k)),
                    r.and_then(|m| m.get(k)),
                    path,
                )?;
                path.pop();
                if let Some(v) = merged {
                    out.insert(k.clone(), v);
                }
            }
            Ok((!out.is_empty()).then_some(Value::Object(out)))
        }
        Shape::List { elem, kind, .. } => {
            let (l, r) = (as_list(lhs), as_list(rhs));
            if l.is_none_or(|v| v.is_empty()) && r.is_none_or(|v| v.is_empty()) {
                return leaf();
            }
            merge_list(schema, elem, kind, l, r, path)
        }
    }
}

/// A list's element identities in order, and each identity's element.
type IndexedList = (Vec<PathElement>, Vec<(PathElement, Value)>);

// Element identities of a list, first occurrence kept; an identity seen
// more than once has an unknown element (null), as upstream.
fn index_list(
    kind: &ListKind,
    items: Option<&Vec<Value>>,
    allow_duplicates: bool,
    path: &[PathElement],
) -> Result<IndexedList, String> {
    let mut pes = Vec::new();
    let mut observed: Vec<(PathElement, Value)> = Vec::new();
    for (i, item) in items.into_iter().flatten().enumerate() {
        let pe =
            list_item_element(kind, item).map_err(|e| at(path, format!("element {i}: {e}")))?;
        match observed.iter_mut().find(|(p, _)| *p == pe) {
            Some(_) if !allow_duplicates => {
                return Err(at(path, format!("duplicate entries for key {pe}")));
            }
            Some(slot) => slot.1 = Value::Null,
            None => observed.push((pe.clone(), item.clone())),
        }
        pes.push(pe);
    }
    Ok((pes, observed))
}

fn lookup<'a>(observed: &'a [(PathElement, Value)], pe: &PathElement) -> Option<&'a Value> {
    observed.iter().find(|(p, _)| p == pe).map(|(_, v)| v)
}

fn merge_list(
    schema: &Schema,
    elem: TypeId,
    kind: &ListKind,
    lhs: Option<&Vec<Value>>,
    rhs: Option<&Vec<Value>>,
    path: &mut Vec<PathElement>,
) -> Result<Option<Value>, String> {
    let (rhs_pes, observed_rhs) = index_list(kind, rhs, false, path)?;
    let (lhs_pes, observed_lhs) = index_list(kind, lhs, true, path)?;

    // Elements present on both sides, in rhs order: the lhs-only elements
    // are emitted where they sit relative to these.
    let mut shared: std::collections::VecDeque<&PathElement> = rhs_pes
        .iter()
        .filter(|pe| lookup(&observed_lhs, pe).is_some())
        .collect();
    let mut next_shared = shared.pop_front();
    let mut merged_rhs: Vec<PathElement> = Vec::new();
    let mut out = Vec::new();

    let item = |pe: &PathElement,
                l: Option<&Value>,
                r: Option<&Value>,
                out: &mut Vec<Value>,
                path: &mut Vec<PathElement>|
     -> Result<(), String> {
        path.push(pe.clone());
        let merged = merge_walk(schema, elem, l, r, path)?;
        path.pop();
        if let Some(v) = merged {
            out.push(v);
        }
        Ok(())
    };

    let (l_len, r_len) = (lhs_pes.len(), rhs_pes.len());
    let (mut li, mut ri) = (0, 0);
    while li < l_len || ri < r_len {
        if li < l_len && ri < r_len {
            let pe = &lhs_pes[li];
            if *pe == rhs_pes[ri] {
                merged_rhs.push(pe.clone());
                item(
                    pe,
                    lookup(&observed_lhs, pe),
                    lookup(&observed_rhs, pe),
                    &mut out,
                    path,
                )?;
                li += 1;
                ri += 1;
                next_shared = shared.pop_front();
                continue;
            }
            if lookup(&observed_rhs, pe).is_some() && next_shared.is_some_and(|n| n != pe) {
                li += 1;
                continue;
            }
        }
        if li < l_len {
            let pe = &lhs_pes[li];
            if lookup(&observed_rhs, pe).is_none() {
                let l_item = lhs.and_then(|l| l.get(li));
                item(pe, l_item, None, &mut out, path)?;
                li += 1;
                continue;
            } else if merged_rhs.contains(pe) {
                li += 1;
            }
        }
        if ri < r_len {
            let pe = &rhs_pes[ri];
            merged_rhs.push(pe.clone());
            item(
                pe,
                lookup(&observed_lhs, pe),
                lookup(&observed_rhs, pe),
                &mut out,
                path,
            )?;
            ri += 1;
            if next_shared.is_some_and(|n| n == pe) {
                next_shared = shared.pop_front();
            }
        }
    }
    Ok((!out.is_empty()).then_some(Value::Array(out)))
}

/// What changed between two values (upstream's `Comparison`).
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    pub(crate) fn exclude(&mut self, ignored: &FieldSet) {
        if ignored.is_empty() {
            return;
        }
        self.added = self.added.recursive_difference(ignored);
        self.modified = self.modified.recursive_difference(ignored);
        self.removed = self.removed.recursive_difference(ignored);
    }
}

/// Compares `lhs` (old) with `rhs` (new): leaves are added, removed or
/// modified; a map, list element or struct that appears or disappears is
/// itself added or removed.
pub(crate) fn compare(
    schema: &Schema,
    t: TypeId,
    lhs: &Value,
    rhs: &Value,
) -> Result<Comparison, String> {
    let mut c = Comparison::default();
    compare_walk(schema, t, Some(lhs), Some(rhs), &mut Vec::new(), &mut c)?;
    Ok(c)
}

fn compare_walk(
    schema: &Schema,
    t: TypeId,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    path: &mut Vec<PathElement>,
    c: &mut Comparison,
) -> Result<(), String> {
    let leaf = |c: &mut Comparison, path: &[PathElement]| match (lhs, rhs) {
        (None, _) => c.added.insert(path),
        (_, None) => c.removed.insert(path),
        (Some(l), Some(r)) if !values_equal(l, r) => c.modified.insert(path),
        _ => {}
    };
    let descended = match shape(schema, t, rhs.or(lhs)) {
        Shape::Leaf | Shape::Map { atomic: true, .. } | Shape::List { atomic: true, .. } => {
            leaf(c, path);
            false
        }
        Shape::Map { t, .. } => {
            let (l, r) = (as_map(lhs), as_map(rhs));
            if l.is_none_or(|m| m.is_empty()) && r.is_none_or(|m| m.is_empty()) {
                leaf(c, path);
                false
            } else {
                for (k, lv) in l.into_iter().flatten() {
                    let (ft, _) = schema.field(t, k);
                    path.push(PathElement::Field(k.clone()));
                    compare_walk(schema, ft, Some(lv), r.and_then(|m| m.get(k)), path, c)?;
                    path.pop();
                }
                for (k, rv) in r.into_iter().flatten() {
                    if l.is_some_and(|m| m.contains_key(k)) {
                        continue;
                    }
                    let (ft, _) = schema.field(t, k);
                    path.push(PathElement::Field(k.clone()));
                    compare_walk(schema, ft, None, Some(rv), path, c)?;
                    path.pop();
                }
                true
            }
        }
        Shape::List { elem, kind, .. } => {
            let (l, r) = (as_list(lhs), as_list(rhs));
            if l.is_none_or(|v| v.is_empty()) && r.is_none_or(|v| v.is_empty()) {
                leaf(c, path);
                false
            } else {
                compare_list(schema, elem, kind, l, r, path, c)?;
                true
            }
        }
    };
    if descended {
        match (lhs, rhs) {
            (None, _) => c.added.insert(path),
            (_, None) => c.removed.insert(path),
            _ => {}
        }
    }
    Ok(())
}

fn compare_list(
    schema: &Schema,
    elem: TypeId,
    kind: &ListKind,
    lhs: Option<&Vec<Value>>,
    rhs: Option<&Vec<Value>>,
    path: &mut Vec<PathElement>,
    c: &mut Comparison,
) -> Result<(), String> {
    // Every element identity with all its occurrences on each side.
    let mut all: Vec<(PathElement, Vec<&Value>, Vec<&Value>)> = Vec::new();
    for (side, items) in [(0, lhs), (1, rhs)] {
        for (i, item) in items.into_iter().flatten().enumerate() {
            let pe =
                list_item_element(kind, item).map_err(|e| at(path, format!("element {i}: {e}")))?;
            let slot = match all.iter().position(|(p, _, _)| *p == pe) {
                Some(n) => n,
                None => {
                    all.push((pe, Vec::new(), Vec::new()));
                    all.len() - 1
                }
            };
            if side == 0 {
                all[slot].1.push(item);
            } else {
                all[slot].2.push(item);
            }
        }
    }
    for (pe, l, r) in all {
        path.push(pe);
        match (l.len(), r.len()) {
            (0..=1, 0..=1) => compare_walk(
                schema,
                elem,
                l.first().copied(),
                r.first().copied(),
                path,
                c,
            )?,
            (ln, rn) if ln >= 2 && rn >= 2 => {
                let same = ln == rn && l.iter().zip(&r).all(|(a, b)| values_equal(a, b));
                if !same {
                    c.modified.insert(path);
                }
            }
            (ln, _) if ln >= 2 => {
                if let Some(first) = r.first() {
                    compare_walk(schema, elem, None, Some(first), path, c)?;
                }
                c.removed.insert(path);
            }
            _ => {
                if let Some(first) = l.first() {
                    compare_walk(schema, elem, Some(first), None, path, c)?;
                }
                c.added.insert(path);
            }
        }
        path.pop();
    }
    Ok(())
}

/// Removes the members of `set` from `v` (upstream's `RemoveItems`). As
/// upstream, a map or list that the removal empties becomes `null` (which
/// later field sets see as a leaf); [`drop_removal_nulls`] cleans the final
/// result.
pub(crate) fn remove_items(schema: &Schema, t: TypeId, v: &Value, set: &FieldSet) -> Value {
    match shape(schema, t, Some(v)) {
        Shape::Leaf | Shape::Map { atomic: true, .. } | Shape::List { atomic: true, .. } => {
            v.clone()
        }
        Shape::Map { t, .. } => {
            let Some(m) = as_map(Some(v)) else {
                return Value::Null;
            };
            let mut out = Map::new();
            for (k, child) in m {
                let pe = PathElement::Field(k.clone());
                if set.has_member(&pe) {
                    continue;
                }
                let child = match set.child(&pe) {
                    Some(sub) => remove_items(schema, schema.field(t, k).0, child, sub),
                    None => child.clone(),
                };
                out.insert(k.clone(), child);
            }
            if out.is_empty() {
                Value::Null
            } else {
                Value::Object(out)
            }
        }
        Shape::List { elem, kind, .. } => {
            let Some(items) = as_list(Some(v)) else {
                return Value::Null;
            };
            let mut out = Vec::new();
            for item in items {
                let Ok(pe) = list_item_element(kind, item) else {
                    out.push(item.clone());
                    continue;
                };
                if set.has_member(&pe) {
                    continue;
                }
                out.push(match set.child(&pe) {
                    Some(sub) => remove_items(schema, elem, item, sub),
                    None => item.clone(),
                });
            }
            if out.is_empty() {
                Value::Null
            } else {
                Value::Array(out)
            }
        }
    }
}

/// Drops the nulls that [`remove_items`] left where `before` had a value:
/// upstream's typed conversion (built-ins) and CRD pruning (non-nullable
/// fields) drop them before the object is stored.
pub(crate) fn drop_removal_nulls(v: &mut Value, before: &Value) {
    match (v, before) {
        (Value::Object(m), Value::Object(b)) => {
            m.retain(|k, child| !(child.is_null() && b.get(k).is_some_and(|x| !x.is_null())));
            for (k, child) in m.iter_mut() {
                if let Some(bc) = b.get(k) {
                    drop_removal_nulls(child, bc);
                }
            }
        }
        (Value::Array(items), Value::Array(b)) if !b.iter().any(Value::is_null) => {
            items.retain(|i| !i.is_null());
        }
        _ => {}
    }
}

/// Adds, as members, the declared struct fields that only have children in
/// `set` (upstream's `EnsureNamedFieldsAreMembers`), so that removing the
/// set removes such a struct field whole rather than leaving it empty.
pub(crate) fn ensure_named_fields_are_members(
    schema: &Schema,
    t: TypeId,
    set: &FieldSet,
) -> FieldSet {
    let mut out = FieldSet::new();
    ensure_walk(schema, t, set, &mut Vec::new(), &mut out);
    out
}

fn ensure_walk(
    schema: &Schema,
    t: TypeId,
    set: &FieldSet,
    path: &mut Vec<PathElement>,
    out: &mut FieldSet,
) {
    for p in set.members_iter() {
        path.push(p.clone());
        out.insert(path);
        path.pop();
    }
    for (pe, sub) in set.children_iter() {
        let child_t = match (schema.atom(t), pe) {
            (Atom::Map { fields, .. }, PathElement::Field(name)) if fields.contains_key(name) => {
                path.push(pe.clone());
                out.insert(path);
                path.pop();
                fields[name]
            }
            (Atom::Map { .. }, PathElement::Field(name)) => schema.field(t, name).0,
            (Atom::List { elem, .. }, _) => *elem,
            _ => DEDUCED,
        };
        path.push(pe.clone());
        ensure_walk(schema, child_t, sub, path, out);
        path.pop();
    }
}

/// Adds the fields a typed (Go) object always carries and `v` omits: `{}`
/// for structs, `null` otherwise, recursively. Upstream tracks updates on
/// typed objects, so a Deployment's `.spec` or a pod's `.containers` are
/// never "added" by a write; comparing filled copies reproduces that.
pub(crate) fn fill_present(schema: &Schema, t: TypeId, v: &mut Value) {
    match (schema.atom(t), v) {
        (
            Atom::Map {
                fields,
                elem,
                present,
                ..
            },
            Value::Object(m),
        ) => {
            for name in present {
                if !m.contains_key(name) {
                    let zero = match fields.get(name).map(|ft| schema.atom(*ft)) {
                        Some(Atom::Map { .. }) => Value::Object(Map::new()),
                        _ => Value::Null,
                    };
                    m.insert(name.clone(), zero);
                }
            }
            for (k, child) in m.iter_mut() {
                if let Some(ft) = fields.get(k).copied().or(*elem) {
                    fill_present(schema, ft, child);
                }
            }
        }
        (Atom::List { elem, .. }, Value::Array(items)) => {
            for item in items {
                fill_present(schema, *elem, item);
            }
        }
        _ => {}
    }
}
