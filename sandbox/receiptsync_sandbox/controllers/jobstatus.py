"""What the Job controller should do next, from a Job and its pods. Pure: no I/O, time passed in.

Follows batch/v1 semantics for non-indexed Jobs: backoffLimit (a job fails once more pods failed
than the limit; with restartPolicy OnFailure container restarts count too), activeDeadlineSeconds,
suspend, parallelism/completions, ttlSecondsAfterFinished, exponential back-off between retries.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import secrets

from ..nodeagent.env import NODE_NAME
from .base import is_terminating, owner_reference

DEFAULT_BACKOFF_LIMIT = 6
# The real controller waits 10 s, 20 s, 40 s ... (cap 6 min) between retries; tests need it quicker.
RETRY_BASE_SECONDS = 1.0
RETRY_CAP_SECONDS = 60.0
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

LABEL_CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
LABEL_JOB_NAME = "batch.kubernetes.io/job-name"
LEGACY_LABEL_CONTROLLER_UID = "controller-uid"
LEGACY_LABEL_JOB_NAME = "job-name"


@dataclasses.dataclass
class JobDecision:
    status: dict
    create: int = 0
    delete: list[str] = dataclasses.field(default_factory=list)  # names of pods to kill
    delete_job: bool = False  # ttlSecondsAfterFinished has passed
    requeue_after: float | None = None
    events: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)  # (type, reason, message)


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def condition(conditions: list[dict], kind: str) -> dict | None:
    return next((c for c in conditions if c.get("type") == kind), None)


def is_true(conditions: list[dict], kind: str) -> bool:
    found = condition(conditions, kind)
    return bool(found and found.get("status") == "True")


def set_condition(conditions: list[dict], kind: str, status: bool, reason: str, message: str, now: str) -> list[dict]:
    text = "True" if status else "False"
    old = condition(conditions, kind)
    if old and old.get("status") == text and old.get("reason") == reason:
        return conditions
    fresh = {"type": kind, "status": text, "reason": reason, "message": message,
             "lastProbeTime": now, "lastTransitionTime": now}
    return [c for c in conditions if c.get("type") != kind] + [fresh]


def retry_delay(failures: int, base: float = RETRY_BASE_SECONDS, cap: float = RETRY_CAP_SECONDS) -> float:
    """Seconds to wait before the pod that follows the n-th failure."""
    if failures <= 0:
        return 0.0
    return min(cap, base * 2 ** (failures - 1))


def finished_at(job: dict) -> dt.datetime | None:
    status = job.get("status") or {}
    conditions = status.get("conditions") or []
    if is_true(conditions, "Complete"):
        return parse_time(status.get("completionTime")) or parse_time(condition(conditions, "Complete").get("lastTransitionTime"))
    if is_true(conditions, "Failed"):
        return parse_time(condition(conditions, "Failed").get("lastTransitionTime"))
    return None


def _phase(pod: dict) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def _is_ready(pod: dict) -> bool:
    return is_true((pod.get("status") or {}).get("conditions") or [], "Ready")


def _restarts(pod: dict) -> int:
    return sum(c.get("restartCount", 0) for c in (pod.get("status") or {}).get("containerStatuses") or [])


def _last_failure(pods: list[dict]) -> dt.datetime | None:
    times = []
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            finished = ((container.get("state") or {}).get("terminated") or {}).get("finishedAt")
            if finished:
                times.append(parse_time(finished))
    return max(times) if times else None


def decide(job: dict, pods: list[dict], now: dt.datetime, *, unobserved_creations: int = 0, lost: int = 0) -> JobDecision:
    """``pods``: the Job's own pods as cached; ``unobserved_creations``: pods we created that the
    cache hasn't shown yet; ``lost``: active pods that vanished without finishing (count as failed)."""
    spec = job.get("spec") or {}
    old = job.get("status") or {}
    stamp = rfc3339(now)
    conditions = copy.deepcopy(old.get("conditions") or [])
    active = [p for p in pods if _phase(p) not in ("Succeeded", "Failed") and not is_terminating(p)]
    terminating = [p for p in pods if _phase(p) not in ("Succeeded", "Failed") and is_terminating(p)]
    failed_pods = [p for p in pods if _phase(p) == "Failed"]
    succeeded = max(old.get("succeeded", 0), sum(1 for p in pods if _phase(p) == "Succeeded"))
    failed = max(old.get("failed", 0), len(failed_pods) + lost)
    status = {key: value for key, value in old.items() if key in ("startTime", "completionTime")}
    decision = JobDecision(status=status)

    def finish(new_status: dict) -> JobDecision:
        decision.delete = [p["metadata"]["name"] for p in active]
        new_status.update(_counts(0, succeeded, failed, 0, len(terminating) + len(active)))
        new_status["conditions"] = conditions
        decision.status = _without_zero(new_status)
        _ttl(job, spec, decision, now)
        return decision

    if is_true(conditions, "Complete") or is_true(conditions, "Failed"):
        return finish(status)

    if spec.get("suspend"):
        conditions = set_condition(conditions, "Suspended", True, "JobSuspended", "Job suspended", stamp)
        status.pop("startTime", None)  # the deadline counts from the resume, as in Kubernetes
        return finish(status)
    if is_true(conditions, "Suspended"):
        conditions = set_condition(conditions, "Suspended", False, "JobResumed", "Job resumed", stamp)

    status.setdefault("startTime", stamp)
    started = parse_time(status["startTime"])
    deadline = spec.get("activeDeadlineSeconds")
    backoff_limit = spec.get("backoffLimit", DEFAULT_BACKOFF_LIMIT)
    restart_failures = sum(_restarts(p) for p in active) if _restart_policy(spec) == "OnFailure" else 0
    completions = spec.get("completions")
    parallelism = spec.get("parallelism", 1)

    failure = None
    if deadline is not None and now >= started + dt.timedelta(seconds=deadline):
        failure = ("DeadlineExceeded", "Job was active longer than specified deadline")
    elif failed + restart_failures > backoff_limit:
        failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
    if failure:
        for kind in ("FailureTarget", "Failed"):
            conditions = set_condition(conditions, kind, True, failure[0], failure[1], stamp)
        decision.events.append(("Warning", failure[0], failure[1]))
        return finish(status)

    done = succeeded >= completions if completions is not None else (succeeded > 0 and not active)
    if done:
        for kind in ("SuccessCriteriaMet", "Complete"):
            conditions = set_condition(conditions, kind, True, "CompletionsReached", "Reached expected number of succeeded pods", stamp)
        status["completionTime"] = stamp
        decision.events.append(("Normal", "Completed", "Job completed"))
        return finish(status)

    running = len(active) + unobserved_creations
    wanted = parallelism if completions is None else min(parallelism, completions - succeeded)
    if completions is None and succeeded:
        wanted = 0  # a work-queue job starts no new pods once one has succeeded
    if running < wanted:
        wait = _retry_wait(failed, failed_pods, now)
        if wait > 0:
            decision.requeue_after = wait
        else:
            decision.create = wanted - running
    elif running > wanted:
        decision.delete = [p["metadata"]["name"] for p in active[: running - wanted]]
    if deadline is not None:
        remaining = (started + dt.timedelta(seconds=deadline) - now).total_seconds()
        decision.requeue_after = min(decision.requeue_after or remaining, remaining)
    status.update(_counts(len(active), succeeded, failed, sum(1 for p in active if _is_ready(p)), len(terminating)))
    status["conditions"] = conditions
    decision.status = _without_zero(status)
    return decision


