//! The authenticated user and the workspaces its credential is valid for.
//!
//! # Workspace scope syntax (claim `wsgate.io/workspaces`, a list)
//!
//! | pattern    | matches                                                   |
//! |------------|-----------------------------------------------------------|
//! | `*`        | every workspace, including `root` and `/clusters/*`       |
//! | `acme`     | exactly `acme` (not `acme2`, not `acme:child`)            |
//! | `acme:*`   | every descendant of `acme` at any depth, not `acme` itself |
//! | `root:*`   | every workspace except `root`                             |
//!
//! A token for `acme` and everything below it lists both `acme` and
//! `acme:*`. `*` may only be a whole last segment (`ac*` is invalid), and a
//! token with any invalid pattern is rejected as a whole. Only `*` allows
//! the cross-workspace `/clusters/*` endpoint.

use std::collections::BTreeMap;
use std::fmt;

use registry::cluster::{ClusterId, WorkspacePath};
use registry::rbac::UserInfo;

pub const SYSTEM_AUTHENTICATED: &str = "system:authenticated";
pub const SYSTEM_UNAUTHENTICATED: &str = "system:unauthenticated";
pub const ANONYMOUS: &str = "system:anonymous";

/// One entry of a token's workspace scope.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ScopePattern {
    /// `*`
    Any,
    /// `acme`
    Exact(WorkspacePath),
    /// `acme:*`
    Descendants(WorkspacePath),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid workspace scope {0:?}: use `*`, a workspace path, or a path followed by `:*`")]
pub struct InvalidScope(pub String);

impl ScopePattern {
    pub fn parse(s: &str) -> Result<Self, InvalidScope> {
        if s == "*" {
            return Ok(ScopePattern::Any);
        }
        let invalid = || InvalidScope(s.to_owned());
        match s.strip_suffix(":*") {
            Some(base) => WorkspacePath::parse(base)
                .map(ScopePattern::Descendants)
                .map_err(|_| invalid()),
            None => WorkspacePath::parse(s)
                .map(ScopePattern::Exact)
                .map_err(|_| invalid()),
        }
    }

    pub fn matches(&self, path: &WorkspacePath) -> bool {
        match self {
            ScopePattern::Any => true,
            ScopePattern::Exact(p) => p == path,
            ScopePattern::Descendants(base) if base.is_root() => !path.is_root(),
            ScopePattern::Descendants(base) => path
                .as_str()
                .strip_prefix(base.as_str())
                .is_some_and(|rest| rest.starts_with(':')),
        }
    }
}

impl fmt::Display for ScopePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScopePattern::Any => f.write_str("*"),
            ScopePattern::Exact(p) => write!(f, "{p}"),
            ScopePattern::Descendants(p) => write!(f, "{p}:*"),
        }
    }
}

/// Where a credential may be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkspaceScope {
    /// Anywhere (RBAC in each workspace still applies). Anonymous users and
    /// external issuers without a workspace claim mapping get this.
    All,
    /// Any workspace matching one of the patterns.
    Patterns(Vec<ScopePattern>),
    /// A ServiceAccount token: only the workspace it was issued in, and only
    /// while that path still names the same logical cluster (a deleted and
    /// recreated `acme` has a new id, so old tokens die with the old one).
    Bound {
        path: WorkspacePath,
        cluster: ClusterId,
    },
}

impl WorkspaceScope {
    pub fn parse(patterns: &[String]) -> Result<Self, InvalidScope> {
        patterns
            .iter()
            .map(|p| ScopePattern::parse(p))
            .collect::<Result<Vec<_>, _>>()
            .map(WorkspaceScope::Patterns)
    }

    /// Check before the path is resolved (cheap; rejects early).
    pub fn allows_path(&self, path: &WorkspacePath) -> bool {
        match self {
            WorkspaceScope::All => true,
            WorkspaceScope::Patterns(ps) => ps.iter().any(|p| p.matches(path)),
            WorkspaceScope::Bound { path: bound, .. } => bound == path,
        }
    }

    /// The full check, once the path has been resolved to its cluster id.
    pub fn allows(&self, path: &WorkspacePath, cluster: &ClusterId) -> bool {
        match self {
            WorkspaceScope::Bound {
                path: bound,
                cluster: id,
            } => bound == path && id == cluster,
            _ => self.allows_path(path),
        }
    }

    /// Whether the cross-workspace `/clusters/*` endpoint is allowed.
    pub fn allows_all_workspaces(&self) -> bool {
        match self {
            WorkspaceScope::All => true,
            WorkspaceScope::Patterns(ps) => ps.contains(&ScopePattern::Any),
            WorkspaceScope::Bound { .. } => false,
        }
    }

    /// The claim value for a token carrying this scope.
    pub fn to_claim(&self) -> Vec<String> {
        match self {
            WorkspaceScope::All => vec!["*".to_owned()],
            WorkspaceScope::Patterns(ps) => ps.iter().map(ToString::to_string).collect(),
            WorkspaceScope::Bound { path, .. } => vec![path.to_string()],
        }
    }
}

/// The ServiceAccount a bound token was issued for. The server should check
/// that it still exists with this uid (upstream does), since deleting the
/// ServiceAccount must invalidate its tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccountRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// An authenticated (or anonymous) user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    /// Always contains `system:authenticated` for authenticated users and
    /// `system:unauthenticated` for the anonymous user.
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
    pub workspaces: WorkspaceScope,
    pub service_account: Option<ServiceAccountRef>,
}

impl User {
    /// A user authenticated by a credential; adds `system:authenticated`.
    pub fn authenticated(
        name: String,
        mut groups: Vec<String>,
        workspaces: WorkspaceScope,
    ) -> Self {
        if !groups.iter().any(|g| g == SYSTEM_AUTHENTICATED) {
            groups.push(SYSTEM_AUTHENTICATED.to_owned());
        }
        User {
            name,
            uid: String::new(),
            groups,
            extra: BTreeMap::new(),
            workspaces,
            service_account: None,
        }
    }

    /// The identity of a request without credentials.
    pub fn anonymous() -> Self {
        User {
            name: ANONYMOUS.to_owned(),
            uid: String::new(),
            groups: vec![SYSTEM_UNAUTHENTICATED.to_owned()],
            extra: BTreeMap::new(),
            workspaces: WorkspaceScope::All,
            service_account: None,
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.name == ANONYMOUS
    }

    /// RBAC's view of this user.
    pub fn user_info(&self) -> UserInfo {
        UserInfo::from(self)
    }
}

impl From<&User> for UserInfo {
    fn from(u: &User) -> Self {
        UserInfo {
            name: u.name.clone(),
            uid: u.uid.clone(),
            groups: u.groups.clone(),
            extra: u.extra.clone(),
        }
    }
}
