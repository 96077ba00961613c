"""The chart installed into the sandbox with the real helm: the operator runs from the chart's own
Deployment (env, Secrets, args as rendered), a ReceiptSync reaches Finished, upgrade rolls the
operator, and uninstall leaves only the CRD (and the user's resources)."""
from __future__ import annotations

import json
import shutil
import time

import pytest

from chart_render import CHART, MANIFESTS
from receiptsync_common import contract
from receiptsync_sandbox.gmail.auth import authorized_user

from receiptsync_sandbox.services import free_port
from receiptsync_sandbox.testing import Sandbox, wait_until

pytestmark = [pytest.mark.slow]

RELEASE = "rs"
NAMESPACE = "receiptsync-system"
TENANT = "tenant-demo"
PLAIN_TENANT = "tenant-plain"
DEPLOYMENT = "rs-receipt-sync"
CRD_NAME = f"{contract.PLURAL}.{contract.GROUP}"


@pytest.fixture(scope="module")
def sandbox():
    # A sandbox of our own: the chart's operator serves every namespace and must not meet the
    # operators other suites start.
    with Sandbox(operator=False) as running:
        yield running


def _install_args(sandbox, metrics_port: int) -> list[str]:
    # Sandbox pods share the machine's network, so one replica on a free metrics port.
    return [
        "--namespace", NAMESPACE,
        "--set", f"redis.url={sandbox.env['REDIS_URL']}",
        "--set", f"database.url={sandbox.env['DATABASE_URL']}",
        "--set", f"gmail.apiEndpoint={sandbox.env['GMAIL_API_ENDPOINT']}",
        "--set", f"metrics.port={metrics_port}",
        "--set", "operator.replicas=1",
    ]


def _operator_available(sandbox) -> bool:
    deployment = sandbox.get("deployment", DEPLOYMENT, NAMESPACE, check=False)
    status = (deployment or {}).get("status") or {}
    return ((status.get("availableReplicas") or 0) >= 1
            and status.get("observedGeneration") == deployment["metadata"]["generation"])


def _released_objects(sandbox) -> list[str]:
    kinds = "deployments,replicasets,pods,services,serviceaccounts,roles,rolebindings,poddisruptionbudgets,secrets"
    names = sandbox.kubectl("get", kinds, "-A", "-l", f"app.kubernetes.io/instance={RELEASE}",
                            "-o", "name").stdout.split()
    cluster = sandbox.kubectl("get", "clusterroles,clusterrolebindings", "-l", f"app.kubernetes.io/instance={RELEASE}",
                              "-o", "name").stdout.split()
    return names + cluster


def _finished(sandbox, namespace: str) -> dict | None:
    sync = sandbox.get("rsync", "demo", namespace)
    phase = (sync.get("status") or {}).get("phase")
    assert phase != contract.PHASE_FAILED, sync.get("status")
    return sync if phase == contract.PHASE_FINISHED else None


def _create_credentials(sandbox, namespace: str) -> None:
    credentials = authorized_user("demo@example.com", sandbox.env["GMAIL_TOKEN_URI"],
                                  client_id="demo-client.apps.example.com", client_secret="demo-client-secret")
    sandbox.kubectl("create", "namespace", namespace)
    # As a cluster admin does for a tenant: the business ids this namespace may sync (the chart's
    # admission policy refuses a ReceiptSync in a namespace without them).
    sandbox.kubectl("annotate", "namespace", namespace, "receipts.prosaas.pro/business-ids=demo-business")
    sandbox.kubectl("-n", namespace, "create", "secret", "generic", "gmail-demo",
                    f"--from-literal={contract.DEFAULT_CREDENTIALS_KEY}={json.dumps(credentials)}")


