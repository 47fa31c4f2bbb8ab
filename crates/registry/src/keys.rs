//! Storage keys. This is the ONLY module that builds or parses them:
//!
//! ```text
//! <root>/<group>/<resource>/<cluster-id>/<namespace>/<name>   namespaced
//! <root>/<group>/<resource>/<cluster-id>/<name>               cluster-scoped
//! ```
//!
//! `<group>` is `core` for the legacy group. `<root>/<group>/<resource>/` is
//! the [`ResourcePrefix`], computed once per resource at start-up; requests
//! only append the cluster id, namespace and name.

use bytes::Bytes;

use crate::cluster::{ClusterId, ClusterScope};

/// The configurable top of the key space (`/registry` by default).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRoot(String);

impl KeyRoot {
    pub const DEFAULT: &'static str = "/registry";

    /// Normalises `/registry`, `/registry/` and `registry` to `/registry`.
    pub fn new(root: &str) -> Self {
        let trimmed = root.trim_matches('/');
        if trimmed.is_empty() {
            KeyRoot(String::new())
        } else {
            KeyRoot(format!("/{trimmed}"))
        }
    }

    /// `<root>/<group>/<resource>/`.
    pub fn resource_prefix(&self, group: &str, resource: &str) -> ResourcePrefix {
        let group = if group.is_empty() { "core" } else { group };
        ResourcePrefix(Bytes::from(format!("{}/{group}/{resource}/", self.0)))
    }

    /// `<root>/tenancy.wsgate.io/workspacedeletions/`: one record per logical
    /// cluster whose content is being (or was) deleted, keyed by its id. No
    /// served resource uses this prefix (the group is wsgate's own and has no
    /// `workspacedeletions` resource), so no request can read or write it.
    pub fn workspace_deletions(&self) -> DeletionPrefix {
        DeletionPrefix(Bytes::from(format!("{}/{DELETIONS}", self.0)))
    }

    /// Which replica sweeps a deletion: `<prefix><cluster-id>`, leased.
    pub fn workspace_deletion_claims(&self) -> DeletionPrefix {
        DeletionPrefix(Bytes::from(format!("{}/{DELETION_CLAIMS}", self.0)))
    }
}

const DELETIONS: &str = "tenancy.wsgate.io/workspacedeletions/";
/// Beside the records, not inside their range.
const DELETION_CLAIMS: &str = "tenancy.wsgate.io/workspacedeletionclaims/";

/// Where workspace deletion records live: `<prefix><cluster-id>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletionPrefix(Bytes);

impl DeletionPrefix {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn key(&self, cluster: &ClusterId) -> Vec<u8> {
        let mut k = self.0.to_vec();
        k.extend_from_slice(cluster.as_str().as_bytes());
        k
    }

    /// The deletion-claim prefix of the same root as these records.
    pub fn claims(&self) -> DeletionPrefix {
        let root = self.0.strip_suffix(DELETIONS.as_bytes()).unwrap_or(&self.0);
        let mut p = root.to_vec();
        p.extend_from_slice(DELETION_CLAIMS.as_bytes());
        DeletionPrefix(Bytes::from(p))
    }

    /// The cluster id of a deletion record key.
    pub fn parse(&self, key: &[u8]) -> Option<ClusterId> {
        let rest = key.strip_prefix(self.0.as_ref())?;
        ClusterId::parse(std::str::from_utf8(rest).ok()?)
    }
}

impl Default for KeyRoot {
    fn default() -> Self {
        KeyRoot::new(Self::DEFAULT)
    }
}

/// `<root>/<group>/<resource>/`: every object of one resource in every
/// workspace lives below it, so one storage watch serves all workspaces.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResourcePrefix(Bytes);

/// The identity of one object as encoded in its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectKey<'a> {
    pub cluster: &'a str,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
}

impl ResourcePrefix {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key of one object. Callers have validated `namespace` and `name`
    /// as path segments (no `/`), so a key can never escape its collection.
    pub fn object_key(&self, cluster: &ClusterId, namespace: Option<&str>, name: &str) -> Vec<u8> {
        let ns_len = namespace.map_or(0, |n| n.len() + 1);
        let mut k =
            Vec::with_capacity(self.0.len() + cluster.as_str().len() + ns_len + name.len() + 1);
        k.extend_from_slice(&self.0);
        k.extend_from_slice(cluster.as_str().as_bytes());
        k.push(b'/');
        if let Some(ns) = namespace {
            k.extend_from_slice(ns.as_bytes());
            k.push(b'/');
        }
        k.extend_from_slice(name.as_bytes());
        k
    }

