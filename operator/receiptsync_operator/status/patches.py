"""Pure status transitions: each takes the current status (a plain dict) and returns a JSON merge
patch for it. The operator is the only writer of status, so it sends whole lists (conditions, runs)."""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from receiptsync_common import contract

from . import messages as say
from .history import (REASON_RUNNING, conditions, history_limits, parse_time, progress_of, rfc3339, trim_runs,
                      upsert_run)

# A heartbeat that only says "still alive" moves lastHeartbeatTime at most this often; news (progress,
# a new phase) is written whatever its age. Liveness itself is judged from the heartbeats, not status.
HEARTBEAT_TIME_REFRESH = 30.0

# --- the transitions -----------------------------------------------------------------------------------
def queued(
    status: Mapping[str, Any],
    *,
    run_id: int,
    job_id: str,
    now: dt.datetime,
    generation: int | None,
    date_range: tuple[str, str] | None,
    run_now: str | None,
    trigger: str,
    spec: Mapping[str, Any],
    schedule_time: dt.datetime | None = None,
) -> dict[str, Any]:
    """A new run's first attempt is in the queue. ``schedule_time``: the tick that started it."""
    message = say.queued(run_id)
    entry = {
        "runId": run_id, "phase": contract.PHASE_QUEUED, "reason": contract.REASON_WAITING_FOR_WORKER,
        "message": message, "attempt": 1, "jobId": job_id, "startTime": rfc3339(now), "trigger": trigger,
        "runNow": run_now, "generation": generation,
        "scheduleTime": rfc3339(schedule_time) if schedule_time else None,
    }
    runs = trim_runs(upsert_run(status.get("runs"), entry), *history_limits(spec))
    patch: dict[str, Any] = {
        "phase": contract.PHASE_QUEUED,
        "reason": contract.REASON_WAITING_FOR_WORKER,
        "message": message,
        "runId": run_id,
        "attempt": 1,
        "jobId": job_id,
        "workerJob": None,
        "enqueuedAt": rfc3339(now),
        "startedAt": None,
        "finishedAt": None,
        "lastHeartbeatTime": None,
        "progress": {"messagesScanned": 0, "savedReceipts": 0},
        "dateRange": {"from": date_range[0], "to": date_range[1]} if date_range else None,
        "conditions": conditions(
            status.get("conditions"), complete=False, failed=False, reason=REASON_RUNNING,
            message=message, now=now, generation=generation,
        ),
        "observedGeneration": generation,
        "runs": runs,
    }
    return _with_trigger(patch, run_now, schedule_time)


def _with_trigger(patch: dict[str, Any], run_now: str | None, schedule_time: dt.datetime | None) -> dict[str, Any]:
    """Remember what started the run: the last run-now value acted on stays remembered through runs
    without one (the writer drops observedRunNow where the CRD's schema lacks it)."""
    if run_now is not None:
        patch["observedRunNow"] = run_now
    if schedule_time is not None:
        patch["lastScheduleTime"] = rfc3339(schedule_time)
    return patch


