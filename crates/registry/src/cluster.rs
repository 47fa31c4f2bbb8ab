//! Workspace identity: the logical cluster id that appears in storage keys,
//! the human-facing workspace path, and the scope a request reads or writes.

use std::fmt;
use std::sync::Arc;

use rand::Rng;

use crate::validation::is_dns1123_label;

/// A workspace's logical cluster id: short, random, immutable. It is the
/// `<cluster-id>` segment of every storage key of that workspace.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId(Arc<str>);

impl ClusterId {
    /// Length of generated ids: 16 characters of `[a-z0-9]` (~82 bits).
    const GENERATED_LEN: usize = 16;
    const ALPHABET: &'static [u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

    /// The root workspace's id.
    pub fn root() -> Self {
        ClusterId(Arc::from("root"))
    }

    /// A fresh random id.
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let s: String = (0..Self::GENERATED_LEN)
            .map(|_| Self::ALPHABET[rng.random_range(0..Self::ALPHABET.len())] as char)
            .collect();
        ClusterId(Arc::from(s))
    }

    /// Accepts an id read back from storage or a token; ids are DNS labels,
    /// so they can never contain the key separator.
    pub fn parse(s: &str) -> Option<Self> {
        is_dns1123_label(s).then(|| ClusterId(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// Hash and Eq derive from the inner `str`, so lookups by `&str` agree.
impl std::borrow::Borrow<str> for ClusterId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterId({})", self.0)
    }
}

/// A workspace path as users address it: `root`, `acme`, `acme:team-a`.
/// Top-level workspaces are children of root and are named without a prefix.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkspacePath(Arc<str>);

/// Why a workspace path was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid workspace path {path:?}: each segment must be a lowercase RFC 1123 label")]
pub struct InvalidWorkspacePath {
    pub path: String,
}

impl WorkspacePath {
    pub const ROOT: &'static str = "root";

    pub fn root() -> Self {
        WorkspacePath(Arc::from(Self::ROOT))
    }

    pub fn parse(s: &str) -> Result<Self, InvalidWorkspacePath> {
        if s == Self::ROOT {
            return Ok(Self::root());
        }
        let valid = !s.is_empty()
            && s.split(':')
                .enumerate()
                .all(|(i, seg)| is_dns1123_label(seg) && !(i == 0 && seg == Self::ROOT));
        if valid {
            Ok(WorkspacePath(Arc::from(s)))
        } else {
            Err(InvalidWorkspacePath { path: s.to_owned() })
        }
    }

    pub fn is_root(&self) -> bool {
        &*self.0 == Self::ROOT
    }

    /// The path of a child workspace named `name` (a valid DNS label).
    pub fn child(&self, name: &str) -> WorkspacePath {
        if self.is_root() {
            WorkspacePath(Arc::from(name))
        } else {
            WorkspacePath(Arc::from(format!("{}:{name}", self.0)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for WorkspacePath {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl WorkspacePath {
    /// The parent path and this workspace's own name (`None` for root).
    pub fn split_parent(&self) -> Option<(WorkspacePath, &str)> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.rsplit_once(':') {
            Some((parent, name)) => (WorkspacePath(Arc::from(parent)), name),
            None => (WorkspacePath::root(), &self.0),
        })
    }

    /// Whether `self` is `other` or nested (at any depth) below it.
    pub fn is_within(&self, other: &WorkspacePath) -> bool {
        other.is_root()
            || *self == *other
            || self
                .0
                .strip_prefix(&*other.0)
                .is_some_and(|rest| rest.starts_with(':'))
    }
}

impl fmt::Display for WorkspacePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for WorkspacePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WorkspacePath({})", self.0)
    }
}

/// Which workspaces a registry call may touch. There is deliberately no
/// "unscoped" value: a request either names its cluster or is a privileged
/// wildcard request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClusterScope {
    One(ClusterId),
    All,
}

impl ClusterScope {
    pub fn cluster(&self) -> Option<&ClusterId> {
        match self {
            ClusterScope::One(c) => Some(c),
            ClusterScope::All => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert!(WorkspacePath::parse("root").unwrap().is_root());
        assert_eq!(
            WorkspacePath::parse("acme")
                .unwrap()
                .child("team-a")
                .as_str(),
            "acme:team-a"
        );
        assert_eq!(WorkspacePath::root().child("acme").as_str(), "acme");
        for bad in [
            "",
            "Acme",
            "a::b",
            "a:",
            ":a",
            "root:acme",
            "a/b",
            "..",
            "a_b",
        ] {
            assert!(WorkspacePath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parents_and_nesting() {
        let p = |s| WorkspacePath::parse(s).unwrap();
        assert_eq!(p("acme:team-a").split_parent(), Some((p("acme"), "team-a")));
        assert_eq!(
            p("acme").split_parent(),
            Some((WorkspacePath::root(), "acme"))
        );
        assert_eq!(WorkspacePath::root().split_parent(), None);
        assert!(p("acme:team-a").is_within(&p("acme")));
        assert!(!p("acme2").is_within(&p("acme")));
        assert!(!p("a").is_within(&p("a:b")));
        assert!(p("a").is_within(&WorkspacePath::root()));
    }

    #[test]
    fn generated_ids_are_labels() {
        let id = ClusterId::generate();
        assert_eq!(id.as_str().len(), 16);
        assert!(ClusterId::parse(id.as_str()).is_some());
        assert_ne!(ClusterId::generate(), id);
    }
}
