//! Deleting a CRD: its `customresourcecleanup.apiextensions.k8s.io`
//! finalizer holds the object while a background task marks it
//! Terminating, deletes every custom object of it in that workspace (their
//! own finalizers honoured: the task waits for them), then removes the
//! finalizer and the CRD. Resumable: a terminating CRD found at start-up or
//! by the watch gets its cleanup (again).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::index::CrdIndex;
use super::strategy::{mark_terminating, remove_cleanup_finalizer};
use crate::cluster::{ClusterId, ClusterScope};
use crate::gc::OrphanQueue;
use crate::metadata::{self, meta, meta_str};
use crate::options::{DeleteOptions, ListOptions};
use crate::store::{DeleteOutcome, ResourceStore};

/// Objects deleted per listing round.
const PAGE: i64 = 500;
/// How long to wait for objects held by finalizers before looking again.
const FINALIZER_WAIT: Duration = Duration::from_millis(500);

impl CrdIndex {
    /// Starts the cleanup of a terminating CRD unless it already runs.
    pub fn spawn_cleanup(self: Arc<Self>, cluster: ClusterId, name: String) {
        let key = (cluster.clone(), name.clone());
        if !self.cleaning.insert(key.clone()) {
            return;
        }
        tokio::spawn(async move {
            if let Err(e) = self.cleanup(&cluster, &name).await {
                tracing::warn!(error = %e, crd = name, cluster = cluster.as_str(), "CRD cleanup failed; retrying later");
                tokio::time::sleep(Duration::from_secs(5)).await;
                self.cleaning.remove(&key);
                self.spawn_cleanup(cluster, name);
                return;
            }
            self.cleaning.remove(&key);
        });
    }

    async fn cleanup(&self, cluster: &ClusterId, name: &str) -> crate::ApiResult<()> {
        let Some(crds) = self.crd_store.get().cloned() else {
            return Ok(());
        };
        let Some(current) = crds
            .system_update(cluster, None, name, mark_terminating)
            .await?
        else {
            return Ok(());
        };
        if !meta(&current).is_some_and(|m| m.contains_key("deletionTimestamp")) {
            return Ok(());
        }
        self.observe(cluster, &current);
        if let Some(store) = self.entry_store(cluster, name) {
            delete_all(&store, cluster, self.orphans.get().map(Arc::as_ref)).await?;
        }
        let finished = crds
            .system_update(cluster, None, name, remove_cleanup_finalizer)
            .await?;
        if let Some(obj) = finished {
            if metadata::finalizers(&obj).is_empty() {
                crds.system_delete(cluster, None, name).await?;
                let rev = meta_str(&obj, "resourceVersion")
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(i64::MAX);
                self.forget(cluster, name, rev);
            } else {
                // Other finalizers remain: their owners finish the deletion.
                self.observe(cluster, &obj);
            }
        }
        tracing::info!(crd = name, cluster = cluster.as_str(), "CRD deleted");
        Ok(())
    }
}

/// Deletes every object of `store` in `cluster`, waiting for finalizers,
/// and hands the deleted objects to the garbage collector as gone owners
/// (upstream's collector sees these deletes while the CRD still exists).
/// Objects held by finalizers reach it later, through the write that
/// removes their last finalizer.
async fn delete_all(
    store: &ResourceStore,
    cluster: &ClusterId,
    gc: Option<&OrphanQueue>,
) -> crate::ApiResult<()> {
    let scope = ClusterScope::One(cluster.clone());
    loop {
        let page = store
            .list(
                &scope,
                None,
                &ListOptions {
                    limit: Some(PAGE),
                    ..Default::default()
                },
            )
            .await?;
        if page.items.is_empty() {
            return Ok(());
        }
        let mut waiting = 0usize;
        let mut deleted = Vec::new();
        for item in &page.items {
            let Value::Object(obj) = item else { continue };
            if meta(obj).is_some_and(|m| m.contains_key("deletionTimestamp")) {
                waiting += 1;
                continue;
            }
            let ns = meta_str(obj, "namespace");
            match store
                .delete(cluster, ns, metadata::name(obj), &DeleteOptions::default())
                .await
            {
                Ok(DeleteOutcome::Pending(_)) => waiting += 1,
                Ok(DeleteOutcome::Deleted(o)) => deleted.push(o),
                Err(e) if e.code() == 404 => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(gc) = gc {
            gc.queue_deleted(cluster, &deleted);
        }
        if waiting == page.items.len() {
            tokio::time::sleep(FINALIZER_WAIT).await;
        }
    }
}

/// Removes every custom object of `cluster`: one range delete per resource
/// its CRD records (read from storage, so a crash or a lagging index
/// cannot hide one) name, by spec and accepted plural. A workspace deletion
/// runs it before it sweeps the CRD records themselves, so a restart finds
/// the records again and redoes it. Returns the number of keys removed.
pub async fn sweep_custom_objects(
    store: &dyn storage::Store,
    root: &crate::keys::KeyRoot,
    cluster: &ClusterId,
) -> Result<i64, storage::Error> {
    let (start, end) = root
        .resource_prefix(super::GROUP, super::PLURAL)
        .cluster_range(cluster);
    let mut deleted = 0;
    let mut req = storage::RangeRequest::prefix(start).limit(PAGE as usize);
    req.end = end.into();
    loop {
        let page = store.range(req.clone()).await?;
        for kv in &page.kvs {
            let Ok(crd) = serde_json::from_slice::<Value>(&kv.value) else {
                continue;
            };
            let group = crd["spec"]["group"].as_str().unwrap_or("");
            let mut plurals = vec![crd["spec"]["names"]["plural"].as_str()];
            plurals.push(crd["status"]["acceptedNames"]["plural"].as_str());
            plurals.dedup();
            for plural in plurals.into_iter().flatten().filter(|p| !p.is_empty()) {
                // An empty group would name the core group's prefix: never a CRD's.
                if group.is_empty() {
                    continue;
                }
                let (s, e) = root.resource_prefix(group, plural).cluster_range(cluster);
                deleted += store.delete_range(&s, &e).await?.deleted;
            }
        }
        match page.kvs.last() {
            Some(last) if page.more => {
                let mut next = last.key.to_vec();
                next.push(0);
                req.start = next.into();
            }
            _ => return Ok(deleted),
        }
    }
}
