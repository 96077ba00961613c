"""What the Deployment controller should do next, from a Deployment and its ReplicaSets. Pure.

One ReplicaSet per pod template (named <deployment>-<template hash>). RollingUpdate scales the new
one up and the old ones to zero once the new one is available; Recreate empties the old ones first.
Status and conditions are what `kubectl rollout status` and helm's kstatus-based wait read.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import hashlib
import json
import math

from .base import owner_reference
from .jobstatus import NAME_ALPHABET, condition, parse_time, rfc3339

HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
DESIRED_ANNOTATION = "deployment.kubernetes.io/desired-replicas"


@dataclasses.dataclass
class DeploymentDecision:
    status: dict
    create_replicaset: dict | None = None
    scale: dict[str, int] = dataclasses.field(default_factory=dict)  # ReplicaSet name -> replicas
    delete_replicasets: list[str] = dataclasses.field(default_factory=list)
    revision: str | None = None  # the Deployment's revision annotation, when it changes
    requeue_after: float | None = None


def template_hash(template: dict) -> str:
    digest = hashlib.sha256(json.dumps(template or {}, sort_keys=True).encode()).digest()
    number = int.from_bytes(digest[:8], "big")
    letters = []
    for _ in range(10):
        number, index = divmod(number, len(NAME_ALPHABET))
        letters.append(NAME_ALPHABET[index])
    return "".join(letters)


def revision_of(obj: dict) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION, "0"))
    except ValueError:
        return 0


def new_replicaset(deployment: dict, pod_hash: str, revision: int, replicas: int) -> dict:
    meta, spec = deployment["metadata"], deployment.get("spec") or {}
    template = copy.deepcopy(spec.get("template") or {})
    template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = pod_hash
    selector = copy.deepcopy(spec.get("selector") or {"matchLabels": dict(template["metadata"]["labels"])})
    selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{meta['name'][:52]}-{pod_hash}",
            "namespace": meta.get("namespace", "default"),
            "labels": dict(template["metadata"]["labels"]),
            "annotations": {REVISION_ANNOTATION: str(revision), DESIRED_ANNOTATION: str(spec.get("replicas", 1))},
            "ownerReferences": [owner_reference(deployment)],
        },
        "spec": {"replicas": replicas, "minReadySeconds": spec.get("minReadySeconds", 0), "selector": selector,
                 "template": template},
    }


def max_unavailable(spec: dict, replicas: int) -> int:
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return 0
    value = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", "25%")
    if isinstance(value, str) and value.endswith("%"):
        return math.floor(replicas * int(value[:-1]) / 100)
    return int(value)


def _rs_status(replicaset: dict, field: str) -> int:
    return (replicaset.get("status") or {}).get(field, 0)


def _set_condition(conditions: list[dict], kind: str, status: bool, reason: str, message: str, now: str) -> list[dict]:
    text = "True" if status else "False"
    old = condition(conditions, kind)
    transition = old["lastTransitionTime"] if old and old.get("status") == text else now
    unchanged = old and old.get("status") == text and old.get("reason") == reason and old.get("message") == message
    update = old.get("lastUpdateTime", now) if unchanged else now
    fresh = {"type": kind, "status": text, "reason": reason, "message": message,
             "lastUpdateTime": update, "lastTransitionTime": transition}
    return [c for c in conditions if c.get("type") != kind] + [fresh]


def decide(deployment: dict, replicasets: list[dict], now: dt.datetime) -> DeploymentDecision:
    meta, spec = deployment["metadata"], deployment.get("spec") or {}
    wanted = spec.get("replicas", 1)
    pod_hash = template_hash(spec.get("template") or {})
    current = next((rs for rs in replicasets if ((rs["metadata"].get("labels") or {}).get(HASH_LABEL)) == pod_hash), None)
    old = [rs for rs in replicasets if rs is not current]
    decision = DeploymentDecision(status={})
    highest = max([revision_of(rs) for rs in replicasets] + [0])
    if current is None:
        revision = highest + 1
        start = 0 if _is_recreate(spec) and any(_rs_status(rs, "replicas") for rs in old) else wanted
        current = new_replicaset(deployment, pod_hash, revision, start)
        decision.create_replicaset = current
    else:
        revision = revision_of(current)
        if revision < highest:  # rolled back to an older template: it becomes the newest revision
            revision = highest + 1
    if str(revision) != ((meta.get("annotations") or {}).get(REVISION_ANNOTATION)):
        decision.revision = str(revision)
    _plan_scaling(spec, wanted, current, old, decision)
    decision.delete_replicasets = _history_to_prune(spec, old, decision.scale)
    decision.status = _status(deployment, current, replicasets, decision, now)
    return decision


def _is_recreate(spec: dict) -> bool:
    return (spec.get("strategy") or {}).get("type") == "Recreate"


def _plan_scaling(spec: dict, wanted: int, current: dict, old: list[dict], decision: DeploymentDecision) -> None:
    old_pods = sum(_rs_status(rs, "replicas") for rs in old)
    new_ready = decision.create_replicaset is None and _rs_status(current, "availableReplicas") >= wanted
    for rs in old:
        if rs["spec"].get("replicas", 0) and (_is_recreate(spec) or new_ready or wanted == 0):
            decision.scale[rs["metadata"]["name"]] = 0
    target = 0 if _is_recreate(spec) and old_pods else wanted
    if decision.create_replicaset is None and current["spec"].get("replicas", 0) != target:
        decision.scale[current["metadata"]["name"]] = target


def _history_to_prune(spec: dict, old: list[dict], scale: dict[str, int]) -> list[str]:
    limit = spec.get("revisionHistoryLimit", 10)
    idle = [rs for rs in old if not rs["spec"].get("replicas") and not _rs_status(rs, "replicas")
            and rs["metadata"]["name"] not in scale]
    idle.sort(key=revision_of)
    return [rs["metadata"]["name"] for rs in idle[: max(0, len(idle) - limit)]]


def _status(deployment: dict, current: dict, replicasets: list[dict], decision: DeploymentDecision,
            now: dt.datetime) -> dict:
    spec, old_status = deployment.get("spec") or {}, deployment.get("status") or {}
    wanted = spec.get("replicas", 1)
    stamp = rfc3339(now)
    replicas = sum(_rs_status(rs, "replicas") for rs in replicasets)
    ready = sum(_rs_status(rs, "readyReplicas") for rs in replicasets)
    available = sum(_rs_status(rs, "availableReplicas") for rs in replicasets)
    updated = 0 if decision.create_replicaset else _rs_status(current, "replicas")
    new_available = 0 if decision.create_replicaset else _rs_status(current, "availableReplicas")
    conditions = copy.deepcopy(old_status.get("conditions") or [])
    minimum = wanted - max_unavailable(spec, wanted)
    conditions = _set_condition(
        conditions, "Available", available >= minimum,
        "MinimumReplicasAvailable" if available >= minimum else "MinimumReplicasUnavailable",
        "Deployment has minimum availability." if available >= minimum else "Deployment does not have minimum availability.",
        stamp)
    name = current["metadata"]["name"]
    complete = updated == wanted and replicas == wanted and new_available == wanted
    if complete:
        conditions = _set_condition(conditions, "Progressing", True, "NewReplicaSetAvailable",
                                    f'ReplicaSet "{name}" has successfully progressed.', stamp)
    else:
        conditions = _progressing(spec, conditions, name, decision, now, stamp)
    status = {
        "observedGeneration": deployment["metadata"].get("generation", 1),
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": max(0, wanted - available),
        "conditions": conditions,
    }
    return {key: value for key, value in status.items() if value != 0 or key == "observedGeneration"}


def _progressing(spec: dict, conditions: list[dict], name: str, decision: DeploymentDecision, now: dt.datetime,
                 stamp: str) -> list[dict]:
    old = condition(conditions, "Progressing")
    if old and old.get("reason") == "ProgressDeadlineExceeded" and not decision.create_replicaset:
        return conditions
    deadline = spec.get("progressDeadlineSeconds", 600)
    since = parse_time(old.get("lastUpdateTime")) if old and old.get("reason") in ("ReplicaSetUpdated", "NewReplicaSetCreated") else None
    if since and not decision.create_replicaset and (now - since).total_seconds() > deadline:
        return _set_condition(conditions, "Progressing", False, "ProgressDeadlineExceeded",
                              f'ReplicaSet "{name}" has timed out progressing.', stamp)
    if decision.create_replicaset:
        return _set_condition(conditions, "Progressing", True, "NewReplicaSetCreated",
                              f'Created new replica set "{name}"', stamp)
    if since:
        decision.requeue_after = max(1.0, deadline - (now - since).total_seconds())
        return conditions  # still progressing: keep lastUpdateTime so the deadline can pass
    return _set_condition(conditions, "Progressing", True, "ReplicaSetUpdated",
                          f'ReplicaSet "{name}" is progressing.', stamp)
