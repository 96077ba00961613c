"""Installing ReceiptSync into a running sandbox: the CRD (from manifests/crds) and the operator
Deployment (from this package's manifests/operator.yaml template), using the real kubectl."""
from __future__ import annotations

import base64
import json
import string
import subprocess
import time
import urllib.request
from importlib import resources
from pathlib import Path

from receiptsync_common import contract

from .nodeagent.images import REPO_ROOT

NAMESPACE = "receiptsync-system"
DEPLOYMENT = "receiptsync-operator"
CRD_FILE = REPO_ROOT / "manifests" / "crds" / "receiptsyncs.yaml"
CRD_NAME = f"{contract.PLURAL}.{contract.GROUP}"


class InstallError(RuntimeError):
    pass


# What a cluster admin provisions before `helm install`: the chart's default values read the Redis
# and PostgreSQL URLs (and, optionally, the Gmail API endpoint) from this Secret in the release
# namespace. The sandbox provides it in `default`, so a bare `helm install rs charts/receipt-sync` works.
CONNECTIONS_SECRET = "receiptsync-connections"
CONNECTIONS_NAMESPACE = "default"


def create_connections_secret(api_url: str, redis_url: str, database_url: str, gmail_endpoint: str) -> None:
    """Create Secret default/receiptsync-connections (keys redis-url, database-url, gmail-api-endpoint)."""
    values = {"redis-url": redis_url, "database-url": database_url, "gmail-api-endpoint": gmail_endpoint}
    body = {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": CONNECTIONS_SECRET, "labels": {"app.kubernetes.io/part-of": "receiptsync-sandbox"}},
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in values.items()},
    }
    request = urllib.request.Request(
        f"{api_url.rstrip('/')}/api/v1/namespaces/{CONNECTIONS_NAMESPACE}/secrets", method="POST",
        data=json.dumps(body).encode(), headers={"Content-Type": "application/json", "Authorization": "Bearer admin"})
    with urllib.request.urlopen(request, timeout=10):
        pass


def operator_env(redis_url: str, database_url: str, gmail_endpoint: str, metrics_port: int) -> list[dict]:
    plain = {
        contract.OPERATOR_ENV_REDIS_URL: redis_url,
        contract.OPERATOR_ENV_WORKER_DATABASE_URL: database_url,
        contract.OPERATOR_ENV_WORKER_GMAIL_API_ENDPOINT: gmail_endpoint,
        contract.OPERATOR_ENV_WORKER_IMAGE: f"{contract.WORKER_IMAGE}:{contract.IMAGE_TAG}",
        contract.OPERATOR_ENV_MAX_WORKERS: "4",
        contract.OPERATOR_ENV_METRICS_PORT: str(metrics_port),
    }
    env = [{"name": name, "value": value} for name, value in plain.items()]
    for name, path in ((contract.OPERATOR_ENV_POD_NAME, "metadata.name"), (contract.OPERATOR_ENV_POD_NAMESPACE, "metadata.namespace")):
        env.append({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}})
    return env


def render_operator_manifest(env: list[dict]) -> str:
    template = resources.files("receiptsync_sandbox").joinpath("manifests/operator.yaml").read_text()
    # JSON is YAML: values are injected as quoted scalars / flow sequences, never spliced as text.
    return string.Template(template).substitute(
        NAMESPACE=NAMESPACE,
        OPERATOR_IMAGE=json.dumps(f"{contract.OPERATOR_IMAGE}:{contract.IMAGE_TAG}"),
        OPERATOR_ENV=json.dumps(env),
    )


def kubectl(kubectl_path: str, kubeconfig: Path, *args: str, input: str | None = None, timeout: float = 60) -> str:
    result = subprocess.run([kubectl_path, "--kubeconfig", str(kubeconfig), *args], input=input, text=True,
                            capture_output=True, timeout=timeout)
    if result.returncode != 0:
        raise InstallError(f"kubectl {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def install_crd(kubectl_path: str, kubeconfig: Path) -> bool:
    if not CRD_FILE.exists():
        return False
    kubectl(kubectl_path, kubeconfig, "apply", "-f", str(CRD_FILE))
    kubectl(kubectl_path, kubeconfig, "wait", "--for=condition=established", f"crd/{CRD_NAME}", "--timeout=20s")
    return True


def install_operator(kubectl_path: str, kubeconfig: Path, manifest: str, timeout: float = 40.0) -> None:
    kubectl(kubectl_path, kubeconfig, "apply", "-f", "-", input=manifest)
    kubectl(kubectl_path, kubeconfig, "-n", NAMESPACE, "rollout", "status", f"deployment/{DEPLOYMENT}",
            f"--timeout={int(timeout)}s", timeout=timeout + 10)
    wait_stable(kubectl_path, kubeconfig)


def wait_stable(kubectl_path: str, kubeconfig: Path, settle: float = 3.0) -> None:
    """A pod counts as ready as soon as its process runs; make sure it doesn't die at once."""
    time.sleep(settle)
    listing = json.loads(kubectl(kubectl_path, kubeconfig, "-n", NAMESPACE, "get", "pods", "-o", "json",
                                 "-l", "app.kubernetes.io/name=receiptsync-operator"))
    for pod in listing.get("items") or []:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            if container.get("restartCount") or "running" not in (container.get("state") or {}):
                raise InstallError(f"the operator pod {pod['metadata']['name']} is not running steadily "
                                   f"(restarts: {container.get('restartCount', 0)}, state: {container.get('state')})")
