"""kubeconfig files pointing at the sandbox API server.

The server accepts any bearer token and takes it as the user name, so a pod's kubeconfig carries
`system:serviceaccount:<ns>:<sa>` and the audit shows calls per service account.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

CLUSTER_NAME = "receiptsync-sandbox"


def kubeconfig(server: str, token: str, user: str = "admin", namespace: str | None = None) -> dict:
    context = {"cluster": CLUSTER_NAME, "user": user}
    if namespace:
        context["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER_NAME, "cluster": {"server": server}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": CLUSTER_NAME, "context": context}],
        "current-context": CLUSTER_NAME,
        "preferences": {},
    }


def service_account_token(namespace: str, service_account: str) -> str:
    return f"system:serviceaccount:{namespace}:{service_account}"


def write_kubeconfig(path: Path, config: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(yaml.safe_dump(config, sort_keys=False))
    os.chmod(temporary, 0o600)
    temporary.replace(path)
    return path
