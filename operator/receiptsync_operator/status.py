"""Pure status arithmetic: the next ``status`` of a ReceiptSync from a heartbeat, a failure, a
retry; conditions; the ``status.runs`` history.

Every function takes the current status (a plain dict) and returns a JSON merge patch for it; the
operator is the only writer of status, so it can send whole lists (conditions, runs) each time.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from receiptsync_common import contract

ACTIVE_PHASES = (contract.PHASE_PENDING, contract.PHASE_QUEUED, contract.PHASE_STARTED)
REASON_RUNNING = "Running"


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    text = str(value).strip().replace("Z", "+00:00")
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def is_active(status: Mapping[str, Any]) -> bool:
    return status.get("phase") in ACTIVE_PHASES


# --- conditions ---------------------------------------------------------------------------------------
def conditions(
    existing: list[Mapping[str, Any]] | None,
    *,
    complete: bool,
    failed: bool,
    reason: str,
    message: str,
    now: dt.datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    """Complete and Failed, keeping lastTransitionTime when a condition's status did not flip."""
    previous = {c.get("type"): c for c in existing or []}
    result = []
    for ctype, value in ((contract.CONDITION_COMPLETE, complete), (contract.CONDITION_FAILED, failed)):
        status = "True" if value else "False"
        old = previous.get(ctype) or {}
        changed = old.get("status") != status
        cond: dict[str, Any] = {
            "type": ctype,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": rfc3339(now) if changed or not old.get("lastTransitionTime") else old["lastTransitionTime"],
        }
        if generation is not None:
            cond["observedGeneration"] = generation
        result.append(cond)
    return result


def condition_status(status: Mapping[str, Any], ctype: str) -> str | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == ctype:
            return cond.get("status")
    return None


# --- status.runs -----------------------------------------------------------------------------------
def upsert_run(runs: list[Mapping[str, Any]] | None, entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Replace the entry with the same runId (merging fields), or append it (newest last)."""
    result = [dict(r) for r in runs or []]
    for i, run in enumerate(result):
        if run.get("runId") == entry.get("runId"):
            merged = {**run, **entry}
            result[i] = {k: v for k, v in merged.items() if v is not None}
            return result
    result.append({k: v for k, v in entry.items() if v is not None})
    return result


def _run_number(entry: Mapping[str, Any]) -> int:
    try:
        return int(entry.get("runId") or 0)
    except (TypeError, ValueError):
        return 0


def trim_runs(runs: list[Mapping[str, Any]], successful_limit: int, failed_limit: int) -> list[dict[str, Any]]:
    """``status.runs`` ordered by runId (newest last), keeping runs still going, the newest
    ``successful_limit`` Finished and ``failed_limit`` Failed ones (negative limits count as 0), and
    always the newest run (the current/last one, which the top-level status describes too, and which
    remembers the run-now value it ran for where the CRD has no status.observedRunNow)."""
    ordered = sorted((dict(r) for r in runs or []), key=_run_number)
    left = {contract.PHASE_FINISHED: max(0, int(successful_limit)), contract.PHASE_FAILED: max(0, int(failed_limit))}
    kept: list[dict[str, Any]] = []
    for position, entry in enumerate(reversed(ordered)):
        phase = entry.get("phase")
        if phase in left:
            if left[phase] <= 0 and position != 0:
                continue
            left[phase] -= 1
        kept.append(entry)
    return kept[::-1]


def history_limits(spec: Mapping[str, Any]) -> tuple[int, int]:
    ok = spec.get("successfulRunsHistoryLimit")
    bad = spec.get("failedRunsHistoryLimit")
    return (3 if ok is None else int(ok)), (1 if bad is None else int(bad))


def _progress(status: Mapping[str, Any]) -> dict[str, int]:
    progress = status.get("progress") or {}
    return {
        "messagesScanned": int(progress.get("messagesScanned") or 0),
        "savedReceipts": int(progress.get("savedReceipts") or 0),
    }


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
    message = f"Run {run_id} is queued, waiting for a worker"
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


def as_clause(detail: str) -> str:
    """A worker's message (a sentence) made fit to continue after "…: " and before "; …"."""
    return detail.rstrip(" .")


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
    progress = {**_progress(status), **((extra or {}).get("progress") or {})}
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
) -> dict[str, Any]:
    """The attempt failed but the run goes on: the next attempt is queued. The reason stays the
    failure's (e.g. WorkerLost) until a worker picks the new attempt up."""
    message = (
        f"Attempt {next_attempt - 1} ended with {reason}: {as_clause(detail)}; "
        f"attempt {next_attempt} of {max_attempts} is queued"
    )
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
        "message": f"Worker Job {job_name} created for attempt {status.get('attempt') or 1}, waiting for it to start",
        "workerJob": job_name,
        "runs": upsert_run(status.get("runs"), {"runId": status.get("runId"), "workerJob": job_name,
                                                "reason": contract.REASON_WORKER_STARTING}),
    }


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def waiting_message(position: int, total: int, max_workers: int) -> str:
    return (
        f"Waiting for a worker: {ordinal(position)} in line of {total} "
        f"(all {max_workers} worker slots are busy)"
    )


