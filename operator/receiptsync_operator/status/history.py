"""Pure pieces every status patch is built from: times, conditions, and the ``status.runs`` history."""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from receiptsync_common import contract

from .messages import rfc3339

ACTIVE_PHASES = (contract.PHASE_PENDING, contract.PHASE_QUEUED, contract.PHASE_STARTED)
REASON_RUNNING = "Running"

__all__ = ["rfc3339"]  # re-exported: the one time format of status


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
            "lastTransitionTime": (rfc3339(now) if changed or not old.get("lastTransitionTime")
                                   else old["lastTransitionTime"]),
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


def progress_of(status: Mapping[str, Any]) -> dict[str, int]:
    progress = status.get("progress") or {}
    return {
        "messagesScanned": int(progress.get("messagesScanned") or 0),
        "savedReceipts": int(progress.get("savedReceipts") or 0),
    }
