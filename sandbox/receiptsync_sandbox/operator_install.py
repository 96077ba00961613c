"""Installing ReceiptSync into a running sandbox as a user would: the chart (its CRD, ServiceAccount,
RBAC and Deployment) with the real helm, after the namespace preparation a cluster admin does."""
from __future__ import annotations

import base64
import dataclasses
import json
import secrets
import subprocess
import time
from pathlib import Path

from receiptsync_common import contract

from .nodeagent.images import REPO_ROOT
from .services import free_port

NAMESPACE = "receiptsync-system"
RELEASE = "receiptsync"
DEPLOYMENT = "receiptsync-receipt-sync"
CHART = REPO_ROOT / "charts" / "receipt-sync"
CRD_FILE = REPO_ROOT / "manifests" / "crds" / "receiptsyncs.yaml"
CRD_NAME = f"{contract.PLURAL}.{contract.GROUP}"
BUSINESS_IDS_ANNOTATION = f"{contract.GROUP}/business-ids"
# Pod Security "restricted", enforced, wherever the project's pods run.
POD_SECURITY_LABELS = {"pod-security.kubernetes.io/enforce": "restricted",
                       "pod-security.kubernetes.io/enforce-version": "latest"}


class InstallError(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class Kubectl:
    path: str
    kubeconfig: Path

    def __call__(self, *args: str, input: str | None = None, timeout: float = 60) -> str:
        result = subprocess.run([self.path, "--kubeconfig", str(self.kubeconfig), *args], input=input, text=True,
                                capture_output=True, timeout=timeout)
        if result.returncode != 0:
            raise InstallError(f"kubectl {' '.join(args[:3])} failed: {result.stderr.strip() or result.stdout.strip()}")
        return result.stdout

    def apply(self, obj: dict) -> None:
        self("apply", "-f", "-", input=json.dumps(obj))


def prepare_namespace(kubectl: Kubectl, namespace: str, business_ids: str | None = "*") -> None:
    """What a cluster admin does for a tenant namespace: Pod Security `restricted` and the business
    ids it may sync (CONTRACT: the sandbox's `default` admits every business)."""
    annotations = {BUSINESS_IDS_ANNOTATION: business_ids} if business_ids is not None else {}
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": namespace, "labels": POD_SECURITY_LABELS, "annotations": annotations}})


# What a cluster admin provisions before `helm install`: the chart's default values read the Redis
# and PostgreSQL URLs (and, optionally, the Gmail API endpoint) from this Secret in the release
# namespace. The sandbox provides it in `default`, so a bare `helm install rs charts/receipt-sync` works.
CONNECTIONS_SECRET = "receiptsync-connections"
CONNECTIONS_NAMESPACE = "default"


def create_connections_secret(kubectl: Kubectl, namespace: str, redis_url: str, database_url: str,
                              gmail_endpoint: str) -> None:
    """Secret receiptsync-connections (keys redis-url, database-url, gmail-api-endpoint, and the
    credential-key per-attempt worker credentials are derived from), through stdin so no URL with a
    password shows in a process list."""
    values = {"redis-url": redis_url, "database-url": database_url, "gmail-api-endpoint": gmail_endpoint,
              "credential-key": secrets.token_hex(32)}
    kubectl.apply({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": CONNECTIONS_SECRET, "namespace": namespace,
                     "labels": {"app.kubernetes.io/part-of": "receiptsync-sandbox"}},
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in values.items()},
    })


def chart_values(metrics_port: int) -> list[str]:
    """Sandbox-only differences from the chart's defaults: one replica, and a free metrics port,
    because every pod on the sandbox node shares the machine's network."""
    return ["--set", "operator.replicas=1", "--set", f"metrics.port={metrics_port}"]


def install_chart(kubectl: Kubectl, helm: str, redis_url: str, database_url: str, gmail_endpoint: str,
                  timeout: float = 120.0) -> None:
    prepare_namespace(kubectl, NAMESPACE, business_ids=None)
    create_connections_secret(kubectl, NAMESPACE, redis_url, database_url, gmail_endpoint)
    argv = [helm, "--kubeconfig", str(kubectl.kubeconfig), "upgrade", "--install", RELEASE, str(CHART),
            "--namespace", NAMESPACE, "--wait", f"--timeout={int(timeout)}s", *chart_values(free_port())]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 30)
    if result.returncode != 0:
        raise InstallError(f"helm install failed: {result.stderr.strip() or result.stdout.strip()}")
    wait_stable(kubectl)


def wait_stable(kubectl: Kubectl, settle: float = 3.0) -> None:
    """A pod counts as ready as soon as its process runs; make sure it doesn't die at once."""
    time.sleep(settle)
    listing = json.loads(kubectl("-n", NAMESPACE, "get", "pods", "-o", "json",
                                 "-l", "app.kubernetes.io/name=receipt-sync"))
    for pod in listing.get("items") or []:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            if container.get("restartCount") or "running" not in (container.get("state") or {}):
                raise InstallError(f"the operator pod {pod['metadata']['name']} is not running steadily "
                                   f"(restarts: {container.get('restartCount', 0)}, state: {container.get('state')})")
