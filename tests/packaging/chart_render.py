"""Render the chart with the real helm binary; the documented values combinations."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "receipt-sync"
MANIFESTS = ROOT / "manifests"
RELEASE = "rs"
NAMESPACE = "receiptsync-system"
KUBERNETES_VERSION = "1.33"  # the kubectl we ship; kubernetes-validate schemas of that version


def tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: run `make deps`")
    return found


HELM = tool("helm")
KUBECTL = tool("kubectl")

# Every combination README.md documents (name -> --set arguments).
COMBINATIONS: dict[str, list[str]] = {
    "defaults": [],
    "namespace-scope": ["--set", "rbac.scope=namespace"],
    "namespace-scope-other-namespace": ["--set", "rbac.scope=namespace", "--set", "watchNamespace=tenants"],
    "cluster-scope-one-namespace": ["--set", "rbac.scope=cluster", "--set", "watchNamespace=tenants"],
    "shared-worker-credentials": ["--set", "tenancy.workerCredentials=shared"],
    "business-ids-optional": ["--set", "tenancy.requireBusinessIds=false"],
    "no-admission-policy": ["--set", "tenancy.admissionPolicy.create=false"],
    "network-policy": ["--set", "networkPolicy.enabled=true"],
    "network-policy-egress": [
        "--set", "networkPolicy.enabled=true", "--set", "networkPolicy.restrictEgress=true",
        "--set", "networkPolicy.egress.apiServerCIDRs={10.0.0.1/32}",
    ],
    "service-monitor": ["--set", "metrics.serviceMonitor.enabled=true"],
    "bundled-stores": ["--set", "redis.bundled.enabled=true", "--set", "database.bundled.enabled=true"],
    "bundled-stores-persistent-netpol": [
        "--set", "redis.bundled.enabled=true", "--set", "database.bundled.enabled=true",
        "--set", "database.bundled.persistence.enabled=true", "--set", "networkPolicy.enabled=true",
        "--set", "networkPolicy.restrictEgress=true",
    ],
    "plain-urls": [
        "--set", "redis.url=redis://redis.example:6379/0",
        "--set", "database.url=postgresql://u:p@pg.example:5432/receiptsync",
        "--set", "gmail.apiEndpoint=http://gmail-emulator.example:8080",
    ],
    "one-replica": ["--set", "operator.replicas=1"],
    "worker-connection-secret": ["--set", "worker.connectionSecret=receiptsync-worker-connections"],
    "worker-tuning": ["--set", "worker.gmailQuota.unitsPerSecond=100", "--set", "worker.gmailQuota.burstUnits=50",
                      "--set", "worker.fetchThreads=8"],
    "worker-placement": [
        "--set", "worker.nodeSelector.pool=workers",
        "--set", "worker.tolerations[0].key=dedicated", "--set", "worker.tolerations[0].operator=Exists",
        "--set", "worker.priorityClassName=batch-low",
        "--set", "operator.image.digest=sha256:" + "a" * 64,
    ],
}


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([HELM, *args], capture_output=True, text=True, check=check, timeout=60)


def template_text(args: list[str] | tuple[str, ...] = (), include_crds: bool = False, check: bool = True,
                  release: str = RELEASE, namespace: str = NAMESPACE) -> subprocess.CompletedProcess:
    extra = ["--include-crds"] if include_crds else []
    return helm("template", release, str(CHART), "--namespace", namespace, *args, *extra, check=check)


def load_all(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def template(args: list[str] | tuple[str, ...] = (), include_crds: bool = False, **kw) -> list[dict]:
    return load_all(template_text(args, include_crds=include_crds, **kw).stdout)


def find(objects: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def operator_env(objects: list[dict]) -> dict[str, dict]:
    """Env of the operator container: name -> EnvVar."""
    (deployment,) = [o for o in find(objects, "Deployment")
                     if o["metadata"]["labels"].get("app.kubernetes.io/component") == "operator"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item for item in container["env"]}
