"""The worker Job for one attempt, as a pure manifest builder, with the chart's worker pod template
(RECEIPTSYNC_WORKER_TEMPLATE_JSON) merged in: the template brings resources, the /tmp size,
placement (nodeSelector, tolerations, affinity, priorityClassName), imagePullSecrets, extra env, pod
labels and annotations and the pull policy; the operator keeps image, command, its own env, labels,
and the restricted security settings' floor (no service account token, never restarted in place).

Each Job gets only its own resource's credentials, through a secretKeyRef: no worker ever holds
another tenant's Secret, and credentials never pass through Redis. With per-attempt credentials
(issue 14) its Redis and PostgreSQL URLs and its heartbeat key come by secretKeyRef from its own
keys (prefixed by its Job's name) in its ReceiptSync's credentials Secret (:mod:`worker_credentials`),
so a worker sees no other attempt's credentials even while several attempts run; with shared ones from
RECEIPTSYNC_WORKER_CONNECTION_SECRET, or as plain values. The Job's env also says what the attempt is
(RECEIPTSYNC_ATTEMPT): the worker checks the Redis payload against it.
"""
from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping
from typing import Any

from receiptsync_common import attempt_identity, contract
from receiptsync_common.jobspec import JobPayload

from . import config, runs, validation
from .config import Settings

_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
WORKER_UID = 10001  # the worker image's USER (Dockerfile.worker)
WORKER_CONTAINER = "worker"


def label_value(value: str) -> str:
    """A valid label value (<= 63 characters) standing for ``value``; long or odd ones are shortened
    and suffixed with a hash so they stay distinct."""
    if len(value) <= 63 and _LABEL_VALUE.match(value):
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    head = re.sub(r"[^-A-Za-z0-9_.]", "-", value)[:52].strip("-_.")
    return f"{head}-{digest}" if head else digest


def credentials_secret_name(owner: Mapping[str, Any]) -> str:
    """The ReceiptSync's worker-credentials Secret (a DNS subdomain, <= 253 characters, for every valid
    ReceiptSync name). Built like its Jobs' names (contract.worker_job_name): the ``rs-`` prefix and
    the uid's head keep it apart from a tenant's own Secrets and from a deleted namesake's Secret the
    garbage collector has not removed yet; the cut never leaves ``.-`` before the suffix."""
    suffix = f"-{owner['uid'][:5]}-{contract.COMPONENT_WORKER_CREDENTIALS}"
    return f"rs-{owner['name']}"[: 253 - len(suffix)].rstrip("-.") + suffix


def credentials_key(job_name: str, key: str) -> str:
    """An attempt's key in that Secret: its Job's name (<= 63 characters of [-.a-z0-9]) and the
    CREDENTIALS_*_KEY, a valid Secret key."""
    return f"{job_name}.{key}"


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
    return (f"{contract.LABEL_MANAGED_BY}={contract.MANAGED_BY_VALUE},"
            f"{contract.LABEL_COMPONENT}={contract.COMPONENT_WORKER}")


