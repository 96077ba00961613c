"""The objects and commands of the kind e2e, as plain data (so tests that run everywhere can check
them: schema-valid, Pod-Security restricted, and the emulator pod's commands really start it)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from receiptsync_common import contract
from receiptsync_sandbox.gmail.auth import authorized_user

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CHART = ROOT / "charts" / "receipt-sync"
EXAMPLE = ROOT / "manifests" / "examples" / "receiptsync.yaml"

TAG = contract.IMAGE_TAG
OPERATOR_IMAGE = f"{contract.OPERATOR_IMAGE}:{TAG}"
WORKER_IMAGE = f"{contract.WORKER_IMAGE}:{TAG}"
EMULATOR_IMAGE = "receiptsync-gmail-emulator:e2e"
EMULATOR_DOCKERFILE = HERE / "gmail-emulator.Dockerfile"
EMULATOR_CONTEXT = ROOT / "sandbox"

RELEASE = "rs"
OPERATOR_NAMESPACE = "receiptsync-system"
TENANT_NAMESPACE = "tenant-demo"
EMULATOR_NAMESPACE = "gmail-emulator"
EMULATOR_NAME = "gmail-emulator"
EMULATOR_PORT = 8080
MAILBOX = "demo@example.com"
MAILBOX_DIR = "/mailbox"
SAMPLE_COUNT = 150
FULLNAME = f"{RELEASE}-receipt-sync"  # the chart's fullname for release "rs"
POSTGRES_STATEFULSET = f"{FULLNAME}-postgresql"
SYNC_NAME = "demo"

EMULATOR_URL = f"http://{EMULATOR_NAME}.{EMULATOR_NAMESPACE}.svc:{EMULATOR_PORT}"
GMAIL_API_ENDPOINT = f"{EMULATOR_URL}/"
GMAIL_TOKEN_URI = f"{EMULATOR_URL}/token"


def image_builds() -> list[tuple[str, list[str]]]:
    """(image, `docker build` arguments) in build order: the emulator image derives from the worker's."""
    return [
        (OPERATOR_IMAGE, ["build", "-f", str(ROOT / "Dockerfile.operator"), "-t", OPERATOR_IMAGE, str(ROOT)]),
        (WORKER_IMAGE, ["build", "-f", str(ROOT / "Dockerfile.worker"), "-t", WORKER_IMAGE, str(ROOT)]),
        (EMULATOR_IMAGE, ["build", "-f", str(EMULATOR_DOCKERFILE), "-t", EMULATOR_IMAGE, str(EMULATOR_CONTEXT)]),
    ]


def bundled_store_images() -> list[str]:
    """The bundled Redis/PostgreSQL images, as the chart's values name them."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    return [values["redis"]["bundled"]["image"], values["database"]["bundled"]["image"]]


def namespace(name: str) -> dict[str, Any]:
    """Pod Security "restricted" enforced: every pod the chart, the operator (workers) and the test
    create must pass it, as on a hardened cluster."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        }},
    }


def _restricted_container() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def samples_command(mailbox_dir: str = MAILBOX_DIR) -> list[str]:
    return ["python", "-m", "receiptsync_sandbox.gmail.samples", "--out", mailbox_dir,
            "--address", MAILBOX, "--count", str(SAMPLE_COUNT)]


def emulator_args(mailbox_dir: str = MAILBOX_DIR, port: int = EMULATOR_PORT) -> list[str]:
    return ["--host", "0.0.0.0", "--port", str(port), "--mailbox-dir", mailbox_dir]


def emulator_objects() -> list[dict[str, Any]]:
    """The Gmail emulator as a Deployment + Service; an initContainer writes the sample mailbox."""
    labels = {"app.kubernetes.io/name": EMULATOR_NAME}
    mounts = [{"name": "mailbox", "mountPath": MAILBOX_DIR}, {"name": "tmp", "mountPath": "/tmp"}]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": EMULATOR_NAME, "namespace": EMULATOR_NAMESPACE, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "initContainers": [{
                        "name": "mailbox",
                        "image": EMULATOR_IMAGE,
                        "imagePullPolicy": "Never",
                        "command": samples_command(),
                        "securityContext": _restricted_container(),
                        "volumeMounts": mounts,
                    }],
                    "containers": [{
                        "name": "emulator",
                        "image": EMULATOR_IMAGE,
                        "imagePullPolicy": "Never",
                        "args": emulator_args(),
                        "ports": [{"name": "http", "containerPort": EMULATOR_PORT}],
                        "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 2},
                        "securityContext": _restricted_container(),
                        "volumeMounts": mounts,
                        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
                    }],
                    "volumes": [{"name": "mailbox", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": EMULATOR_NAME, "namespace": EMULATOR_NAMESPACE, "labels": labels},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": EMULATOR_PORT, "targetPort": "http"}]},
    }
    return [deployment, service]


def helm_install_args() -> list[str]:
    """`helm upgrade --install` of the chart with the bundled trial stores and the emulator. The
    images were `kind load`ed, so pullPolicy Never: a missing image fails at once, not after a
    pull timeout."""
    return [
        "upgrade", "--install", RELEASE, str(CHART),
        "--namespace", OPERATOR_NAMESPACE,
        "--set", "redis.bundled.enabled=true",
        "--set", "database.bundled.enabled=true",
        "--set", f"gmail.apiEndpoint={GMAIL_API_ENDPOINT}",
        "--set", "operator.image.pullPolicy=Never",
        "--set", "worker.image.pullPolicy=Never",
        "--wait", "--timeout", "10m",
    ]


def credentials_json() -> str:
    """The tenant's "authorized user" JSON; the emulator accepts a refresh token naming its mailbox."""
    return json.dumps(authorized_user(MAILBOX, GMAIL_TOKEN_URI, client_id="e2e-client.apps.example.com",
                                      client_secret="e2e-client-secret"))


def credentials_secret() -> dict[str, Any]:
    example = yaml.safe_load(EXAMPLE.read_text())
    ref = example["spec"]["gmail"]["secretRef"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": ref["name"], "namespace": TENANT_NAMESPACE},
        "type": "Opaque",
        "stringData": {ref.get("key") or contract.DEFAULT_CREDENTIALS_KEY: credentials_json()},
    }


def receiptsync() -> dict[str, Any]:
    """The shipped example, unchanged but for its namespace (a patch, not an edit of the file)."""
    sync = yaml.safe_load(EXAMPLE.read_text())
    sync["metadata"]["namespace"] = TENANT_NAMESPACE
    return sync
