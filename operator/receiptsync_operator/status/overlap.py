"""Overlapping runs (concurrencyPolicy Allow) and replaced runs, as pure status patches.

The top-level status always describes the newest run. Under Allow an older run can still be going
when a newer one starts: it goes on as a "background" run, tracked only by its status.runs entry
(phase, jobId, workerJob, attempt, counters when it ends). Its heartbeats and its worker Job's fate
end that entry; it is not retried (a failed attempt fails the run), which keeps one retry chain, the
newest run's, per resource.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from receiptsync_common import contract

from . import messages as say
from .history import ACTIVE_PHASES, history_limits, is_active, parse_time, progress_of, rfc3339, trim_runs, upsert_run
from .patches import int_or_none

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
    counters = {name: value for name, value in (("messagesScanned", int_or_none(hb.get(contract.HB_SCANNED))),
                                                ("savedReceipts", int_or_none(hb.get(contract.HB_SAVED))))
                if value is not None}
    run_id = entry.get("runId")
    if phase == contract.PHASE_FINISHED:
        message = hb.get(contract.HB_MESSAGE) or say.finished(
            run_id, counters.get("messagesScanned", 0), counters.get("savedReceipts", 0))
        reason = hb.get(contract.HB_REASON) or contract.REASON_SUCCEEDED
        patch = end_background_run(status, entry, phase=contract.PHASE_FINISHED, reason=reason, message=message,
                                   now=now, spec=spec, counters=counters)
        return patch, ("Normal", contract.PHASE_FINISHED, message)
    if phase == contract.PHASE_FAILED:
        reason = hb.get(contract.HB_REASON) or contract.REASON_WORKER_ERROR
        detail = hb.get(contract.HB_MESSAGE) or say.WORKER_REPORTED_FAILURE
        message = say.background_failed(run_id, reason, detail)
        patch = end_background_run(status, entry, phase=contract.PHASE_FAILED, reason=reason, message=message,
                                   now=now, spec=spec, counters=counters)
        return patch, ("Warning", reason, message)
    if phase == contract.PHASE_STARTED and entry.get("phase") != contract.PHASE_STARTED:
        message = say.background_syncing(run_id)
        update = {"runId": run_id, "phase": contract.PHASE_STARTED, "reason": contract.REASON_SYNCING,
                  "message": message, "startedAt": rfc3339(parse_time(hb.get(contract.HB_TIME)) or now)}
        return {"runs": upsert_run(status.get("runs"), update)}, ("Normal", contract.PHASE_STARTED, message)
    return None


def replaced(status: Mapping[str, Any], *, new_run_id: int,
             now: dt.datetime) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """concurrencyPolicy Replace: every run still going ends Failed/Replaced. Returns the patch (only
    status.runs: the top-level fields are about to describe the new run) and the runs it stopped, as
    they were (their jobId and workerJob tell what to stop)."""
    stopped = list(background_runs(status))
    if is_active(status):
        stopped.append({"runId": status.get("runId"), "phase": status.get("phase"), "jobId": status.get("jobId"),
                        "workerJob": status.get("workerJob"), "attempt": status.get("attempt"),
                        **progress_of(status)})
    runs = list(status.get("runs") or [])
    for entry in stopped:
        message = say.replaced(entry.get("runId"), new_run_id)
        update = {"runId": entry.get("runId"), "phase": contract.PHASE_FAILED, "reason": contract.REASON_REPLACED,
                  "message": message, "finishTime": rfc3339(now)}
        if entry.get("runId") == status.get("runId"):
            update.update(progress_of(status))
        runs = upsert_run(runs, update)
    return ({"runs": runs} if stopped else {}), stopped
