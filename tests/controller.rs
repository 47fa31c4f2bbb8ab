//! The kube-rs controller example (`examples/crd_controller.rs`, its `run`
//! compiled into this test) against a real server, in one workspace over
//! HTTPS with the workspace's kubeconfig: it installs its CRD, reconciles a Greeting into
//! an owned ConfigMap, writes status, re-creates a deleted ConfigMap, and
//! runs its finalizer when the Greeting is deleted. A second workspace
//! never sees any of it.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Config};
use serde_json::json;
use wsgate_e2e::{Engine, Server, etcd_or_skip};

// The example's code, unchanged: its `main` is unused here.
#[allow(dead_code)]
#[path = "../examples/crd_controller.rs"]
mod crd_controller;

/// Stops the controller when the test ends, however it ends.
struct Controller(tokio::task::JoinHandle<anyhow::Result<()>>);

impl Drop for Controller {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn client(kubeconfig: &std::path::Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Polls `f` every 100 ms for up to 15 s until it returns `Some`.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_controller_reconciles_in_its_workspace() -> Result<()> {
    let s = Server::start_tls(Engine::Embedded)?;
    reconciles(&s).await.context("embedded")?;
    if let Some(etcd) = etcd_or_skip("crd_controller_reconciles_in_its_workspace") {
        let s = Server::start_tls(Engine::Etcd(etcd))?;
        reconciles(&s).await.context("etcd")?;
    }
    Ok(())
}

async fn reconciles(s: &Server) -> Result<()> {
    for ws in ["acme", "beta"] {
        let body = json!({"apiVersion": "tenancy.wsgate.io/v1alpha1", "kind": "Workspace", "metadata": {"name": ws}});
        let token = s.tls().context("tls")?.admin_token.clone();
        let r = s.https(
            "POST",
            "/apis/tenancy.wsgate.io/v1alpha1/workspaces",
            &[("Content-Type", "application/json")],
            Some(body.to_string().as_bytes()),
            Some(&token),
        )?;
        ensure!(r.status == 201, "workspace {ws}: {} {}", r.status, r.text());
    }
    let kubeconfig = s.kubeconfig("acme", None)?;
    let acme = client(&kubeconfig).await?;
    // The controller, with its own client; aborted when the test ends.
    let _controller = Controller(tokio::spawn(crd_controller::run(
        client(&kubeconfig).await?,
        std::future::pending(),
    )));
    let namespaces: Api<Namespace> = Api::all(acme.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "demo"}}))?,
        )
        .await?;

    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("demo.wsgate.io", "v1", "Greeting"),
        "greetings",
    );
    let greetings: Api<DynamicObject> = Api::namespaced_with(acme.clone(), "demo", &ar);
    let config_maps: Api<ConfigMap> = Api::namespaced(acme.clone(), "demo");

    // The controller installs its CRD; the API appears in acme.
    eventually("the Greeting API", || async {
        Ok(greetings.list(&Default::default()).await.ok())
    })
    .await?;
    let hello: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "demo.wsgate.io/v1",
        "kind": "Greeting",
        "metadata": {"name": "hello"},
        "spec": {"recipient": "world", "message": "nice to see you"},
    }))?;
    let created = greetings.create(&PostParams::default(), &hello).await?;
    let uid = created.metadata.uid.clone().context("uid")?;

    // An owned ConfigMap, status through the status subresource, and the
    // finalizer on the Greeting.
    let greeting_of = |cm: &ConfigMap| {
        cm.data
            .as_ref()
            .and_then(|d| d.get("greeting").cloned())
            .unwrap_or_default()
    };
    let cm = eventually("the ConfigMap", || async {
        Ok(config_maps.get_opt("hello-greeting").await?)
    })
    .await?;
    ensure!(
        greeting_of(&cm) == "Hello, world! nice to see you",
        "{cm:?}"
    );
    let owner = &cm.metadata.owner_references.as_ref().context("owner")?[0];
    ensure!(
        owner.uid == uid && owner.kind == "Greeting" && owner.controller == Some(true),
        "{owner:?}"
    );
    let g = eventually("status Ready", || async {
        let g = greetings.get("hello").await?;
        Ok((g.data["status"]["phase"] == "Ready").then_some(g))
    })
    .await?;
    ensure!(
        g.data["status"]["configMap"] == "hello-greeting",
        "{:?}",
        g.data
    );
    // Status was server-side applied through the subresource.
    let applied_status = g.metadata.managed_fields.iter().flatten().any(|m| {
        m.manager.as_deref() == Some("greeting-controller")
            && m.operation.as_deref() == Some("Apply")
            && m.subresource.as_deref() == Some("status")
    });
    ensure!(
        applied_status,
        "managedFields: {:?}",
        g.metadata.managed_fields
    );
    ensure!(
        g.metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|f| f == "greetings.demo.wsgate.io/cleanup")),
        "no finalizer: {:?}",
        g.metadata
    );

    // A spec change reaches the ConfigMap.
    greetings
        .patch(
            "hello",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"message": "again"}})),
        )
        .await?;
    eventually("the updated ConfigMap", || async {
        let cm = config_maps.get("hello-greeting").await?;
        Ok((greeting_of(&cm) == "Hello, world! again").then_some(()))
    })
    .await?;

    // A deleted ConfigMap comes back (the controller watches what it owns).
    let old_uid = cm.metadata.uid.clone();
    config_maps
        .delete("hello-greeting", &DeleteParams::default())
        .await?;
    eventually("the re-created ConfigMap", || async {
        let cm = config_maps.get_opt("hello-greeting").await?;
        Ok(cm.filter(|c| c.metadata.uid != old_uid).map(|_| ()))
    })
    .await?;

    // What `owns()` runs on: a metadata-only watch (Accept
    // as=PartialObjectMetadata), streamed as PartialObjectMetadata events.
    let token = s.tls().context("tls")?.admin_token.clone();
    let w = s.https(
        "GET",
        "/clusters/acme/api/v1/configmaps?watch=true&timeoutSeconds=1",
        &[(
            "Accept",
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
        )],
        None,
        Some(&token),
    )?;
    let first: serde_json::Value =
        serde_json::from_slice(w.body.split(|b| *b == b'\n').next().unwrap_or_default())
            .with_context(|| format!("metadata watch: {} {}", w.status, w.text()))?;
    ensure!(
        w.status == 200 && first["object"]["kind"] == "PartialObjectMetadata",
        "metadata watch: {} {}",
        w.status,
        w.text()
    );

    // Nothing of it in beta.
    let beta = client(&s.kubeconfig("beta", None)?).await?;
    let beta_cms: Api<ConfigMap> = Api::all(beta.clone());
    ensure!(
        beta_cms
            .list(&Default::default())
            .await?
            .items
            .iter()
            .all(|c| c.metadata.name.as_deref() != Some("hello-greeting")),
        "beta sees acme's ConfigMap"
    );
    let beta_greetings: Api<DynamicObject> = Api::all_with(beta, &ar);
    ensure!(
        beta_greetings.list(&Default::default()).await.is_err(),
        "the Greeting API leaked into beta"
    );

    // Deleting the Greeting runs the finalizer: the ConfigMap goes first,
    // then the Greeting.
    greetings.delete("hello", &DeleteParams::default()).await?;
    eventually("the Greeting gone", || async {
        Ok(greetings.get_opt("hello").await?.is_none().then_some(()))
    })
    .await?;
    ensure!(
        config_maps.get_opt("hello-greeting").await?.is_none(),
        "the ConfigMap outlived its Greeting"
    );
    Ok(())
}
