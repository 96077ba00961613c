"""The cron syntax of ``spec.schedule`` (CronJob's) and ``spec.timeZone``, parsed and checked.

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

"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
import zoneinfo

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
