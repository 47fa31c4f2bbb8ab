//! The discovery model of one workspace's API set, and its two renderings:
//! legacy (`/api`, `/api/v1`, `/apis`, `/apis/<g>`, `/apis/<g>/<v>`) and
//! aggregated (`apidiscovery.k8s.io/v2`). Both come from the same
//! [`ApiSet`], so they cannot disagree, and only served group-versions are
//! ever listed. Documents are rendered once, when the set is built.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::openapi::CustomSchema;
use crate::resource::ResourceDescriptor;

/// One group-version and its resources.
pub struct GroupVersion {
    pub version: String,
    pub resources: Vec<Arc<ResourceDescriptor>>,
}

pub struct Group {
    pub name: String,
    /// Most preferred first.
    pub versions: Vec<GroupVersion>,
}

/// Pre-rendered discovery documents.
pub struct Rendered {
    pub api_versions: Bytes,
    pub group_list: Bytes,
    pub groups: HashMap<String, Bytes>,
    pub resource_lists: HashMap<(String, String), Bytes>,
    pub aggregated_core: Bytes,
    pub aggregated_groups: Bytes,
}

/// A workspace's API set: the discovery model.
pub struct ApiSet {
    pub groups: Vec<Group>,
    pub rendered: Rendered,
    /// The OpenAPI schemas of the set's custom resources (its CRDs).
    pub custom_schemas: Vec<CustomSchema>,
}

/// Upstream version priority: GA > beta > alpha, higher numbers first.
fn version_priority(v: &str) -> (u8, i64, i64) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let Ok(major) = digits.parse::<i64>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        return (3, major, 0);
    }
    let (level, n) = if let Some(n) = tail.strip_prefix("beta") {
        (2, n)
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n)
    } else {
        return (0, 0, 0);
    };
    (level, major, n.parse().unwrap_or(0))
}

fn to_bytes(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

impl ApiSet {
    /// Builds the set; `group_order` fixes the order of known groups.
    pub fn new(
        descriptors: &[Arc<ResourceDescriptor>],
        group_order: &[&str],
        server_address: &str,
    ) -> Self {
        let mut groups: Vec<Group> = Vec::new();
        for d in descriptors {
            let g = match groups.iter_mut().find(|g| g.name == d.gvk.group) {
                Some(g) => g,
                None => {
                    groups.push(Group {
                        name: d.gvk.group.clone(),
                        versions: Vec::new(),
                    });
                    groups.last_mut().expect("just pushed")
                }
            };
            match g.versions.iter_mut().find(|v| v.version == d.gvk.version) {
                Some(v) => v.resources.push(d.clone()),
                None => g.versions.push(GroupVersion {
                    version: d.gvk.version.clone(),
                    resources: vec![d.clone()],
                }),
            }
        }
        let rank = |name: &str| {
            group_order
                .iter()
                .position(|g| *g == name)
                .unwrap_or(usize::MAX)
        };
        groups.sort_by(|a, b| {
            rank(&a.name)
                .cmp(&rank(&b.name))
                .then_with(|| a.name.cmp(&b.name))
        });
        for g in &mut groups {
            g.versions.sort_by(|a, b| {
                version_priority(&b.version)
                    .cmp(&version_priority(&a.version))
                    .then_with(|| a.version.cmp(&b.version))
            });
            for v in &mut g.versions {
                v.resources.sort_by(|a, b| a.plural().cmp(b.plural()));
            }
        }
        let rendered = Self::render(&groups, server_address);
        ApiSet {
            groups,
            rendered,
            custom_schemas: Vec::new(),
        }
    }

    /// The set with its custom resources' OpenAPI schemas.
    #[must_use]
    pub fn with_custom_schemas(mut self, schemas: Vec<CustomSchema>) -> Self {
        self.custom_schemas = schemas;
        self
    }

    fn render(groups: &[Group], server_address: &str) -> Rendered {
        let api_versions = json!({
            "kind": "APIVersions",
            "versions": groups.iter().filter(|g| g.name.is_empty()).flat_map(|g| g.versions.iter().map(|v| v.version.clone())).collect::<Vec<_>>(),
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
        });
        let named: Vec<&Group> = groups.iter().filter(|g| !g.name.is_empty()).collect();
        let group_list = json!({
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": named.iter().map(|g| legacy_group(g)).collect::<Vec<_>>(),
        });
        let mut group_docs = HashMap::new();
        let mut resource_lists = HashMap::new();
        for g in groups {
            if !g.name.is_empty() {
                let mut doc = legacy_group(g);
                if let Value::Object(m) = &mut doc {
                    m.insert("kind".into(), "APIGroup".into());
                    m.insert("apiVersion".into(), "v1".into());
                }
                group_docs.insert(g.name.clone(), to_bytes(&doc));
            }
            for v in &g.versions {
                resource_lists.insert(
                    (g.name.clone(), v.version.clone()),
                    to_bytes(&resource_list(g, v)),
                );
            }
        }
        let aggregated = |core: bool| {
            json!({
                "kind": "APIGroupDiscoveryList",
                "apiVersion": "apidiscovery.k8s.io/v2",
                "metadata": {},
                "items": groups.iter().filter(|g| g.name.is_empty() == core).map(aggregated_group).collect::<Vec<_>>(),
            })
        };
        Rendered {
            api_versions: to_bytes(&api_versions),
            group_list: to_bytes(&group_list),
            groups: group_docs,
            resource_lists,
            aggregated_core: to_bytes(&aggregated(true)),
            aggregated_groups: to_bytes(&aggregated(false)),
        }
    }

    /// Whether `group/version` is served (the router's first question).
    pub fn serves(&self, group: &str, version: &str) -> bool {
        self.rendered
            .resource_lists
            .contains_key(&(group.to_owned(), version.to_owned()))
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g.name == group)
    }

    pub fn resource(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<&Arc<ResourceDescriptor>> {
        self.groups
            .iter()
            .find(|g| g.name == group)?
            .versions
            .iter()
            .find(|v| v.version == version)?
            .resources
            .iter()
            .find(|r| r.plural() == plural)
    }
}

fn group_version_string(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

fn legacy_group(g: &Group) -> Value {
    let versions: Vec<Value> = g
        .versions
        .iter()
        .map(|v| json!({"groupVersion": group_version_string(&g.name, &v.version), "version": v.version}))
        .collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"name": g.name, "versions": versions, "preferredVersion": preferred})
}

