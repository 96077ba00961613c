"""Pure run and attempt decisions: when a new run starts, what its payload is, whether a failed
attempt is retried, and whether a running attempt is lost or late.

This module is the one place that decides what starts a run:

* :func:`pending_trigger` - a resource without a schedule runs once per ``metadata.generation``
  (``status.observedGeneration`` remembers the generation of the newest run); both kinds run once per
  new value of the run-now annotation (``status.observedRunNow`` remembers the value the newest run
  started under). Such a trigger that arrives while a run is still going waits for that run to end
  (it is never dropped and never stops work in progress). A scheduled resource does not run for a
  spec edit: the edit changes what its next ticks do. Only an edit whose ``schedule``/``timeZone``
  cannot work runs "once" - as a run that fails at once with InvalidSpec, so status says why no tick
  will ever come.
* :func:`schedule_step` - for a scheduled resource, what the schedule asks for at ``now`` (CronJob
  semantics, see :mod:`schedule`), with the status fields that remember it: ``lastScheduleTime``
  (the tick of the newest run the schedule started), ``lastSkippedScheduleTime`` (the newest tick
  that got no run: Forbid with a run going, or past ``startingDeadlineSeconds``; it is never run
  late) and ``nextScheduleTime`` (cleared while suspended).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from receiptsync_common import contract, daterange
from receiptsync_common.jobspec import JobPayload

from . import schedule
from . import status as st
from . import validation
from .job_state import JOB_ACTIVE, JOB_DEADLINE, JOB_FAILED, JOB_GONE, JOB_SUCCEEDED  # noqa: F401 (runs.JOB_*)
from .status import messages as say

TRIGGER_GENERATION = "generation"
TRIGGER_RUN_NOW = "run-now"
TRIGGER_SCHEDULE = "schedule"


@dataclasses.dataclass(frozen=True)
class Trigger:
    kind: str  # TRIGGER_GENERATION | TRIGGER_RUN_NOW | TRIGGER_SCHEDULE
    generation: int | None
    # The run-now annotation's value when the run starts (whatever the trigger), recorded with the
    # run so the same value never starts another one.
    run_now: str | None
    schedule_time: dt.datetime | None = None  # the tick, for TRIGGER_SCHEDULE


def is_scheduled(spec: Mapping[str, Any] | None) -> bool:
    return bool((spec or {}).get("schedule"))


def last_run_now(status: Mapping[str, Any]) -> str | None:
    """The last run-now value a run was started under: status.observedRunNow where the schema has
    it, else the newest status.runs entry that records one (trimming always keeps the newest run)."""
    if status.get("observedRunNow") is not None:
        return status.get("observedRunNow")
    return next((r["runNow"] for r in reversed(status.get("runs") or []) if r.get("runNow")), None)


def _run_now_value(meta: Mapping[str, Any]) -> str | None:
    value = (meta.get("annotations") or {}).get(contract.RUN_NOW_ANNOTATION)
    return str(value) if value not in (None, "") else None


def pending_trigger(meta: Mapping[str, Any], status: Mapping[str, Any],
                    spec: Mapping[str, Any] | None = None) -> Trigger | None:
    """The trigger for a new run from the object itself (spec edit, run-now), if one is due, whether
    or not a run is still going. Ticks are :func:`schedule_step`'s."""
    if meta.get("deletionTimestamp"):
        return None
    generation = meta.get("generation")
    run_now = _run_now_value(meta)
    if generation is not None and status.get("observedGeneration") != generation:
        # A spec change runs once; a run-now value set at the same time is satisfied by that run.
        if not is_scheduled(spec) or schedule.validate_schedule(spec["schedule"], spec.get("timeZone")):
            return Trigger(TRIGGER_GENERATION, generation, run_now)
    if run_now is not None and run_now != last_run_now(status):
        return Trigger(TRIGGER_RUN_NOW, generation, run_now)
    return None


