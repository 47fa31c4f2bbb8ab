//! Create a workspace, then use it like a cluster with kube-rs.
//!
//! Run a server (`scripts/run --listen 127.0.0.1:6443`, or
//! `cargo run --bin wsgate -- serve`), then:
//!
//! ```text
//! cargo run --example workspace_configmaps -- http://127.0.0.1:6443 acme
//! ```
//!
//! Afterwards `kubectl --server http://127.0.0.1:6443/clusters/acme get cm`
//! shows the same ConfigMap.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Config};
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let server = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:6443".into());
    let workspace = args.next().unwrap_or_else(|| "acme".into());

    // Workspaces are objects in their parent workspace (here: root, at `/`).
    let root = Client::try_from(Config::new(server.parse()?))?;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("tenancy.wsgate.io", "v1alpha1", "Workspace"),
        "workspaces",
    );
    let workspaces: Api<DynamicObject> = Api::all_with(root, &ar);
    let ws: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tenancy.wsgate.io/v1alpha1",
        "kind": "Workspace",
        "metadata": {"name": workspace},
    }))?;
    match workspaces.create(&PostParams::default(), &ws).await {
        Ok(w) => println!(
            "created workspace {workspace} (cluster {})",
            w.data["spec"]["cluster"]
        ),
        Err(kube::Error::Api(s)) if s.code == 409 => println!("workspace {workspace} exists"),
        Err(e) => return Err(e.into()),
    }

    // The workspace is an ordinary Kubernetes endpoint under /clusters/<path>.
    let client = Client::try_from(Config::new(
        format!("{server}/clusters/{workspace}").parse()?,
    ))?;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"generateName": "hello-"},
        "data": {"greeting": "hello from kube-rs"},
    }))?;
    let made = cms.create(&PostParams::default(), &cm).await?;
    println!(
        "created configmap {}",
        made.metadata.name.unwrap_or_default()
    );
    for c in cms.list(&ListParams::default()).await? {
        println!(
            "  {} rv={}",
            c.metadata.name.unwrap_or_default(),
            c.metadata.resource_version.unwrap_or_default()
        );
    }
    Ok(())
}
