//! Open-watch limits per workspace and per user (`limits.max_watches_per_*`):
//! one more watch past a limit is 429 `TooManyRequests` with `Retry-After`.
//! Counts live in memory (per replica); a [`WatchSlot`] gives its place
//! back when the watch stream ends.

use std::sync::Arc;

use dashmap::DashMap;
use registry::status::{Reason, StatusDetails};

use crate::error::ApiError;

#[derive(Debug, Default)]
pub struct WatchLimits {
    per_workspace: DashMap<String, u32>,
    per_user: DashMap<String, u32>,
}

/// One open watch; dropping it frees the slot.
#[derive(Debug)]
pub struct WatchSlot {
    limits: Arc<WatchLimits>,
    workspace: String,
    user: String,
}

fn take(map: &DashMap<String, u32>, key: &str, max: u32) -> bool {
    let mut e = map.entry(key.to_owned()).or_insert(0);
    if max > 0 && *e >= max {
        return false;
    }
    *e += 1;
    true
}

fn give(map: &DashMap<String, u32>, key: &str) {
    let empty = match map.get_mut(key) {
        Some(mut e) => {
            *e = e.saturating_sub(1);
            *e == 0
        }
        None => false,
    };
    if empty {
        map.remove_if(key, |_, v| *v == 0);
    }
}

fn too_many(what: &str) -> ApiError {
    ApiError(
        registry::ApiError::new(
            Reason::TooManyRequests,
            format!("too many open watches {what}, please try again later"),
        )
        .with_details(StatusDetails {
            retry_after_seconds: Some(1),
            ..StatusDetails::default()
        }),
    )
}

impl WatchLimits {
    /// Takes a slot for `user` in `workspace`; a limit of 0 means unlimited.
    pub fn open(
        self: &Arc<Self>,
        workspace: &str,
        user: &str,
        max_per_workspace: u32,
        max_per_user: u32,
    ) -> Result<WatchSlot, ApiError> {
        if !take(&self.per_workspace, workspace, max_per_workspace) {
            return Err(too_many("in this workspace"));
        }
        if !take(&self.per_user, user, max_per_user) {
            give(&self.per_workspace, workspace);
            return Err(too_many("for this user"));
        }
        Ok(WatchSlot {
            limits: self.clone(),
            workspace: workspace.to_owned(),
            user: user.to_owned(),
        })
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        give(&self.limits.per_workspace, &self.workspace);
        give(&self.limits.per_user, &self.user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_release() {
        let l = Arc::new(WatchLimits::default());
        let a = l.open("acme", "alice", 2, 1).unwrap();
        assert_eq!(l.open("acme", "alice", 2, 1).unwrap_err().0.code(), 429);
        let b = l.open("acme", "bob", 2, 1).unwrap();
        assert_eq!(l.open("acme", "carol", 2, 1).unwrap_err().0.code(), 429);
        drop(a);
        let _c = l.open("acme", "alice", 2, 1).unwrap();
        drop(b);
        assert!(l.per_user.get("bob").is_none());
    }
}