def next_run(meta: Mapping[str, Any], status: Mapping[str, Any],
             spec: Mapping[str, Any] | None = None) -> Trigger | None:
    """The trigger to act on now: one is due and no run is in progress."""
    trigger = pending_trigger(meta, status, spec)
    if trigger is None or st.is_active(status):
        return None
    return trigger


def observed_generation_news(meta: Mapping[str, Any], status: Mapping[str, Any],
                             spec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A scheduled resource takes a spec edit in at once (it changes what its next ticks do), so
    status.observedGeneration follows the edit right away, not at the next tick (kstatus and Argo CD
    would show it Progressing meanwhile). An edit that makes the schedule unusable is a run of its
    own (pending_trigger), which records the generation itself."""
    generation = meta.get("generation")
    if generation is None or status.get("observedGeneration") == generation or not is_scheduled(spec):
        return None
    if meta.get("deletionTimestamp") or schedule.validate_schedule(spec["schedule"], spec.get("timeZone")):
        return None
    return {"observedGeneration": generation}


# --- the schedule ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ScheduleStep:
    trigger: Trigger | None  # a run to start now, for a tick
    replace: bool  # concurrencyPolicy Replace: stop the runs still going first
    patch: dict[str, Any]  # status news to write whether or not a run starts (only what changed)
    events: tuple[tuple[str, str, str], ...]  # (type, reason, message) for Kubernetes Events
    next_time: dt.datetime | None  # when the schedule next needs a look (None: not before an edit)


def last_handled_tick(status: Mapping[str, Any]) -> dt.datetime | None:
    """The newest tick already handled: run (lastScheduleTime) or skipped (lastSkippedScheduleTime)."""
    handled = [t for t in (st.parse_time(status.get("lastScheduleTime")),
                           st.parse_time(status.get("lastSkippedScheduleTime"))) if t is not None]
    return max(handled) if handled else None


def schedule_inputs(meta: Mapping[str, Any], spec: Mapping[str, Any], status: Mapping[str, Any]) -> tuple:
    """Everything :func:`schedule_step` reads besides the clock and the run going: while these stay
    the same, its answer only changes once ``next_time`` has come."""
    return (meta.get("uid"), meta.get("deletionTimestamp"), spec.get("schedule"), spec.get("timeZone"),
            spec.get("suspend"), spec.get("startingDeadlineSeconds"), spec.get("concurrencyPolicy"),
            status.get("lastScheduleTime"), status.get("lastSkippedScheduleTime"), status.get("nextScheduleTime"))


def _changed(status: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in patch.items() if status.get(k) != v}


def schedule_step(meta: Mapping[str, Any], spec: Mapping[str, Any], status: Mapping[str, Any],
                  now: dt.datetime) -> ScheduleStep | None:
    """What the schedule asks for at ``now`` (None: not a scheduled resource, or being deleted).

    At most one run per call, for the most recent due tick (after an outage, ticks missed before it
    are skipped, as CronJob does); a tick older than startingDeadlineSeconds is skipped; Forbid skips
    a tick while a run is going, Replace stops that run, Allow runs beside it; suspend starts nothing
    (ticks missed while suspended are caught up once on resume, as CronJob does).
    """
    if not is_scheduled(spec) or meta.get("deletionTimestamp"):
        return None
    expr, tz = spec["schedule"], spec.get("timeZone")
    if schedule.validate_schedule(expr, tz):
        # pending_trigger reports it (InvalidSpec, once per generation); no tick will ever come.
        return ScheduleStep(None, False, _changed(status, {"nextScheduleTime": None}), (), None)
    suspend = bool(spec.get("suspend"))
    deadline = spec.get("startingDeadlineSeconds")
    decision = schedule.due_runs(
        expr, tz, last_schedule_time=last_handled_tick(status),
        creation_time=st.parse_time(meta.get("creationTimestamp")) or now, now=now,
        starting_deadline_seconds=None if deadline is None else int(deadline), suspend=suspend,
    )
    patch: dict[str, Any] = {"nextScheduleTime": None if suspend else st.rfc3339(decision.next_time)}
    events: list[tuple[str, str, str]] = []
    trigger: Trigger | None = None
    replace = False
    if decision.run_at is not None:
        when = st.rfc3339(decision.run_at)
        action = schedule.concurrency_action(spec.get("concurrencyPolicy"), st.has_active_run(status))
        if action == schedule.ACTION_SKIP:
            patch["lastSkippedScheduleTime"] = when
            events.append(("Normal", "ScheduleSkipped", say.schedule_skipped_forbid(when, status.get("runId"))))
        else:
            trigger = Trigger(TRIGGER_SCHEDULE, meta.get("generation"), _run_now_value(meta), decision.run_at)
            replace = action == schedule.ACTION_REPLACE_THEN_START
        if decision.skipped_missed:
            about = "about " if decision.many_missed else ""
            events.append(("Warning", "MissedSchedule", say.schedule_missed(about, decision.skipped_missed, when)))
    elif decision.too_late and decision.latest_tick is not None:
        when = st.rfc3339(decision.latest_tick)
        patch["lastSkippedScheduleTime"] = when
        events.append(("Warning", "MissedSchedule", say.schedule_too_late(when, deadline)))
    return ScheduleStep(trigger, replace, _changed(status, patch), tuple(events), decision.next_time)


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
        return Fail(reason, say.not_retried(attempt, reason, detail))
    if attempt > limit:
        return Fail(contract.REASON_BACKOFF_LIMIT_EXCEEDED, say.backoff_limit_reached(attempt, reason, detail, limit))
    return Retry(next_attempt=attempt + 1, max_attempts=limit + 1)


# --- attempt health -----------------------------------------------------------------------------------
def check_attempt(
    status: Mapping[str, Any],
    spec: Mapping[str, Any],
    *,
    job_state: str | None,
    job_bad_for: float,
    job_gone_grace: float,
    running_for: float | None,
    silent_for: float | None,
    heartbeat_timeout: float,
    exit_code: int | None = None,
) -> tuple[str, str] | None:
    """(reason, detail) when the current attempt is over without telling us, else None.

    Every duration is on the operator's own clock (never a worker's timestamps against ours):
    ``running_for`` since the operator first learnt the attempt started (None: not started),
    ``silent_for`` since it last received a heartbeat of it (or since it started watching it).
    ``job_state`` is the worker Job's state (None if not created yet) and ``job_bad_for`` how long it
    has been failed/succeeded/gone, so a final heartbeat still in flight gets ``job_gone_grace``
    seconds to arrive first; ``exit_code`` is the worker container's, when its pod tells.
    """
    phase = status.get("phase")
    if phase not in (contract.PHASE_QUEUED, contract.PHASE_STARTED):
        return None
    job = status.get("workerJob")
    if job_state == JOB_DEADLINE:
        return contract.REASON_TIMEOUT, say.job_deadline(job)
    if job_state in (JOB_FAILED, JOB_SUCCEEDED, JOB_GONE) and job_bad_for >= job_gone_grace:
        what = {JOB_FAILED: "failed", JOB_SUCCEEDED: "exited", JOB_GONE: "disappeared"}[job_state]
        if exit_code is not None and job_state != JOB_GONE:
            what += f" ({say.exit_code(exit_code)})"
        return contract.REASON_WORKER_LOST, say.job_without_heartbeat(job, what)
    if phase != contract.PHASE_STARTED:
        return None
    timeout = validation.parse_duration(spec.get("timeout") or "1h")
    if running_for is not None and running_for > timeout:
        return contract.REASON_TIMEOUT, say.attempt_timeout(spec.get("timeout") or "1h")
    if silent_for is not None and silent_for > heartbeat_timeout:
        return contract.REASON_WORKER_LOST, say.no_heartbeat(f"{silent_for:.0f}s", heartbeat_timeout)
    return None
