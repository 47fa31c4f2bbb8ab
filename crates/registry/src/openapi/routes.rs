//! The served REST paths of one group-version as a neutral model, rendered
//! into both OpenAPI 3.0 (`v3.rs`) and Swagger 2.0 (`v2.rs`), so the two
//! documents cannot disagree about what is served.

use super::Gvk;
use crate::discovery::Group;
use crate::resource::ResourceDescriptor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Method {
    Get,
    Put,
    Post,
    Delete,
    Patch,
}

impl Method {
    pub fn key(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Put => "put",
            Method::Post => "post",
            Method::Delete => "delete",
            Method::Patch => "patch",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum In {
    Path,
    Query,
}

#[derive(Clone, Debug)]
pub(super) struct Param {
    pub name: &'static str,
    pub location: In,
    pub description: String,
    /// `string`, `integer` or `boolean`.
    pub ty: &'static str,
}

impl Param {
    fn query(name: &'static str) -> Param {
        let (ty, description) = query_param(name);
        Param {
            name,
            location: In::Query,
            description: description.to_owned(),
            ty,
        }
    }

    fn path(name: &'static str, description: String) -> Param {
        Param {
            name,
            location: In::Path,
            description,
            ty: "string",
        }
    }
}

/// What an operation's request body is.
#[derive(Clone, Debug)]
pub(super) enum Body {
    /// The object itself (POST, PUT), by schema name.
    Object(String),
    /// A patch; `strategic` when strategic merge patch is served (built-ins).
    Patch {
        strategic: bool,
    },
    DeleteOptions,
}

#[derive(Clone, Debug)]
pub(super) struct Operation {
    pub method: Method,
    pub action: &'static str,
    pub operation_id: String,
    pub description: String,
    pub gvk: Gvk,
    pub query: Vec<Param>,
    pub body: Option<Body>,
    /// Status codes and their description; all share `response_schema`.
    pub responses: &'static [(&'static str, &'static str)],
    pub response_schema: String,
    /// Streams watch events (adds the `;stream=watch` media types).
    pub watch: bool,
    /// Built-ins also speak Kubernetes protobuf.
    pub protobuf: bool,
    pub tag: String,
}

#[derive(Clone, Debug)]
pub(super) struct Route {
    pub path: String,
    /// Path parameters and `pretty`, shared by the route's operations.
    pub params: Vec<Param>,
    pub operations: Vec<Operation>,
}

pub(super) const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";

pub(super) fn status_schema() -> String {
    format!("{META}.Status")
}

/// What the model needs to know of a resource's schemas.
pub(super) struct Schemas {
    pub object: String,
    pub list: String,
    /// Strategic merge patch is served (built-ins).
    pub strategic: bool,
    pub protobuf: bool,
}

/// Resolves kinds to schema names (the caller knows built-ins and CRDs).
pub(super) trait SchemaNames {
    fn resource(&self, d: &ResourceDescriptor) -> Schemas;
    /// The schema of a subresource's foreign kind (`autoscaling/v1 Scale`).
    fn kind(&self, gvk: &Gvk) -> Option<String>;
}

const OK: &[(&str, &str)] = &[("200", "OK")];
const CREATED: &[(&str, &str)] = &[("200", "OK"), ("201", "Created"), ("202", "Accepted")];
const REPLACED: &[(&str, &str)] = &[("200", "OK"), ("201", "Created")];
const DELETED: &[(&str, &str)] = &[("200", "OK"), ("202", "Accepted")];

/// `CoreV1`, `AppsV1`, `RbacAuthorizationV1`: upstream's operationId infix.
fn gv_camel(group: &str, version: &str) -> String {
    let g = group.strip_suffix(".k8s.io").unwrap_or(group);
    let mut out = String::new();
    if g.is_empty() {
        out.push_str("Core");
    }
    for part in g.split('.').filter(|p| !p.is_empty()) {
        out.push_str(&capitalize(part));
    }
    out.push_str(&capitalize(version));
    out
}

/// `core_v1`, `rbacAuthorization_v1`: upstream's tags.
fn tag(group: &str, version: &str) -> String {
    let camel = gv_camel(group, "");
    let mut chars = camel.chars();
    let lower = match chars.next() {
        Some(c) => c.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    };
    format!("{lower}_{version}")
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

fn query(names: &[&'static str]) -> Vec<Param> {
    names.iter().map(|n| Param::query(n)).collect()
}

const LIST_PARAMS: &[&str] = &[
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
];
const WRITE_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];
const PATCH_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "force"];
const DELETE_PARAMS: &[&str] = &[
    "dryRun",
    "gracePeriodSeconds",
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "orphanDependents",
    "propagationPolicy",
];
const DELETECOLLECTION_PARAMS: &[&str] = &[
    "continue",
    "dryRun",
    "fieldSelector",
    "gracePeriodSeconds",
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "labelSelector",
    "limit",
    "orphanDependents",
    "propagationPolicy",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
];

/// Every route of one group-version, sorted by path.
pub(super) fn group_version_routes(
    group: &Group,
    version: &str,
    resources: &[std::sync::Arc<ResourceDescriptor>],
    names: &dyn SchemaNames,
) -> Vec<Route> {
    let base = if group.name.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{}/{version}", group.name)
    };
    let gv = gv_camel(&group.name, version);
    let tag = tag(&group.name, version);
    let mut routes = Vec::new();
    for d in resources {
        resource_routes(&mut routes, &base, &gv, &tag, d, names);
    }
    routes.sort_by(|a, b| a.path.cmp(&b.path));
    routes
}

fn resource_routes(
    routes: &mut Vec<Route>,
    base: &str,
    gv: &str,
    tag: &str,
    d: &ResourceDescriptor,
    names: &dyn SchemaNames,
) {
    let kind = d.gvk.kind.as_str();
    let plural = d.plural();
    let gvk = Gvk::new(&d.gvk.group, &d.gvk.version, kind);
    let schemas = names.resource(d);
    let ns = if d.namespaced() { "Namespaced" } else { "" };
    let pretty = Param::query("pretty");
    let ns_param = || {
        Param::path(
            "namespace",
            "object name and auth scope, such as for teams and projects".into(),
        )
    };
    let name_param = |k: &str| Param::path("name", format!("name of the {k}"));
    let (collection, collection_params) = if d.namespaced() {
        (
            format!("{base}/namespaces/{{namespace}}/{plural}"),
            vec![ns_param(), pretty.clone()],
        )
    } else {
        (format!("{base}/{plural}"), vec![pretty.clone()])
    };
    let item = format!("{collection}/{{name}}");
    let mut item_params = vec![name_param(kind)];
    item_params.extend(collection_params.iter().cloned());
    let op = |method, action, id: String, description: String| Operation {
        method,
        action,
        operation_id: id,
        description,
        gvk: gvk.clone(),
        query: Vec::new(),
        body: None,
        responses: OK,
        response_schema: schemas.object.clone(),
        watch: false,
        protobuf: schemas.protobuf,
        tag: tag.to_owned(),
    };

    // The collection.
    let mut ops = Vec::new();
    if d.serves("list") {
        ops.push(Operation {
            query: query(LIST_PARAMS),
            response_schema: schemas.list.clone(),
            watch: d.serves("watch"),
            ..op(
                Method::Get,
                "list",
                format!("list{gv}{ns}{kind}"),
                format!("list or watch objects of kind {kind}"),
            )
        });
    }
    if d.serves("create") {
        ops.push(Operation {
            query: query(WRITE_PARAMS),
            body: Some(Body::Object(schemas.object.clone())),
            responses: CREATED,
            ..op(
                Method::Post,
                "post",
                format!("create{gv}{ns}{kind}"),
                format!("create a {kind}"),
            )
        });
    }
    if d.serves("deletecollection") {
        ops.push(Operation {
            query: query(DELETECOLLECTION_PARAMS),
            body: Some(Body::DeleteOptions),
            response_schema: status_schema(),
            ..op(
                Method::Delete,
                "deletecollection",
                format!("delete{gv}Collection{ns}{kind}"),
                format!("delete collection of {kind}"),
            )
        });
    }
    push(routes, &collection, &collection_params, ops);

    // One object.
    let mut ops = Vec::new();
    if d.serves("get") {
        ops.push(op(
            Method::Get,
            "get",
            format!("read{gv}{ns}{kind}"),
            format!("read the specified {kind}"),
        ));
    }
    if d.serves("update") {
        ops.push(Operation {
            query: query(WRITE_PARAMS),
            body: Some(Body::Object(schemas.object.clone())),
            responses: REPLACED,
            ..op(
                Method::Put,
                "put",
                format!("replace{gv}{ns}{kind}"),
                format!("replace the specified {kind}"),
            )
        });
    }
    if d.serves("patch") {
        ops.push(Operation {
            query: query(PATCH_PARAMS),
            body: Some(Body::Patch {
                strategic: schemas.strategic,
            }),
            responses: REPLACED,
            ..op(
                Method::Patch,
                "patch",
                format!("patch{gv}{ns}{kind}"),
                format!("partially update the specified {kind}"),
            )
        });
    }
    if d.serves("delete") {
        ops.push(Operation {
            query: query(DELETE_PARAMS),
            body: Some(Body::DeleteOptions),
            responses: DELETED,
            response_schema: status_schema(),
            ..op(
                Method::Delete,
                "delete",
                format!("delete{gv}{ns}{kind}"),
                format!("delete a {kind}"),
            )
        });
    }
    push(routes, &item, &item_params, ops);

    // Across namespaces, and the deprecated /watch/ paths upstream still lists.
    if d.namespaced() && d.serves("list") {
        let ops = vec![Operation {
            query: query(LIST_PARAMS),
            response_schema: schemas.list.clone(),
            watch: d.serves("watch"),
            ..op(
                Method::Get,
                "list",
                format!("list{gv}{kind}ForAllNamespaces"),
                format!("list or watch objects of kind {kind}"),
            )
        }];
        push(
            routes,
            &format!("{base}/{plural}"),
            std::slice::from_ref(&pretty),
            ops,
        );
    }
    if d.serves("watch") {
        let watch_event = format!("{}.WatchEvent", META);
        let watch_op = |action, id: String, description: String| Operation {
            query: query(LIST_PARAMS),
            response_schema: watch_event.clone(),
            watch: true,
            ..op(Method::Get, action, id, description)
        };
        let list_desc = format!(
            "watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."
        );
        let one_desc = format!(
            "watch changes to an object of kind {kind}. deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter."
        );
        let (watch_collection, watch_params) = if d.namespaced() {
            let all = vec![watch_op(
                "watchlist",
                format!("watch{gv}{kind}ListForAllNamespaces"),
                list_desc.clone(),
            )];
            push(
                routes,
                &format!("{base}/watch/{plural}"),
                std::slice::from_ref(&pretty),
                all,
            );
            (
                format!("{base}/watch/namespaces/{{namespace}}/{plural}"),
                vec![ns_param(), pretty.clone()],
            )
        } else {
            (format!("{base}/watch/{plural}"), vec![pretty.clone()])
        };
        push(
            routes,
            &watch_collection,
            &watch_params,
            vec![watch_op(
                "watchlist",
                format!("watch{gv}{ns}{kind}List"),
                list_desc,
            )],
        );
        let mut params = vec![name_param(kind)];
        params.extend(watch_params);
        push(
            routes,
            &format!("{watch_collection}/{{name}}"),
            &params,
            vec![watch_op("watch", format!("watch{gv}{ns}{kind}"), one_desc)],
        );
    }

    // Subresources: status and the like speak the parent's kind, scale
    // speaks autoscaling/v1 Scale (upstream's GVK on those operations).
    for s in &d.subresources {
        let sub = capitalize(s.name);
        let sgvk = Gvk::new(
            &s.response_kind.group,
            &s.response_kind.version,
            &s.response_kind.kind,
        );
        let schema = if sgvk == gvk {
            schemas.object.clone()
        } else {
            match names.kind(&sgvk) {
                Some(n) => n,
                None => continue,
            }
        };
        let what = format!("{} of the specified {kind}", s.name);
        let sop = |method, action, id: String, description: String| Operation {
            gvk: sgvk.clone(),
            response_schema: schema.clone(),
            ..op(method, action, id, description)
        };
        let mut ops = Vec::new();
        for verb in s.verbs {
            match *verb {
                "get" => ops.push(sop(
                    Method::Get,
                    "get",
                    format!("read{gv}{ns}{kind}{sub}"),
                    format!("read {what}"),
                )),
                "update" => ops.push(Operation {
                    query: query(WRITE_PARAMS),
                    body: Some(Body::Object(schema.clone())),
                    responses: REPLACED,
                    ..sop(
                        Method::Put,
                        "put",
                        format!("replace{gv}{ns}{kind}{sub}"),
                        format!("replace {what}"),
                    )
                }),
                "patch" => ops.push(Operation {
                    query: query(PATCH_PARAMS),
                    body: Some(Body::Patch {
                        strategic: schemas.strategic,
                    }),
                    responses: REPLACED,
                    ..sop(
                        Method::Patch,
                        "patch",
                        format!("patch{gv}{ns}{kind}{sub}"),
                        format!("partially update {what}"),
                    )
                }),
                "create" => ops.push(Operation {
                    query: query(WRITE_PARAMS),
                    body: Some(Body::Object(schema.clone())),
                    responses: CREATED,
                    ..sop(
                        Method::Post,
                        "post",
                        format!("create{gv}{ns}{kind}{sub}"),
                        format!("create {what}"),
                    )
                }),
                _ => {}
            }
        }
        let mut params = vec![name_param(kind)];
        params.extend(collection_params.iter().cloned());
        push(routes, &format!("{item}/{}", s.name), &params, ops);
    }
}

fn push(routes: &mut Vec<Route>, path: &str, params: &[Param], mut operations: Vec<Operation>) {
    if operations.is_empty() {
        return;
    }
    operations.sort_by_key(|o| o.method);
    routes.push(Route {
        path: path.to_owned(),
        params: params.to_vec(),
        operations,
    });
}

/// Upstream's type and description of each query parameter.
fn query_param(name: &str) -> (&'static str, &'static str) {
    match name {
        "pretty" => (
            "string",
            "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget).",
        ),
        "allowWatchBookmarks" => (
            "boolean",
            "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion. Clients should not assume bookmarks are returned at any specific interval, nor may they assume the server will send any BOOKMARK event during a session. If this is not a watch, this field is ignored.",
        ),
        "continue" => (
            "string",
            "The continue option should be set when retrieving more results from the server. Since this value is server defined, clients may only use the continue value from a previous query result with identical query parameters (except for the value of continue) and the server may reject a continue value it does not recognize. If the specified continue value is no longer valid whether due to expiration (generally five to fifteen minutes) or a configuration change on the server, the server will respond with a 410 ResourceExpired error together with a continue token. If the client needs a consistent list, it must restart their list without the continue field. Otherwise, the client may send another list request with the token received with the 410 error, the server will respond with a list starting from the next key, but from the latest snapshot, which is inconsistent from the previous list results - objects that are created, modified, or deleted after the first list request will be included in the response, as long as their keys are after the \"next key\".\n\nThis field is not supported when watch is true. Clients may start a watch from the last resourceVersion value returned by the server and not miss any modifications.",
        ),
        "fieldSelector" => (
            "string",
            "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
        ),
        "labelSelector" => (
            "string",
            "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
        ),
        "limit" => (
            "integer",
            "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve the next set of results. Setting a limit may return fewer than the requested amount of items (up to zero items) in the event all requested objects are filtered out and clients should only use the presence of the continue field to determine whether more results are available. Servers may choose not to support the limit argument and will return all of the available results. If limit is specified and the continue field is empty, clients may assume that no more results are available. This field is not supported if watch is true.\n\nThe server guarantees that the objects returned when using continue will be identical to issuing a single list call without a limit - that is, no objects created, modified, or deleted after the first request is issued will be included in any subsequent continued requests. This is sometimes referred to as a consistent snapshot, and ensures that a client that is using limit to receive smaller chunks of a very large result can ensure they see all possible objects. If objects are updated during a chunked list the version of the object that was present at the time the first list result was calculated is returned.",
        ),
        "resourceVersion" => (
            "string",
            "resourceVersion sets a constraint on what resource versions a request may be served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset",
        ),
        "resourceVersionMatch" => (
            "string",
            "resourceVersionMatch determines how resourceVersion is applied to list calls. It is highly recommended that resourceVersionMatch be set for list calls where resourceVersion is set See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset",
        ),
        "sendInitialEvents" => (
            "boolean",
            "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with synthetic events to produce the current state of objects in the collection. Once all such events have been sent, a synthetic \"Bookmark\" event  will be sent. The bookmark will report the ResourceVersion (RV) corresponding to the set of objects, and be marked with `\"k8s.io/initial-events-end\": \"true\"` annotation. Afterwards, the watch stream will proceed as usual, sending watch events corresponding to changes (subsequent to the RV) to objects watched.\n\nWhen `sendInitialEvents` option is set, we require `resourceVersionMatch` option to also be set. The semantic of the watch request is as following: - `resourceVersionMatch` = NotOlderThan\n  is interpreted as \"data at least as new as the provided `resourceVersion`\"\n  and the bookmark event is send when the state is synced\n  to a `resourceVersion` at least as fresh as the one provided by the ListOptions.\n  If `resourceVersion` is unset, this is interpreted as \"consistent read\" and the\n  bookmark event is send when the state is synced at least to the moment\n  when request started being processed.\n- `resourceVersionMatch` set to any other value or unset\n  Invalid error is returned.\n\nDefaults to true if `resourceVersion=\"\"` or `resourceVersion=\"0\"` (for backward compatibility reasons) and to false otherwise.",
        ),
        "timeoutSeconds" => (
            "integer",
            "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity.",
        ),
        "watch" => (
            "boolean",
            "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion.",
        ),
        "dryRun" => (
            "string",
            "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed",
        ),
        "fieldManager" => (
            "string",
            "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.",
        ),
        "fieldValidation" => (
            "string",
            "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. This is the default behavior prior to v1.23. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.",
        ),
        "force" => (
            "boolean",
            "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.",
        ),
        "gracePeriodSeconds" => (
            "integer",
            "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately. If this value is nil, the default grace period for the specified type will be used. Defaults to a per object value if not specified. zero means delete immediately.",
        ),
        "ignoreStoreReadErrorWithClusterBreakingPotential" => (
            "boolean",
            "if set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow fails with a corrupt object error. A resource is considered corrupt if it can not be retrieved from the underlying storage successfully because of a) its data can not be transformed e.g. decryption failure, or b) it fails to decode into an object. NOTE: unsafe deletion ignores finalizer constraints, skips precondition checks, and removes the object from the storage. WARNING: This may potentially break the cluster if the workload associated with the resource being unsafe-deleted relies on normal deletion flow. Use only if you REALLY know what you are doing. The default value is false, and the user must opt in to enable it",
        ),
        "orphanDependents" => (
            "boolean",
            "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent objects be orphaned. If true/false, the \"orphan\" finalizer will be added to/removed from the object's finalizers list. Either this field or PropagationPolicy may be set, but not both.",
        ),
        "propagationPolicy" => (
            "string",
            "Whether and how garbage collection will be performed. Either this field or OrphanDependents may be set, but not both. The default policy is decided by the existing finalizer set in the metadata.finalizers and the resource-specific default policy. Acceptable values are: 'Orphan' - orphan the dependents; 'Background' - allow the garbage collector to delete the dependents in the background; 'Foreground' - a cascading policy that deletes all dependents in the foreground.",
        ),
        _ => ("string", ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_names() {
        assert_eq!(gv_camel("", "v1"), "CoreV1");
        assert_eq!(
            gv_camel("rbac.authorization.k8s.io", "v1"),
            "RbacAuthorizationV1"
        );
        assert_eq!(
            gv_camel("flowcontrol.apiserver.k8s.io", "v1"),
            "FlowcontrolApiserverV1"
        );
        assert_eq!(tag("", "v1"), "core_v1");
        assert_eq!(
            tag("rbac.authorization.k8s.io", "v1"),
            "rbacAuthorization_v1"
        );
        assert_eq!(tag("apps", "v1"), "apps_v1");
    }
}
