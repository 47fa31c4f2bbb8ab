//! Background deletion of terminating workspaces.
//!
//! Deleting a workspace writes its [`DeletionRecord`] (keyed by cluster id,
//! created before anything else changes) and marks the Workspace object
//! `Terminating`. One worker per replica then, for each pending record:
//! starts the deletion of every nested workspace and finishes it first,
//! removes every key under `<prefix><cluster-id>/` for every ResourcePrefix
//! (byte order, progress persisted in the record), sweeps once more for
//! writes that raced the phase change, records `deleteCompletedAt`, and
//! removes the Workspace object if it still names this cluster. Every step is
//! idempotent, so a restart (or a second replica) simply redoes the current
//! step. Records stay as tombstones: they keep `created_at`, `deleted_at`
//! and `delete_completed_at`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::{DashMap, DashSet};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use storage::{RangeRequest, Store};
use tokio::sync::mpsc;

use super::claim::{CLAIM_TTL, Claims};
use super::record::{Phase, StoredWorkspace, rfc3339};
use super::{CONTENT_FINALIZER, DEFAULT_SHARD, WorkspaceIndex};
use crate::cluster::{ClusterId, WorkspacePath};
use crate::keys::{DeletionPrefix, KeyRoot, ResourcePrefix};
use crate::metadata::{meta_mut, now_rfc3339};
use crate::resource::Object;
use crate::status::{ApiError, ApiResult};
use crate::store::ResourceStore;

/// How often the Workspace object's deletion progress is rewritten.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// Delay before retrying a failed deletion step.
const RETRY_DELAY: Duration = Duration::from_secs(2);
/// Delay before looking again at a deletion another replica has claimed.
const CLAIMED_RECHECK: Duration = Duration::from_secs(5);

/// The persistent record of one logical cluster's deletion.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeletionRecord {
    pub cluster: String,
    pub path: String,
    /// The parent's cluster id and the Workspace object's name in it.
    pub parent: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub shard: String,
    pub created_at: String,
    pub deleted_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_completed_at: Option<String>,
    /// The last ResourcePrefix swept (prefixes go in byte order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swept_through: Option<String>,
    #[serde(default)]
    pub resources_done: usize,
    #[serde(default)]
    pub resources_total: usize,
    #[serde(default)]
    pub objects_deleted: i64,
}

