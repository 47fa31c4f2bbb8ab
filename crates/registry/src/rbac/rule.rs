//! One compiled `PolicyRule` and the upstream matching and covering rules
//! (`k8s.io/kubernetes/pkg/apis/rbac/v1/evaluation_helpers.go`,
//! `pkg/registry/rbac/validation/policy_comparator.go`).

use std::fmt;

use k8s_openapi::api::authorization::v1::{NonResourceRule, ResourceRule};
use k8s_openapi::api::rbac::v1::PolicyRule;

use super::Target;

/// `*` in verbs, apiGroups, resources and nonResourceURLs.
pub const ALL: &str = "*";

/// A `PolicyRule` with its optional lists flattened. Built once per policy
/// compilation; matching never allocates.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Rule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

impl From<&PolicyRule> for Rule {
    fn from(r: &PolicyRule) -> Self {
        Rule {
            verbs: r.verbs.clone(),
            api_groups: r.api_groups.clone().unwrap_or_default(),
            resources: r.resources.clone().unwrap_or_default(),
            resource_names: r.resource_names.clone().unwrap_or_default(),
            non_resource_urls: r.non_resource_urls.clone().unwrap_or_default(),
        }
    }
}

impl From<&Rule> for PolicyRule {
    fn from(r: &Rule) -> Self {
        let opt = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        PolicyRule {
            verbs: r.verbs.clone(),
            api_groups: opt(&r.api_groups),
            resources: opt(&r.resources),
            resource_names: opt(&r.resource_names),
            non_resource_urls: opt(&r.non_resource_urls),
        }
    }
}

fn has(list: &[String], item: &str) -> bool {
    list.iter().any(|x| x == item)
}

fn has_all(list: &[String], items: &[String]) -> bool {
    items.iter().all(|i| has(list, i))
}

