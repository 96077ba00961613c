"""Scheduling decisions for recurring ReceiptSyncs, as pure functions (no clock, no I/O).

Everything here takes the current time as a parameter, so the operator (and its tests) drive time.

The syntax (CronJob's) is :mod:`cron_syntax`'s.

Time zones and DST
------------------
Ticks are wall-clock times in ``spec.timeZone`` (IANA, default UTC), computed from the schedule
(never "last run + interval"), mapped to instants like Vixie/ISC cron (Debian's cron) does:

* A schedule whose minute or hour field is a wildcard (starts with ``*``/``?``: ``@hourly``,
  ``*/5 * * * *``, ``0 * * * *``, ``15 */2 * * *``) is *interval-like*: it fires at every real
  instant whose local time matches. In a fall-back overlap the repeated hour fires again (an hourly
  schedule fires every real hour, as CronJob and croniter do); wall times inside a spring-forward
  gap never occur, so they do not fire (the gap hour did not elapse).
* Any other schedule (fixed hours and minutes: ``30 2 * * *``, ``@daily``, ``0 9-17 * * MON-FRI``)
  fires once per matching wall-clock time:
    - *overlap* (fall back): a time that happens twice fires once, at its first occurrence (the
      earlier instant, still on daylight time). CronJob fires twice here (kubernetes#121594).
    - *gap* (spring forward): a time that does not exist fires at the moment the clocks jump (e.g.
      ``30 2 * * *`` in America/New_York on the spring-forward day fires at 03:00 EDT), as croniter
      and Vixie cron do, instead of being skipped for the day as CronJob does. Several gap times
      (``0,30 2 * * *``) collapse into that one tick.

Missed ticks (CronJob semantics)
--------------------------------
:func:`due_runs` looks at the ticks in ``(lastScheduleTime or creationTimestamp, now]``: at most one
run, for the most recent tick; older ones are counted as skipped. If that tick is older than
``startingDeadlineSeconds`` it is too late and skipped as well. More than :data:`MAX_MISSED_TICKS`
missed ticks are not enumerated (the count is then an estimate and ``many_missed`` is set).
Suspended resources start nothing; like CronJob, ticks missed while suspended are caught up once
(the most recent, if within the deadline) on resume, unless the caller records them as handled.

What starts a run, and which status fields remember it, is decided in :mod:`runs`
(``runs.pending_trigger`` for spec edits and run-now, ``runs.schedule_step`` for ticks); this module
only answers questions about the schedule itself.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import zoneinfo
from collections.abc import Iterator

from croniter import croniter

from .cron_syntax import CronSchedule, ScheduleError, parse_schedule, parse_time_zone, validate_schedule

__all__ = ["CronSchedule", "ScheduleError", "parse_schedule", "parse_time_zone", "validate_schedule"]

UTC = dt.timezone.utc

#: more missed ticks than this are not enumerated (the CronJob controller's bound).
MAX_MISSED_TICKS = 100
#: added to the requeue delay so a timer never wakes a hair before the tick (CronJob uses 100 ms).
REQUEUE_SLACK_SECONDS = 0.1

POLICY_FORBID = "Forbid"
POLICY_REPLACE = "Replace"
POLICY_ALLOW = "Allow"
POLICIES = (POLICY_FORBID, POLICY_REPLACE, POLICY_ALLOW)

ACTION_START = "start"
ACTION_SKIP = "skip"
ACTION_REPLACE_THEN_START = "replace_then_start"


# --- wall clock <-> instants --------------------------------------------------------------------
def _aware_utc(value: dt.datetime, name: str) -> dt.datetime:
    if not isinstance(value, dt.datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def _to_utc(wall: dt.datetime, tz: zoneinfo.ZoneInfo, fold: int) -> dt.datetime:
    return wall.replace(tzinfo=tz, fold=fold).astimezone(UTC)


def _exists(wall: dt.datetime, tz: zoneinfo.ZoneInfo) -> bool:
    back = _to_utc(wall, tz, 0).astimezone(tz).replace(tzinfo=None, fold=0)
    return back == wall


@functools.lru_cache(maxsize=1024)
def _gap_end(wall: dt.datetime, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    """For a wall time inside a spring-forward gap: the instant the clocks jumped over it."""
    lo = _to_utc(wall, tz, 1)  # read with the later offset: an instant before the jump
    hi = _to_utc(wall, tz, 0)  # read with the earlier offset: an instant after the jump
    after_offset = hi.astimezone(tz).utcoffset()
    lo_s, hi_s = int(lo.timestamp()), int(hi.timestamp())
    while hi_s - lo_s > 1:  # smallest whole second already on the later offset
        mid = (lo_s + hi_s) // 2
        if dt.datetime.fromtimestamp(mid, UTC).astimezone(tz).utcoffset() == after_offset:
            hi_s = mid
        else:
            lo_s = mid
    return dt.datetime.fromtimestamp(hi_s, UTC)


def _instants(sched: CronSchedule, wall: dt.datetime, tz: zoneinfo.ZoneInfo) -> tuple[dt.datetime, ...]:
    """The ticks (UTC, ascending) a matching wall-clock time produces, per the module's DST rules."""
    if not _exists(wall, tz):
        return () if sched.interval_like else (_gap_end(wall, tz),)
    first = _to_utc(wall, tz, 0)
    if sched.interval_like:
        second = _to_utc(wall, tz, 1)  # differs from first only for a repeated (fall-back) wall time
        if second != first:
            return (first, second)
    return (first,)


