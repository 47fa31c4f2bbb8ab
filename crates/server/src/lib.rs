//! The wsgate server: HTTP routing, content negotiation, handlers.
//!
//! One fallback handler receives every request: [`RequestInfo`] parses the
//! path once, the workspace is resolved through the registry, and the
//! target's handler answers. Every error is an [`error::ApiError`], the only
//! writer of `Status` bodies.

pub mod audit;
pub mod auth;
pub mod bench;
pub mod config;
pub mod fairness;
pub mod metrics;
pub mod protobuf;
pub mod request_id;
pub mod tls;

mod body;
mod discovery;
pub mod error;
mod negotiate;
mod openapi;
pub mod request_info;
mod resources;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use bytes::Bytes;
use registry::cluster::ClusterId;
use registry::{Registry, RegistryConfig};
use storage::StorageConfig;

use crate::error::ApiError;
use crate::request_info::{RequestInfo, Target, WorkspaceRef, form_pairs};

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    registry: Arc<Registry>,
    openapi: Arc<openapi::OpenApi>,
}

impl AppState {
    pub fn new(registry: Arc<Registry>) -> Self {
        let api = registry.api_set(&ClusterId::root()).clone();
        AppState {
            openapi: Arc::new(openapi::OpenApi::new(&api)),
            registry,
        }
    }
}

/// The router serving the whole API.
pub fn app(state: AppState) -> Router {
    Router::new().fallback(handle).with_state(state)
}

async fn handle(
    State(app): State<AppState>,
    info: RequestInfo,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let cluster = || match &info.workspace {
        WorkspaceRef::Path(p) => app.registry.resolve(p).map_err(ApiError::from),
        WorkspaceRef::All => Ok(ClusterId::root()),
    };
    let read_only = |m: &Method| *m == Method::GET || *m == Method::HEAD;
    match &info.target {
        Target::Resource(_) => {}
        _ if !read_only(&method) => return Err(ApiError::method_not_allowed()),
        _ => {}
    }
    match info.target {
        Target::Version => Ok(discovery::version()),
        Target::Health(name) => {
            let ok = name != "readyz" || app.registry.ready().await;
            Ok(if ok {
                discovery::bytes_response(
                    StatusCode::OK,
                    "text/plain; charset=utf-8",
                    Bytes::from_static(b"ok"),
                )
            } else {
                discovery::bytes_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    Bytes::from_static(b"storage is not reachable"),
                )
            })
        }
        Target::Root => {
            let c = cluster()?;
            Ok(discovery::root_paths(app.registry.api_set(&c)))
        }
        Target::CoreVersions => {
            let c = cluster()?;
            discovery::root_list(app.registry.api_set(&c), &headers, true)
        }
        Target::GroupList => {
            let c = cluster()?;
            discovery::root_list(app.registry.api_set(&c), &headers, false)
        }
        Target::Group(g) => {
            let c = cluster()?;
            discovery::group(app.registry.api_set(&c), &headers, &g)
        }
        Target::ResourceList { group, version } => {
            let c = cluster()?;
            discovery::resource_list(app.registry.api_set(&c), &headers, &group, &version)
        }
        Target::OpenApiV3Root => {
            let c = cluster()?;
            app.openapi.v3_root(app.registry.api_set(&c), &headers)
        }
        Target::OpenApiV3Document(path) => {
            let c = cluster()?;
            app.openapi
                .v3_document(app.registry.api_set(&c), &path, uri.query(), &headers)
        }
        Target::OpenApiV2 => {
            let c = cluster()?;
            app.openapi.v2(app.registry.api_set(&c), &headers)
        }
        Target::Resource(req) => {
            let query = resources::Query::new(uri.query().map(form_pairs).unwrap_or_default());
            resources::handle(&app, info.workspace, req, &headers, query, body).await
        }
    }
}

/// How to run the server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub storage: StorageConfig,
    pub storage_root: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("opening storage: {0}")]
    Storage(#[from] storage::Error),
    #[error("starting the registry: {0}")]
    Registry(#[from] registry::RegistryError),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
}

/// Opens storage, builds the registry, and serves until `shutdown` resolves.
pub async fn serve(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(ServeError::Serve)?;
    let store = storage::open(&config.storage).await?;
    let advertise = if local.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), local.port())
    } else {
        local
    };
    let registry = Registry::open(
        store,
        RegistryConfig {
            key_root: config.storage_root.clone(),
            advertise_address: advertise.to_string(),
        },
    )
    .await?;
    tracing::info!(address = %local, "wsgate is serving (plain HTTP)");
    axum::serve(listener, app(AppState::new(registry)))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServeError::Serve)
}
