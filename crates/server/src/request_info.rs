//! `RequestInfo`: every request's path and method parsed once, strictly.
//! Malformed or ambiguous paths (empty segments, `..`, an encoded `/`,
//! invalid names) are rejected with a Status, never guessed at.

use axum::extract::FromRequestParts;
use axum::http::Method;
use axum::http::request::Parts;
use registry::cluster::WorkspacePath;
use registry::validation::{is_dns1123_label, is_dns1123_subdomain, path_segment_problem};

use crate::error::ApiError;

/// Which workspace a request addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkspaceRef {
    Path(WorkspacePath),
    /// `/clusters/*`: every workspace (list and watch only).
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

/// A request for a resource (or one of its subresources).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceRequest {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    pub verb: Verb,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `/`: the list of paths.
    Root,
    Version,
    Health(&'static str),
    /// `/api`
    CoreVersions,
    /// `/apis`
    GroupList,
    /// `/apis/<g>`
    Group(String),
    /// `/api/v1`, `/apis/<g>/<v>`
    ResourceList {
        group: String,
        version: String,
    },
    OpenApiV3Root,
    OpenApiV3Document(String),
    OpenApiV2,
    Resource(ResourceRequest),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestInfo {
    pub workspace: WorkspaceRef,
    pub target: Target,
}

fn percent_decode(seg: &str) -> Result<String, ApiError> {
    if !seg.contains('%') {
        return Ok(seg.to_owned());
    }
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = seg
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "invalid percent-encoding in path segment {seg:?}"
                    ))
                })?;
            if hex == b'/' {
                return Err(ApiError::bad_request(
                    "an encoded '/' is not allowed in a path segment",
                ));
            }
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::bad_request("path is not valid UTF-8"))
}

/// Splits a raw path into decoded segments; one trailing slash is allowed.
fn segments(path: &str) -> Result<Vec<String>, ApiError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(ApiError::bad_request("the request path must be absolute"));
    };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    rest.split('/')
        .map(|s| {
            if s.is_empty() {
                return Err(ApiError::bad_request("empty path segments are not allowed"));
            }
            let d = percent_decode(s)?;
            if d == "." || d == ".." {
                return Err(ApiError::bad_request(format!(
                    "path segment {d:?} is not allowed"
                )));
            }
            Ok(d)
        })
        .collect()
}

fn is_version(v: &str) -> bool {
    v.starts_with('v')
        && v.len() > 1
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

impl RequestInfo {
    pub fn parse(method: &Method, path: &str, watch_param: bool) -> Result<Self, ApiError> {
        let segs = segments(path)?;
        let (workspace, rest) = match segs.first().map(String::as_str) {
            Some("clusters") => {
                let ws = segs.get(1).ok_or_else(|| {
                    ApiError::bad_request("a workspace path is required after /clusters/")
                })?;
                let w = if ws == "*" {
                    WorkspaceRef::All
                } else {
                    WorkspaceRef::Path(
                        WorkspacePath::parse(ws)
                            .map_err(|e| ApiError::bad_request(e.to_string()))?,
                    )
                };
                (w, &segs[2..])
            }
            _ => (WorkspaceRef::Path(WorkspacePath::root()), &segs[..]),
        };
        let r: Vec<&str> = rest.iter().map(String::as_str).collect();
        let target = match r.as_slice() {
            [] => Target::Root,
            ["version"] => Target::Version,
            ["healthz", ..] => Target::Health("healthz"),
            ["livez", ..] => Target::Health("livez"),
            ["readyz", ..] => Target::Health("readyz"),
            ["api"] => Target::CoreVersions,
            ["api", v] if is_version(v) => Target::ResourceList {
                group: String::new(),
                version: (*v).to_owned(),
            },
            ["api", v, tail @ ..] if is_version(v) => {
                Target::Resource(resource_request(method, "", v, tail, watch_param)?)
            }
            ["apis"] => Target::GroupList,
            ["apis", g] if is_dns1123_subdomain(g) => Target::Group((*g).to_owned()),
            ["apis", g, v] if is_dns1123_subdomain(g) && is_version(v) => Target::ResourceList {
                group: (*g).to_owned(),
                version: (*v).to_owned(),
            },
            ["apis", g, v, tail @ ..] if is_dns1123_subdomain(g) && is_version(v) => {
                Target::Resource(resource_request(method, g, v, tail, watch_param)?)
            }
            ["openapi", "v2"] => Target::OpenApiV2,
            ["openapi", "v3"] => Target::OpenApiV3Root,
            ["openapi", "v3", doc @ ..] => Target::OpenApiV3Document(doc.join("/")),
            _ => return Err(ApiError::not_found()),
        };
        Ok(RequestInfo { workspace, target })
    }
}

fn check_namespace(ns: &str) -> Result<(), ApiError> {
    if is_dns1123_label(ns) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid namespace {ns:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
        )))
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    match path_segment_problem(name) {
        Some(p) => Err(ApiError::bad_request(format!(
            "invalid resource name {name:?}: {p}"
        ))),
        None => Ok(()),
    }
}