def _overlap(wall: dt.datetime, tz: zoneinfo.ZoneInfo) -> dt.timedelta:
    """How long a wall time repeats (zero unless it falls in a fall-back overlap)."""
    if not _exists(wall, tz):
        return dt.timedelta(0)
    span = _to_utc(wall, tz, 1) - _to_utc(wall, tz, 0)
    return span if span > dt.timedelta(0) else dt.timedelta(0)


_SCAN_LIMIT = 200_000  # walls looked at per call; only reachable through a bug


def _next_tick(sched: CronSchedule, tz: zoneinfo.ZoneInfo, after: dt.datetime) -> dt.datetime:
    # fold-0 instants rise with the wall time, and so do fold-1 ones; the answer is the smallest
    # instant > after among walls up to the first one whose earliest instant is already > after.
    wall = after.astimezone(tz).replace(tzinfo=None, fold=0)
    # croniter works on float timestamps: hand it whole minutes so sub-second parts never round up
    # into the next tick (ticks are whole minutes, so ticks at the floored start are <= after anyway).
    start = (wall - _overlap(wall, tz)).replace(second=0, microsecond=0)
    it = croniter(sched.croniter_expr, start)
    best: dt.datetime | None = None
    for _ in range(_SCAN_LIMIT):
        candidate = it.get_next(dt.datetime)
        ticks = _instants(sched, candidate, tz)
        for tick in ticks:
            if tick > after and (best is None or tick < best):
                best = tick
        if ticks and ticks[0] > after:
            return best  # type: ignore[return-value]
    raise RuntimeError(f"no tick found for {sched.expr!r} after {after.isoformat()}")


def _prev_tick(sched: CronSchedule, tz: zoneinfo.ZoneInfo, at_or_before: dt.datetime) -> dt.datetime:
    wall = at_or_before.astimezone(tz).replace(tzinfo=None, fold=0)
    start = (wall + _overlap(wall, tz)).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    it = croniter(sched.croniter_expr, start)
    best: dt.datetime | None = None
    for _ in range(_SCAN_LIMIT):
        candidate = it.get_prev(dt.datetime)
        ticks = _instants(sched, candidate, tz)
        for tick in ticks:
            if tick <= at_or_before and (best is None or tick > best):
                best = tick
        if ticks and ticks[-1] <= at_or_before:
            return best  # type: ignore[return-value]
    raise RuntimeError(f"no tick found for {sched.expr!r} before {at_or_before.isoformat()}")


def next_schedule_time(expr: str, time_zone: str | None, after: dt.datetime) -> dt.datetime:
    """The first tick strictly after ``after`` (aware), as an aware UTC datetime."""
    return _next_tick(parse_schedule(expr), parse_time_zone(time_zone), _aware_utc(after, "after"))


def previous_schedule_time(expr: str, time_zone: str | None, at_or_before: dt.datetime) -> dt.datetime:
    """The latest tick at or before ``at_or_before`` (aware), as an aware UTC datetime."""
    return _prev_tick(parse_schedule(expr), parse_time_zone(time_zone), _aware_utc(at_or_before, "at_or_before"))


