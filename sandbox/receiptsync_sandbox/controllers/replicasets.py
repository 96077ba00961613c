"""What the ReplicaSet controller should do next: pods to create/delete and the new status. Pure."""
from __future__ import annotations

import copy
import dataclasses
import secrets

from ..nodeagent.env import NODE_NAME
from .base import is_terminating, owner_reference
from .jobstatus import NAME_ALPHABET, is_true, parse_time


@dataclasses.dataclass
class ReplicaSetDecision:
    status: dict
    create: int = 0
    delete: list[str] = dataclasses.field(default_factory=list)


def _phase(pod: dict) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def is_ready(pod: dict) -> bool:
    return is_true((pod.get("status") or {}).get("conditions") or [], "Ready")


def is_available(pod: dict, min_ready_seconds: int, now) -> bool:
    if not is_ready(pod):
        return False
    if not min_ready_seconds:
        return True
    ready = next(c for c in pod["status"]["conditions"] if c.get("type") == "Ready")
    since = parse_time(ready.get("lastTransitionTime"))
    return since is None or (now - since).total_seconds() >= min_ready_seconds


def _deletion_order(pod: dict) -> tuple:
    # Scale down the least useful first: unscheduled/pending, then not ready, then the newest.
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(_phase(pod), 0)
    created = (pod.get("metadata") or {}).get("creationTimestamp") or ""
    return (phase_rank, is_ready(pod), _negated(created))


def _negated(text: str) -> tuple:
    return tuple(-ord(char) for char in text)


def decide(replicaset: dict, pods: list[dict], now, *, unobserved_creations: int = 0) -> ReplicaSetDecision:
    spec = replicaset.get("spec") or {}
    wanted = spec.get("replicas", 1)
    min_ready = spec.get("minReadySeconds", 0)
    finished = [p for p in pods if _phase(p) in ("Succeeded", "Failed") and not is_terminating(p)]
    active = [p for p in pods if _phase(p) not in ("Succeeded", "Failed") and not is_terminating(p)]
    decision = ReplicaSetDecision(status={})
    decision.delete = [p["metadata"]["name"] for p in finished]  # replaced below by fresh pods
    running = len(active) + unobserved_creations
    if running < wanted:
        decision.create = wanted - running
    elif len(active) > wanted:
        surplus = sorted(active, key=_deletion_order)[: len(active) - wanted]
        decision.delete += [p["metadata"]["name"] for p in surplus]
        active = [p for p in active if p not in surplus]
    decision.status = {
        "replicas": len(active),
        "fullyLabeledReplicas": len(active),
        "readyReplicas": sum(1 for p in active if is_ready(p)),
        "availableReplicas": sum(1 for p in active if is_available(p, min_ready, now)),
        "observedGeneration": (replicaset.get("metadata") or {}).get("generation", 1),
    }
    return decision


def pod_name(owner_name: str) -> str:
    suffix = "".join(secrets.choice(NAME_ALPHABET) for _ in range(5))
    return f"{owner_name[:57]}-{suffix}"


def pod_for_replicaset(replicaset: dict, name: str) -> dict:
    meta = replicaset["metadata"]
    template = copy.deepcopy((replicaset.get("spec") or {}).get("template") or {})
    template_meta = template.get("metadata") or {}
    pod_meta = {"name": name, "namespace": meta.get("namespace", "default"),
                "labels": dict(template_meta.get("labels") or {}), "ownerReferences": [owner_reference(replicaset)]}
    if template_meta.get("annotations"):
        pod_meta["annotations"] = dict(template_meta["annotations"])
    spec = template.get("spec") or {}
    spec.setdefault("nodeName", NODE_NAME)  # the sandbox has one node; bound pods get graceful deletion
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}
