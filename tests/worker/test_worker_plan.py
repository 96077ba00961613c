"""The attempt's date range (CONTRACT section 4) through daterange, including month-end and leap day."""
from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from receiptsync_common import contract, daterange
from receiptsync_common.jobspec import JobPayload
from receiptsync_worker import cursor as cursors
from receiptsync_worker import plan

BASE = JobPayload(job_id="j", namespace="ns", name="n", uid="u" * 36, business_id="b", run_id=1, attempt=1,
                  mode=contract.MODE_FULL, priority="default", max_messages=5000, timeout_seconds=3600)


def window(now: dt.datetime, last_success: dt.datetime | None = None, **changes):
    w = plan.date_window(dataclasses.replace(BASE, **changes), now, last_success)
    return w.first.isoformat(), w.last.isoformat()


NOW = dt.datetime(2024, 3, 31, 12, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("changes, expected", [
    ({}, ("2023-03-31", "2024-03-31")),
    ({"months_back": 1}, ("2024-02-29", "2024-03-31")),  # month-end clamps to the leap day
    ({"date_to": "2024-02-29", "explicit_to": True, "months_back": 12}, ("2023-02-28", "2024-02-29")),
    ({"date_to": "2024-05-31", "explicit_to": True, "months_back": 3}, ("2024-02-29", "2024-05-31")),
    ({"date_from": "2024-02-29", "explicit_from": True}, ("2024-02-29", "2024-03-31")),
    ({"date_from": "2024-01-01", "date_to": "2024-01-31", "explicit_from": True, "explicit_to": True},
     ("2024-01-01", "2024-01-31")),
])
def test_full_mode_ranges(changes, expected):
    assert window(NOW, **changes) == expected


def test_today_is_in_the_payload_time_zone():
    late = dt.datetime(2024, 3, 31, 22, 30, tzinfo=dt.timezone.utc)  # already April 1st in Jerusalem
    assert window(late, time_zone="Asia/Jerusalem", months_back=1) == ("2024-03-01", "2024-04-01")


def test_incremental_starts_at_last_success_else_full_rule():
    last = dt.datetime(2024, 3, 20, 23, 0, tzinfo=dt.timezone.utc)
    assert window(NOW, last, mode=contract.MODE_INCREMENTAL) == ("2024-03-20", "2024-03-31")
    assert window(NOW, last, mode=contract.MODE_INCREMENTAL, time_zone="Asia/Jerusalem") == ("2024-03-21", "2024-03-31")
    assert window(NOW, None, mode=contract.MODE_INCREMENTAL) == ("2023-03-31", "2024-03-31")
    # explicit dates win over the stored state
    assert window(NOW, last, mode=contract.MODE_INCREMENTAL, date_from="2024-01-05", explicit_from=True) == (
        "2024-01-05", "2024-03-31")


def test_epoch_bounds_cover_whole_days_in_zone():
    w = plan.date_window(dataclasses.replace(BASE, date_from="2024-02-29", date_to="2024-02-29", explicit_from=True,
                                             explicit_to=True, time_zone="America/New_York"), NOW, None)
    assert (w.after_epoch, w.before_epoch) == (1709182800, 1709269200)  # 05:00Z on the 29th and on Mar 1st


def test_reversed_dates_are_invalid_spec():
    with pytest.raises(daterange.DateRangeError):
        window(NOW, date_from="2024-03-02", date_to="2024-03-01", explicit_from=True, explicit_to=True)


def test_history_start_only_for_plain_incremental_with_a_cursor():
    inc = dataclasses.replace(BASE, mode=contract.MODE_INCREMENTAL)
    cur = cursors.Cursor(42, NOW)
    assert cursors.history_start(inc, cur) == 42
    assert cursors.history_start(inc, None) is None
    assert cursors.history_start(inc, cursors.Cursor(None, None, 50, NOW)) is None  # only a pending id
    assert cursors.history_start(BASE, cur) is None
    explicit = dataclasses.replace(inc, date_from="2024-01-01", explicit_from=True)
    assert cursors.history_start(explicit, cur) is None