def waiting(status: Mapping[str, Any], *, position: int, total: int, max_workers: int) -> dict[str, Any] | None:
    """Place in line while capped; None when the status already says so."""
    message = waiting_message(position, total, max_workers)
    if status.get("reason") == contract.REASON_WAITING_FOR_WORKER and status.get("message") == message:
        return None
    return {"reason": contract.REASON_WAITING_FOR_WORKER, "message": message}


# --- heartbeats ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class HeartbeatUpdate:
    patch: dict[str, Any]
    transition: bool = False  # phase or reason changed: write at once
    failure: tuple[str, str] | None = None  # the attempt failed: (reason, message) for the retry logic
    event: tuple[str, str, str] | None = None  # (type, reason, message) for a Kubernetes Event


def _int(value: Any) -> int | None:
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

    progress = _progress(status)
    scanned, saved = _int(hb.get(contract.HB_SCANNED)), _int(hb.get(contract.HB_SAVED))
    if scanned is not None:
        progress["messagesScanned"] = scanned
    if saved is not None:
        progress["savedReceipts"] = saved
    patch: dict[str, Any] = {"lastHeartbeatTime": rfc3339(hb_time)}
    if progress != _progress(status):
        patch["progress"] = progress
    if hb.get(contract.HB_DATE_FROM) and hb.get(contract.HB_DATE_TO):
        date_range = {"from": hb[contract.HB_DATE_FROM], "to": hb[contract.HB_DATE_TO]}
        if date_range != (status.get("dateRange") or {}):
            patch["dateRange"] = date_range
    counters = {"messagesScanned": progress["messagesScanned"], "savedReceipts": progress["savedReceipts"]}

    if phase == contract.PHASE_FINISHED:
        message = hb.get(contract.HB_MESSAGE) or (
            f"Run {status.get('runId')} finished: scanned {progress['messagesScanned']} messages, "
            f"saved {progress['savedReceipts']} receipts"
        )
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
        detail = hb.get(contract.HB_MESSAGE) or "the worker reported a failure"
        return HeartbeatUpdate(patch=patch, transition=True, failure=(reason, detail))

    if phase == contract.PHASE_STARTED and status.get("phase") != contract.PHASE_STARTED:
        worker = hb.get(contract.HB_WORKER)
        message = hb.get(contract.HB_MESSAGE) or (
            f"Attempt {status.get('attempt') or 1} is syncing" + (f" on {worker}" if worker else "")
        )
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
        return HeartbeatUpdate(patch=patch, transition=True, event=("Normal", contract.PHASE_STARTED, message))

    if phase == contract.PHASE_STARTED:
        return HeartbeatUpdate(patch=patch)
    return None  # an unknown phase: nothing we can truthfully say


