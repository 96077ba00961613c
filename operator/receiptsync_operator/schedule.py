"""Scheduling decisions for recurring ReceiptSyncs, as pure functions (no clock, no I/O).

Everything here takes the current time as a parameter, so the operator (and its tests) drive time.

Schedule syntax
---------------
``spec.schedule`` accepts what a Kubernetes CronJob accepts (robfig/cron ``ParseStandard``):

* five fields ``minute hour day-of-month month day-of-week``; each field is a comma list of
  ``*``/``?``, ``N``, ``N-M``, optionally ``/step`` (``N/step`` means ``N-max/step``);
  month names ``JAN``-``DEC`` and day names ``SUN``-``SAT`` (any case); day-of-week is ``0``-``6``
  (``7`` is rejected, as CronJob rejects it: use ``0`` or ``SUN``);
* the macros ``@yearly``/``@annually``, ``@monthly``, ``@weekly``, ``@daily``/``@midnight``,
  ``@hourly``.

Rejected: 6/7-field forms (seconds, years), ``@reboot``, ``@every``, Quartz/croniter extras
(``L``, ``W``, ``#``, ``H``), a ``TZ=``/``CRON_TZ=`` prefix (use ``spec.timeZone``), and
expressions that can never fire (``0 0 30 2 *``).

Day-of-month/day-of-week follow cron: if either field is unrestricted (``*``, ``?`` or ``*/1``)
both must match; otherwise a day matches when *either* does (``0 0 1,15 * MON`` = the 1st, the
15th and every Monday).

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
import re
import zoneinfo
from collections.abc import Iterator

from croniter import croniter


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

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_MONTH_NAMES = {n: i + 1 for i, n in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
_DOW_NAMES = {n: i for i, n in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_NAMES = (None, None, None, _MONTH_NAMES, _DOW_NAMES)
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February may have 29
_NUMBER = re.compile(r"^[0-9]+$")


class ScheduleError(ValueError):
    """An invalid ``spec.schedule`` or ``spec.timeZone``; ``str(exc)`` names the field."""


@dataclasses.dataclass(frozen=True)
class CronSchedule:
    """A parsed ``spec.schedule``."""

    expr: str  # as written (stripped)
    fields: tuple[frozenset[int], ...]  # minute, hour, day-of-month, month, day-of-week (0 = Sunday)
    dom_star: bool  # day-of-month unrestricted (*, ?, */1): days then match on day-of-week alone
    dow_star: bool  # day-of-week unrestricted: days then match on day-of-month alone
    interval_like: bool  # minute or hour field is a wildcard: fires by real elapsed time across DST
    croniter_expr: str  # the canonical numeric form handed to croniter

    def matches(self, wall: dt.datetime) -> bool:
        """Whether a local wall-clock time (minute precision) is on the schedule."""
        minute, hour, dom, month, dow = self.fields
        if wall.minute not in minute or wall.hour not in hour or wall.month not in month:
            return False
        dom_ok = wall.day in dom
        dow_ok = (wall.isoweekday() % 7) in dow
        if self.dom_star or self.dow_star:
            return dom_ok and dow_ok
        return dom_ok or dow_ok


# --- parsing and validation ---------------------------------------------------------------------
def _fail(expr: str, detail: str) -> ScheduleError:
    return ScheduleError(f"spec.schedule: {expr!r} {detail}")


def _value(expr: str, index: int, text: str) -> int:
    names = _NAMES[index]
    low = text.lower()
    if names is not None and low in names:
        return names[low]
    if not _NUMBER.match(text):
        what = "a number" if names is None else "a number or a 3-letter name"
        raise _fail(expr, f"has {text!r} in the {_FIELD_NAMES[index]} field, which is not {what}")
    return int(text)


def _parse_field(expr: str, index: int, text: str) -> tuple[frozenset[int], bool]:
    lo, hi = _BOUNDS[index]
    name = _FIELD_NAMES[index]
    values: set[int] = set()
    star = False
    for part in text.split(","):
        range_text, slash, step_text = part.partition("/")
        if slash:
            if not _NUMBER.match(step_text) or int(step_text) == 0:
                raise _fail(expr, f"has step {step_text!r} in the {name} field; a step is a positive number")
            step = int(step_text)
        else:
            step = 1
        if range_text in ("*", "?"):
            start, end = lo, hi
            star = star or step == 1
        else:
            first, dash, last = range_text.partition("-")
            if not first:
                raise _fail(expr, f"has an empty value in the {name} field")
            start = _value(expr, index, first)
            if dash:
                end = _value(expr, index, last) if last else -1
                if not last:
                    raise _fail(expr, f"has an open range {range_text!r} in the {name} field")
            else:
                end = hi if slash else start  # "N/step" means "N-max/step"
            for v in (start, end):
                if not lo <= v <= hi:
                    hint = " (use 0 or SUN for Sunday)" if index == 4 and v == 7 else ""
                    raise _fail(expr, f"has {v} in the {name} field, outside {lo}-{hi}{hint}")
            if start > end:
                raise _fail(expr, f"has the range {range_text!r} in the {name} field, which runs backwards")
        values.update(range(start, end + 1, step))
    return frozenset(values), star


def _croniter_field(values: frozenset[int], index: int) -> str:
    lo, hi = _BOUNDS[index]
    if values == frozenset(range(lo, hi + 1)):
        return "*"
    return ",".join(str(v) for v in sorted(values))


def _never_fires(dom: frozenset[int], months: frozenset[int]) -> bool:
    return not any(day <= _DAYS_IN_MONTH[m - 1] for m in months for day in dom)


def parse_schedule(expr: str) -> CronSchedule:
    """Parse ``spec.schedule`` as a CronJob would; raises :class:`ScheduleError` naming the field."""
    if not isinstance(expr, str):
        raise ScheduleError(f"spec.schedule: must be a string, not {type(expr).__name__}")
    return _parse_schedule(expr)


@functools.lru_cache(maxsize=512)
def _parse_schedule(expr: str) -> CronSchedule:
    text = expr.strip()
    if not text:
        raise ScheduleError("spec.schedule: is empty; remove the field for a one-off sync")
    if "TZ" in text.upper():  # TZ=... / CRON_TZ=... (no valid field contains these letters)
        raise _fail(text, "sets a time zone inside the schedule; put the IANA name in spec.timeZone instead")
    if text.startswith("@"):
        if text not in MACROS:
            raise _fail(text, "is not supported; use 5 cron fields or one of " + ", ".join(MACROS))
        fields_text = MACROS[text].split()
    else:
        fields_text = text.split()
        if len(fields_text) != 5:
            count = f"{len(fields_text)} field{'s' if len(fields_text) != 1 else ''}"
            raise _fail(text, f"has {count}; use the 5-field cron form "
                              "(minute hour day-of-month month day-of-week) or a macro such as @hourly")
    parsed = [_parse_field(text, i, f) for i, f in enumerate(fields_text)]
    fields = tuple(values for values, _ in parsed)
    dom_star, dow_star = parsed[2][1], parsed[4][1]
    if dow_star and not dom_star and _never_fires(fields[2], fields[3]):
        raise _fail(text, "never fires: none of its months has that day of the month")
    interval_like = any(f.startswith(("*", "?")) for f in fields_text[:2])
    minute, hour, dom, month, dow = (_croniter_field(v, i) for i, v in enumerate(fields))
    if dom_star or dow_star:
        # AND semantics: the unrestricted field matches every day, so only the other one counts.
        dom = "*" if dom_star else dom
        dow = "*" if dow_star else dow
    elif dom == "*" or dow == "*":
        # OR semantics with a field that lists every value ("1-31"): every day matches.
        dom = dow = "*"
    return CronSchedule(
        expr=text, fields=fields, dom_star=dom_star, dow_star=dow_star, interval_like=interval_like,
        croniter_expr=f"{minute} {hour} {dom} {month} {dow}",
    )


def parse_time_zone(name: str | None) -> zoneinfo.ZoneInfo:
    """``spec.timeZone`` (IANA name; empty means UTC) -> ZoneInfo; raises :class:`ScheduleError`."""
    if name is None or name == "":
        return zoneinfo.ZoneInfo("UTC")
    if not isinstance(name, str):
        raise ScheduleError(f"spec.timeZone: {name!r} is not an IANA time zone name (for example Europe/Berlin)")
    return _parse_time_zone(name)


@functools.lru_cache(maxsize=128)
def _parse_time_zone(name: str) -> zoneinfo.ZoneInfo:
    if name.strip() != name or name.lower() == "local":
        raise ScheduleError(f"spec.timeZone: {name!r} is not an IANA time zone name (for example Europe/Berlin)")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, IsADirectoryError, OSError, TypeError):
        raise ScheduleError(
            f"spec.timeZone: {name!r} is not an IANA time zone name (for example Europe/Berlin)") from None


def validate_schedule(expr: str, time_zone: str | None) -> str | None:
    """The first problem with ``spec.schedule``/``spec.timeZone`` as one sentence, or None if fine."""
    try:
        parse_schedule(expr)
        parse_time_zone(time_zone)
    except ScheduleError as exc:
        return str(exc)
    return None


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
