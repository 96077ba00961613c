"""CONTRACT section 4, case by case: whole days in the resource's time zone, inclusive ranges,
month-end clamping, leap days, and the epoch bounds Gmail queries use."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as s

from receiptsync_common import contract
from receiptsync_common.daterange import (
    DateRangeError, epoch_bounds, parse_date, resolve_date_range, today_in,
)

D = dt.date
FULL, INCR = contract.MODE_FULL, contract.MODE_INCREMENTAL


def rng(**kw):
    kw.setdefault("today", D(2025, 6, 15))
    kw.setdefault("mode", FULL)
    kw.setdefault("from_date", None)
    kw.setdefault("to_date", None)
    kw.setdefault("months_back", 12)
    return resolve_date_range(**kw)


# --- parse_date --------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    ("2025-01-01", D(2025, 1, 1)),
    ("2024-02-29", D(2024, 2, 29)),  # leap day
    ("2000-02-29", D(2000, 2, 29)),  # divisible by 400: leap
    ("2025-12-31", D(2025, 12, 31)),
])
def test_parse_date_accepts_calendar_dates(text, expected):
    assert parse_date(text, "fromDate") == expected


@pytest.mark.parametrize("text", [
    "2025-02-30", "2025-02-29", "1900-02-29", "2025-04-31", "2025-13-01", "2025-00-10", "2025-01-00",
    "2025-1-01", "25-01-01", "2025/01/01", "", "20250101", "2025-01-01T00:00:00", " 2025-01-01",
])
def test_parse_date_rejects_and_names_the_field(text):
    with pytest.raises(DateRangeError) as info:
        parse_date(text, "toDate")
    assert "spec.toDate" in str(info.value)


# --- both dates ---------------------------------------------------------------------------------------
def test_both_dates_is_exactly_that_range():
    assert rng(from_date=D(2025, 1, 1), to_date=D(2025, 3, 31)) == (D(2025, 1, 1), D(2025, 3, 31))


def test_both_dates_same_day_is_one_day():
    assert rng(from_date=D(2025, 2, 28), to_date=D(2025, 2, 28)) == (D(2025, 2, 28), D(2025, 2, 28))


def test_both_dates_ignore_months_back_and_mode():
    for mode in (FULL, INCR):
        assert rng(mode=mode, from_date=D(2020, 1, 1), to_date=D(2020, 1, 2), months_back=1,
                   last_success=D(2019, 6, 1)) == (D(2020, 1, 1), D(2020, 1, 2))


def test_from_after_to_is_rejected_naming_fields():
    with pytest.raises(DateRangeError) as info:
        rng(from_date=D(2025, 5, 1), to_date=D(2025, 4, 1))
    assert "fromDate" in str(info.value) and "toDate" in str(info.value)


# --- only fromDate ----------------------------------------------------------------------------------
def test_only_from_runs_to_today():
    assert rng(from_date=D(2025, 1, 1)) == (D(2025, 1, 1), D(2025, 6, 15))


def test_only_from_today_is_one_day():
    assert rng(from_date=D(2025, 6, 15)) == (D(2025, 6, 15), D(2025, 6, 15))


def test_only_from_in_the_future_is_rejected():
    with pytest.raises(DateRangeError):
        rng(from_date=D(2025, 6, 16))


# --- only toDate: toDate - monthsBack months, month-end clamped -------------------------------------------
@pytest.mark.parametrize("to_date,months,first", [
    (D(2025, 3, 31), 1, D(2025, 2, 28)),    # clamp to February's end
    (D(2024, 3, 31), 1, D(2024, 2, 29)),    # leap February
    (D(2025, 5, 31), 1, D(2025, 4, 30)),    # 30-day month
    (D(2025, 1, 31), 1, D(2024, 12, 31)),   # across the year
    (D(2024, 2, 29), 12, D(2023, 2, 28)),   # leap day, a year back: clamped
    (D(2024, 2, 29), 48, D(2020, 2, 29)),   # four years back: leap again
    (D(2025, 3, 15), 12, D(2024, 3, 15)),
    (D(2025, 8, 31), 6, D(2025, 2, 28)),
    (D(2025, 12, 31), 120, D(2015, 12, 31)),
    (D(2025, 6, 15), 1, D(2025, 5, 15)),
])
def test_only_to_goes_months_back(to_date, months, first):
    assert rng(to_date=to_date, months_back=months) == (first, to_date)


def test_only_to_in_the_future_is_allowed():
    assert rng(to_date=D(2026, 1, 31), months_back=1) == (D(2025, 12, 31), D(2026, 1, 31))


# --- neither -----------------------------------------------------------------------------------------
def test_neither_full_is_months_back_to_today():
    assert rng(months_back=12) == (D(2024, 6, 15), D(2025, 6, 15))


def test_neither_full_clamps_month_end():
    assert rng(today=D(2025, 3, 31), months_back=1) == (D(2025, 2, 28), D(2025, 3, 31))
    assert rng(today=D(2024, 3, 30), months_back=1) == (D(2024, 2, 29), D(2024, 3, 30))


def test_neither_incremental_without_history_falls_back_to_full():
    assert rng(mode=INCR, months_back=3) == rng(mode=FULL, months_back=3) == (D(2025, 3, 15), D(2025, 6, 15))


def test_neither_incremental_continues_from_last_success():
    assert rng(mode=INCR, last_success=D(2025, 6, 1)) == (D(2025, 6, 1), D(2025, 6, 15))


def test_incremental_last_success_today_is_one_day():
    assert rng(mode=INCR, last_success=D(2025, 6, 15)) == (D(2025, 6, 15), D(2025, 6, 15))


def test_incremental_last_success_in_future_is_clamped_to_today():
    assert rng(mode=INCR, last_success=D(2025, 7, 1)) == (D(2025, 6, 15), D(2025, 6, 15))


def test_full_ignores_last_success():
    assert rng(mode=FULL, months_back=1, last_success=D(2025, 6, 10)) == (D(2025, 5, 15), D(2025, 6, 15))


def test_incremental_with_explicit_dates_ignores_last_success():
    assert rng(mode=INCR, to_date=D(2025, 6, 1), months_back=1, last_success=D(2025, 5, 30)) == (
        D(2025, 5, 1), D(2025, 6, 1))


# --- today in the resource's time zone -------------------------------------------------------------------
def test_today_depends_on_time_zone():
    now = dt.datetime(2025, 1, 1, 2, 30, tzinfo=dt.timezone.utc)
    assert today_in("UTC", now) == D(2025, 1, 1)
    assert today_in("America/Los_Angeles", now) == D(2024, 12, 31)
    assert today_in("Asia/Tokyo", now) == D(2025, 1, 1)
    late = dt.datetime(2025, 1, 1, 22, 0, tzinfo=dt.timezone.utc)
    assert today_in("Asia/Jerusalem", late) == D(2025, 1, 2)
    assert today_in("Pacific/Kiritimati", dt.datetime(2025, 1, 1, 10, 0, tzinfo=dt.timezone.utc)) == D(2025, 1, 2)


# --- epoch bounds ---------------------------------------------------------------------------------------
def test_epoch_bounds_utc_whole_days():
    after, before = epoch_bounds(D(2025, 1, 1), D(2025, 1, 31), "UTC")
    assert after == int(dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc).timestamp())
    assert before == int(dt.datetime(2025, 2, 1, tzinfo=dt.timezone.utc).timestamp())


def test_epoch_bounds_one_day_is_24_hours_normally():
    after, before = epoch_bounds(D(2025, 6, 15), D(2025, 6, 15), "Europe/Berlin")
    assert before - after == 24 * 3600
    assert after == int(dt.datetime(2025, 6, 15, tzinfo=ZoneInfo("Europe/Berlin")).timestamp())


def test_epoch_bounds_dst_days():
    # Spring forward: 23 hours; fall back: 25 hours (America/New_York, 2025).
    a, b = epoch_bounds(D(2025, 3, 9), D(2025, 3, 9), "America/New_York")
    assert b - a == 23 * 3600
    a, b = epoch_bounds(D(2025, 11, 2), D(2025, 11, 2), "America/New_York")
    assert b - a == 25 * 3600
    # Asia/Jerusalem springs forward on a Friday (2025-03-28).
    a, b = epoch_bounds(D(2025, 3, 28), D(2025, 3, 28), "Asia/Jerusalem")
    assert b - a == 23 * 3600


def test_epoch_bounds_leap_day_and_year_end():
    a, b = epoch_bounds(D(2024, 2, 29), D(2024, 2, 29), "UTC")
    assert dt.datetime.fromtimestamp(b, dt.timezone.utc) == dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)
    a, b = epoch_bounds(D(2024, 12, 31), D(2024, 12, 31), "UTC")
    assert dt.datetime.fromtimestamp(b, dt.timezone.utc) == dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)


def test_epoch_bounds_are_not_pacific_midnight():
    # The seed's bug: Gmail's after:YYYY/MM/DD is Pacific midnight. Ours is the resource's zone.
    a, _ = epoch_bounds(D(2025, 1, 1), D(2025, 1, 1), "Asia/Tokyo")
    assert a == int(dt.datetime(2024, 12, 31, 15, 0, tzinfo=dt.timezone.utc).timestamp())


# --- properties ---------------------------------------------------------------------------------------
dates = s.dates(min_value=D(1990, 1, 1), max_value=D(2090, 12, 31))


@given(first=dates, last=dates, tz=s.sampled_from(["UTC", "America/New_York", "Asia/Jerusalem", "Australia/Lord_Howe"]))
def test_epoch_bounds_cover_every_instant_of_the_days(first, last, tz):
    if first > last:
        first, last = last, first
    a, b = epoch_bounds(first, last, tz)
    zone = ZoneInfo(tz)
    assert dt.datetime.fromtimestamp(a, zone).date() == first
    assert dt.datetime.fromtimestamp(b - 1, zone).date() == last
    assert dt.datetime.fromtimestamp(b, zone).date() == last + dt.timedelta(days=1)


@given(to=dates, months=s.integers(1, 120))
def test_only_to_range_is_inclusive_and_never_longer_than_asked(to, months):
    first, last = rng(to_date=to, months_back=months, today=D(2100, 1, 1))
    assert last == to and first < last
    # Never more than `months` calendar months back, and at least months*28 days.
    assert (first.year * 12 + first.month) == (to.year * 12 + to.month) - months
    assert first.day <= to.day


@given(today=dates, months=s.integers(1, 120), mode=s.sampled_from([FULL, INCR]))
def test_neither_ends_today(today, months, mode):
    first, last = rng(today=today, months_back=months, mode=mode)
    assert last == today and first < today
