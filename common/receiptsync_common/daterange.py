"""The date range a sync covers (CONTRACT section 4), as pure functions.

Dates are whole days in the resource's time zone, inclusive of both ends. Gmail reads
``after:YYYY/MM/DD`` as midnight Pacific time, so queries bound the range in epoch seconds instead.
"""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

from . import contract


class DateRangeError(ValueError):
    """The given dates cannot form a range; the message names the field."""


def parse_date(value: str, field: str) -> dt.date:
    """``YYYY-MM-DD`` that exists on the calendar (2025-02-30 does not)."""
    try:
        return dt.date.fromisoformat(value) if len(value) == 10 else _bad_date(value, field)
    except ValueError:
        return _bad_date(value, field)


def _bad_date(value: str, field: str) -> dt.date:
    raise DateRangeError(f"spec.{field}: {value!r} is not a calendar date in YYYY-MM-DD form")


def today_in(tz_name: str, now: dt.datetime) -> dt.date:
    """The calendar day ``now`` (an aware datetime) falls on in ``tz_name``."""
    return now.astimezone(ZoneInfo(tz_name)).date()


def resolve_date_range(
    *,
    today: dt.date,
    mode: str,
    from_date: dt.date | None,
    to_date: dt.date | None,
    months_back: int,
    last_success: dt.date | None = None,
) -> tuple[dt.date, dt.date]:
    """Inclusive [first day, last day] to sync.

    ``last_success`` is the day of the business's last successful sync; only incremental mode without
    explicit dates uses it (and falls back to the ``full`` rule when there is none).
    """
    if from_date and to_date:
        first, last = from_date, to_date
    elif from_date:
        first, last = from_date, today
    elif to_date:
        first, last = to_date - relativedelta(months=months_back), to_date
    elif mode == contract.MODE_INCREMENTAL and last_success is not None:
        first, last = min(last_success, today), today
    else:
        first, last = today - relativedelta(months=months_back), today
    if first > last:
        raise DateRangeError(
            f"spec.fromDate ({first.isoformat()}) is after the end of the range ({last.isoformat()}); "
            "fromDate must not be later than toDate (or today)"
        )
    return first, last


def epoch_bounds(first: dt.date, last: dt.date, tz_name: str) -> tuple[int, int]:
    """(after, before) epoch seconds: the first instant of ``first`` and the first instant of the day
    after ``last``, both in ``tz_name`` (DST-correct)."""
    zone = ZoneInfo(tz_name)
    start = dt.datetime.combine(first, dt.time.min, tzinfo=zone)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
    return int(start.timestamp()), int(end.timestamp())