def _retry_wait(failed: int, failed_pods: list[dict], now: dt.datetime) -> float:
    last = _last_failure(failed_pods)
    if not failed or last is None:
        return 0.0
    return max(0.0, (last + dt.timedelta(seconds=retry_delay(failed)) - now).total_seconds())


def _ttl(job: dict, spec: dict, decision: JobDecision, now: dt.datetime) -> None:
    ttl = spec.get("ttlSecondsAfterFinished")
    finished = finished_at({**job, "status": decision.status})
    if ttl is None or finished is None:
        return
    remaining = (finished + dt.timedelta(seconds=ttl) - now).total_seconds()
    if remaining <= 0:
        decision.delete_job = True
    else:
        decision.requeue_after = remaining


def _restart_policy(spec: dict) -> str:
    return ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") or "Never"


def _counts(active: int, succeeded: int, failed: int, ready: int, terminating: int) -> dict:
    return {"active": active, "succeeded": succeeded, "failed": failed, "ready": ready, "terminating": terminating,
            "uncountedTerminatedPods": {}}


def _without_zero(status: dict) -> dict:
    # The API omits zero counters (omitempty); `ready` and `terminating` are always reported.
    return {key: value for key, value in status.items()
            if not (key in ("active", "succeeded", "failed") and value == 0)}


def pod_name(job_name: str) -> str:
    suffix = "".join(secrets.choice(NAME_ALPHABET) for _ in range(5))
    return f"{job_name[:57]}-{suffix}"


def pod_for_job(job: dict, name: str) -> dict:
    """A Pod from the Job's template, labelled and owned the way the Job controller does it."""
    meta = job["metadata"]
    template = copy.deepcopy((job.get("spec") or {}).get("template") or {})
    template_meta = template.get("metadata") or {}
    labels = dict(template_meta.get("labels") or {})
    for key, value in ((LABEL_CONTROLLER_UID, meta["uid"]), (LEGACY_LABEL_CONTROLLER_UID, meta["uid"]),
                       (LABEL_JOB_NAME, meta["name"]), (LEGACY_LABEL_JOB_NAME, meta["name"])):
        labels.setdefault(key, value)
    pod_meta = {"name": name, "namespace": meta.get("namespace", "default"), "labels": labels,
                "ownerReferences": [owner_reference(job)]}
    if template_meta.get("annotations"):
        pod_meta["annotations"] = dict(template_meta["annotations"])
    spec = template.get("spec") or {}
    spec.setdefault("nodeName", NODE_NAME)  # the sandbox has one node; bound pods get graceful deletion
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}