def iter_schedule_times(expr: str, time_zone: str | None, after: dt.datetime) -> Iterator[dt.datetime]:
    """Ticks strictly after ``after``, ascending, forever."""
    sched, tz = parse_schedule(expr), parse_time_zone(time_zone)
    current = _aware_utc(after, "after")
    while True:
        current = _next_tick(sched, tz, current)
        yield current


# --- missed ticks ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ScheduleDecision:
    run_at: dt.datetime | None  # the tick to start a run for now (write it to status.lastScheduleTime)
    skipped_missed: int  # ticks in (cursor, now] that get no run (an estimate when many_missed)
    too_late: bool  # the most recent tick is older than startingDeadlineSeconds, so it is skipped
    next_time: dt.datetime  # first tick after now (status.nextScheduleTime)
    requeue_after: float  # seconds until next_time, plus REQUEUE_SLACK_SECONDS
    latest_tick: dt.datetime | None = None  # most recent tick in (cursor, now], run or not
    many_missed: bool = False  # more than MAX_MISSED_TICKS ticks were missed (not all enumerated)


def due_runs(
    expr: str,
    time_zone: str | None,
    *,
    last_schedule_time: dt.datetime | None,
    creation_time: dt.datetime,
    now: dt.datetime,
    starting_deadline_seconds: int | None,
    suspend: bool,
) -> ScheduleDecision:
    """What the schedule asks for at ``now``, as the CronJob controller decides it.

    The cursor is ``last_schedule_time`` (the last tick handled) or else ``creation_time``; ticks in
    ``(cursor, now]`` are missed. At most one run starts, for the most recent missed tick, unless it
    is more than ``starting_deadline_seconds`` old (``too_late``) or the resource is suspended.
    To make a skipped tick (too late, or Forbid with a run active) stay skipped instead of running
    late, the caller passes the newest of lastScheduleTime and the last skipped tick as
    ``last_schedule_time``.
    """
    sched, tz = parse_schedule(expr), parse_time_zone(time_zone)
    now = _aware_utc(now, "now")
    cursor = _aware_utc(last_schedule_time, "last_schedule_time") if last_schedule_time is not None \
        else _aware_utc(creation_time, "creation_time")
    count = 0
    latest: dt.datetime | None = None
    first: dt.datetime | None = None
    next_time: dt.datetime | None = None
    many = False
    tick = cursor
    if cursor < now:
        for _ in range(MAX_MISSED_TICKS + 1):
            tick = _next_tick(sched, tz, tick)
            if tick > now:
                next_time = tick
                break
            count += 1
            latest = tick
            first = first or tick
        else:
            # More than MAX_MISSED_TICKS: jump to the latest without enumerating, estimate the count.
            many = True
            edge = latest
            latest = _prev_tick(sched, tz, now)
            assert first is not None and edge is not None
            spacing = (edge - first) / (count - 1)
            count += round((latest - edge) / spacing) if latest > edge else 0
    if next_time is None:
        next_time = _next_tick(sched, tz, max(now, cursor))
    too_late = False
    run_at: dt.datetime | None = None
    if latest is not None and not suspend:
        deadline = starting_deadline_seconds
        too_late = deadline is not None and latest + dt.timedelta(seconds=deadline) < now
        run_at = None if too_late else latest
    skipped = count - (1 if run_at is not None else 0)
    requeue = (next_time - now).total_seconds() + REQUEUE_SLACK_SECONDS
    return ScheduleDecision(
        run_at=run_at, skipped_missed=skipped, too_late=too_late, next_time=next_time,
        requeue_after=requeue, latest_tick=latest, many_missed=many,
    )


# --- concurrency --------------------------------------------------------------------------------
def concurrency_action(policy: str | None, active_run: bool) -> str:
    """What to do with a due tick: ``start``, ``skip`` (Forbid while a run is active) or
    ``replace_then_start`` (Replace: stop the active run, then start). Empty policy = Forbid."""
    policy = policy or POLICY_FORBID
    if policy not in POLICIES:
        raise ValueError(f"spec.concurrencyPolicy: {policy!r} must be one of {', '.join(POLICIES)}")
    if not active_run or policy == POLICY_ALLOW:
        return ACTION_START
    return ACTION_SKIP if policy == POLICY_FORBID else ACTION_REPLACE_THEN_START
