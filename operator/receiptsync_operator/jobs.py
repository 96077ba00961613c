"""The worker Job for one attempt (a pure manifest builder), the state of such a Job, and the
backoff for Job creations the API refuses (RBAC, ResourceQuota).

Each Job gets only its own resource's credentials, through a secretKeyRef: no worker ever holds
another tenant's Secret, and credentials never pass through Redis. With
RECEIPTSYNC_WORKER_CONNECTION_SECRET set, the Redis and PostgreSQL URLs come by secretKeyRef too.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping
from typing import Any

from receiptsync_common import contract
from receiptsync_common.jobspec import JobPayload

from . import config, runs, validation
from .config import Settings

_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
WORKER_UID = 10001  # the worker image's USER (Dockerfile.worker)


def label_value(value: str) -> str:
    """A valid label value (<= 63 characters) standing for ``value``; long or odd ones are shortened
    and suffixed with a hash so they stay distinct."""
    if len(value) <= 63 and _LABEL_VALUE.match(value):
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    head = re.sub(r"[^-A-Za-z0-9_.]", "-", value)[:52].strip("-_.")
    return f"{head}-{digest}" if head else digest


def worker_labels(payload: JobPayload) -> dict[str, str]:
    return {
        contract.LABEL_MANAGED_BY: contract.MANAGED_BY_VALUE,
        contract.LABEL_COMPONENT: contract.COMPONENT_WORKER,
        contract.LABEL_SYNC_NAME: label_value(payload.name),
        contract.LABEL_RUN_ID: str(payload.run_id),
        contract.LABEL_ATTEMPT: str(payload.attempt),
        contract.LABEL_JOB_ID: label_value(payload.job_id),
    }


def worker_selector() -> str:
    """The label selector of every worker Job (the only Jobs the operator watches)."""
    return f"{contract.LABEL_MANAGED_BY}={contract.MANAGED_BY_VALUE},{contract.LABEL_COMPONENT}={contract.COMPONENT_WORKER}"


def _env(payload: JobPayload, spec: Mapping[str, Any], settings: Settings) -> list[dict[str, Any]]:
    secret_name, secret_key = validation.secret_ref(spec)
    env: list[dict[str, Any]] = [{"name": contract.ENV_JOB_ID, "value": payload.job_id}]
    if settings.worker_connection_secret:
        # URLs that may carry passwords come from a Secret in the resource's namespace, by reference.
        for name, key in ((contract.ENV_REDIS_URL, contract.CONNECTION_SECRET_REDIS_URL_KEY),
                          (contract.ENV_DATABASE_URL, contract.CONNECTION_SECRET_DATABASE_URL_KEY)):
            env.append({"name": name, "valueFrom": {"secretKeyRef": {
                "name": settings.worker_connection_secret, "key": key}}})
    else:
        env.append({"name": contract.ENV_REDIS_URL, "value": settings.effective_worker_redis_url})
        if settings.worker_database_url:
            env.append({"name": contract.ENV_DATABASE_URL, "value": settings.worker_database_url})
    if settings.worker_gmail_api_endpoint:
        env.append({"name": contract.ENV_GMAIL_API_ENDPOINT, "value": settings.worker_gmail_api_endpoint})
    env.extend({"name": name, "value": value} for name, value in config.worker_tuning(settings))
    env.append({
        "name": contract.ENV_GMAIL_CREDENTIALS,
        "valueFrom": {"secretKeyRef": {"name": secret_name, "key": secret_key}},
    })
    return env


def build(payload: JobPayload, owner: Mapping[str, Any], spec: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """The batch/v1 Job running one attempt. ``owner`` is the ReceiptSync's metadata."""
    labels = worker_labels(payload)
    container: dict[str, Any] = {
        "name": "worker",
        "image": settings.worker_image,
        "imagePullPolicy": "IfNotPresent",
        "env": _env(payload, spec, settings),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        # readOnlyRootFilesystem: attachments and temp files go to an emptyDir.
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if settings.worker_command:
        container["command"] = list(settings.worker_command)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": runs.job_name_for(owner, payload.run_id, payload.attempt),
            "namespace": owner["namespace"],
            "labels": labels,
            "annotations": {contract.JOB_ID_ANNOTATION: payload.job_id},
            "ownerReferences": [{
                "apiVersion": contract.API_VERSION,
                "kind": contract.KIND,
                "name": owner["name"],
                "uid": owner["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }],
        },
        "spec": {
            "backoffLimit": 0,  # the operator retries, as a new attempt with its own Job
            "activeDeadlineSeconds": payload.timeout_seconds + settings.worker_deadline_grace,
            "ttlSecondsAfterFinished": settings.worker_job_ttl,
            "template": {
                "metadata": {"labels": labels, "annotations": {contract.JOB_ID_ANNOTATION: payload.job_id}},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": WORKER_UID,
                        "runAsGroup": WORKER_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
                },
            },
        },
    }


def job_id_of(job: Mapping[str, Any]) -> str | None:
    return ((job.get("metadata") or {}).get("annotations") or {}).get(contract.JOB_ID_ANNOTATION)


def state(job: Mapping[str, Any] | None) -> str:
    """runs.JOB_* for a Job object (None: gone)."""
    if job is None:
        return runs.JOB_GONE
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return runs.JOB_SUCCEEDED
        if cond.get("type") == "Failed":
            return runs.JOB_DEADLINE if cond.get("reason") == "DeadlineExceeded" else runs.JOB_FAILED
    job_status = job.get("status") or {}
    if job_status.get("failed"):
        return runs.JOB_FAILED
    if job_status.get("succeeded"):
        return runs.JOB_SUCCEEDED
    return runs.JOB_ACTIVE


def is_active(job: Mapping[str, Any]) -> bool:
    """Holds a worker slot: not finished (a Job being deleted still runs until it is gone)."""
    return state(job) == runs.JOB_ACTIVE


@dataclasses.dataclass
class Backoff:
    """Exponential backoff per key (job id) for refused Job creations."""

    base: float = 1.0
    cap: float = 60.0
    failures: dict[str, int] = dataclasses.field(default_factory=dict)
    not_before: dict[str, float] = dataclasses.field(default_factory=dict)

    def failed(self, key: str, now: float) -> float:
        count = self.failures.get(key, 0) + 1
        self.failures[key] = count
        delay = min(self.cap, self.base * 2 ** (count - 1))
        self.not_before[key] = now + delay
        return delay

    def succeeded(self, key: str) -> None:
        self.failures.pop(key, None)
        self.not_before.pop(key, None)

    def blocked(self, now: float) -> set[str]:
        return {key for key, when in self.not_before.items() if when > now}

    def attempts(self, key: str) -> int:
        return self.failures.get(key, 0)
