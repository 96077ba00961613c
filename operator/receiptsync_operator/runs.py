"""Pure run and attempt decisions: when a new run starts, what its payload is, whether a failed
attempt is retried, and whether a running attempt is lost or late.

A resource without a schedule runs once per ``metadata.generation`` and once per new value of the
run-now annotation. A trigger that arrives while a run is still going waits for that run to end
(it is never dropped and never stops work in progress).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from receiptsync_common import contract, daterange
from receiptsync_common.jobspec import JobPayload

from . import status as st
from . import validation

TRIGGER_GENERATION = "generation"
TRIGGER_RUN_NOW = "run-now"


@dataclasses.dataclass(frozen=True)
class Trigger:
    kind: str  # TRIGGER_GENERATION | TRIGGER_RUN_NOW
    generation: int | None
    # The run-now annotation's value when the run starts (whatever the trigger), recorded with the
    # run so the same value never starts another one.
    run_now: str | None


def last_run_now(status: Mapping[str, Any]) -> str | None:
    """The run-now value the newest run was started under: status.observedRunNow where the schema
    has it, else the newest status.runs entry (which trimming always keeps)."""
    if "observedRunNow" in status:
        return status.get("observedRunNow")
    history = status.get("runs") or []
    return history[-1].get("runNow") if history else None


def pending_trigger(meta: Mapping[str, Any], status: Mapping[str, Any]) -> Trigger | None:
    """The trigger for a new run, if one is due (whether or not a run is still going)."""
    if meta.get("deletionTimestamp"):
        return None
    generation = meta.get("generation")
    run_now = (meta.get("annotations") or {}).get(contract.RUN_NOW_ANNOTATION) or None
    if generation is not None and status.get("observedGeneration") != generation:
        # A spec change runs once; a run-now value set at the same time is satisfied by that run.
        return Trigger(TRIGGER_GENERATION, generation, run_now)
    if run_now is not None and run_now != last_run_now(status):
        return Trigger(TRIGGER_RUN_NOW, generation, run_now)
    return None


def next_run(meta: Mapping[str, Any], status: Mapping[str, Any]) -> Trigger | None:
    """The trigger to act on now: one is due and no run is in progress."""
    trigger = pending_trigger(meta, status)
    if trigger is None or st.is_active(status):
        return None
    return trigger


def next_run_id(status: Mapping[str, Any]) -> int:
    return int(status.get("runId") or 0) + 1


def job_id_for(meta: Mapping[str, Any], run_id: int, attempt: int) -> str:
    return contract.make_job_id(meta["namespace"], meta["name"], meta["uid"], run_id, attempt)


def job_name_for(meta: Mapping[str, Any], run_id: int, attempt: int) -> str:
    return contract.worker_job_name(meta["name"], meta["uid"], run_id, attempt)


def parse_job_id(job_id: str) -> tuple[str, str, int, int] | None:
    """(namespace, name, run, attempt) from a ``contract.make_job_id`` id. Namespaces have no dots;
    names may, so the name is whatever lies between the namespace and the last three parts."""
    namespace, _, rest = job_id.partition(".")
    parts = rest.rsplit(".", 3)
    if not namespace or len(parts) != 4:
        return None
    name, _uid, run, attempt = parts
    if not (run.startswith("r") and attempt.startswith("a") and run[1:].isdigit() and attempt[1:].isdigit()):
        return None
    return namespace, name, int(run[1:]), int(attempt[1:])


def build_payload(
    meta: Mapping[str, Any], spec: Mapping[str, Any], *, run_id: int, attempt: int, now: dt.datetime
) -> JobPayload:
    """The job payload for a run's attempt; raises :class:`validation.InvalidSpec`."""
    tz = validation.check_time_zone(spec.get("timeZone"))
    mode = spec.get("mode") or contract.MODE_INCREMENTAL
    months_back = int(spec.get("monthsBack") or 12)
    try:
        from_date = daterange.parse_date(spec["fromDate"], "fromDate") if spec.get("fromDate") else None
        to_date = daterange.parse_date(spec["toDate"], "toDate") if spec.get("toDate") else None
        first, last = daterange.resolve_date_range(
            today=daterange.today_in(tz, now), mode=mode, from_date=from_date, to_date=to_date,
            months_back=months_back,
        )
    except daterange.DateRangeError as exc:
        raise validation.InvalidSpec(str(exc)) from None
    return JobPayload(
        job_id=job_id_for(meta, run_id, attempt),
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        business_id=spec["businessId"],
        run_id=run_id,
        attempt=attempt,
        mode=mode,
        priority=spec.get("priority") or contract.PRIORITY_DEFAULT,
        max_messages=int(spec.get("maxMessages") or 5000),
        timeout_seconds=validation.parse_duration(spec.get("timeout") or "1h"),
        time_zone=tz,
        date_from=first.isoformat(),
        date_to=last.isoformat(),
        explicit_from=bool(from_date),
        explicit_to=bool(to_date),
        months_back=months_back,
        query=spec.get("query") or None,
        enqueued_at=st.rfc3339(now),
    )