fn resource_request(
    method: &Method,
    group: &str,
    version: &str,
    tail: &[&str],
    watch_param: bool,
) -> Result<ResourceRequest, ApiError> {
    let (watch_path, tail) = match tail {
        ["watch", rest @ ..] => (true, rest),
        t => (false, t),
    };
    let (namespace, parts): (Option<String>, Vec<&str>) = match tail {
        ["namespaces", ns] => (None, vec!["namespaces", ns]),
        ["namespaces", ns, sub @ ("status" | "finalize")] => (None, vec!["namespaces", ns, sub]),
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => {
            check_namespace(ns)?;
            (Some((*ns).to_owned()), rest.to_vec())
        }
        t => (None, t.to_vec()),
    };
    let (resource, name, subresource) = match parts.as_slice() {
        [r] => (*r, None, None),
        [r, n] => (*r, Some(*n), None),
        [r, n, s] => (*r, Some(*n), Some(*s)),
        // Proxy subresources carry the proxied path after them.
        [r, n, "proxy", ..] => (*r, Some(*n), Some("proxy")),
        _ => return Err(ApiError::not_found()),
    };
    if resource == "namespaces" {
        if let Some(n) = name {
            check_namespace(n)?;
        }
    } else if let Some(n) = name {
        check_name(n)?;
    }
    let watch = watch_path || watch_param;
    let verb = match (method.clone(), name.is_some()) {
        (Method::GET, true) if watch => Verb::Watch,
        (Method::GET, true) => Verb::Get,
        (Method::GET, false) if watch => Verb::Watch,
        (Method::GET, false) => Verb::List,
        (Method::POST, false) => Verb::Create,
        (Method::POST, true) if subresource.is_some() => Verb::Create,
        (Method::PUT, true) => Verb::Update,
        (Method::PATCH, true) => Verb::Patch,
        (Method::DELETE, true) => Verb::Delete,
        (Method::DELETE, false) => Verb::DeleteCollection,
        _ => return Err(ApiError::method_not_allowed()),
    };
    Ok(ResourceRequest {
        group: group.to_owned(),
        version: version.to_owned(),
        namespace,
        resource: resource.to_owned(),
        name: name.map(str::to_owned),
        subresource: subresource.map(str::to_owned),
        verb,
    })
}

impl<S: Send + Sync> FromRequestParts<S> for RequestInfo {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let watch = parts
            .uri
            .query()
            .map(|q| {
                form_pairs(q)
                    .into_iter()
                    .any(|(k, v)| k == "watch" && parse_bool(&v) == Some(true))
            })
            .unwrap_or(false);
        RequestInfo::parse(&parts.method, parts.uri.path(), watch)
    }
}

/// `application/x-www-form-urlencoded` query pairs.
pub fn form_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode_form(k), decode_form(v))
        })
        .collect()
}

fn decode_form(s: &str) -> String {
    let s = s.replace('+', " ");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(m: Method, p: &str) -> Result<RequestInfo, ApiError> {
        RequestInfo::parse(&m, p, false)
    }

    #[test]
    fn paths() {
        let ri = parse(
            Method::GET,
            "/clusters/acme/api/v1/namespaces/default/configmaps/x",
        )
        .unwrap();
        assert_eq!(
            ri.workspace,
            WorkspaceRef::Path(WorkspacePath::parse("acme").unwrap())
        );
        let Target::Resource(r) = ri.target else {
            panic!()
        };
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.resource, "configmaps");
        assert_eq!(r.name.as_deref(), Some("x"));
        assert_eq!(r.verb, Verb::Get);

        let ri = parse(Method::GET, "/api/v1/namespaces/foo").unwrap();
        assert_eq!(ri.workspace, WorkspaceRef::Path(WorkspacePath::root()));
        let Target::Resource(r) = ri.target else {
            panic!()
        };
        assert_eq!(
            (r.resource.as_str(), r.name.as_deref(), r.namespace),
            ("namespaces", Some("foo"), None)
        );

        let ri = parse(Method::PUT, "/clusters/root/api/v1/namespaces/foo/finalize").unwrap();
        let Target::Resource(r) = ri.target else {
            panic!()
        };
        assert_eq!(r.subresource.as_deref(), Some("finalize"));

        let ri = parse(Method::GET, "/clusters/*/apis/apps/v1/deployments").unwrap();
        assert_eq!(ri.workspace, WorkspaceRef::All);

        let ri = parse(Method::GET, "/api/v1/watch/namespaces/a/pods").unwrap();
        let Target::Resource(r) = ri.target else {
            panic!()
        };
        assert_eq!(r.verb, Verb::Watch);

        assert_eq!(
            parse(Method::GET, "/version/").unwrap().target,
            Target::Version
        );
    }

    #[test]
    fn rejections() {
        for p in [
            "/api//v1",
            "/api/v1/namespaces/a%2Fb/pods",
            "/clusters/Acme/api",
            "/api/v1/namespaces/../pods",
            "/api/v1/namespaces/Foo/pods",
            "/clusters//api",
        ] {
            let e = parse(Method::GET, p).unwrap_err();
            assert_eq!(e.0.code(), 400, "{p}");
        }
        assert_eq!(parse(Method::GET, "/nope").unwrap_err().0.code(), 404);
        assert_eq!(
            parse(Method::PUT, "/api/v1/namespaces/a/pods")
                .unwrap_err()
                .0
                .code(),
            405
        );
    }
}