def _env(payload: JobPayload, spec: Mapping[str, Any], settings: Settings, job_name: str,
         owner: Mapping[str, Any]) -> list[dict[str, Any]]:
    secret_name, secret_key = validation.secret_ref(spec)
    # What this attempt is: the worker refuses a Redis payload that disagrees (issue 14).
    env: list[dict[str, Any]] = [{"name": contract.ENV_JOB_ID, "value": payload.job_id},
                                 {"name": contract.ENV_ATTEMPT_IDENTITY,
                                  "value": attempt_identity.identity_json(payload)}]
    if settings.per_attempt_credentials:
        # The attempt's own database role, Redis user and heartbeat key: its own keys of the
        # resource's credentials Secret, applied just before the Job.
        secret = credentials_secret_name(owner)
        for name, key in ((contract.ENV_REDIS_URL, contract.CREDENTIALS_REDIS_URL_KEY),
                          (contract.ENV_DATABASE_URL, contract.CREDENTIALS_DATABASE_URL_KEY),
                          (contract.ENV_HEARTBEAT_KEY, contract.CREDENTIALS_HEARTBEAT_KEY_KEY)):
            env.append({"name": name, "valueFrom": {"secretKeyRef": {
                "name": secret, "key": credentials_key(job_name, key)}}})
    elif settings.worker_connection_secret:
        # URLs that may carry passwords come from a Secret in the resource's namespace, by reference.
        for name, key in ((contract.ENV_REDIS_URL, contract.CONNECTION_SECRET_REDIS_URL_KEY),
                          (contract.ENV_DATABASE_URL, contract.CONNECTION_SECRET_DATABASE_URL_KEY)):
            env.append({"name": name, "valueFrom": {"secretKeyRef": {
                "name": settings.worker_connection_secret, "key": key}}})
    else:
        env.append({"name": contract.ENV_REDIS_URL, "value": settings.effective_worker_redis_url})
        if settings.effective_worker_database_url:
            env.append({"name": contract.ENV_DATABASE_URL, "value": settings.effective_worker_database_url})
    if settings.worker_gmail_api_endpoint:
        env.append({"name": contract.ENV_GMAIL_API_ENDPOINT, "value": settings.worker_gmail_api_endpoint})
    env.extend({"name": name, "value": value} for name, value in config.worker_tuning(settings))
    env.append({
        "name": contract.ENV_GMAIL_CREDENTIALS,
        "valueFrom": {"secretKeyRef": {"name": secret_name, "key": secret_key}},
    })
    return env


