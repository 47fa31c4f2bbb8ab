#!/usr/bin/env python3
"""Drives Helm v4, as Python libraries, for tests/helm.rs.

One helm action per run; the result is printed as one JSON document on
stdout. Exit codes: 0 done, 1 helm failed (message on stderr), 3 a helm
library is not installed (the test skips, or fails under CI).

Two builds of the Helm v4 SDK are used: helm-sdkpy (Helm 4.3) for install,
upgrade, list, status, history and uninstall, and helm-python-sdk (Helm 4.2)
for rollback and offline rendering (helm-sdkpy 0.1.32's rollback fails with
"wait strategy not set" after applying, leaving the release
pending-rollback, and it has no template action).

    driver.py --kubeconfig K --namespace N install NAME CHART [--values JSON] [--ssa] [--no-create-namespace] [--wait]
    driver.py ... upgrade NAME CHART [--values JSON]
    driver.py ... rollback NAME REVISION
    driver.py ... list | status NAME | history NAME | uninstall NAME
    driver.py template NAME CHART [--namespace N] [--values JSON]   (no cluster)
"""

import argparse
import asyncio
import json
import sys

try:
    import helm_python
    import helm_sdkpy as helm
except ImportError as e:  # the Rust side turns this into a loud skip
    print(f"helm library missing: {e}", file=sys.stderr)
    sys.exit(3)

# Short: the tests never wait for readiness (no kubelet here), only for
# hooks, which the test itself completes.
TIMEOUT = 30


async def run(a):
    values = json.loads(a.values) if a.values else None
    if a.op == "template":
        chart = helm_python.Chart.load(a.args[1])
        rendered = chart.render(values, name=a.args[0], namespace=a.namespace, is_install=True)
        # Like `helm template`: the CRDs first, then every non-empty,
        # non-helper template, hooks included.
        docs = [c["data"] if isinstance(c, dict) else c for c in _crds(chart)]
        docs += [m for path, m in sorted(rendered.items()) if m.strip() and not path.endswith(".txt")]
        return {"manifest": "\n---\n".join(docs)}
    if a.op == "rollback":
        cfg = helm_python.Config(kubeconfig_path=a.kubeconfig, namespace=a.namespace)
        cfg.rollback(a.args[0], version=int(a.args[1]), wait="hookOnly", timeout=TIMEOUT)
        a.op, a.args = "status", a.args[:1]
    cfg = helm.Configuration(namespace=a.namespace, kubeconfig=a.kubeconfig)
    if a.op == "install":
        return await helm.Install(cfg).run(
            a.args[0],
            a.args[1],
            values=values,
            wait=a.wait,
            timeout=TIMEOUT,
            create_namespace=not a.no_create_namespace,
            server_side_apply=a.ssa,
            # Helm then validates the rendered manifests against the
            # server's OpenAPI before it sends them.
            disable_openapi_validation=False,
        )
    if a.op == "upgrade":
        return await helm.Upgrade(cfg).run(
            a.args[0],
            a.args[1],
            values=values,
            wait=False,
            timeout=TIMEOUT,
            disable_openapi_validation=False,
        )
    if a.op == "list":
        return await helm.List(cfg).run(all=True)
    if a.op == "status":
        return await helm.Status(cfg).run(a.args[0])
    if a.op == "history":
        return await helm.History(cfg).run(a.args[0])
    if a.op == "uninstall":
        return await helm.Uninstall(cfg).run(a.args[0], wait=a.wait, timeout=TIMEOUT)
    raise SystemExit(f"unknown operation {a.op}")


def _crds(chart):
    crds = chart.crds() if callable(chart.crds) else chart.crds
    return crds or []


def summary(out):
    """A release without its chart files (large and of no use to the tests)."""
    if isinstance(out, list):
        return [summary(r) for r in out]
    if isinstance(out, dict) and "release" in out and "info" not in out:
        out = out["release"]  # uninstall
    if not isinstance(out, dict) or "info" not in out:
        return out
    info = out.get("info") or {}
    return {
        "name": out.get("name"),
        "namespace": out.get("namespace"),
        "version": out.get("version"),
        "status": info.get("status"),
        "description": info.get("description"),
        "config": out.get("config"),
        "manifest": out.get("manifest"),
        "apply_method": out.get("apply_method"),
        "hooks": [
            {"name": h.get("name"), "kind": h.get("kind"), "phase": (h.get("last_run") or {}).get("phase")}
            for h in out.get("hooks") or []
        ],
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kubeconfig")
    p.add_argument("--namespace", default="default")
    p.add_argument("--values")
    p.add_argument("--ssa", action="store_true", help="install with server-side apply")
    p.add_argument(
        "--wait",
        action="store_true",
        help="install/uninstall: wait (helm's watcher) until the resources are ready/gone",
    )
    p.add_argument(
        "--no-create-namespace",
        action="store_true",
        help="install into an existing namespace (a namespace admin may not create one)",
    )
    p.add_argument("op")
    p.add_argument("args", nargs="*")
    a = p.parse_args()
    try:
        out = asyncio.run(run(a))
    except (helm.HelmError, helm_python.HelmError) as e:
        print(f"helm {a.op} failed: {e}", file=sys.stderr)
        sys.exit(1)
    json.dump(summary(out), sys.stdout, default=str)


if __name__ == "__main__":
    main()