    /// The prefix holding a collection: every object of the resource in
    /// `scope`, optionally narrowed to one namespace. A namespace can only
    /// narrow the key range when the cluster is known; for wildcard reads the
    /// caller filters by namespace instead (see [`Self::parse`]).
    pub fn collection(&self, scope: &ClusterScope, namespace: Option<&str>) -> Vec<u8> {
        let mut k = self.0.to_vec();
        if let ClusterScope::One(cluster) = scope {
            k.extend_from_slice(cluster.as_str().as_bytes());
            k.push(b'/');
            if let Some(ns) = namespace {
                k.extend_from_slice(ns.as_bytes());
                k.push(b'/');
            }
        }
        k
    }

    /// `[start, end)` covering every key of this resource in `cluster` and
    /// nothing else: `<prefix><cluster-id>/` up to its successor. Cluster ids
    /// are DNS labels (no `/`), so `acme/` never covers `acme2/...`.
    pub fn cluster_range(&self, cluster: &ClusterId) -> (Vec<u8>, Vec<u8>) {
        let start = self.collection(&ClusterScope::One(cluster.clone()), None);
        let end = storage::prefix_end(&start).to_vec();
        (start, end)
    }

    /// Splits a key below this prefix into its parts; `None` for keys that do
    /// not have the shape `namespaced` demands.
    pub fn parse<'a>(&self, key: &'a [u8], namespaced: bool) -> Option<ObjectKey<'a>> {
        let rest = key.strip_prefix(self.0.as_ref())?;
        let rest = std::str::from_utf8(rest).ok()?;
        let mut parts = rest.split('/');
        let cluster = parts.next().filter(|s| !s.is_empty())?;
        let (namespace, name) = if namespaced {
            (Some(parts.next()?), parts.next()?)
        } else {
            (None, parts.next()?)
        };
        if parts.next().is_some() || name.is_empty() {
            return None;
        }
        Some(ObjectKey {
            cluster,
            namespace,
            name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let root = KeyRoot::new("/registry/");
        let p = root.resource_prefix("", "configmaps");
        assert_eq!(p.as_bytes(), b"/registry/core/configmaps/");
        let c = ClusterId::parse("abc").unwrap();
        let k = p.object_key(&c, Some("default"), "x");
        assert_eq!(k, b"/registry/core/configmaps/abc/default/x");
        let parsed = p.parse(&k, true).unwrap();
        assert_eq!(parsed.cluster, "abc");
        assert_eq!(parsed.namespace, Some("default"));
        assert_eq!(parsed.name, "x");
        assert_eq!(
            p.collection(&ClusterScope::One(c.clone()), Some("ns")),
            b"/registry/core/configmaps/abc/ns/"
        );
        assert_eq!(
            p.collection(&ClusterScope::All, Some("ns")),
            b"/registry/core/configmaps/"
        );
        let apps = root.resource_prefix("apps", "deployments");
        assert_eq!(
            apps.object_key(&c, None, "d"),
            b"/registry/apps/deployments/abc/d"
        );
        assert!(
            apps.parse(b"/registry/apps/deployments/abc/d/e", false)
                .is_none()
        );
    }

    #[test]
    fn cluster_ranges_do_not_cover_prefix_siblings() {
        let p = KeyRoot::default().resource_prefix("", "configmaps");
        let a = ClusterId::parse("acme").unwrap();
        let (start, end) = p.cluster_range(&a);
        assert_eq!(start, b"/registry/core/configmaps/acme/");
        assert_eq!(end, b"/registry/core/configmaps/acme0");
        let inside = p.object_key(&a, Some("default"), "x");
        let sibling = p.object_key(&ClusterId::parse("acme2").unwrap(), Some("default"), "x");
        assert!(storage::in_range(&inside, &start, &end));
        assert!(!storage::in_range(&sibling, &start, &end));
        let d = KeyRoot::default().workspace_deletions();
        assert_eq!(
            d.key(&a),
            b"/registry/tenancy.wsgate.io/workspacedeletions/acme"
        );
        assert_eq!(d.parse(&d.key(&a)), Some(a));
        assert_eq!(
            d.parse(b"/registry/tenancy.wsgate.io/workspacedeletions/a/b"),
            None
        );
    }
}