impl Rule {
    /// Builder used for the bootstrap roles and in tests.
    pub fn new(verbs: &[&str]) -> Self {
        Rule {
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[must_use]
    pub fn groups(mut self, groups: &[&str]) -> Self {
        self.api_groups = groups.iter().map(|s| s.to_string()).collect();
        self
    }

    #[must_use]
    pub fn resources(mut self, resources: &[&str]) -> Self {
        self.resources = resources.iter().map(|s| s.to_string()).collect();
        self
    }

    #[must_use]
    pub fn names(mut self, names: &[&str]) -> Self {
        self.resource_names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    #[must_use]
    pub fn urls(mut self, urls: &[&str]) -> Self {
        self.non_resource_urls = urls.iter().map(|s| s.to_string()).collect();
        self
    }

    fn verb_matches(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == ALL || v == verb)
    }

    /// `RuleAllows`.
    pub fn allows(&self, verb: &str, target: &Target<'_>) -> bool {
        if !self.verb_matches(verb) {
            return false;
        }
        match target {
            Target::Resource(r) => {
                self.api_groups.iter().any(|g| g == ALL || g == r.api_group)
                    && self.resource_matches(r.resource, r.subresource)
                    && (self.resource_names.is_empty() || has(&self.resource_names, r.name))
            }
            Target::NonResource { path } => self.non_resource_urls.iter().any(|u| {
                u == ALL
                    || u == path
                    || u.strip_suffix('*')
                        .is_some_and(|prefix| path.starts_with(prefix))
            }),
        }
    }

    /// `ResourceMatches`: `*`, `resource`, `resource/sub`, or `*/sub`.
    fn resource_matches(&self, resource: &str, subresource: &str) -> bool {
        self.resources.iter().any(|r| {
            if r == ALL {
                return true;
            }
            if subresource.is_empty() {
                return r == resource;
            }
            // Compare `resource/subresource` without building the string.
            let combined = r
                .strip_prefix(resource)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|sub| sub == subresource);
            combined || r.strip_prefix("*/").is_some_and(|sub| sub == subresource)
        })
    }

    /// `ruleCovers`: every request `sub` allows, `self` allows too. `sub` is
    /// expected to be atomic (see [`Rule::breakdown`]).
    pub fn covers(&self, sub: &Rule) -> bool {
        let verbs = has(&self.verbs, ALL) || has_all(&self.verbs, &sub.verbs);
        let groups = has(&self.api_groups, ALL) || has_all(&self.api_groups, &sub.api_groups);
        let resources = resources_cover_all(&self.resources, &sub.resources);
        let urls = sub.non_resource_urls.iter().all(|path| {
            self.non_resource_urls.iter().any(|owner| {
                owner == path
                    || owner
                        .strip_suffix('*')
                        .is_some_and(|prefix| path.starts_with(prefix))
            })
        });
        let names = if sub.resource_names.is_empty() {
            self.resource_names.is_empty()
        } else {
            self.resource_names.is_empty() || has_all(&self.resource_names, &sub.resource_names)
        };
        verbs && groups && resources && urls && names
    }

    /// `BreakdownRule`: one rule per (group, resource, verb[, name]) and per
    /// (url, verb), so covering can be checked piece by piece.
    pub fn breakdown(&self) -> Vec<Rule> {
        let mut out = Vec::new();
        for group in &self.api_groups {
            for resource in &self.resources {
                for verb in &self.verbs {
                    let base = Rule {
                        verbs: vec![verb.clone()],
                        api_groups: vec![group.clone()],
                        resources: vec![resource.clone()],
                        ..Default::default()
                    };
                    if self.resource_names.is_empty() {
                        out.push(base);
                    } else {
                        for name in &self.resource_names {
                            out.push(Rule {
                                resource_names: vec![name.clone()],
                                ..base.clone()
                            });
                        }
                    }
                }
            }
        }
        for url in &self.non_resource_urls {
            for verb in &self.verbs {
                out.push(Rule {
                    verbs: vec![verb.clone()],
                    non_resource_urls: vec![url.clone()],
                    ..Default::default()
                });
            }
        }
        out
    }

    /// The SelfSubjectRulesReview shape, if this is a resource rule.
    pub fn to_resource_rule(&self) -> Option<ResourceRule> {
        (!self.resources.is_empty() || !self.api_groups.is_empty()).then(|| ResourceRule {
            verbs: self.verbs.clone(),
            api_groups: Some(self.api_groups.clone()),
            resources: Some(self.resources.clone()),
            resource_names: (!self.resource_names.is_empty()).then(|| self.resource_names.clone()),
        })
    }

    /// The SelfSubjectRulesReview shape, if this is a non-resource rule.
    pub fn to_non_resource_rule(&self) -> Option<NonResourceRule> {
        (!self.non_resource_urls.is_empty()).then(|| NonResourceRule {
            verbs: self.verbs.clone(),
            non_resource_urls: Some(self.non_resource_urls.clone()),
        })
    }
}

/// `resourceCoversAll`: exact names, `*`, or `*/sub` for a subresource.
fn resources_cover_all(owner: &[String], requested: &[String]) -> bool {
    if has(owner, ALL) || has_all(owner, requested) {
        return true;
    }
    requested.iter().all(|path| {
        has(owner, path)
            || path
                .split_once('/')
                .is_some_and(|(_, sub)| owner.iter().any(|o| o.strip_prefix("*/") == Some(sub)))
    })
}

/// Upstream's `CompactString`: `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}`.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let list = |name: &str, v: &[String]| {
            let quoted: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
            format!("{name}:[{}]", quoted.join(" "))
        };
        if !self.api_groups.is_empty() {
            parts.push(list("APIGroups", &self.api_groups));
        }
        if !self.resources.is_empty() {
            parts.push(list("Resources", &self.resources));
        }
        if !self.non_resource_urls.is_empty() {
            parts.push(list("NonResourceURLs", &self.non_resource_urls));
        }
        if !self.resource_names.is_empty() {
            parts.push(list("ResourceNames", &self.resource_names));
        }
        parts.push(list("Verbs", &self.verbs));
        write!(f, "{{{}}}", parts.join(", "))
    }
}
