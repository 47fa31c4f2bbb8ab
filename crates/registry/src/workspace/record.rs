//! One workspace as the index keeps it, and the typed view of a stored
//! Workspace object it is decoded from (no `serde_json::Value` tree, so a
//! start-up load of a million records stays cheap).

use std::borrow::Cow;
use std::sync::Arc;

use serde::Deserialize;

use crate::cluster::{ClusterId, WorkspacePath};

/// Lifecycle of a workspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    Ready,
    /// Deletion started: no new writes, reads allowed until the content is
    /// gone.
    Terminating,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Ready => "Ready",
            Phase::Terminating => "Terminating",
        }
    }
}

/// A known workspace: its registry record. Small on purpose (one per
/// workspace in memory): times are Unix seconds, the owner is interned.
#[derive(Clone, Debug)]
pub struct WorkspaceRecord {
    pub(crate) id: ClusterId,
    pub(crate) path: WorkspacePath,
    /// `None` for root.
    pub(crate) parent: Option<ClusterId>,
    pub(crate) owner: Option<Arc<str>>,
    pub(crate) phase: Phase,
    pub(crate) created_at: i64,
    pub(crate) deleted_at: Option<i64>,
    /// Create revision of the stored object (implicit objects report it as
    /// their resourceVersion; orders records of a reused name).
    pub(crate) revision: i64,
    /// Mod revision of the stored object (orders updates of one record).
    pub(crate) mod_revision: i64,
}

impl WorkspaceRecord {
    pub(crate) fn root() -> Self {
        WorkspaceRecord {
            id: ClusterId::root(),
            path: WorkspacePath::root(),
            parent: None,
            owner: None,
            phase: Phase::Ready,
            created_at: chrono::Utc::now().timestamp(),
            deleted_at: None,
            revision: 1,
            mod_revision: 1,
        }
    }

    /// The logical cluster id (the key segment).
    pub fn id(&self) -> &ClusterId {
        &self.id
    }

    pub fn path(&self) -> &WorkspacePath {
        &self.path
    }

    /// The parent's cluster id; `None` for root.
    pub fn parent(&self) -> Option<&ClusterId> {
        self.parent.as_ref()
    }

    /// The user who created the workspace. The authorizer treats the owner
    /// as the workspace's admin (equivalent to a `cluster-admin` binding
    /// inside it). `None` for root and for workspaces created before
    /// authentication was on.
    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn is_terminating(&self) -> bool {
        self.phase == Phase::Terminating
    }

    /// Creation time, Unix seconds.
    pub fn created_at(&self) -> i64 {
        self.created_at
    }

    /// When deletion started, Unix seconds.
    pub fn deleted_at(&self) -> Option<i64> {
        self.deleted_at
    }

    /// The shard holding the workspace's data (one shard for now).
    pub fn shard(&self) -> &'static str {
        super::DEFAULT_SHARD
    }

    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn created_rfc3339(&self) -> String {
        rfc3339(self.created_at)
    }
}

pub(crate) fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub(crate) fn parse_time(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp())
}

/// The fields of a stored Workspace the index needs.
#[derive(Deserialize)]
pub(crate) struct StoredWorkspace<'a> {
    #[serde(borrow)]
    pub metadata: StoredMeta<'a>,
    #[serde(default, borrow)]
    pub spec: StoredSpec<'a>,
    #[serde(default, borrow)]
    pub status: StoredStatus<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredMeta<'a> {
    #[serde(default, borrow)]
    pub creation_timestamp: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub deletion_timestamp: Option<Cow<'a, str>>,
}

#[derive(Default, Deserialize)]
pub(crate) struct StoredSpec<'a> {
    #[serde(default, borrow)]
    pub cluster: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub owner: Option<Cow<'a, str>>,
}

#[derive(Default, Deserialize)]
pub(crate) struct StoredStatus<'a> {
    #[serde(default, borrow)]
    pub phase: Option<Cow<'a, str>>,
}

impl StoredWorkspace<'_> {
    pub fn phase(&self) -> Phase {
        if self.status.phase.as_deref() == Some(Phase::Terminating.as_str())
            || self.metadata.deletion_timestamp.is_some()
        {
            Phase::Terminating
        } else {
            Phase::Ready
        }
    }
}