def failed(
    status: Mapping[str, Any],
    *,
    reason: str,
    message: str,
    now: dt.datetime,
    spec: Mapping[str, Any],
    generation: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The current run failed for good."""
    generation = generation if generation is not None else status.get("observedGeneration")
    progress = {**progress_of(status), **((extra or {}).get("progress") or {})}
    entry = {
        "runId": status.get("runId"), "phase": contract.PHASE_FAILED, "reason": reason, "message": message,
        "attempt": status.get("attempt"), "jobId": status.get("jobId"), "workerJob": status.get("workerJob"),
        "finishTime": rfc3339(now), **progress,
    }
    runs = status.get("runs")
    if status.get("runId") is not None:
        runs = trim_runs(upsert_run(runs, entry), *history_limits(spec))
    patch = {
        **(extra or {}),
        "phase": contract.PHASE_FAILED,
        "reason": reason,
        "message": message,
        "finishedAt": rfc3339(now),
        "conditions": conditions(
            status.get("conditions"), complete=False, failed=True, reason=reason, message=message,
            now=now, generation=generation,
        ),
        "runs": runs,
    }
    return patch


def invalid_spec(
    status: Mapping[str, Any],
    *,
    message: str,
    run_id: int,
    now: dt.datetime,
    generation: int | None,
    run_now: str | None,
    trigger: str,
    spec: Mapping[str, Any],
    schedule_time: dt.datetime | None = None,
    reason: str = contract.REASON_INVALID_SPEC,
) -> dict[str, Any]:
    """A new run that cannot start: its spec is wrong (or, with ``reason``, something else a retry
    cannot fix). Counted as a run so the history shows it."""
    entry = {
        "runId": run_id, "phase": contract.PHASE_FAILED, "reason": reason,
        "message": message, "attempt": 0, "startTime": rfc3339(now), "finishTime": rfc3339(now),
        "trigger": trigger, "runNow": run_now, "generation": generation,
        "scheduleTime": rfc3339(schedule_time) if schedule_time else None,
    }
    base = {**status, "runId": run_id, "attempt": 0, "jobId": None, "workerJob": None, "runs": status.get("runs")}
    base["runs"] = upsert_run(base["runs"], entry)
    patch = failed(
        base, reason=reason, message=message, now=now, spec=spec,
        generation=generation,
        extra={
            "runId": run_id, "attempt": 0, "jobId": None, "workerJob": None, "enqueuedAt": None,
            "startedAt": None, "lastHeartbeatTime": None, "dateRange": None,
            "progress": {"messagesScanned": 0, "savedReceipts": 0},
            "observedGeneration": generation,
        },
    )
    return _with_trigger(patch, run_now, schedule_time)


def retrying(
    status: Mapping[str, Any],
    *,
    reason: str,
    detail: str,
    next_attempt: int,
    max_attempts: int,
    job_id: str,
    now: dt.datetime,
    spec: Mapping[str, Any],
    retry_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """The attempt failed but the run goes on: the next attempt is queued (to start at ``retry_at``).
    The reason stays the failure's (e.g. WorkerLost) until a worker picks the new attempt up."""
    message = say.retrying(next_attempt - 1, reason, detail, next_attempt, max_attempts, retry_at)
    entry = {"runId": status.get("runId"), "phase": contract.PHASE_QUEUED, "reason": reason, "message": message,
             "attempt": next_attempt, "jobId": job_id, "workerJob": None}
    return {
        "phase": contract.PHASE_QUEUED,
        "reason": reason,
        "message": message,
        "attempt": next_attempt,
        "jobId": job_id,
        "workerJob": None,
        "enqueuedAt": rfc3339(now),
        "startedAt": None,
        "runs": trim_runs(upsert_run(status.get("runs"), entry), *history_limits(spec)),
    }


def worker_starting(status: Mapping[str, Any], *, job_name: str) -> dict[str, Any]:
    """The worker Job exists; its pod has not reported yet."""
    return {
        "reason": contract.REASON_WORKER_STARTING,
        "message": say.worker_starting(job_name, status.get("attempt")),
        "workerJob": job_name,
        "runs": upsert_run(status.get("runs"), {"runId": status.get("runId"), "workerJob": job_name,
                                                "reason": contract.REASON_WORKER_STARTING}),
    }


def waiting(status: Mapping[str, Any], *, position: int, total: int, max_workers: int) -> dict[str, Any] | None:
    """Place in line while capped; None when the status already says so."""
    message = say.waiting(position, total, max_workers)
    if status.get("reason") == contract.REASON_WAITING_FOR_WORKER and status.get("message") == message:
        return None
    return {"reason": contract.REASON_WAITING_FOR_WORKER, "message": message}


def pod_news(status: Mapping[str, Any], *, message: str) -> dict[str, Any] | None:
    """The worker's pod is not running yet, for a reason Kubernetes names (Unschedulable,
    ImagePullBackOff, FailedCreate...) that may still resolve itself; None when status says so already."""
    if status.get("reason") == contract.REASON_WORKER_POD_PENDING and status.get("message") == message:
        return None
    return {"reason": contract.REASON_WORKER_POD_PENDING, "message": message}


def job_create_failed(status: Mapping[str, Any], *, message: str) -> dict[str, Any] | None:
    """Creating the worker Job was refused for now (retried with backoff); None when status says so."""
    if status.get("reason") == contract.REASON_WORKER_JOB_CREATE_FAILED and status.get("message") == message:
        return None
    return {"reason": contract.REASON_WORKER_JOB_CREATE_FAILED, "message": message}


# --- heartbeats ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class HeartbeatUpdate:
    patch: dict[str, Any]
    transition: bool = False  # phase or reason changed: write at once
    failure: tuple[str, str] | None = None  # the attempt failed: (reason, message) for the retry logic
    event: tuple[str, str, str] | None = None  # (type, reason, message) for a Kubernetes Event


def int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def from_heartbeat(
    status: Mapping[str, Any], spec: Mapping[str, Any], hb: Mapping[str, str], now: dt.datetime
) -> HeartbeatUpdate | None:
    """The status change one heartbeat asks for; None when it changes nothing or is stale (another
    attempt's, or the run is already over)."""
    if not hb.get(contract.HB_JOB_ID) or hb.get(contract.HB_JOB_ID) != status.get("jobId"):
        return None
    if status.get("phase") in contract.TERMINAL_PHASES:
        return None
    phase = hb.get(contract.HB_PHASE, "")
    hb_time = parse_time(hb.get(contract.HB_TIME)) or now
    previous = parse_time(status.get("lastHeartbeatTime"))
    if previous is not None and hb_time < previous and phase == contract.PHASE_STARTED:
        return None  # an older heartbeat replayed after a newer one

    progress = progress_of(status)
    scanned, saved = int_or_none(hb.get(contract.HB_SCANNED)), int_or_none(hb.get(contract.HB_SAVED))
    if scanned is not None:
        progress["messagesScanned"] = scanned
    if saved is not None:
        progress["savedReceipts"] = saved
    patch: dict[str, Any] = {"lastHeartbeatTime": rfc3339(hb_time)}
    if progress != progress_of(status):
        patch["progress"] = progress
    if hb.get(contract.HB_DATE_FROM) and hb.get(contract.HB_DATE_TO):
        date_range = {"from": hb[contract.HB_DATE_FROM], "to": hb[contract.HB_DATE_TO]}
        if date_range != (status.get("dateRange") or {}):
            patch["dateRange"] = date_range
    counters = {"messagesScanned": progress["messagesScanned"], "savedReceipts": progress["savedReceipts"]}

    if phase == contract.PHASE_FINISHED:
        message = hb.get(contract.HB_MESSAGE) or say.finished(
            status.get("runId"), progress["messagesScanned"], progress["savedReceipts"])
        reason = hb.get(contract.HB_REASON) or contract.REASON_SUCCEEDED
        entry = {"runId": status.get("runId"), "phase": contract.PHASE_FINISHED, "reason": reason,
                 "message": message, "attempt": status.get("attempt"), "jobId": status.get("jobId"),
                 "workerJob": status.get("workerJob"), "finishTime": rfc3339(now),
                 "completionTime": rfc3339(now), **counters}
        patch.update({
            "phase": contract.PHASE_FINISHED,
            "reason": reason,
            "message": message,
            "finishedAt": rfc3339(now),
            "conditions": conditions(status.get("conditions"), complete=True, failed=False, reason=reason,
                                     message=message, now=now, generation=status.get("observedGeneration")),
            "runs": trim_runs(upsert_run(status.get("runs"), entry), *history_limits(spec)),
        })
        if not status.get("startedAt"):
            patch["startedAt"] = rfc3339(hb_time)
        return HeartbeatUpdate(patch=patch, transition=True, event=("Normal", contract.PHASE_FINISHED, message))

    if phase == contract.PHASE_FAILED:
        reason = hb.get(contract.HB_REASON) or contract.REASON_WORKER_ERROR
        detail = hb.get(contract.HB_MESSAGE) or say.WORKER_REPORTED_FAILURE
        return HeartbeatUpdate(patch=patch, transition=True, failure=(reason, detail))

    if phase == contract.PHASE_STARTED and status.get("phase") != contract.PHASE_STARTED:
        worker = hb.get(contract.HB_WORKER)
        message = hb.get(contract.HB_MESSAGE) or say.syncing(status.get("attempt"), worker)
        reason = hb.get(contract.HB_REASON) or contract.REASON_SYNCING
        patch.update({
            "phase": contract.PHASE_STARTED,
            "reason": reason,
            "message": message,
            "startedAt": rfc3339(hb_time),
            "runs": upsert_run(status.get("runs"), {"runId": status.get("runId"), "phase": contract.PHASE_STARTED,
                                                    "reason": reason, "message": message,
                                                    "attempt": status.get("attempt")}),
        })
        # No Event: the status says Started; Events are kept for a run's end and for trouble.
        return HeartbeatUpdate(patch=patch, transition=True)

    if phase == contract.PHASE_STARTED:
        if set(patch) == {"lastHeartbeatTime"} and previous is not None \
                and (hb_time - previous).total_seconds() < HEARTBEAT_TIME_REFRESH:
            return None  # only "still alive": not worth an API write this often
        return HeartbeatUpdate(patch=patch)
    return None  # an unknown phase: nothing we can truthfully say


