"""kubeconfig files for the sandbox cluster: TLS to the API server, the CA embedded, and either a
client certificate (admin, the control-plane components, the node) or a ServiceAccount token."""
from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml

CLUSTER_NAME = "receiptsync-sandbox"


def _data(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def kubeconfig(server: str, ca_cert: Path, *, user: str, client_cert: Path | None = None,
               client_key: Path | None = None, token: str | None = None, namespace: str | None = None) -> dict:
    credentials: dict[str, str] = {}
    if client_cert and client_key:
        credentials = {"client-certificate-data": _data(client_cert), "client-key-data": _data(client_key)}
    elif token:
        credentials = {"token": token}
    context = {"cluster": CLUSTER_NAME, "user": user}
    if namespace:
        context["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER_NAME,
                      "cluster": {"server": server, "certificate-authority-data": _data(ca_cert)}}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": CLUSTER_NAME, "context": context}],
        "current-context": CLUSTER_NAME,
        "preferences": {},
    }


def for_token(base: Path | str, token: str, user: str, namespace: str | None = None) -> dict:
    """A kubeconfig for a ServiceAccount token against the cluster that `base` points at."""
    config = yaml.safe_load(Path(base).read_text())
    cluster = config["clusters"][0]["cluster"]
    context = {"cluster": CLUSTER_NAME, "user": user, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": CLUSTER_NAME, "cluster": dict(cluster)}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": CLUSTER_NAME, "context": context}], "current-context": CLUSTER_NAME}


def write_kubeconfig(path: Path, config: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(yaml.safe_dump(config, sort_keys=False))
    os.chmod(temporary, 0o600)
    temporary.replace(path)
    return path
