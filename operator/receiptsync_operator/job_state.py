"""What a worker Job and its Pod say, in pure functions over the API's own dicts:

* :func:`state` - the Job's state, reading the conditions Kubernetes >= 1.31 sets first
  (``FailureTarget``, ``SuccessCriteriaMet``) as well as ``Failed``/``Complete``;
* :func:`pod_trouble` - why a worker pod is not running, in Kubernetes' own words (Unschedulable,
  ErrImagePull/ImagePullBackOff, CreateContainerConfigError, OOMKilled), and whether waiting helps;
* :func:`failed_create` - the Job controller's FailedCreate Event (quota, admission) for a pod-less Job;
* :func:`termination_outcome` - the worker's own final word from its termination message;
* :func:`slots_held` - worker slots in use: active Jobs, and Jobs whose pod has not gone yet;
* :func:`creation_refusal_is_permanent` - a refused Job creation that no retry will fix.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any

from receiptsync_common import contract

from .status import messages as say

JOB_ACTIVE = "active"
JOB_SUCCEEDED = "succeeded"
JOB_FAILED = "failed"
JOB_DEADLINE = "deadline"
JOB_GONE = "gone"

JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
IMAGE_PULL_WORDS = ("ErrImagePull", "ImagePullBackOff")
IMAGE_NEVER_WORDS = ("InvalidImageName", "ErrImageNeverPull")  # no retry of the pull can fix these
CONFIG_WORDS = ("CreateContainerConfigError",)
WORKER_CONTAINER = "worker"


def _true_conditions(job: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {c.get("type"): c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}


def state(job: Mapping[str, Any] | None) -> str:
    """JOB_* for a Job object (None: gone)."""
    if job is None:
        return JOB_GONE
    conds = _true_conditions(job)
    for ctype in ("FailureTarget", "Failed"):
        if ctype in conds:
            return JOB_DEADLINE if conds[ctype].get("reason") == "DeadlineExceeded" else JOB_FAILED
    if "SuccessCriteriaMet" in conds or "Complete" in conds:
        return JOB_SUCCEEDED
    job_status = job.get("status") or {}
    if job_status.get("failed"):
        return JOB_FAILED
    if job_status.get("succeeded"):
        return JOB_SUCCEEDED
    return JOB_ACTIVE


def is_active(job: Mapping[str, Any]) -> bool:
    return state(job) == JOB_ACTIVE


def job_name_of_pod(pod: Mapping[str, Any]) -> str | None:
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    for label in JOB_NAME_LABELS:
        if labels.get(label):
            return labels[label]
    owner = next((o for o in meta.get("ownerReferences") or [] if o.get("kind") == "Job"), None)
    return owner.get("name") if owner else None


def pod_is_live(pod: Mapping[str, Any]) -> bool:
    """The pod may still run (it holds its node's resources): not Succeeded/Failed yet, even while
    it is being deleted (terminating)."""
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def slots_held(jobs: Iterable[tuple[str, Mapping[str, Any]]], pods: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
    """Worker slots in use, over (namespace, object) pairs: a Job that is active, or whose pod is
    still live (a finished or deleted Job's pod can take up to its grace period to go)."""
    held = {(ns, (job.get("metadata") or {}).get("name")) for ns, job in jobs if is_active(job)}
    held |= {(ns, job_name_of_pod(pod)) for ns, pod in pods if pod_is_live(pod)}
    return len(held)


# --- pod trouble ------------------------------------------------------------------------------------
PENDING = "pending"  # may still resolve itself: named in status, the attempt waits
FATAL = "fatal"  # the attempt fails now (retried per backoffLimit unless the reason says otherwise)


@dataclasses.dataclass(frozen=True)
class PodTrouble:
    word: str  # Kubernetes' own word: Unschedulable, ImagePullBackOff, OOMKilled, ...
    detail: str  # Kubernetes' own message
    pod: str
    verdict: str  # PENDING | FATAL
    reason: str  # status reason for a FATAL verdict (contract.REASON_*)

    @property
    def message(self) -> str:
        return say.pod_trouble(self.word, self.pod, self.detail)


def trouble_kind(word: str) -> str:
    """What one lasting trouble is timed as. The kubelet alternates ErrImagePull (a try failed) and
    ImagePullBackOff (waiting for the next try, 10 s doubling) for one image it cannot pull: one
    trouble, or the pull timeout would start again with every try and never be reached."""
    return "ImagePull" if word in IMAGE_PULL_WORDS else word


def _worker_status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return next((s for s in statuses if s.get("name") == WORKER_CONTAINER), statuses[0] if statuses else {})


def pod_trouble(pod: Mapping[str, Any], *, trouble_for: float, start_timeout: float,
                image_pull_timeout: float) -> PodTrouble | None:
    """Why ``pod`` is not running, if Kubernetes says. ``trouble_for``: how long (on the operator's
    clock) this pod has shown the same trouble; the timeouts turn waiting into a failure."""
    name = (pod.get("metadata") or {}).get("name", "")
    pod_status = pod.get("status") or {}
    container = _worker_status(pod)
    terminated = (container.get("state") or {}).get("terminated") or {}
    if terminated.get("reason") == "OOMKilled":
        detail = f"the worker used more memory than its limit ({say.exit_code(terminated.get('exitCode', 137))})"
        return PodTrouble("OOMKilled", detail, name, FATAL, contract.REASON_OOM_KILLED)
    waiting = (container.get("state") or {}).get("waiting") or {}
    word, detail = waiting.get("reason") or "", waiting.get("message") or ""
    if word in CONFIG_WORDS:
        return PodTrouble(word, detail, name, FATAL, contract.REASON_WORKER_CONFIG_ERROR)
    if word in IMAGE_NEVER_WORDS:
        return PodTrouble(word, detail, name, FATAL, contract.REASON_IMAGE_PULL_FAILED)
    if word in IMAGE_PULL_WORDS:
        verdict = FATAL if trouble_for >= image_pull_timeout else PENDING
        return PodTrouble(word, detail, name, verdict, contract.REASON_IMAGE_PULL_FAILED)
    for cond in pod_status.get("conditions") or []:
        if (cond.get("type"), cond.get("status"), cond.get("reason")) == ("PodScheduled", "False", "Unschedulable"):
            verdict = FATAL if trouble_for >= start_timeout else PENDING
            return PodTrouble("Unschedulable", cond.get("message") or "", name, verdict, contract.REASON_UNSCHEDULABLE)
    return None


def failed_create(events: Iterable[Mapping[str, Any]]) -> str | None:
    """The newest FailedCreate message among a Job's Events (None: none)."""
    found = [e for e in events if e.get("reason") == "FailedCreate"]
    if not found:
        return None
    newest = max(found, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return newest.get("message") or "FailedCreate"


def exit_code(pod: Mapping[str, Any]) -> int | None:
    terminated = ((_worker_status(pod).get("state") or {}).get("terminated")) or {}
    code = terminated.get("exitCode")
    return code if isinstance(code, int) else None


def termination_outcome(pod: Mapping[str, Any], job_id: str) -> dict[str, str] | None:
    """The worker's termination message (JSON with ``outcome``: Finished or Failed, and optionally
    reason, message, counters) as a final heartbeat, for when the heartbeat itself was lost."""
    terminated = ((_worker_status(pod).get("state") or {}).get("terminated")) or {}
    raw = terminated.get("message")
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    outcome = data.get("outcome") or data.get("phase")
    if outcome not in (contract.PHASE_FINISHED, contract.PHASE_FAILED):
        return None
    if data.get("job_id") not in (None, job_id):
        return None
    hb = {contract.HB_JOB_ID: job_id, contract.HB_PHASE: outcome}
    # The worker nests its counters under "counters" (receiptsync_worker.outcome.termination_message).
    counters = data.get("counters") if isinstance(data.get("counters"), dict) else {}
    for field in (contract.HB_REASON, contract.HB_MESSAGE, contract.HB_SCANNED, contract.HB_SAVED,
                  contract.HB_DATE_FROM, contract.HB_DATE_TO, contract.HB_TIME):
        value = data.get(field, counters.get(field))
        if value is not None:
            hb[field] = str(value)
    if terminated.get("finishedAt") and contract.HB_TIME not in hb:
        hb[contract.HB_TIME] = str(terminated["finishedAt"])
    return hb


# --- refused Job creations -----------------------------------------------------------------------
# Admission said no: Pod Security, a webhook ("admission webhook ... denied the request"), a
# ValidatingAdmissionPolicy ("... with binding ... denied request: ...").
_PERMANENT_403 = ("violates podsecurity", "admission webhook", "denied the request", "denied request",
                  "is forbidden: pod security")


def creation_refusal_is_permanent(status: int, message: str) -> bool:
    """A refused Job creation no retry will fix (the run fails with the server's message): the
    object is invalid (400, 422), its namespace is gone (404), or admission refused it (a webhook,
    a ValidatingAdmissionPolicy, Pod Security). RBAC, quota (403 "exceeded quota"), 429 and 5xx are retried
    with backoff."""
    if status in (400, 404, 422):
        return True
    if status == 403:
        text = (message or "").lower()
        return "exceeded quota" not in text and any(marker in text for marker in _PERMANENT_403)
    return False
