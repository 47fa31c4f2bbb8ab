//! A CRD-based controller with kube-rs, run against one wsgate workspace as
//! it would run against a cluster.
//!
//! It installs its CRD (`greetings.demo.wsgate.io`, server-side apply),
//! waits until it is Established, then reconciles every `Greeting` into a
//! ConfigMap `<name>-greeting` owned by the Greeting (so the garbage
//! collector removes it too), records progress through the status
//! subresource, and holds a finalizer so that deleting a Greeting first
//! runs its cleanup.
//!
//! ```text
//! wsgate workspace create acme
//! wsgate kubeconfig --workspace acme > acme.kubeconfig
//! KUBECONFIG=acme.kubeconfig cargo run --example crd_controller
//! kubectl --kubeconfig acme.kubeconfig apply -f - <<EOF
//! apiVersion: demo.wsgate.io/v1
//! kind: Greeting
//! metadata: {name: hello, namespace: default}
//! spec: {recipient: world, message: nice to see you}
//! EOF
//! kubectl --kubeconfig acme.kubeconfig get greetings,cm
//! ```
//!
//! `tests/controller.rs` runs this controller (`run`) against a real server.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::watcher;
use kube::{Client, CustomResource, CustomResourceExt, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The field manager of everything this controller writes.
const MANAGER: &str = "greeting-controller";
/// Held on each Greeting until its ConfigMap is cleaned up.
const FINALIZER: &str = "greetings.demo.wsgate.io/cleanup";

/// A greeting to publish as a ConfigMap.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "demo.wsgate.io",
    version = "v1",
    kind = "Greeting",
    namespaced,
    status = "GreetingStatus",
    shortname = "greet",
    printcolumn = r#"{"name":"Recipient","type":"string","jsonPath":".spec.recipient"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#
)]
pub struct GreetingSpec {
    /// Who is greeted.
    pub recipient: String,
    /// What they are told.
    #[serde(default)]
    pub message: Option<String>,
}

/// What the controller last did.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GreetingStatus {
    pub phase: String,
    pub config_map: Option<String>,
    pub observed_generation: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("object has no {0}")]
    Missing(&'static str),
}

struct Context {
    client: Client,
}

fn config_map_name(g: &Greeting) -> String {
    format!("{}-greeting", g.name_any())
}

/// The ConfigMap a Greeting should have, owned by it.
fn desired_config_map(g: &Greeting) -> Result<ConfigMap, Error> {
    let owner = g.controller_owner_ref(&()).ok_or(Error::Missing("uid"))?;
    let text = match &g.spec.message {
        Some(m) => format!("Hello, {}! {m}", g.spec.recipient),
        None => format!("Hello, {}!", g.spec.recipient),
    };
    Ok(ConfigMap {
        metadata: ObjectMeta {
            name: Some(config_map_name(g)),
            namespace: g.namespace(),
            owner_references: Some(vec![owner]),
            labels: Some([("app.kubernetes.io/managed-by".into(), MANAGER.into())].into()),
            ..Default::default()
        },
        data: Some([("greeting".into(), text)].into()),
        ..Default::default()
    })
}

async fn apply(g: Arc<Greeting>, ctx: &Context) -> Result<Action, Error> {
    let ns = g.namespace().ok_or(Error::Missing("namespace"))?;
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let cm = desired_config_map(&g)?;
    // Server-side apply: idempotent, and it takes the fields back if
    // someone else edited them.
    cms.patch(
        &config_map_name(&g),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&cm),
    )
    .await?;
    let greetings: Api<Greeting> = Api::namespaced(ctx.client.clone(), &ns);
    // Server-side apply on the status subresource: this manager owns the
    // status fields it sets, and nothing else.
    let status = json!({
        "apiVersion": Greeting::api_version(&()),
        "kind": Greeting::kind(&()),
        "status": GreetingStatus {
            phase: "Ready".into(),
            config_map: Some(config_map_name(&g)),
            observed_generation: g.meta().generation,
        },
    });
    greetings
        .patch_status(
            &g.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&status),
        )
        .await?;
    tracing::info!(greeting = %g.name_any(), namespace = %ns, "reconciled");
    Ok(Action::requeue(Duration::from_secs(300)))
}

async fn cleanup(g: Arc<Greeting>, ctx: &Context) -> Result<Action, Error> {
    let ns = g.namespace().ok_or(Error::Missing("namespace"))?;
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    // The garbage collector would remove it after the Greeting is gone;
    // the finalizer makes it go first, before the Greeting disappears.
    match cms
        .delete(&config_map_name(&g), &DeleteParams::default())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    tracing::info!(greeting = %g.name_any(), namespace = %ns, "cleaned up");
    Ok(Action::await_change())
}

async fn reconcile(g: Arc<Greeting>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = g.namespace().ok_or(Error::Missing("namespace"))?;
    let greetings: Api<Greeting> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&greetings, FINALIZER, g, |event| async {
        match event {
            Event::Apply(g) => apply(g, &ctx).await,
            Event::Cleanup(g) => cleanup(g, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

fn error_policy(g: Arc<Greeting>, err: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(greeting = %g.name_any(), error = %err, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(1))
}

/// Applies the CRD and waits until the server serves it.
async fn install_crd(client: &Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = Greeting::crd();
    let name = crd.name_any();
    crds.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await?;
    let established = await_condition(crds, &name, conditions::is_crd_established());
    tokio::time::timeout(Duration::from_secs(30), established).await??;
    tracing::info!(crd = %name, "CRD established");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    // KUBECONFIG (or ~/.kube/config) names the workspace: its server URL
    // ends in /clusters/<workspace>.
    let client = Client::try_default().await?;
    run(client, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}

/// Installs the CRD, then reconciles until `shutdown` completes.
/// (`tests/controller.rs` calls this with a client for a test server.)
pub async fn run(
    client: Client,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    install_crd(&client).await?;
    let greetings: Api<Greeting> = Api::all(client.clone());
    let config_maps: Api<ConfigMap> = Api::all(client.clone());
    let ctx = Arc::new(Context { client });
    tracing::info!("controller running");
    Controller::new(greetings, watcher::Config::default())
        // A ConfigMap change or deletion re-runs its owner's reconcile.
        .owns(config_maps, watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile error");
            }
        })
        .await;
    Ok(())
}