/// Why a deletion step failed (retried).
#[derive(Debug, thiserror::Error)]
pub enum DeletionError {
    #[error("storage: {0}")]
    Storage(#[from] storage::Error),
    #[error("undecodable deletion record for {cluster}: {source}")]
    Record {
        cluster: ClusterId,
        #[source]
        source: serde_json::Error,
    },
    #[error("updating the Workspace object: {0}")]
    Object(String),
    /// Another replica holds the sweep claim: looked at again later.
    #[error("another replica is sweeping it")]
    ClaimedElsewhere,
}

/// The deletion worker of one replica.
pub struct Deleter {
    store: Arc<dyn Store>,
    /// Every distinct ResourcePrefix, in byte order.
    prefixes: Vec<ResourcePrefix>,
    workspaces: Arc<ResourceStore>,
    index: Arc<WorkspaceIndex>,
    records: DeletionPrefix,
    /// Where custom resources live (their prefixes come from CRD records).
    root: KeyRoot,
    tx: mpsc::UnboundedSender<ClusterId>,
    queued: DashSet<ClusterId>,
    /// So that only one replica sweeps a given workspace.
    claims: Claims,
    /// Objects this replica's sweeps deleted since start (read by metrics).
    objects_deleted: AtomicU64,
    /// Prefixes still to sweep, per workspace being swept here (metrics).
    remaining: DashMap<ClusterId, usize>,
}

impl Deleter {
    /// Starts the worker. `prefixes` are every served resource's prefix.
    pub fn spawn(
        store: Arc<dyn Store>,
        mut prefixes: Vec<ResourcePrefix>,
        workspaces: Arc<ResourceStore>,
        index: Arc<WorkspaceIndex>,
        records: DeletionPrefix,
        root: KeyRoot,
    ) -> Arc<Deleter> {
        prefixes.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        prefixes.dedup();
        let (tx, mut rx) = mpsc::unbounded_channel::<ClusterId>();
        let (store_for_claims, records_for_claims) = (store.clone(), records.clone());
        let d = Arc::new(Deleter {
            store,
            prefixes,
            workspaces,
            index,
            records,
            root,
            tx,
            queued: DashSet::new(),
            claims: Claims::new(store_for_claims, records_for_claims.claims(), CLAIM_TTL),
            objects_deleted: AtomicU64::new(0),
            remaining: DashMap::new(),
        });
        let this = d.clone();
        tokio::spawn(async move {
            while let Some(id) = rx.recv().await {
                let outcome = this.process(&id).await;
                // Progress is reported only while a sweep runs here.
                this.remaining.remove(&id);
                match outcome {
                    Ok(()) => {
                        this.queued.remove(&id);
                    }
                    Err(DeletionError::ClaimedElsewhere) => {
                        tracing::debug!(cluster = %id, "workspace deletion claimed by another replica");
                        let again = this.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(CLAIMED_RECHECK).await;
                            let _ = again.tx.send(id);
                        });
                    }
                    Err(e) => {
                        tracing::warn!(cluster = %id, error = %e, "workspace deletion step failed; retrying");
                        let again = this.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(RETRY_DELAY).await;
                            let _ = again.tx.send(id);
                        });
                    }
                }
            }
        });
        d
    }

    /// Objects deleted by this replica's sweeps since it started.
    pub fn objects_deleted(&self) -> u64 {
        self.objects_deleted.load(Ordering::Relaxed)
    }

    /// Resource prefixes still to sweep, summed over the deletions this
    /// replica is running now.
    pub fn prefixes_remaining(&self) -> usize {
        self.remaining.iter().map(|e| *e.value()).sum()
    }

    fn count_deleted(&self, n: i64) {
        self.objects_deleted
            .fetch_add(u64::try_from(n).unwrap_or(0), Ordering::Relaxed);
    }

    fn enqueue(&self, id: &ClusterId) {
        if self.queued.insert(id.clone()) {
            let _ = self.tx.send(id.clone());
        }
    }

    /// Queues every unfinished deletion (start-up), reading records in pages.
    pub async fn resume(&self) -> Result<usize, storage::Error> {
        let mut req = RangeRequest::prefix(self.records.as_bytes().to_vec()).limit(1000);
        let mut n = 0;
        loop {
            let resp = self.store.range(req.clone()).await?;
            for kv in &resp.kvs {
                let Some(id) = self.records.parse(&kv.key) else {
                    continue;
                };
                match serde_json::from_slice::<DeletionRecord>(&kv.value) {
                    Ok(r) if r.delete_completed_at.is_none() => {
                        self.index.mark_deleting(&id);
                        self.enqueue(&id);
                        n += 1;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(cluster = %id, error = %e, "undecodable deletion record")
                    }
                }
            }
            match resp.kvs.last() {
                Some(last) if resp.more => {
                    req = req.at_revision(resp.revision).starting_after(&last.key)
                }
                _ => break,
            }
        }
        Ok(n)
    }

    /// The deletion record of `id`, if any.
    pub async fn record(&self, id: &ClusterId) -> Result<Option<DeletionRecord>, DeletionError> {
        Ok(self.read_record(id).await?.map(|(r, _)| r))
    }

    async fn read_record(
        &self,
        id: &ClusterId,
    ) -> Result<Option<(DeletionRecord, i64)>, DeletionError> {
        let resp = self.store.get(&self.records.key(id), None).await?;
        match resp.kv {
            None => Ok(None),
            Some(kv) => serde_json::from_slice(&kv.value)
                .map(|r| Some((r, kv.mod_revision)))
                .map_err(|source| DeletionError::Record {
                    cluster: id.clone(),
                    source,
                }),
        }
    }

    async fn write_record(&self, rec: &DeletionRecord, rev: i64) -> Result<i64, DeletionError> {
        let id = ClusterId::parse(&rec.cluster).unwrap_or_else(ClusterId::root);
        let value = Bytes::from(serde_json::to_vec(rec).unwrap_or_default());
        match self
            .store
            .update(&self.records.key(&id), value, rev, None)
            .await
        {
            Ok(kv) => Ok(kv.mod_revision),
            // Another replica advanced it: continue from its state next time.
            Err(storage::Error::Conflict { .. }) => {
                Ok(self.read_record(&id).await?.map(|(_, r)| r).unwrap_or(rev))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Starts deleting the workspace `name` in `parent` whose current object
    /// is `obj`: writes the deletion record, marks the object Terminating,
    /// and queues the sweep. Returns the updated object.
    pub async fn start(
        &self,
        parent: &ClusterId,
        parent_path: &WorkspacePath,
        name: &str,
        obj: &Object,
    ) -> ApiResult<Object> {
        let id = obj
            .get("spec")
            .and_then(|s| s.get("cluster"))
            .and_then(Value::as_str)
            .and_then(ClusterId::parse)
            .ok_or_else(|| {
                ApiError::internal(format!(
                    "Internal error occurred: workspace {name} has no valid spec.cluster"
                ))
            })?;
        let now = now_rfc3339();
        let record = DeletionRecord {
            cluster: id.to_string(),
            path: parent_path.child(name).to_string(),
            parent: parent.to_string(),
            name: name.to_owned(),
            owner: obj
                .get("spec")
                .and_then(|s| s.get("owner"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            shard: DEFAULT_SHARD.to_owned(),
            created_at: crate::metadata::meta_str(obj, "creationTimestamp")
                .unwrap_or("")
                .to_owned(),
            deleted_at: now.clone(),
            delete_completed_at: None,
            swept_through: None,
            resources_done: 0,
            resources_total: self.prefixes.len(),
            objects_deleted: 0,
        };
        let value = Bytes::from(serde_json::to_vec(&record).unwrap_or_default());
        match self.store.create(&self.records.key(&id), value, None).await {
            Ok(_) | Err(storage::Error::AlreadyExists { .. }) => {}
            Err(e) => {
                return Err(ApiError::internal(format!(
                    "Internal error occurred: recording the deletion of workspace {name}: {e}"
                )));
            }
        }
        self.index.mark_deleting(&id);
        let total = self.prefixes.len();
        let updated = self
            .workspaces
            .system_update(parent, None, name, |o| {
                mark_terminating(o, &id, &now, total)
            })
            .await?;
        let out = match updated {
            Some(u) => {
                let create_rev = self.index.info_by_id(&id).map_or(0, |r| r.revision());
                let rv = crate::metadata::meta_str(&u, "resourceVersion")
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
                self.index.observe(parent, &u, create_rev, rv);
                u
            }
            None => obj.clone(),
        };
        self.enqueue(&id);
        Ok(out)
    }

    /// Runs (or resumes) the deletion of `id` to completion.
    fn process<'a>(
        &'a self,
        id: &'a ClusterId,
    ) -> futures::future::BoxFuture<'a, Result<(), DeletionError>> {
        Box::pin(async move {
            let Some((rec, _)) = self.read_record(id).await? else {
                self.index.deletion_done(id);
                return Ok(());
            };
            if rec.delete_completed_at.is_some() {
                self.index.deletion_done(id);
                return Ok(());
            }
            // Held until this function returns (released on drop).
            let Some(_claim) = self.claims.try_claim(id).await? else {
                return Err(DeletionError::ClaimedElsewhere);
            };
            // The holder before us may have finished meanwhile.
            let Some((mut rec, mut rev)) = self.read_record(id).await? else {
                self.index.deletion_done(id);
                return Ok(());
            };
            if rec.delete_completed_at.is_some() {
                self.index.deletion_done(id);
                return Ok(());
            }
            let parent = ClusterId::parse(&rec.parent).unwrap_or_else(ClusterId::root);
            let path = WorkspacePath::parse(&rec.path).unwrap_or_else(|_| WorkspacePath::root());
            // Nested workspaces first: start each (record + Terminating),
            // then finish it before this one's sweep removes its object.
            self.delete_children(id, &path).await?;
            let mut last_progress = Instant::now();
            rec.resources_total = self.prefixes.len();
            self.remaining.insert(id.clone(), self.prefixes.len());
            // Custom objects first, while the CRD records that name their
            // prefixes are still there (a restart finds them again).
            let custom =
                crate::crd::sweep_custom_objects(self.store.as_ref(), &self.root, id).await?;
            self.count_deleted(custom);
            rec.objects_deleted += custom;
            for (i, p) in self.prefixes.iter().enumerate() {
                let name = String::from_utf8_lossy(p.as_bytes()).into_owned();
                if rec.swept_through.as_ref().is_some_and(|s| name <= *s) {
                    continue;
                }
                let (start, end) = p.cluster_range(id);
                let r = self.store.delete_range(&start, &end).await?;
                rec.resources_done = i + 1;
                self.remaining
                    .insert(id.clone(), self.prefixes.len().saturating_sub(i + 1));
                self.count_deleted(r.deleted);
                if r.deleted > 0 {
                    rec.objects_deleted += r.deleted;
                    rec.swept_through = Some(name);
                    rev = self.write_record(&rec, rev).await?;
                    if last_progress.elapsed() >= PROGRESS_INTERVAL {
                        last_progress = Instant::now();
                        self.report_progress(&parent, &rec, id).await;
                    }
                }
            }
            // A write admitted just before the phase change was observed may
            // have landed behind the sweep: sweep again (cheap when empty).
            for p in &self.prefixes {
                let (start, end) = p.cluster_range(id);
                let late = self.store.delete_range(&start, &end).await?.deleted;
                self.count_deleted(late);
                rec.objects_deleted += late;
            }
            rec.resources_done = rec.resources_total;
            rec.delete_completed_at = Some(now_rfc3339());
            self.write_record(&rec, rev).await?;
            self.remove_object(&parent, &rec.name, id).await?;
            self.index.deletion_done(id);
            tracing::info!(cluster = %id, path = %rec.path, objects = rec.objects_deleted, "workspace deleted");
            Ok(())
        })
    }

    async fn delete_children(
        &self,
        id: &ClusterId,
        path: &WorkspacePath,
    ) -> Result<(), DeletionError> {
        let (start, _) = self.workspaces.descriptor.prefix.cluster_range(id);
        let resp = self.store.range(RangeRequest::prefix(start)).await?;
        for kv in &resp.kvs {
            let Ok(obj) = serde_json::from_slice::<Object>(&kv.value) else {
                continue;
            };
            let name = crate::metadata::name(&obj).to_owned();
            let Ok(stored) = serde_json::from_slice::<StoredWorkspace<'_>>(&kv.value) else {
                continue;
            };
            let Some(child) = stored.spec.cluster.as_deref().and_then(ClusterId::parse) else {
                continue;
            };
            if stored.phase() != Phase::Terminating || self.read_record(&child).await?.is_none() {
                self.start(id, path, &name, &obj)
                    .await
                    .map_err(|e| DeletionError::Object(e.message))?;
            }
            self.process(&child).await?;
        }
        Ok(())
    }

    /// Rewrites the Workspace object's `status.deletion` (best effort).
    async fn report_progress(&self, parent: &ClusterId, rec: &DeletionRecord, id: &ClusterId) {
        let progress = json!({
            "resourcesDone": rec.resources_done,
            "resourcesTotal": rec.resources_total,
            "objectsDeleted": rec.objects_deleted,
        });
        let r = self
            .workspaces
            .system_update(parent, None, &rec.name, |o| {
                if spec_cluster(o) != Some(id.as_str()) {
                    return false;
                }
                if let Some(Value::Object(st)) = o.get_mut("status") {
                    st.insert("deletion".into(), progress.clone());
                    return true;
                }
                false
            })
            .await;
        if let Err(e) = r {
            tracing::debug!(cluster = %id, error = %e.message, "could not report deletion progress");
        }
    }

    /// Removes the Workspace object if it still names `id` (the name may
    /// already hold a new workspace).
    async fn remove_object(
        &self,
        parent: &ClusterId,
        name: &str,
        id: &ClusterId,
    ) -> Result<(), DeletionError> {
        let key = self
            .workspaces
            .descriptor
            .prefix
            .object_key(parent, None, name);
        let Some(kv) = self.store.get(&key, None).await?.kv else {
            return Ok(());
        };
        let same = serde_json::from_slice::<StoredWorkspace<'_>>(&kv.value)
            .ok()
            .is_some_and(|s| s.spec.cluster.as_deref() == Some(id.as_str()));
        if !same {
            return Ok(());
        }
        match self.store.delete(&key, Some(kv.mod_revision)).await {
            Ok(_) | Err(storage::Error::NotFound { .. }) => Ok(()),
            // Changed meanwhile (progress, labels): next attempt re-reads.
            Err(e) => Err(e.into()),
        }
    }
}

fn spec_cluster(o: &Object) -> Option<&str> {
    o.get("spec")
        .and_then(|s| s.get("cluster"))
        .and_then(Value::as_str)
}

/// Marks a Workspace object Terminating (idempotent): deletionTimestamp,
/// the content finalizer, and status phase/deletedAt/progress.
fn mark_terminating(o: &mut Object, id: &ClusterId, now: &str, total: usize) -> bool {
    if spec_cluster(o) != Some(id.as_str()) {
        return false;
    }
    let status_phase = o
        .get("status")
        .and_then(|s| s.get("phase"))
        .and_then(Value::as_str);
    if status_phase == Some(Phase::Terminating.as_str()) {
        return false;
    }
    let m = meta_mut(o);
    m.entry("deletionTimestamp")
        .or_insert_with(|| Value::String(now.to_owned()));
    let fin = m
        .entry("finalizers")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(f) = fin
        && !f.iter().any(|v| v.as_str() == Some(CONTENT_FINALIZER))
    {
        f.push(CONTENT_FINALIZER.into());
    }
    let st = o.entry("status").or_insert_with(|| json!({}));
    if !st.is_object() {
        *st = json!({});
    }
    if let Value::Object(s) = st {
        s.insert("phase".into(), Phase::Terminating.as_str().into());
        s.insert("deletedAt".into(), now.into());
        s.insert(
            "deletion".into(),
            json!({"resourcesDone": 0, "resourcesTotal": total, "objectsDeleted": 0}),
        );
    }
    true
}

/// Unix seconds as RFC 3339 (exposed for status rendering).
pub fn format_time(secs: i64) -> String {
    rfc3339(secs)
}
