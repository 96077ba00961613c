"""Scheduling decisions (receiptsync_operator.schedule): parsing, next tick, DST, missed ticks,
concurrency, history trimming and run triggers. Pure functions; time is a parameter."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from receiptsync_operator import schedule as sch

UTC = dt.timezone.utc
NY = "America/New_York"
JLM = "Asia/Jerusalem"


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def local(tz: str, *args, fold: int = 0) -> dt.datetime:
    """A local wall time as a UTC datetime (PEP 495: a repeated local time never compares equal
    across zones, so comparisons are done in UTC)."""
    return dt.datetime(*args, tzinfo=ZoneInfo(tz), fold=fold).astimezone(UTC)


def ticks(expr: str, tz: str | None, after: dt.datetime, n: int) -> list[dt.datetime]:
    out = []
    for t in sch.iter_schedule_times(expr, tz, after):
        out.append(t)
        if len(out) == n:
            return out
    return out


def walls(expr: str, tz: str, after: dt.datetime, n: int) -> list[str]:
    """Ticks as local ISO strings with offsets (readable DST assertions)."""
    return [t.astimezone(ZoneInfo(tz)).isoformat(timespec="minutes") for t in ticks(expr, tz, after, n)]


# --- validation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("expr", [
    "* * * * *", "*/1 * * * *", "0 * * * *", "30 2 * * *", "0 0 1,15 * MON", "0 9-17 * * MON-FRI",
    "0 9-17/2 * * mon-fri", "5/15 * * * *", "0 0 1 JAN *", "0 0 1 jan-mar,oct *", "0 0 * * sun",
    "0 0 29 2 *", "0 0 31 * *", "0 12 * * 0-6", "0 0 ? * 1", "  0 0 * * *  ", "0\t0 * * *",
    "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly",
    "0,15,30,45 */3 1-10/3 */2 *", "59 23 31 12 *", "00 05 01 01 00",
])
def test_valid_schedules(expr):
    assert sch.validate_schedule(expr, None) is None
    assert sch.validate_schedule(expr, "Asia/Jerusalem") is None


@pytest.mark.parametrize("expr, words", [
    ("", "empty"),
    ("   ", "empty"),
    ("0 0 * * * *", "6 fields"),
    ("0 0 0 * * * 2025", "7 fields"),
    ("* * * *", "4 fields"),
    ("@reboot", "not supported"),
    ("@every 5m", "not supported"),
    ("@DAILY", "not supported"),
    ("@daily 1", "not supported"),
    ("TZ=UTC 0 0 * * *", "spec.timeZone"),
    ("CRON_TZ=Asia/Jerusalem 0 0 * * *", "spec.timeZone"),
    ("0 0 L * *", "day-of-month"),
    ("0 0 15W * *", "day-of-month"),
    ("0 0 * * 5#2", "day-of-week"),
    ("0 0 * * 5L", "day-of-week"),
    ("H * * * *", "minute"),
    ("0 0 * * 7", "use 0 or SUN"),
    ("60 * * * *", "outside 0-59"),
    ("0 24 * * *", "outside 0-23"),
    ("0 0 0 * *", "outside 1-31"),
    ("0 0 32 * *", "outside 1-31"),
    ("0 0 1 13 *", "outside 1-12"),
    ("0 0 1 0 *", "outside 1-12"),
    ("5-1 * * * *", "backwards"),
    ("0 0 * * FRI-MON", "backwards"),
    ("*/0 * * * *", "step"),
    ("*/x * * * *", "step"),
    ("1/2/3 * * * *", "step"),
    ("1-2-3 * * * *", "number"),
    ("1- * * * *", "open range"),
    ("-1 * * * *", "empty"),
    ("1,,2 * * * *", "empty"),
    ("MON * * * *", "minute"),
    ("0 0 * JANUARY *", "month"),
    ("0 0 * * MONDAY", "day-of-week"),
    ("0 0 30 2 *", "never fires"),
    ("0 0 31 2,4,6,9,11 *", "never fires"),
    ("every hour", "2 fields"),
    ("garbage", "has 1 field;"),
    ("a b c d e", "not a number"),
    ("* * * * * *", "6 fields"),
])
def test_invalid_schedules_name_the_field(expr, words):
    message = sch.validate_schedule(expr, None)
    assert message is not None and message.startswith("spec.schedule: ")
    assert words in message
    with pytest.raises(sch.ScheduleError):
        sch.parse_schedule(expr)


def test_non_string_schedule():
    assert sch.validate_schedule(5, None).startswith("spec.schedule: ")  # type: ignore[arg-type]
    assert sch.validate_schedule(["@daily"], None).startswith("spec.schedule: ")  # type: ignore[arg-type]
    assert sch.validate_schedule("@daily", ["UTC"]).startswith("spec.timeZone: ")  # type: ignore[arg-type]


@pytest.mark.parametrize("tz", [None, "", "UTC", "Asia/Jerusalem", "America/New_York", "Etc/GMT+5",
                                "Australia/Lord_Howe", "Europe/London"])
def test_valid_time_zones(tz):
    assert sch.validate_schedule("@daily", tz) is None


@pytest.mark.parametrize("tz", ["Mars/Olympus", "Local", "local", "../../etc/passwd", "/usr/share/zoneinfo/UTC",
                                " UTC", "UTC ", "Asia", "asia/jerusalem", "EST5EDT5", 5])
def test_invalid_time_zones_name_the_field(tz):
    message = sch.validate_schedule("@daily", tz)
    assert message is not None and message.startswith("spec.timeZone: ")


def test_schedule_error_reported_before_time_zone():
    assert sch.validate_schedule("@reboot", "Mars/Olympus").startswith("spec.schedule: ")


def test_macros_expand_like_cronjob():
    expanded = {
        "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
        "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
    }
    for macro, five in expanded.items():
        assert sch.parse_schedule(macro).fields == sch.parse_schedule(five).fields
        start = utc(2024, 2, 27, 13, 17)
        assert ticks(macro, JLM, start, 5) == ticks(five, JLM, start, 5)


def test_field_sets():
    p = sch.parse_schedule("5/15 9-17/4 1,15 JAN-MAR,dec mon-fri")
    assert p.fields[0] == {5, 20, 35, 50}
    assert p.fields[1] == {9, 13, 17}
    assert p.fields[2] == {1, 15}
    assert p.fields[3] == {1, 2, 3, 12}
    assert p.fields[4] == {1, 2, 3, 4, 5}
    assert not p.dom_star and not p.dow_star
    assert sch.parse_schedule("0 0 * * *").dom_star and sch.parse_schedule("0 0 ? * ?").dow_star
    assert sch.parse_schedule("0 0 */1 * 1").dom_star
    assert not sch.parse_schedule("0 0 */2 * 1").dom_star  # a step makes it a restriction, as in cron


def test_interval_like_classification():
    assert sch.parse_schedule("@hourly").interval_like
    assert sch.parse_schedule("*/5 * * * *").interval_like
    assert sch.parse_schedule("15 */2 * * *").interval_like
    assert sch.parse_schedule("*/20 1 * * *").interval_like
    assert not sch.parse_schedule("@daily").interval_like
    assert not sch.parse_schedule("30 2 * * *").interval_like
    assert not sch.parse_schedule("0 0-23 * * *").interval_like


# --- next tick: plain cases ---------------------------------------------------------------------------
def test_next_is_strictly_after_and_utc():
    t = sch.next_schedule_time("0 * * * *", None, utc(2025, 1, 1, 10, 0))
    assert t == utc(2025, 1, 1, 11, 0) and t.tzinfo is UTC
    assert sch.next_schedule_time("0 * * * *", None, utc(2025, 1, 1, 10, 0, 0, 1)) == utc(2025, 1, 1, 11)
    assert sch.next_schedule_time("0 * * * *", None, utc(2025, 1, 1, 9, 59, 59, 999999)) == utc(2025, 1, 1, 10)


def test_sub_second_after_never_skips_a_tick():
    # croniter works on float timestamps; far-future microseconds must not round into the tick
    for year in (2025, 2640, 8888):
        tick = utc(year, 2, 28, 0, 0) if year % 4 else utc(year, 2, 29, 0, 0)
        expr = "0 0 28 2 *" if year % 4 else "0 0 29 2 *"
        assert sch.next_schedule_time(expr, None, tick - dt.timedelta(microseconds=1)) == tick
        assert sch.previous_schedule_time(expr, None, tick + dt.timedelta(microseconds=999_999)) == tick


def test_after_in_any_offset():
    after = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)))
    assert sch.next_schedule_time("@hourly", JLM, after) == utc(2025, 1, 1, 7)


def test_naive_datetimes_are_rejected():
    with pytest.raises(ValueError):
        sch.next_schedule_time("@hourly", None, dt.datetime(2025, 1, 1))
    with pytest.raises(ValueError):
        sch.due_runs("@hourly", None, last_schedule_time=None, creation_time=dt.datetime(2025, 1, 1),
                     now=utc(2025, 1, 1), starting_deadline_seconds=None, suspend=False)


def test_invalid_schedule_raises_in_next():
    with pytest.raises(sch.ScheduleError):
        sch.next_schedule_time("@reboot", None, utc(2025, 1, 1))
    with pytest.raises(sch.ScheduleError):
        sch.next_schedule_time("@daily", "Nowhere/Land", utc(2025, 1, 1))


def test_time_zone_shifts_ticks():
    # 09:00 in Jerusalem is 07:00 UTC in winter (+02) and 06:00 UTC in summer (+03)
    assert sch.next_schedule_time("0 9 * * *", JLM, utc(2025, 1, 10)) == utc(2025, 1, 10, 7)
    assert sch.next_schedule_time("0 9 * * *", JLM, utc(2025, 7, 10)) == utc(2025, 7, 10, 6)
    assert sch.next_schedule_time("0 9 * * *", "", utc(2025, 7, 10)) == utc(2025, 7, 10, 9)


@pytest.mark.parametrize("macro, after, expected", [
    ("@hourly", utc(2025, 5, 5, 10, 30), [utc(2025, 5, 5, 11), utc(2025, 5, 5, 12)]),
    ("@daily", utc(2025, 5, 5, 10, 30), [utc(2025, 5, 6), utc(2025, 5, 7)]),
    ("@midnight", utc(2025, 12, 31, 23, 59), [utc(2026, 1, 1), utc(2026, 1, 2)]),
    ("@weekly", utc(2025, 5, 5, 10, 30), [utc(2025, 5, 11), utc(2025, 5, 18)]),  # Sundays
    ("@monthly", utc(2025, 1, 31, 10), [utc(2025, 2, 1), utc(2025, 3, 1)]),
    ("@yearly", utc(2025, 1, 1), [utc(2026, 1, 1), utc(2027, 1, 1)]),
    ("@annually", utc(2024, 12, 31, 23, 59, 59), [utc(2025, 1, 1), utc(2026, 1, 1)]),
])
def test_macros(macro, after, expected):
    assert ticks(macro, None, after, 2) == expected


def test_macros_in_a_time_zone():
    assert walls("@daily", JLM, utc(2025, 6, 1), 2) == ["2025-06-02T00:00+03:00", "2025-06-03T00:00+03:00"]
    assert walls("@weekly", NY, utc(2025, 6, 1), 1) == ["2025-06-01T00:00-04:00"]  # Sunday, NY
    assert walls("@weekly", NY, utc(2025, 6, 1, 4), 1) == ["2025-06-08T00:00-04:00"]
    assert walls("@monthly", NY, utc(2025, 1, 1), 2) == ["2025-01-01T00:00-05:00", "2025-02-01T00:00-05:00"]


def test_ranges_steps_lists_and_names():
    got = ticks("0 9-17/4 * * MON-FRI", None, utc(2025, 6, 6, 12), 5)  # Friday 2025-06-06
    assert got == [utc(2025, 6, 6, 13), utc(2025, 6, 6, 17), utc(2025, 6, 9, 9), utc(2025, 6, 9, 13),
                   utc(2025, 6, 9, 17)]
    assert ticks("5/20 * * * *", None, utc(2025, 1, 1), 4) == [
        utc(2025, 1, 1, 0, 5), utc(2025, 1, 1, 0, 25), utc(2025, 1, 1, 0, 45), utc(2025, 1, 1, 1, 5)]
    assert ticks("0 0 1 JAN,jul *", None, utc(2025, 2, 1), 3) == [utc(2025, 7, 1), utc(2026, 1, 1), utc(2026, 7, 1)]
    assert ticks("0 0 * * sat,SUN", None, utc(2025, 6, 2), 3) == [utc(2025, 6, 7), utc(2025, 6, 8), utc(2025, 6, 14)]
    assert ticks("30 8 * FEB-MAR/1 2", None, utc(2025, 1, 1), 2) == [utc(2025, 2, 4, 8, 30), utc(2025, 2, 11, 8, 30)]


def test_day_of_month_or_day_of_week():
    # both restricted -> either matches: the 13th and every Friday
    got = [t.date() for t in ticks("0 0 13 * FRI", None, utc(2025, 6, 1), 6)]
    assert got == [dt.date(2025, 6, 6), dt.date(2025, 6, 13), dt.date(2025, 6, 20), dt.date(2025, 6, 27),
                   dt.date(2025, 7, 4), dt.date(2025, 7, 11)]
    got = [t.date() for t in ticks("0 0 1,15 * 1", None, utc(2025, 1, 1), 6)]
    assert got == [dt.date(2025, 1, 6), dt.date(2025, 1, 13), dt.date(2025, 1, 15), dt.date(2025, 1, 20),
                   dt.date(2025, 1, 27), dt.date(2025, 2, 1)]
    # one side unrestricted -> only the other counts
    fridays = [t.date() for t in ticks("0 0 * * FRI", None, utc(2025, 6, 1), 2)]
    assert fridays == [dt.date(2025, 6, 6), dt.date(2025, 6, 13)]
    thirteenths = [t.date() for t in ticks("0 0 13 * ?", None, utc(2025, 6, 1), 2)]
    assert thirteenths == [dt.date(2025, 6, 13), dt.date(2025, 7, 13)]
    # "1-31" is a restriction (not *), so with a day-of-week it means every day, as cron does
    assert len({t.date() for t in ticks("0 0 1-31 * MON", None, utc(2025, 6, 1), 7)}) == 7
    # a stepped wildcard is a restriction too: odd days OR Mondays
    got = [t.date().day for t in ticks("0 0 */2 * MON", None, utc(2025, 6, 1), 6)]  # June 1 2025 is a Sunday
    assert got == [2, 3, 5, 7, 9, 11]


def test_month_ends():
    assert [t.date() for t in ticks("0 0 31 * *", None, utc(2025, 1, 1), 7)] == [
        dt.date(2025, 1, 31), dt.date(2025, 3, 31), dt.date(2025, 5, 31), dt.date(2025, 7, 31),
        dt.date(2025, 8, 31), dt.date(2025, 10, 31), dt.date(2025, 12, 31)]
    assert [t.date() for t in ticks("0 0 30 * *", None, utc(2025, 1, 1), 3)] == [
        dt.date(2025, 1, 30), dt.date(2025, 3, 30), dt.date(2025, 4, 30)]
    assert [t.date() for t in ticks("0 0 28-31 2 *", None, utc(2024, 1, 1), 3)] == [
        dt.date(2024, 2, 28), dt.date(2024, 2, 29), dt.date(2025, 2, 28)]
    # month end in a time zone: 23:30 on the 31st, Jerusalem
    assert walls("30 23 31 * *", JLM, utc(2025, 3, 1), 2) == ["2025-03-31T23:30+03:00", "2025-05-31T23:30+03:00"]


def test_leap_days():
    assert [t.date() for t in ticks("0 0 29 2 *", None, utc(2023, 6, 1), 3)] == [
        dt.date(2024, 2, 29), dt.date(2028, 2, 29), dt.date(2032, 2, 29)]
    # 2100 is not a leap year: eight years from 2096 to 2104
    assert [t.date() for t in ticks("0 0 29 2 *", None, utc(2096, 3, 1), 1)] == [dt.date(2104, 2, 29)]
    assert [t.date() for t in ticks("0 0 29 2 *", NY, utc(2024, 2, 29, 4, 59), 1)] == [dt.date(2024, 2, 29)]
    assert sch.next_schedule_time("0 0 29 2 *", NY, utc(2024, 2, 29, 5)) == utc(2028, 2, 29, 5)


def test_previous_schedule_time():
    assert sch.previous_schedule_time("*/7 * * * *", None, utc(2025, 1, 1, 12, 7)) == utc(2025, 1, 1, 12, 7)
    assert sch.previous_schedule_time("*/7 * * * *", None, utc(2025, 1, 1, 12, 6, 59)) == utc(2025, 1, 1, 12, 0)
    assert sch.previous_schedule_time("0 0 31 * *", None, utc(2025, 5, 1)) == utc(2025, 3, 31)
    assert sch.previous_schedule_time("30 2 * * *", NY, utc(2025, 3, 9, 12)) == local(NY, 2025, 3, 9, 3, 0)
    assert sch.previous_schedule_time("30 1 * * *", NY, local(NY, 2025, 11, 2, 1, 45, fold=1)) == \
        local(NY, 2025, 11, 2, 1, 30, fold=0)
    assert sch.previous_schedule_time("0 * * * *", NY, local(NY, 2025, 11, 2, 1, 45, fold=1)) == \
        local(NY, 2025, 11, 2, 1, 0, fold=1)


# --- DST ----------------------------------------------------------------------------------------------
# America/New_York: 2025-03-09 02:00 EST -> 03:00 EDT; 2025-11-02 02:00 EDT -> 01:00 EST.
# Asia/Jerusalem:   2025-03-28 (Friday) 02:00 IST -> 03:00 IDT; 2025-10-26 02:00 IDT -> 01:00 IST.

def test_new_york_spring_forward_daily_0230_fires_when_clocks_jump():
    assert walls("30 2 * * *", NY, utc(2025, 3, 7, 12), 4) == [
        "2025-03-08T02:30-05:00", "2025-03-09T03:00-04:00", "2025-03-10T02:30-04:00", "2025-03-11T02:30-04:00"]


def test_new_york_spring_forward_hourly_skips_the_missing_hour():
    assert walls("0 * * * *", NY, utc(2025, 3, 9, 5, 30), 4) == [
        "2025-03-09T01:00-05:00", "2025-03-09T03:00-04:00", "2025-03-09T04:00-04:00", "2025-03-09T05:00-04:00"]
    got = ticks("0 * * * *", NY, utc(2025, 3, 9, 5, 30), 4)
    assert all(b - a == dt.timedelta(hours=1) for a, b in zip(got, got[1:]))  # every real hour
    assert walls("30 * * * *", NY, utc(2025, 3, 9, 6, 0), 2) == ["2025-03-09T01:30-05:00", "2025-03-09T03:30-04:00"]


def test_new_york_fall_back_daily_0130_fires_once():
    assert walls("30 1 * * *", NY, utc(2025, 11, 1, 12), 3) == [
        "2025-11-02T01:30-04:00", "2025-11-03T01:30-05:00", "2025-11-04T01:30-05:00"]
    # asked during the repeated hour, after the first 01:30 fired: the next is tomorrow
    assert sch.next_schedule_time("30 1 * * *", NY, local(NY, 2025, 11, 2, 1, 10, fold=1)) == \
        local(NY, 2025, 11, 3, 1, 30)


def test_new_york_fall_back_daily_0230_unaffected():
    assert walls("30 2 * * *", NY, utc(2025, 11, 1, 12), 2) == ["2025-11-02T02:30-05:00", "2025-11-03T02:30-05:00"]
    got = ticks("30 2 * * *", NY, utc(2025, 11, 1, 12), 1)[0]
    assert got - local(NY, 2025, 11, 1, 2, 30) == dt.timedelta(hours=25)


def test_new_york_fall_back_hourly_fires_every_real_hour():
    assert walls("0 * * * *", NY, utc(2025, 11, 2, 3, 30), 4) == [
        "2025-11-02T00:00-04:00", "2025-11-02T01:00-04:00", "2025-11-02T01:00-05:00", "2025-11-02T02:00-05:00"]
    # asked between the two 01:00s (01:30 EDT): the second 01:00 (EST) is next
    second_one = local(NY, 2025, 11, 2, 1, 0, fold=1)
    assert sch.next_schedule_time("0 * * * *", NY, local(NY, 2025, 11, 2, 1, 30)) == second_one
    assert sch.next_schedule_time("@hourly", NY, local(NY, 2025, 11, 2, 1, 30, fold=1)) == local(NY, 2025, 11, 2, 2, 0)


def test_jerusalem_spring_forward_friday():
    assert dt.date(2025, 3, 28).weekday() == 4  # Friday
    assert walls("30 2 * * *", JLM, utc(2025, 3, 26, 12), 3) == [
        "2025-03-27T02:30+02:00", "2025-03-28T03:00+03:00", "2025-03-29T02:30+03:00"]
    assert walls("0 * * * *", JLM, utc(2025, 3, 27, 22, 30), 3) == [
        "2025-03-28T01:00+02:00", "2025-03-28T03:00+03:00", "2025-03-28T04:00+03:00"]
    # several wall times inside the gap collapse into one tick at the jump
    assert walls("0,20,40 2 * * *", JLM, utc(2025, 3, 27, 12), 4) == [
        "2025-03-28T03:00+03:00", "2025-03-29T02:00+03:00", "2025-03-29T02:20+03:00", "2025-03-29T02:40+03:00"]
    # a fixed tick right at the jump and a gap tick are the same instant: one tick
    assert walls("30 2,3 * * *", JLM, utc(2025, 3, 27, 12), 3) == [
        "2025-03-28T03:00+03:00", "2025-03-28T03:30+03:00", "2025-03-29T02:30+03:00"]


def test_jerusalem_fall_back():
    assert walls("30 1 * * *", JLM, utc(2025, 10, 25, 12), 2) == ["2025-10-26T01:30+03:00", "2025-10-27T01:30+02:00"]
    assert walls("30 2 * * *", JLM, utc(2025, 10, 25, 12), 2) == ["2025-10-26T02:30+02:00", "2025-10-27T02:30+02:00"]
    assert walls("0 * * * *", JLM, utc(2025, 10, 25, 20, 30), 4) == [
        "2025-10-26T00:00+03:00", "2025-10-26T01:00+03:00", "2025-10-26T01:00+02:00", "2025-10-26T02:00+02:00"]
    got = ticks("*/30 * * * *", JLM, utc(2025, 10, 25, 21, 0), 6)
    assert all(b - a == dt.timedelta(minutes=30) for a, b in zip(got, got[1:]))


def test_half_hour_dst_lord_howe():
    # Australia/Lord_Howe shifts by 30 minutes: 2025-04-06 02:00 (+11) -> 01:30 (+10:30)
    tz = "Australia/Lord_Howe"
    assert walls("45 1 * * *", tz, utc(2025, 4, 5, 0), 2) == ["2025-04-06T01:45+11:00", "2025-04-07T01:45+10:30"]
    # and 2025-10-05 02:00 (+10:30) -> 02:30 (+11)
    assert walls("15 2 * * *", tz, utc(2025, 10, 4, 0), 2) == ["2025-10-05T02:30+11:00", "2025-10-06T02:15+11:00"]


def test_midnight_missing_day_start():
    # America/Havana springs forward at midnight: 2025-03-09 00:00 does not exist
    tz = "America/Havana"
    assert walls("@daily", tz, utc(2025, 3, 8, 12), 2) == ["2025-03-09T01:00-04:00", "2025-03-10T00:00-04:00"]


def test_day_skipped_by_a_zone():
    # Pacific/Apia skipped 2011-12-30 entirely; a daily 12:00 tick that day never existed and the
    # fixed-time rule fires it at the jump (the first instant of 2011-12-31)
    tz = "Pacific/Apia"
    got = walls("0 12 * * *", tz, utc(2011, 12, 29, 0), 3)
    assert got[0].startswith("2011-12-29T12:00") and got[1].startswith("2011-12-31T00:00")
    assert got[2].startswith("2011-12-31T12:00")


# --- due runs (missed ticks) ----------------------------------------------------------------------------
CREATED = utc(2025, 6, 1, 9, 59, 30)


def due(expr="@hourly", tz=None, *, last=None, created=CREATED, now, deadline=None, suspend=False):
    return sch.due_runs(expr, tz, last_schedule_time=last, creation_time=created, now=now,
                        starting_deadline_seconds=deadline, suspend=suspend)


def test_nothing_due_before_the_first_tick():
    d = due(now=utc(2025, 6, 1, 10, 0) - dt.timedelta(seconds=1))
    assert d.run_at is None and d.skipped_missed == 0 and not d.too_late and d.latest_tick is None
    assert d.next_time == utc(2025, 6, 1, 10)
    assert d.requeue_after == pytest.approx(1.0 + sch.REQUEUE_SLACK_SECONDS)


def test_first_tick_after_creation_runs():
    d = due(now=utc(2025, 6, 1, 10, 0, 5))
    assert d.run_at == utc(2025, 6, 1, 10) and d.skipped_missed == 0 and not d.too_late
    assert d.next_time == utc(2025, 6, 1, 11)
    assert d.requeue_after == pytest.approx(3595 + sch.REQUEUE_SLACK_SECONDS)


def test_tick_exactly_now_is_due():
    d = due(now=utc(2025, 6, 1, 10))
    assert d.run_at == utc(2025, 6, 1, 10) and d.next_time == utc(2025, 6, 1, 11)


def test_handled_tick_is_not_run_again():
    d = due(last=utc(2025, 6, 1, 10), now=utc(2025, 6, 1, 10, 30))
    assert d.run_at is None and d.skipped_missed == 0 and d.next_time == utc(2025, 6, 1, 11)


def test_outage_catch_up_runs_only_the_most_recent_tick():
    # the operator was down from 10:00 to 15:20: five ticks missed (11..15), one run, for 15:00
    d = due(last=utc(2025, 6, 1, 10), now=utc(2025, 6, 1, 15, 20))
    assert d.run_at == utc(2025, 6, 1, 15) and d.skipped_missed == 4 and not d.too_late
    assert d.latest_tick == utc(2025, 6, 1, 15) and d.next_time == utc(2025, 6, 1, 16)
    assert not d.many_missed


def test_missed_tick_within_deadline_runs():
    d = due(last=utc(2025, 6, 1, 10), now=utc(2025, 6, 1, 11, 4, 59), deadline=300)
    assert d.run_at == utc(2025, 6, 1, 11) and not d.too_late and d.skipped_missed == 0


def test_missed_tick_at_the_deadline_still_runs():
    d = due(last=utc(2025, 6, 1, 10), now=utc(2025, 6, 1, 11, 5), deadline=300)
    assert d.run_at == utc(2025, 6, 1, 11) and not d.too_late


def test_missed_tick_past_deadline_is_too_late():
    d = due(last=utc(2025, 6, 1, 10), now=utc(2025, 6, 1, 11, 5, 1), deadline=300)
    assert d.run_at is None and d.too_late and d.skipped_missed == 1
    assert d.latest_tick == utc(2025, 6, 1, 11) and d.next_time == utc(2025, 6, 1, 12)


def test_outage_past_deadline_skips_everything():
    d = due(last=utc(2025, 6, 1, 10), now=utc(2025, 6, 1, 15, 20), deadline=600)
    assert d.run_at is None and d.too_late and d.skipped_missed == 5


def test_outage_within_deadline_of_latest_tick_runs_it_once():
    d = due(last=utc(2025, 6, 1, 10), now=utc(2025, 6, 1, 15, 5), deadline=600)
    assert d.run_at == utc(2025, 6, 1, 15) and d.skipped_missed == 4 and not d.too_late


def test_zero_deadline_only_runs_on_the_dot():
    assert due(last=utc(2025, 6, 1, 10), now=utc(2025, 6, 1, 11), deadline=0).run_at == utc(2025, 6, 1, 11)
    assert due(last=utc(2025, 6, 1, 10), now=utc(2025, 6, 1, 11, 0, 1), deadline=0).too_late


def test_suspend_starts_nothing_but_reports_next():
    d = due(last=utc(2025, 6, 1, 10), now=utc(2025, 6, 1, 12, 30), suspend=True)
    assert d.run_at is None and not d.too_late and d.skipped_missed == 2
    assert d.next_time == utc(2025, 6, 1, 13)
    assert d.requeue_after == pytest.approx(1800 + sch.REQUEUE_SLACK_SECONDS)


def test_resume_after_suspend_catches_up_once_like_cronjob():
    # suspended 10:00-12:30 without advancing lastScheduleTime; resuming runs the 12:00 tick once
    d = due(last=utc(2025, 6, 1, 10), now=utc(2025, 6, 1, 12, 30), suspend=False)
    assert d.run_at == utc(2025, 6, 1, 12) and d.skipped_missed == 1
    # ...unless the deadline says it is stale
    d = due(last=utc(2025, 6, 1, 10), now=utc(2025, 6, 1, 12, 30), deadline=60)
    assert d.run_at is None and d.too_late


def test_more_than_100_missed_ticks_are_bounded():
    # every minute, operator gone for ten days: 14,400 ticks; the latest still runs
    now = utc(2025, 6, 11, 10, 0, 30)
    d = due("* * * * *", last=utc(2025, 6, 1, 10), now=now)
    assert d.many_missed and d.run_at == utc(2025, 6, 11, 10)
    assert d.skipped_missed == 14_400 - 1
    assert d.next_time == utc(2025, 6, 11, 10, 1)


def test_exactly_100_missed_ticks_are_enumerated():
    d = due("* * * * *", last=utc(2025, 6, 1, 10), now=utc(2025, 6, 1, 11, 40, 30))
    assert not d.many_missed and d.run_at == utc(2025, 6, 1, 11, 40) and d.skipped_missed == 99
    d = due("* * * * *", last=utc(2025, 6, 1, 10), now=utc(2025, 6, 1, 11, 41, 30))
    assert d.many_missed and d.run_at == utc(2025, 6, 1, 11, 41) and d.skipped_missed == 100


def test_decades_of_missed_ticks_are_cheap():
    d = due("* * * * *", last=utc(1990, 1, 1), now=utc(2025, 6, 1, 10, 0, 30))
    assert d.many_missed and d.run_at == utc(2025, 6, 1, 10) and d.skipped_missed > 18_000_000


def test_clock_skew_last_schedule_in_the_future():
    d = due(last=utc(2025, 6, 1, 12), now=utc(2025, 6, 1, 10, 30))
    assert d.run_at is None and d.skipped_missed == 0 and d.next_time == utc(2025, 6, 1, 13)


def test_due_runs_across_dst_in_a_zone():
    # daily 02:30 New York; the 2025-03-09 tick fires at 03:00 EDT (07:00Z)
    d = due("30 2 * * *", NY, last=local(NY, 2025, 3, 8, 2, 30), created=utc(2025, 1, 1), now=utc(2025, 3, 9, 7, 0, 10))
    assert d.run_at == utc(2025, 3, 9, 7) and d.skipped_missed == 0
    assert d.next_time == local(NY, 2025, 3, 10, 2, 30)
    # daily 01:30 New York on fall-back day: one run, the next is tomorrow
    last = local(NY, 2025, 11, 2, 1, 30)
    d = due("30 1 * * *", NY, last=last, created=utc(2025, 1, 1), now=local(NY, 2025, 11, 2, 1, 31, fold=1))
    assert d.run_at is None and d.next_time == local(NY, 2025, 11, 3, 1, 30)


# --- concurrency ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy, active, action", [
    ("Forbid", False, "start"), ("Forbid", True, "skip"),
    ("Replace", False, "start"), ("Replace", True, "replace_then_start"),
    ("Allow", False, "start"), ("Allow", True, "start"),
    (None, True, "skip"), ("", False, "start"),
])
def test_concurrency_action(policy, active, action):
    assert sch.concurrency_action(policy, active) == action


@pytest.mark.parametrize("policy", ["forbid", "Queue", "ALLOW"])
def test_concurrency_action_rejects_unknown_policy(policy):
    with pytest.raises(ValueError, match="spec.concurrencyPolicy"):
        sch.concurrency_action(policy, True)
