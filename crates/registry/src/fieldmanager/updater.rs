//! structured-merge-diff's `merge.Updater`: ownership bookkeeping for one
//! write, given the live object, the new or applied object and the managers.

use serde_json::{Map, Value};

use super::managed::{Identity, Managed};
use super::set::FieldSet;
use super::typed::{self, Comparison};
use super::types::TypeInfo;

/// Fields of another manager that an apply would change.
#[derive(Debug)]
pub(crate) struct ManagerConflicts {
    pub id: Identity,
    pub fields: FieldSet,
}

#[derive(Debug)]
pub(crate) enum UpdaterError {
    Conflicts(Vec<ManagerConflicts>),
    Invalid(String),
}

impl From<String> for UpdaterError {
    fn from(s: String) -> Self {
        UpdaterError::Invalid(s)
    }
}

pub(crate) struct Updater<'a> {
    pub types: &'a TypeInfo,
    /// Fields nobody may own through this endpoint (the strategy's reset
    /// fields, e.g. `.status` on the main resource).
    pub ignored: &'a FieldSet,
}

impl Updater<'_> {
    fn field_set(&self, v: &Value, allow_duplicates: bool) -> Result<FieldSet, String> {
        typed::to_field_set(&self.types.schema, self.types.root, v, allow_duplicates)
    }

    fn ensure(&self, s: &FieldSet) -> FieldSet {
        typed::ensure_named_fields_are_members(&self.types.schema, self.types.root, s)
    }

    fn remove(&self, v: &Value, s: &FieldSet) -> Value {
        match typed::remove_items(&self.types.schema, self.types.root, v, s) {
            Value::Null => Value::Object(Map::new()),
            other => other,
        }
    }

    /// Takes the fields that changed between `old` and `new` away from every
    /// manager but `me`: changed (added or modified) fields are conflicts
    /// unless `force`; removed fields are simply dropped.
    fn update(
        &self,
        old: &Value,
        new: &Value,
        managed: &mut Managed,
        me: &Identity,
        force: bool,
    ) -> Result<Comparison, UpdaterError> {
        let mut cmp = typed::compare(&self.types.schema, self.types.root, old, new)?;
        cmp.exclude(self.ignored);
        let changed = cmp.modified.union(&cmp.added);
        let mut conflicts = Vec::new();
        for e in &managed.entries {
            if e.id.same(me) {
                continue;
            }
            let c = e.set.intersection(&changed);
            if !c.is_empty() {
                conflicts.push(ManagerConflicts {
                    id: e.id.clone(),
                    fields: c,
                });
            }
        }
        if !force && !conflicts.is_empty() {
            return Err(UpdaterError::Conflicts(conflicts));
        }
        for e in managed.entries.iter_mut() {
            if e.id.same(me) {
                continue;
            }
            if let Some(c) = conflicts.iter().find(|c| c.id.same(&e.id)) {
                e.set = e.set.difference(&c.fields);
            }
            if !cmp.removed.is_empty() {
                e.set = e.set.difference(&cmp.removed);
            }
        }
        managed.entries.retain(|e| !e.set.is_empty());
        Ok(cmp)
    }

    /// A non-apply write by `me`: it now owns what it changed.
    pub(crate) fn update_op(
        &self,
        old: &Value,
        new: &Value,
        managed: &mut Managed,
        me: &Identity,
    ) -> Result<(), UpdaterError> {
        let cmp = self.update(old, new, managed, me, true)?;
        let previous = managed.find(me).map(|e| e.set.clone()).unwrap_or_default();
        let set = previous
            .difference(&cmp.removed)
            .union(&cmp.modified)
            .union(&cmp.added)
            .recursive_difference(self.ignored);
        if set.is_empty() {
            managed.remove(me);
        } else {
            managed.set(me.clone(), set);
        }
        Ok(())
    }

    /// An apply by `me`: merges `config` into `live`, makes `me` own exactly
    /// the fields of `config`, prunes what `me` applied before and no longer
    /// does (unless someone else owns it), and checks conflicts.
    pub(crate) fn apply_op(
        &self,
        live: &Value,
        config: &Value,
        managed: &mut Managed,
        me: &Identity,
        force: bool,
    ) -> Result<Value, UpdaterError> {
        let set = self
            .field_set(config, false)
            .map_err(|e| format!("failed to create typed patch object: {e}"))?
            .recursive_difference(self.ignored);
        let merged = typed::merge(
            &self.types.schema,
            self.types.root,
            Some(live),
            Some(config),
        )
        .map_err(|e| format!("failed to merge config: {e}"))?
        .unwrap_or_else(|| Value::Object(Map::new()));
        let last = managed.find(me).map(|e| e.set.clone());
        managed.set(me.clone(), set);
        let new = self.prune(merged, managed, last)?;
        self.update(live, &new, managed, me, force)?;
        Ok(new)
    }

    // Removes what the applier owned last time and no longer applies, but
    // keeps whatever any manager (including the applier's new config) owns
    // and whatever the applier never owned.
    fn prune(
        &self,
        merged: Value,
        managed: &Managed,
        last: Option<FieldSet>,
    ) -> Result<Value, String> {
        let Some(last) = last.filter(|s| !s.is_empty()) else {
            return Ok(merged);
        };
        let last = self.ensure(&last);
        let pruned = self.remove(&merged, &last);

        // Add back items that some manager owns.
        let owned = managed
            .entries
            .iter()
            .fold(FieldSet::new(), |acc, e| acc.union(&e.set));
        let merged_set = self.ensure(&self.field_set(&merged, true)?);
        let pruned_set = self.ensure(&self.field_set(&pruned, true)?);
        let keep = pruned_set.union(&self.ensure(&owned));
        let pruned = self.remove(&merged, &merged_set.difference(&keep));

        // Add back items the applier did not own (dangling ones).
        let pruned_set = self.ensure(&self.field_set(&pruned, true)?);
        let mut out = self.remove(
            &merged,
            &merged_set.difference(&pruned_set).intersection(&last),
        );
        typed::drop_removal_nulls(&mut out, &merged);
        Ok(out)
    }
}