def known_range(payload: JobPayload) -> tuple[str, str] | None:
    """The range status can show before the worker reports: not for incremental runs without dates,
    whose real start the worker finds from the last successful sync."""
    if payload.mode == contract.MODE_INCREMENTAL and not (payload.explicit_from or payload.explicit_to):
        return None
    if payload.date_from and payload.date_to:
        return payload.date_from, payload.date_to
    return None


def next_attempt_payload(previous: JobPayload, meta: Mapping[str, Any], now: dt.datetime) -> JobPayload:
    """The same run, one attempt later: same range and options, a new job id."""
    attempt = previous.attempt + 1
    return dataclasses.replace(
        previous, attempt=attempt, job_id=job_id_for(meta, previous.run_id, attempt), enqueued_at=st.rfc3339(now)
    )


# --- failures and retries -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Retry:
    next_attempt: int
    max_attempts: int


@dataclasses.dataclass(frozen=True)
class Fail:
    reason: str
    message: str


def backoff_limit(spec: Mapping[str, Any]) -> int:
    value = spec.get("backoffLimit")
    return 3 if value is None else int(value)


def after_failure(attempt: int, spec: Mapping[str, Any], reason: str, detail: str) -> Retry | Fail:
    """Retry up to backoffLimit (attempts = backoffLimit + 1); reasons no retry can fix fail at once."""
    limit = backoff_limit(spec)
    if reason in contract.NON_RETRYABLE_REASONS:
        return Fail(reason, f"Attempt {attempt} failed with {reason}: {detail}; not retried")
    if attempt > limit:
        return Fail(
            contract.REASON_BACKOFF_LIMIT_EXCEEDED,
            f"Attempt {attempt} ended with {reason}: {detail}; backoffLimit {limit} reached",
        )
    return Retry(next_attempt=attempt + 1, max_attempts=limit + 1)


# --- attempt health -----------------------------------------------------------------------------------
JOB_ACTIVE = "active"
JOB_SUCCEEDED = "succeeded"
JOB_FAILED = "failed"
JOB_DEADLINE = "deadline"
JOB_GONE = "gone"


def check_attempt(
    status: Mapping[str, Any],
    spec: Mapping[str, Any],
    *,
    now: dt.datetime,
    last_heartbeat: dt.datetime | None,
    job_state: str | None,
    job_bad_for: float,
    heartbeat_timeout: float,
    job_gone_grace: float,
) -> tuple[str, str] | None:
    """(reason, detail) when the current attempt is over without telling us, else None.

    ``job_state`` is the worker Job's state (None if the operator has not created it yet) and
    ``job_bad_for`` how long it has been failed/succeeded/gone, so a final heartbeat still in flight
    gets ``job_gone_grace`` seconds to arrive first.
    """
    phase = status.get("phase")
    if phase not in (contract.PHASE_QUEUED, contract.PHASE_STARTED):
        return None
    job = status.get("workerJob")
    if job_state == JOB_DEADLINE:
        return contract.REASON_TIMEOUT, f"worker Job {job} ran past its deadline"
    if job_state in (JOB_FAILED, JOB_SUCCEEDED, JOB_GONE) and job_bad_for >= job_gone_grace:
        what = {JOB_FAILED: "failed", JOB_SUCCEEDED: "exited", JOB_GONE: "disappeared"}[job_state]
        return contract.REASON_WORKER_LOST, f"worker Job {job} {what} without a final heartbeat"
    if phase != contract.PHASE_STARTED:
        return None
    started = st.parse_time(status.get("startedAt"))
    timeout = validation.parse_duration(spec.get("timeout") or "1h")
    if started is not None and (now - started).total_seconds() > timeout:
        return contract.REASON_TIMEOUT, f"attempt ran longer than spec.timeout ({spec.get('timeout') or '1h'})"
    seen = [t for t in (last_heartbeat, st.parse_time(status.get("lastHeartbeatTime")), started) if t]
    newest = max(seen) if seen else None
    if newest is None or (now - newest).total_seconds() > heartbeat_timeout:
        age = "ever" if newest is None else f"{(now - newest).total_seconds():.0f}s"
        return contract.REASON_WORKER_LOST, f"no heartbeat for {age} (heartbeat timeout {heartbeat_timeout:g}s)"
    return None


def progress_interval(started: dt.datetime | None, now: dt.datetime, minimum: float, maximum: float) -> float:
    """Gap between counter-only status writes: grows with the attempt's age so a long run stays
    within a handful of writes, while short runs update every ``minimum`` seconds."""
    if started is None:
        return minimum
    return max(minimum, min(maximum, (now - started).total_seconds()))
