"""What one attempt syncs, decided from the payload and the mailbox's cursor (pure)."""
from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

from receiptsync_common import daterange
from receiptsync_common.jobspec import JobPayload

from .cursor import uses_cursor
from .query import build_query


@dataclasses.dataclass(frozen=True)
class DateWindow:
    first: dt.date
    last: dt.date
    after_epoch: int
    before_epoch: int


def uses_stored_state(payload: JobPayload) -> bool:
    """Incremental without explicit dates: the range starts at the mailbox's cursor and Gmail
    history narrows it further."""
    return uses_cursor(payload)


def date_window(payload: JobPayload, now: dt.datetime, last_success_at: dt.datetime | None) -> DateWindow:
    """The inclusive day range to sync (CONTRACT section 4), with its epoch bounds.
    ``last_success_at``: where an incremental run starts (``cursor.window_since``)."""
    zone = payload.time_zone or "UTC"
    today = daterange.today_in(zone, now)
    last_success = last_success_at.astimezone(ZoneInfo(zone)).date() if last_success_at else None
    from_date = (daterange.parse_date(payload.date_from, "fromDate")
                 if payload.explicit_from and payload.date_from else None)
    to_date = daterange.parse_date(payload.date_to, "toDate") if payload.explicit_to and payload.date_to else None
    first, last = daterange.resolve_date_range(
        today=today,
        mode=payload.mode,
        from_date=from_date,
        to_date=to_date,
        months_back=payload.months_back,
        last_success=last_success if uses_stored_state(payload) else None,
    )
    after, before = daterange.epoch_bounds(first, last, zone)
    return DateWindow(first, last, after, before)


def search_query(payload: JobPayload, window: DateWindow) -> str:
    return build_query(window.after_epoch, window.before_epoch, payload.query)


def run_key(payload: JobPayload) -> str:
    """Shared by all attempts of one run of one resource instance (the uid tells re-created
    resources of the same name apart)."""
    return f"{payload.namespace}/{payload.name}/{payload.uid}/{payload.run_id}"


def attempt_deadline_seconds(timeout_seconds: int) -> float:
    """Finish a little before the operator's timeout so the worker itself reports Timeout."""
    margin = min(5.0, timeout_seconds * 0.05)
    return max(1.0, timeout_seconds - margin)
