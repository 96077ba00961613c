"""The incremental cursor of one business AND mailbox, and which runs may move it (CONTRACT §4), as
pure functions.

The cursor is a Gmail history id with the time it was read. An incremental run reads history from
it, so it may only move forward after a run that *covered everything since it*: an incremental run,
or a full run whose window reaches back to it, neither narrowed by dates nor by ``query``, and not
cut short by ``maxMessages``.

Gmail's search index trails its history: a receipt read at history id P may not be in the search
listing yet. So a covering run does not jump the cursor to the id it read; it records that id as
*pending*, and a pending id becomes the cursor only once a later covering run starts at least
``overlap`` after it was read (by then everything at or below it is indexed, and that run's listing
saw it). With ``overlap == 0`` the id a run read becomes the cursor at once.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json

from receiptsync_common import contract
from receiptsync_common.jobspec import JobPayload

from .query import sanitize_user_query

DEFAULT_OVERLAP = dt.timedelta(minutes=10)
# The incremental window starts a day before the cursor's time: a message's date (internalDate)
# may be a little older than the moment it reached the mailbox.
WINDOW_SLACK = dt.timedelta(days=1)


@dataclasses.dataclass(frozen=True)
class Cursor:
    history_id: int | None = None
    at: dt.datetime | None = None  # when history_id was read
    pending_history_id: int | None = None
    pending_at: dt.datetime | None = None


def narrowed_by_query(payload: JobPayload) -> bool:
    return bool(sanitize_user_query(payload.query or ""))


def has_dates(payload: JobPayload) -> bool:
    return bool(payload.explicit_from or payload.explicit_to)


def uses_cursor(payload: JobPayload) -> bool:
    """Incremental without explicit dates: the window starts at the cursor, history narrows it."""
    return payload.mode == contract.MODE_INCREMENTAL and not has_dates(payload)


def covers_since_cursor(payload: JobPayload, window_first: dt.date, cursor: Cursor | None,
                        zone_date) -> bool:
    """Whether a complete (not capped) run of ``payload`` saw every receipt since ``cursor``.
    ``zone_date(datetime) -> date`` converts to the resource's time zone."""
    if has_dates(payload) or narrowed_by_query(payload):
        return False
    if payload.mode == contract.MODE_INCREMENTAL:
        return True
    if cursor is None or cursor.at is None:
        return True
    return window_first <= zone_date(cursor.at - WINDOW_SLACK)


def window_since(cursor: Cursor | None) -> dt.datetime | None:
    """Where an incremental run's window starts (None: the full rule)."""
    if cursor is None or cursor.at is None:
        return None
    return cursor.at - WINDOW_SLACK


def history_start(payload: JobPayload, cursor: Cursor | None) -> int | None:
    """The history id to read Gmail history from, or None to sync the whole window."""
    if not uses_cursor(payload) or cursor is None:
        return None
    return cursor.history_id


def advance(stored: Cursor | None, read_id: int, read_at: dt.datetime, overlap: dt.timedelta) -> Cursor:
    """The cursor after a covering run that read history id ``read_id`` at ``read_at`` (before it
    listed anything). Never moves backwards."""
    base = stored or Cursor()
    points = [(read_at, read_id)]
    if base.pending_at is not None and base.pending_history_id is not None:
        points.append((base.pending_at, base.pending_history_id))
    trusted_before = read_at - overlap
    safe = [p for p in points if p[0] <= trusted_before]
    unsafe = [p for p in points if p[0] > trusted_before]
    history_id, at = base.history_id, base.at
    if safe:
        safe_at, safe_id = max(safe)
        history_id = safe_id if history_id is None else max(history_id, safe_id)
        at = safe_at if at is None else max(at, safe_at)
    pending_at, pending_id = min(unsafe) if unsafe else (None, None)
    return Cursor(history_id, at, pending_id, pending_at)


def window_key(payload: JobPayload, mailbox: str) -> str:
    """Names the window a run covers, the same for every run of the resource with the same spec, so
    a run capped by maxMessages is continued by the next one."""
    spec = {
        "resource": f"{payload.namespace}/{payload.name}/{payload.uid}",
        "mailbox": mailbox.lower(),
        "mode": payload.mode,
        "from": payload.date_from if payload.explicit_from else None,
        "to": payload.date_to if payload.explicit_to else None,
        "months_back": payload.months_back,
        "query": sanitize_user_query(payload.query or ""),
        "tz": payload.time_zone or "UTC",
    }
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]
    return f"w:{digest}"