# --- overlapping runs (concurrencyPolicy Allow) and replaced runs ----------------------------------------
# The top-level status always describes the newest run. Under Allow an older run can still be going
# when a newer one starts: it goes on as a "background" run, tracked only by its status.runs entry
# (phase, jobId, workerJob, attempt, counters when it ends). Its heartbeats and its worker Job's fate
# end that entry; it is not retried (a failed attempt fails the run), which keeps one retry chain, the
# newest run's, per resource.
def background_runs(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """status.runs entries still going that are not the current (top-level) run."""
    current = status.get("runId")
    return [dict(r) for r in status.get("runs") or []
            if r.get("runId") != current and r.get("phase") in ACTIVE_PHASES and r.get("jobId")]


def has_active_run(status: Mapping[str, Any]) -> bool:
    """Any run going, the current one or an overlapping older one (what concurrencyPolicy looks at)."""
    return is_active(status) or bool(background_runs(status))


def is_current_job(status: Mapping[str, Any], job_id: str) -> bool:
    return bool(job_id) and status.get("jobId") == job_id and status.get("phase") not in contract.TERMINAL_PHASES


def background_run_of(status: Mapping[str, Any], job_id: str) -> dict[str, Any] | None:
    """The background run whose current attempt is ``job_id``, if it is still going."""
    return next((r for r in background_runs(status) if r.get("jobId") == job_id), None)


def end_background_run(
    status: Mapping[str, Any], entry: Mapping[str, Any], *, phase: str, reason: str, message: str,
    now: dt.datetime, spec: Mapping[str, Any], counters: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Patch ending a background run (Finished or Failed)."""
    update = {"runId": entry.get("runId"), "phase": phase, "reason": reason, "message": message,
              "finishTime": rfc3339(now), **(counters or {})}
    if phase == contract.PHASE_FINISHED:
        update["completionTime"] = rfc3339(now)
    return {"runs": trim_runs(upsert_run(status.get("runs"), update), *history_limits(spec))}


def background_heartbeat(
    status: Mapping[str, Any], spec: Mapping[str, Any], hb: Mapping[str, str], now: dt.datetime
) -> tuple[dict[str, Any], tuple[str, str, str]] | None:
    """(patch, event) for a heartbeat of a background run's attempt; None if it changes nothing."""
    entry = background_run_of(status, hb.get(contract.HB_JOB_ID, ""))
    if entry is None:
        return None
    phase = hb.get(contract.HB_PHASE, "")
    counters = {name: value for name, value in (("messagesScanned", _int(hb.get(contract.HB_SCANNED))),
                                                ("savedReceipts", _int(hb.get(contract.HB_SAVED))))
                if value is not None}
    run_id = entry.get("runId")
    if phase == contract.PHASE_FINISHED:
        message = hb.get(contract.HB_MESSAGE) or (
            f"Run {run_id} finished: scanned {counters.get('messagesScanned', 0)} messages, "
            f"saved {counters.get('savedReceipts', 0)} receipts")
        reason = hb.get(contract.HB_REASON) or contract.REASON_SUCCEEDED
        patch = end_background_run(status, entry, phase=contract.PHASE_FINISHED, reason=reason, message=message,
                                   now=now, spec=spec, counters=counters)
        return patch, ("Normal", contract.PHASE_FINISHED, message)
    if phase == contract.PHASE_FAILED:
        reason = hb.get(contract.HB_REASON) or contract.REASON_WORKER_ERROR
        detail = hb.get(contract.HB_MESSAGE) or "the worker reported a failure"
        message = (f"Run {run_id}, overlapping a newer run, failed with {reason}: {detail}; "
                   "overlapping runs are not retried")
        patch = end_background_run(status, entry, phase=contract.PHASE_FAILED, reason=reason, message=message,
                                   now=now, spec=spec, counters=counters)
        return patch, ("Warning", reason, message)
    if phase == contract.PHASE_STARTED and entry.get("phase") != contract.PHASE_STARTED:
        message = f"Run {run_id} is syncing beside a newer run (concurrencyPolicy Allow)"
        update = {"runId": run_id, "phase": contract.PHASE_STARTED, "reason": contract.REASON_SYNCING,
                  "message": message, "startedAt": rfc3339(parse_time(hb.get(contract.HB_TIME)) or now)}
        return {"runs": upsert_run(status.get("runs"), update)}, ("Normal", contract.PHASE_STARTED, message)
    return None


def replaced(status: Mapping[str, Any], *, new_run_id: int, now: dt.datetime) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """concurrencyPolicy Replace: every run still going ends Failed/Replaced. Returns the patch (only
    status.runs: the top-level fields are about to describe the new run) and the runs it stopped, as
    they were (their jobId and workerJob tell what to stop)."""
    stopped = list(background_runs(status))
    if is_active(status):
        stopped.append({"runId": status.get("runId"), "phase": status.get("phase"), "jobId": status.get("jobId"),
                        "workerJob": status.get("workerJob"), "attempt": status.get("attempt"),
                        **_progress(status)})
    runs = list(status.get("runs") or [])
    for entry in stopped:
        message = f"Run {entry.get('runId')} was stopped: run {new_run_id} replaced it (concurrencyPolicy Replace)"
        update = {"runId": entry.get("runId"), "phase": contract.PHASE_FAILED, "reason": contract.REASON_REPLACED,
                  "message": message, "finishTime": rfc3339(now)}
        if entry.get("runId") == status.get("runId"):
            update.update(_progress(status))
        runs = upsert_run(runs, update)
    return ({"runs": runs} if stopped else {}), stopped
