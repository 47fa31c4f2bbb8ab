//! Content negotiation: which representation an `Accept` header asks for,
//! and the exact Content-Types of each.

use axum::http::HeaderMap;
use axum::http::header::ACCEPT;
use registry::status::Reason;

use crate::error::ApiError;

pub const JSON: &str = "application/json";
pub const YAML: &str = "application/yaml";
pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
pub const AGGREGATED_V2BETA1: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// A response representation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
    /// `meta.k8s.io` Table, v1 or v1beta1.
    Table(&'static str),
    /// `meta.k8s.io` PartialObjectMetadata(List), v1 or v1beta1.
    PartialMetadata(&'static str),
    /// Aggregated discovery (v2 or v2beta1).
    Aggregated(&'static str),
}

impl Output {
    pub fn content_type(self, list: bool) -> String {
        match self {
            Output::Json => JSON.to_owned(),
            Output::Yaml => YAML.to_owned(),
            Output::Table(v) => format!("application/json;as=Table;v={v};g=meta.k8s.io"),
            Output::PartialMetadata(v) => {
                let as_ = if list {
                    "PartialObjectMetadataList"
                } else {
                    "PartialObjectMetadata"
                };
                format!("application/json;as={as_};g=meta.k8s.io;v={v}")
            }
            Output::Aggregated("v2beta1") => AGGREGATED_V2BETA1.to_owned(),
            Output::Aggregated(_) => AGGREGATED_V2.to_owned(),
        }
    }
}

/// What the endpoint can produce besides plain JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A single object (get, write responses).
    Object,
    /// A list (or deletecollection).
    Collection,
    /// A watch: its events carry single objects, so metadata-only
    /// watchers (client-go's metadata informer, kube-rs `owns`) ask for
    /// `as=PartialObjectMetadata`, not the List kind.
    Watch,
    /// `/api` or `/apis`.
    Discovery,
    /// Anything else: JSON only.
    Other,
}

struct MediaRange<'a> {
    essence: String,
    params: Vec<(&'a str, &'a str)>,
}

fn parse_accept(header: &str) -> Vec<MediaRange<'_>> {
    header
        .split(',')
        .filter_map(|entry| {
            let mut parts = entry.split(';');
            let essence = parts.next()?.trim().to_ascii_lowercase();
            if essence.is_empty() {
                return None;
            }
            let params = parts
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
                .collect();
            Some(MediaRange { essence, params })
        })
        .collect()
}

fn meta_version(v: &str) -> Option<&'static str> {
    match v {
        "v1" => Some("v1"),
        "v1beta1" => Some("v1beta1"),
        _ => None,
    }
}

/// Picks the first acceptable representation, in the client's order.
pub fn negotiate(headers: &HeaderMap, endpoint: Endpoint) -> Result<Output, ApiError> {
    let Some(accept) = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.trim().is_empty())
    else {
        return Ok(Output::Json);
    };
    for m in parse_accept(accept) {
        let param = |k: &str| {
            m.params
                .iter()
                .find(|(pk, _)| pk.eq_ignore_ascii_case(k))
                .map(|(_, v)| *v)
        };
        if param("q") == Some("0") {
            continue;
        }
        match m.essence.as_str() {
            "application/json" | "*/*" | "application/*" => {
                let Some(as_) = param("as") else {
                    return Ok(Output::Json);
                };
                let g = param("g").unwrap_or("");
                let v = param("v").unwrap_or("");
                match (as_, g, endpoint) {
                    (
                        "Table",
                        "meta.k8s.io",
                        Endpoint::Object | Endpoint::Collection | Endpoint::Watch,
                    ) => {
                        if let Some(v) = meta_version(v) {
                            return Ok(Output::Table(v));
                        }
                    }
                    (
                        "PartialObjectMetadata",
                        "meta.k8s.io",
                        Endpoint::Object | Endpoint::Watch,
                    )
                    | ("PartialObjectMetadataList", "meta.k8s.io", Endpoint::Collection) => {
                        if let Some(v) = meta_version(v) {
                            return Ok(Output::PartialMetadata(v));
                        }
                    }
                    ("APIGroupDiscoveryList", "apidiscovery.k8s.io", Endpoint::Discovery) => {
                        match v {
                            "v2" => return Ok(Output::Aggregated("v2")),
                            "v2beta1" => return Ok(Output::Aggregated("v2beta1")),
                            _ => {}
                        }
                    }
                    // Anything else (including a list/single mismatch) falls
                    // through to the next entry.
                    _ => {}
                }
            }
            "application/yaml" if param("as").is_none() && endpoint != Endpoint::Discovery => {
                return Ok(Output::Yaml);
            }
            _ => {}
        }
    }
    Err(ApiError::new(
        Reason::NotAcceptable,
        "only the following media types are accepted: application/json, application/yaml",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(accept: &str, e: Endpoint) -> Result<Output, ApiError> {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_str(accept).unwrap());
        negotiate(&h, e)
    }

    #[test]
    fn picks_in_order() {
        let kubectl_get = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(
            with(kubectl_get, Endpoint::Collection).unwrap(),
            Output::Table("v1")
        );
        let disc = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(
            with(disc, Endpoint::Discovery).unwrap(),
            Output::Aggregated("v2")
        );
        let pom = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
        assert_eq!(
            with(pom, Endpoint::Collection).unwrap(),
            Output::PartialMetadata("v1")
        );
        assert_eq!(with(pom, Endpoint::Object).unwrap(), Output::Json);
        // A metadata-only watch (kube-rs, client-go) names the item kind.
        let pom_watch = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
        assert_eq!(
            with(pom_watch, Endpoint::Watch).unwrap(),
            Output::PartialMetadata("v1")
        );
        assert_eq!(
            with(
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
                Endpoint::Object
            )
            .unwrap_err()
            .0
            .code(),
            406
        );
        assert_eq!(
            with("application/vnd.kubernetes.protobuf, */*", Endpoint::Object).unwrap(),
            Output::Json
        );
    }
}