def build(payload: JobPayload, owner: Mapping[str, Any], spec: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """The batch/v1 Job running one attempt, the chart's template merged in. ``owner`` is the
    ReceiptSync's metadata."""
    return merge_template(_base(payload, owner, spec, settings), settings.worker_template)


def _base(payload: JobPayload, owner: Mapping[str, Any], spec: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    labels = worker_labels(payload)
    job_name = runs.job_name_for(owner, payload.run_id, payload.attempt)
    container: dict[str, Any] = {
        "name": WORKER_CONTAINER,
        "image": settings.worker_image,
        "imagePullPolicy": "IfNotPresent",
        "env": _env(payload, spec, settings, job_name, owner),
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
        # The worker writes its outcome to /dev/termination-log (the durable record when its final
        # heartbeat is lost); a crash with nothing written leaves the end of its log there instead.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if settings.worker_command:
        container["command"] = list(settings.worker_command)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name,
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
            # Counted from the Job's start, so it includes the time a pod may take to start (after
            # which the operator fails the attempt anyway): the worker's own deadline, counted from
            # its process start, always comes first.
            "activeDeadlineSeconds": (payload.timeout_seconds + settings.worker_deadline_grace
                                      + int(settings.worker_start_timeout)),
            "ttlSecondsAfterFinished": settings.worker_job_ttl,
            "template": {
                "metadata": {"labels": labels, "annotations": {contract.JOB_ID_ANNOTATION: payload.job_id}},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    # Room for the worker's 30 s final-heartbeat retry after SIGTERM.
                    "terminationGracePeriodSeconds": 60,
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


# --- the chart's template ---------------------------------------------------------------------------
OWNED_CONTAINER_FIELDS = ("name", "image", "command", "args")
OWNED_POD_FIELDS = ("containers", "volumes", "restartPolicy", "automountServiceAccountToken")


def _merge_dicts(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Dicts merge key by key, anything else in ``overlay`` replaces (lists included, as
    kubectl's merge of a template would for tolerations, imagePullSecrets...)."""
    result = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = _merge_dicts(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _by_name(base: list[dict[str, Any]], overlay: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Named list entries (volumes, volumeMounts): the overlay's entry merged into ours of the same
    name, new names appended."""
    result = [dict(entry) for entry in base]
    names = {entry.get("name"): i for i, entry in enumerate(result)}
    for entry in overlay:
        if entry.get("name") in names:
            i = names[entry["name"]]
            result[i] = _merge_dicts(result[i], entry)
        else:
            result.append(copy.deepcopy(dict(entry)))
    return result


def _merge_container(ours: dict[str, Any], theirs: Mapping[str, Any]) -> dict[str, Any]:
    extra = {k: v for k, v in theirs.items() if k not in OWNED_CONTAINER_FIELDS + ("env", "volumeMounts", "resources")}
    merged = _merge_dicts(ours, extra)
    if "resources" in theirs:  # the chart's resources are the whole answer (it may leave a CPU limit out)
        merged["resources"] = copy.deepcopy(theirs["resources"])
    own_env = {e["name"] for e in ours.get("env") or []}
    merged["env"] = list(ours.get("env") or []) + [copy.deepcopy(e) for e in theirs.get("env") or []
                                                   if e.get("name") not in own_env]
    merged["volumeMounts"] = _by_name(ours.get("volumeMounts") or [], theirs.get("volumeMounts") or [])
    return merged


def merge_template(job: Mapping[str, Any], template: Mapping[str, Any] | None) -> dict[str, Any]:
    """``job`` with the chart's partial pod template merged into its pod template. The operator's
    image, command, env and labels win; the template's extra env comes after ours."""
    job = copy.deepcopy(dict(job))
    if not template:
        return job
    pod_template = job["spec"]["template"]
    meta = template.get("metadata") or {}
    ours_meta = pod_template.setdefault("metadata", {})
    ours_meta["labels"] = {**(meta.get("labels") or {}), **(ours_meta.get("labels") or {})}
    ours_meta["annotations"] = {**(meta.get("annotations") or {}), **(ours_meta.get("annotations") or {})}
    pod, theirs = pod_template["spec"], template.get("spec") or {}
    for key, value in theirs.items():
        if key in OWNED_POD_FIELDS:
            continue
        pod[key] = _merge_dicts(pod[key], value) if isinstance(value, Mapping) and isinstance(pod.get(key), Mapping) \
            else copy.deepcopy(value)
    pod["volumes"] = _by_name(pod.get("volumes") or [], theirs.get("volumes") or [])
    worker = next((c for c in theirs.get("containers") or []
                   if c.get("name", WORKER_CONTAINER) == WORKER_CONTAINER), None)
    if worker is not None:
        pod["containers"] = [_merge_container(c, worker) if c.get("name") == WORKER_CONTAINER else c
                             for c in pod["containers"]]
    return job


def check_template(template: Any) -> str | None:
    """Why a worker template cannot be used (None: it can). Checked at start: the operator refuses
    to run with a template it would have to ignore."""
    if not isinstance(template, Mapping):
        return "must be a JSON object (a partial pod template: {\"spec\": ..., \"metadata\": ...})"
    unknown = sorted(set(template) - {"spec", "metadata"})
    if unknown:
        return f"has fields a pod template does not have: {', '.join(unknown)}"
    spec, meta = template.get("spec") or {}, template.get("metadata") or {}
    if not isinstance(spec, Mapping) or not isinstance(meta, Mapping):
        return "spec and metadata must be JSON objects"
    for field in ("labels", "annotations"):
        values = meta.get(field) or {}
        if not isinstance(values, Mapping) or not all(isinstance(v, str) for v in values.values()):
            return f"metadata.{field} must map names to strings"
    containers = spec.get("containers") or []
    if not isinstance(containers, list) or not all(isinstance(c, Mapping) for c in containers):
        return "spec.containers must be a list of objects"
    others = [c.get("name") for c in containers if c.get("name", WORKER_CONTAINER) != WORKER_CONTAINER]
    if others:
        return f"spec.containers may only hold the {WORKER_CONTAINER!r} container, not {others}"
    for container in containers:
        env = container.get("env") or []
        if not isinstance(env, list) or not all(isinstance(e, Mapping) and e.get("name") for e in env):
            return "spec.containers[worker].env must be a list of EnvVar objects with names"
    for field in ("volumes", "tolerations", "imagePullSecrets"):
        if not isinstance(spec.get(field) or [], list):
            return f"spec.{field} must be a list"
    return None
