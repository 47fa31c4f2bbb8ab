//! End-to-end tests with the real kubectl (1.32), on both engines. Skipped
//! loudly when kubectl is missing (a failure under `CI`).

use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use wsgate_e2e::{Kubectl, kubectl_or_skip, servers_for};

const MANIFEST: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: team
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: team
data:
  mode: "blue"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: team
spec:
  replicas: 2
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
      - name: api
        image: nginx:1.27
---
apiVersion: v1
kind: Service
metadata:
  name: api
  namespace: team
spec:
  selector: {app: api}
  ports:
  - port: 80
"#;

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !f()? {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

#[test]
fn kubectl_works_against_a_workspace() -> Result<()> {
    let Some(bin) = kubectl_or_skip("kubectl_works_against_a_workspace") else {
        return Ok(());
    };
    for (engine, server) in servers_for("kubectl_works_against_a_workspace")? {
        server.create_workspace("acme")?;
        server.create_workspace("other")?;
        let k = Kubectl::new(bin.clone(), server.workspace_url("acme"))?;
        let other = Kubectl::new(bin.clone(), server.workspace_url("other"))?;

        let resources = k.ok(&["api-resources"])?;
        for needle in [
            "deployments",
            "deploy",
            "apps/v1",
            "configmaps",
            "cm",
            "namespaces",
        ] {
            assert!(
                resources.contains(needle),
                "{engine}: api-resources lacks {needle}:\n{resources}"
            );
        }

        let dir = tempfile::tempdir()?;
        let file = dir.path().join("app.yaml");
        std::fs::write(&file, MANIFEST)?;
        let file = file.to_string_lossy().into_owned();
        let applied = k.ok(&["apply", "-f", &file])?;
        for line in [
            "namespace/team created",
            "configmap/settings created",
            "deployment.apps/api created",
            "service/api created",
        ] {
            assert!(applied.contains(line), "{engine}: {applied}");
        }
        let again = k.ok(&["apply", "-f", &file])?;
        assert!(
            again.contains("configmap/settings unchanged"),
            "{engine}: {again}"
        );
        std::fs::write(&file, MANIFEST.replace("blue", "green"))?;
        let changed = k.ok(&["apply", "-f", &file])?;
        assert!(
            changed.contains("configmap/settings configured"),
            "{engine}: {changed}"
        );
        assert_eq!(
            k.ok(&[
                "get",
                "cm",
                "settings",
                "-n",
                "team",
                "-o",
                "jsonpath={.data.mode}"
            ])?,
            "green"
        );

        let all = k.ok(&["get", "all", "-A"])?;
        for needle in ["deployment.apps/api", "service/api", "service/kubernetes"] {
            assert!(
                all.contains(needle),
                "{engine}: get all -A lacks {needle}:\n{all}"
            );
        }
        let others = other.run(&["get", "cm", "-A"])?;
        assert!(
            others.success && !others.stdout.contains("settings"),
            "{engine}: leak into other: {others:?}"
        );

        // `get -w` prints objects created after it started.
        let mut watch = k.spawn(&["get", "cm", "-n", "team", "-w", "--request-timeout=8s"])?;
        std::thread::sleep(Duration::from_millis(1500));
        k.ok(&[
            "create",
            "configmap",
            "late",
            "-n",
            "team",
            "--from-literal=a=b",
        ])?;
        std::thread::sleep(Duration::from_millis(1500));
        let _ = watch.kill();
        let mut out = String::new();
        if let Some(mut s) = watch.stdout.take() {
            s.read_to_string(&mut out)?;
        }
        let _ = watch.wait();
        assert!(
            out.contains("settings") && out.contains("late"),
            "{engine}: get -w printed:\n{out}"
        );

        // Server-side apply through kubectl (manager "kubectl").
        let ssa = k.ok(&["apply", "--server-side", "-f", &file])?;
        assert!(ssa.contains("serverside-applied"), "{engine}: {ssa}");
        k.ok(&["scale", "deployment", "api", "-n", "team", "--replicas=3"])?;
        assert_eq!(
            k.ok(&[
                "get",
                "deploy",
                "api",
                "-n",
                "team",
                "-o",
                "jsonpath={.spec.replicas}"
            ])?,
            "3"
        );

        // delete namespace waits until it is gone.
        let deleted = k.ok(&["delete", "namespace", "team", "--timeout=30s"])?;
        assert!(
            deleted.contains("namespace \"team\" deleted"),
            "{engine}: {deleted}"
        );
        wait_until(
            "namespace team to disappear",
            Duration::from_secs(15),
            || Ok(!k.run(&["get", "ns", "team"])?.success),
        )?;
        let left = k.ok(&["get", "cm", "-A", "-o", "name"])?;
        assert!(
            !left.contains("settings") && !left.contains("late"),
            "{engine}: {left}"
        );
    }
    Ok(())
}