fn resource_list(g: &Group, v: &GroupVersion) -> Value {
    let mut resources = Vec::new();
    for d in &v.resources {
        let mut r = Map::new();
        r.insert("name".into(), d.plural().into());
        r.insert("singularName".into(), d.singular.clone().into());
        r.insert("namespaced".into(), d.namespaced().into());
        r.insert("kind".into(), d.gvk.kind.clone().into());
        r.insert("verbs".into(), json!(d.verbs));
        if !d.short_names.is_empty() {
            r.insert("shortNames".into(), json!(d.short_names));
        }
        if !d.categories.is_empty() {
            r.insert("categories".into(), json!(d.categories));
        }
        r.insert("storageVersionHash".into(), d.storage_version_hash().into());
        resources.push(Value::Object(r));
        for s in &d.subresources {
            let mut r = Map::new();
            r.insert("name".into(), format!("{}/{}", d.plural(), s.name).into());
            r.insert("singularName".into(), "".into());
            r.insert("namespaced".into(), d.namespaced().into());
            if s.response_kind.group != d.gvk.group || s.response_kind.version != d.gvk.version {
                r.insert("group".into(), s.response_kind.group.clone().into());
                r.insert("version".into(), s.response_kind.version.clone().into());
            }
            r.insert("kind".into(), s.response_kind.kind.clone().into());
            r.insert("verbs".into(), json!(s.verbs));
            resources.push(Value::Object(r));
        }
    }
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version_string(&g.name, &v.version),
        "resources": resources,
    })
}

fn aggregated_group(g: &Group) -> Value {
    let mut metadata = Map::new();
    if !g.name.is_empty() {
        metadata.insert("name".into(), g.name.clone().into());
    }
    metadata.insert("creationTimestamp".into(), Value::Null);
    let versions: Vec<Value> = g
        .versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = v
                .resources
                .iter()
                .map(|d| {
                    let mut r = Map::new();
                    r.insert("resource".into(), d.plural().into());
                    r.insert("responseKind".into(), json!({"group": "", "version": "", "kind": d.gvk.kind}));
                    r.insert("scope".into(), (if d.namespaced() { "Namespaced" } else { "Cluster" }).into());
                    r.insert("singularResource".into(), d.singular.clone().into());
                    r.insert("verbs".into(), json!(d.verbs));
                    if !d.short_names.is_empty() {
                        r.insert("shortNames".into(), json!(d.short_names));
                    }
                    if !d.categories.is_empty() {
                        r.insert("categories".into(), json!(d.categories));
                    }
                    if !d.subresources.is_empty() {
                        let subs: Vec<Value> = d
                            .subresources
                            .iter()
                            .map(|s| {
                                let same_gv = s.response_kind.group == d.gvk.group && s.response_kind.version == d.gvk.version;
                                let (group, version) = if same_gv {
                                    (String::new(), String::new())
                                } else {
                                    (s.response_kind.group.clone(), s.response_kind.version.clone())
                                };
                                json!({
                                    "subresource": s.name,
                                    "responseKind": {"group": group, "version": version, "kind": s.response_kind.kind},
                                    "verbs": s.verbs,
                                })
                            })
                            .collect();
                        r.insert("subresources".into(), Value::Array(subs));
                    }
                    Value::Object(r)
                })
                .collect();
            json!({"version": v.version, "resources": resources, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": metadata, "versions": versions})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_version_hash_matches_upstream() {
        let d = ResourceDescriptor::new(
            &crate::keys::KeyRoot::default(),
            kube_core::GroupVersionKind::gvk("", "v1", "ConfigMap"),
            "configmaps",
            kube_core::discovery::Scope::Namespaced,
            vec!["cm"],
            vec![],
            crate::resource::ALL_VERBS,
        );
        assert_eq!(d.storage_version_hash(), "qFsyl6wFWjQ=");
    }

    #[test]
    fn version_order() {
        let mut v = vec!["v1beta1", "v2", "v1", "v1alpha1", "v2beta2", "foo"];
        v.sort_by_key(|x| std::cmp::Reverse(version_priority(x)));
        assert_eq!(v, ["v2", "v1", "v2beta2", "v1beta1", "v1alpha1", "foo"]);
    }
}