def test_install_sync_upgrade_uninstall(sandbox):
    port = free_port()
    began = time.monotonic()
    sandbox.helm("install", RELEASE, str(CHART), "--create-namespace", *_install_args(sandbox, port))
    assert sandbox.get("crd", CRD_NAME) is not None, "the chart's crds/ were not installed"
    sandbox.kubectl("-n", NAMESPACE, "rollout", "status", f"deployment/{DEPLOYMENT}", "--timeout=60s", timeout=70)
    wait_until(lambda: _operator_available(sandbox), timeout=30, message="operator Deployment available")
    (pod,) = sandbox.get("pods", namespace=NAMESPACE)["items"]
    assert pod["spec"]["serviceAccountName"] == DEPLOYMENT
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    # The operator took the chart's Lease under its pod name: the chart's leader-election wiring works.
    lease = wait_until(lambda: sandbox.get("lease", DEPLOYMENT, NAMESPACE, check=False), timeout=30,
                       message="the operator's Lease")
    assert lease["spec"]["holderIdentity"] == pod["metadata"]["name"]

    # A ReceiptSync (the shipped example) reaches Finished through the chart-installed operator.
    _create_credentials(sandbox, TENANT)
    sandbox.kubectl("-n", TENANT, "apply", "-f", str(MANIFESTS / "examples" / "receiptsync.yaml"))
    sync = wait_until(lambda: _finished(sandbox, TENANT), timeout=120, interval=0.5,
                      message="ReceiptSync demo Finished")
    assert sync["status"]["progress"]["messagesScanned"] > 0
    print(f"install -> Finished in {time.monotonic() - began:.1f}s")

    # helm upgrade: a changed value reaches the running operator.
    sandbox.helm("upgrade", RELEASE, str(CHART), *_install_args(sandbox, port), "--set", "maxWorkers=2")
    sandbox.kubectl("-n", NAMESPACE, "rollout", "status", f"deployment/{DEPLOYMENT}", "--timeout=60s", timeout=70)
    deployment = sandbox.get("deployment", DEPLOYMENT, NAMESPACE)
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env[contract.OPERATOR_ENV_MAX_WORKERS] == "2"
    wait_until(lambda: _operator_available(sandbox), timeout=30, message="upgraded operator available")

    # helm uninstall: everything of the release goes, the CRD and the user's ReceiptSync stay.
    before = _released_objects(sandbox)
    assert f"deployment.apps/{DEPLOYMENT}" in before and f"clusterrole.rbac.authorization.k8s.io/{DEPLOYMENT}" in before
    sandbox.helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout", "60s", timeout=90)
    wait_until(lambda: not _released_objects(sandbox), timeout=30,
               message=f"release objects gone: {_released_objects(sandbox)}")
    assert sandbox.get("crd", CRD_NAME) is not None
    assert sandbox.get("rsync", "demo", TENANT) is not None


def test_plain_manifests_install_the_same_operator(sandbox, tmp_path):
    """`kubectl apply -k manifests/` (through an overlay with the sandbox's only differences: one
    replica, a free metrics port) runs the operator, which reads its Redis/PostgreSQL URLs and the
    Gmail endpoint from the Secret receiptsync-connections as on a real cluster."""
    base = tmp_path / "base"
    shutil.copytree(MANIFESTS, base, ignore=shutil.ignore_patterns("examples"))
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(json.dumps({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["../base"],
        "patches": [{"patch": json.dumps({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "receiptsync-operator", "namespace": NAMESPACE},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "operator", "env": [
                {"name": contract.OPERATOR_ENV_METRICS_PORT, "value": str(free_port())},
            ]}]}}},
        })}],
    }))
    sandbox.kubectl("create", "namespace", NAMESPACE, check=False)
    sandbox.kubectl("-n", NAMESPACE, "create", "secret", "generic", "receiptsync-connections",
                    f"--from-literal=redis-url={sandbox.env['REDIS_URL']}",
                    f"--from-literal=database-url={sandbox.env['DATABASE_URL']}",
                    f"--from-literal=gmail-api-endpoint={sandbox.env['GMAIL_API_ENDPOINT']}")
    sandbox.kubectl("apply", "-k", str(overlay))
    try:
        _plain_install_serves_a_tenant(sandbox)
    finally:
        # The policies are cluster-wide: leave the session's sandbox as it was for the suites after us.
        sandbox.kubectl("delete", "-f", str(base / "policy"), check=False)


def _plain_install_serves_a_tenant(sandbox) -> None:
    sandbox.kubectl("-n", NAMESPACE, "rollout", "status", "deployment/receiptsync-operator", "--timeout=60s",
                    timeout=70)
    (pod,) = sandbox.get("pods", namespace=NAMESPACE, check=True)["items"]
    lease = wait_until(lambda: sandbox.get("lease", "receiptsync-operator", NAMESPACE, check=False), timeout=30,
                       message="the operator's Lease")
    assert lease["spec"]["holderIdentity"] == pod["metadata"]["name"]

    # The shipped example again, in a second tenant namespace, served by this operator.
    _create_credentials(sandbox, PLAIN_TENANT)
    sandbox.kubectl("-n", PLAIN_TENANT, "apply", "-f", str(MANIFESTS / "examples" / "receiptsync.yaml"))
    wait_until(lambda: _finished(sandbox, PLAIN_TENANT), timeout=120, interval=0.5,
               message="ReceiptSync demo Finished through the plain-manifest operator")
