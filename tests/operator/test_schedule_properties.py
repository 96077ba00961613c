"""Hypothesis properties of the scheduling decisions, checked against a brute-force oracle that walks
real time minute by minute and applies the documented DST rules directly."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from receiptsync_common import contract as c
from receiptsync_operator import runs
from receiptsync_operator import schedule as sch
from receiptsync_operator import status as rstatus

UTC = dt.timezone.utc
MINUTE = dt.timedelta(minutes=1)
ZONES = ["UTC", "Asia/Jerusalem", "America/New_York", "Europe/London", "Australia/Lord_Howe",
         "America/Sao_Paulo", "Asia/Kolkata", "America/Havana", "Pacific/Chatham"]
# instants near DST transitions (2019-2030) in the zones above, so the properties hit gaps and overlaps
TRANSITIONS = [
    dt.datetime(2025, 3, 27, 23, 0, tzinfo=UTC), dt.datetime(2025, 10, 25, 22, 0, tzinfo=UTC),  # Jerusalem
    dt.datetime(2025, 3, 9, 7, 0, tzinfo=UTC), dt.datetime(2025, 11, 2, 6, 0, tzinfo=UTC),  # New York
    dt.datetime(2024, 3, 31, 1, 0, tzinfo=UTC), dt.datetime(2024, 10, 27, 1, 0, tzinfo=UTC),  # London
    dt.datetime(2025, 4, 5, 15, 0, tzinfo=UTC), dt.datetime(2025, 10, 4, 15, 30, tzinfo=UTC),  # Lord Howe
    dt.datetime(2019, 2, 17, 2, 0, tzinfo=UTC),  # Sao Paulo (last DST end, at midnight)
    dt.datetime(2025, 3, 9, 5, 0, tzinfo=UTC), dt.datetime(2025, 11, 2, 5, 0, tzinfo=UTC),  # Havana (midnight)
    dt.datetime(2025, 4, 5, 14, 0, tzinfo=UTC), dt.datetime(2025, 9, 27, 14, 0, tzinfo=UTC),  # Chatham (:45)
]

QUICK = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- strategies -----------------------------------------------------------------------------------
def _field(lo: int, hi: int, names: list[str] | None = None):
    value = st.integers(lo, hi)
    token = value.map(str) if names is None else st.one_of(
        value.map(str), st.integers(0, len(names) - 1).map(lambda i: names[i]))
    rng = st.tuples(value, value).map(lambda p: f"{min(p)}-{max(p)}")
    step = st.integers(1, max(1, (hi - lo) // 2))
    part = st.one_of(
        st.just("*"), token, rng,
        st.tuples(st.sampled_from(["*"]), step).map(lambda p: f"{p[0]}/{p[1]}"),
        st.tuples(rng, step).map(lambda p: f"{p[0]}/{p[1]}"),
        st.tuples(value, step).map(lambda p: f"{p[0]}/{p[1]}"),
    )
    return st.lists(part, min_size=1, max_size=3).map(",".join)


MONTHS = ["JAN", "feb", "Mar", "APR", "may", "JUN", "jul", "AUG", "sep", "OCT", "nov", "DEC"]
DAYS = ["SUN", "mon", "Tue", "WED", "thu", "FRI", "sat"]
MONTH_NUMBER = {m.lower(): i + 1 for i, m in enumerate(MONTHS)}
DAY_NUMBER = {d.lower(): i for i, d in enumerate(DAYS)}

five_field = st.tuples(
    _field(0, 59), _field(0, 23), _field(1, 31), _field(1, 12, MONTHS), _field(0, 6, DAYS),
).map(" ".join).filter(lambda e: sch.validate_schedule(e, None) is None)

# denser schedules, so windows of a day or two contain ticks
dense = st.one_of(
    st.sampled_from(["* * * * *", "*/5 * * * *", "0 * * * *", "30 * * * *", "@hourly", "@daily",
                     "30 2 * * *", "30 1 * * *", "0 2 * * *", "0,30 2 * * *", "45 0-3 * * *",
                     "*/20 1 * * *", "15 */2 * * *", "0 0 * * *", "0 9-17 * * MON-FRI", "0 0 13 * FRI",
                     "59 23 * * *", "0 0 31 * *", "0 0 29 2 *", "@weekly", "@monthly", "@yearly",
                     "10 1,2,3 * * *", "0 0 1-31 * MON", "0 0 */2 * MON"]),
    st.tuples(_field(0, 59), _field(0, 23)).map(lambda p: f"{p[0]} {p[1]} * * *"),
)
expressions = st.one_of(dense, five_field)
zones = st.sampled_from(ZONES)
near_transition = st.tuples(st.sampled_from(TRANSITIONS), st.integers(-36 * 3600, 36 * 3600)).map(
    lambda p: p[0] + dt.timedelta(seconds=p[1]))
anywhere = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2035, 12, 31),
                        timezones=st.just(UTC))
instants = st.one_of(near_transition, anywhere)


# --- oracle: an independent reading of cron (never the parser under test) --------------------------------
_MACRO = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
          "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
_LIMITS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_NAMES = ({}, {}, {}, MONTH_NUMBER, DAY_NUMBER)


def _values(field: str, index: int) -> tuple[set[int], bool]:
    """(values, star) of one field: star when it is unrestricted (``*``, ``?``, ``*/1``)."""
    lo, hi = _LIMITS[index]
    out: set[int] = set()
    for part in field.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        number = lambda t: _NAMES[index].get(t.lower(), None) if not t.isdigit() else int(t)  # noqa: E731
        if base in ("*", "?"):
            first, last = lo, hi
        elif "-" in base:
            first, last = (number(t) for t in base.split("-"))
        else:
            first = number(base)
            last = hi if step_text else first
        out |= set(range(first, last + 1, step))
    return out, field in ("*", "?", "*/1")


def independent_match(expr: str, wall: dt.datetime) -> bool:
    fields = _MACRO.get(expr, expr).split()
    (minute, _), (hour, _), (dom, dom_star), (month, _), (dow, dow_star) = (
        _values(f, i) for i, f in enumerate(fields))
    day_of_week = (wall.weekday() + 1) % 7  # cron: Sunday is 0
    if dom_star or dow_star:
        day = wall.day in dom and day_of_week in dow
    else:
        day = wall.day in dom or day_of_week in dow
    return wall.minute in minute and wall.hour in hour and wall.month in month and day


def independent_interval_like(expr: str) -> bool:
    minute, hour = _MACRO.get(expr, expr).split()[:2]
    return minute[0] in "*?" or hour[0] in "*?"


def test_the_independent_matcher_reads_cron_as_documented():
    assert independent_match("0 0 1,15 * MON", dt.datetime(2025, 6, 16))  # a Monday, neither 1st nor 15th
    assert not independent_match("0 0 1,15 * MON", dt.datetime(2025, 6, 17))
    assert independent_match("0 0 * * MON", dt.datetime(2025, 6, 16)) and not independent_match(
        "0 0 * * MON", dt.datetime(2025, 6, 17))
    assert independent_match("*/20 1 * * *", dt.datetime(2025, 6, 16, 1, 40))
    assert independent_interval_like("@hourly") and not independent_interval_like("@daily")


def _wall(u: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    return u.astimezone(tz).replace(tzinfo=None, fold=0)


def oracle_is_tick(expr: str, tz_name: str, u: dt.datetime) -> bool:
    """The documented rules, applied to one whole-minute instant."""
    tz = ZoneInfo(tz_name)
    if u.second or u.microsecond:
        return False
    local = u.astimezone(tz)
    wall = local.replace(tzinfo=None, fold=0)
    if independent_interval_like(expr):
        return independent_match(expr, wall)  # every real instant whose local time matches
    if independent_match(expr, wall) and local.fold == 0:
        return True  # first occurrence of a matching wall time
    before = _wall(u - MINUTE, tz)  # a jump forward ends at u: wall times in between never existed
    w = before + MINUTE
    while w < wall:
        if independent_match(expr, w):
            return True
        w += MINUTE
    return False


def oracle_ticks(expr: str, tz_name: str, after: dt.datetime, until: dt.datetime) -> list[dt.datetime]:
    u = after.replace(second=0, microsecond=0) + MINUTE
    out = []
    while u <= until:
        if oracle_is_tick(expr, tz_name, u):
            out.append(u)
        u += MINUTE
    return out


def ticks_until(expr, tz, after, until):
    out = []
    for t in sch.iter_schedule_times(expr, tz, after):
        if t > until:
            return out
        out.append(t)
    return out


# --- next / previous ------------------------------------------------------------------------------
@QUICK
@given(expressions, zones, instants)
@example("30 2 * * *", "America/New_York", dt.datetime(2025, 3, 9, 6, 59, tzinfo=UTC))
@example("30 1 * * *", "America/New_York", dt.datetime(2025, 11, 2, 5, 45, tzinfo=UTC))
@example("0 * * * *", "Asia/Jerusalem", dt.datetime(2025, 10, 25, 22, 30, tzinfo=UTC))
def test_next_is_strictly_after_and_a_tick(expr, tz, after):
    nxt = sch.next_schedule_time(expr, tz, after)
    assert nxt > after and nxt.tzinfo is UTC
    assert oracle_is_tick(expr, tz, nxt)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dense, zones, near_transition)
@example("30 2 * * *", "America/New_York", dt.datetime(2025, 3, 8, 12, tzinfo=UTC))
@example("30 1 * * *", "America/New_York", dt.datetime(2025, 11, 1, 12, tzinfo=UTC))
@example("0,30 2 * * *", "Asia/Jerusalem", dt.datetime(2025, 3, 27, 12, tzinfo=UTC))
@example("* * * * *", "Australia/Lord_Howe", dt.datetime(2025, 4, 5, 14, 0, tzinfo=UTC))
def test_ticks_equal_the_oracle_over_a_day_and_a_half(expr, tz, after):
    until = after + dt.timedelta(hours=36)
    assert ticks_until(expr, tz, after, until) == oracle_ticks(expr, tz, after, until)


@QUICK
@given(expressions, zones, instants)
def test_previous_and_next_bracket_any_instant(expr, tz, at):
    prev = sch.previous_schedule_time(expr, tz, at)
    nxt = sch.next_schedule_time(expr, tz, prev)
    assert prev <= at < nxt
    assert oracle_is_tick(expr, tz, prev)
    assert sch.next_schedule_time(expr, tz, at) == nxt
    assert sch.previous_schedule_time(expr, tz, nxt) == nxt


@QUICK
@given(expressions, zones, instants)
def test_next_is_the_same_from_any_offset(expr, tz, after):
    elsewhere = after.astimezone(ZoneInfo("Asia/Tokyo"))
    assert sch.next_schedule_time(expr, tz, after) == sch.next_schedule_time(expr, tz, elsewhere)


@SLOW
@given(dense, zones, instants)
@example("*/15 * * * *", "UTC", dt.datetime(2025, 1, 1, 0, 0, 7, tzinfo=UTC))
def test_no_drift_over_1000_consecutive_ticks(expr, tz, after):
    seq = []
    for t in sch.iter_schedule_times(expr, tz, after):
        seq.append(t)
        if len(seq) == 1000:
            break
    assert all(a < b for a, b in zip(seq, seq[1:]))
    for t in seq[::37]:  # each is a tick by the independent oracle, whole minutes, nothing skipped before it
        assert t.second == 0 and t.microsecond == 0
        assert sch.next_schedule_time(expr, tz, t - dt.timedelta(microseconds=1)) == t
        assert oracle_is_tick(expr, tz, t), t
    if expr == "*/15 * * * *" and tz == "UTC":
        assert seq[-1] - seq[0] == dt.timedelta(minutes=15 * 999)


@QUICK
@given(st.sampled_from(["0 * * * *", "*/10 * * * *", "*/7 * * * *", "17 * * * *"]), zones, instants)
def test_interval_schedules_keep_real_spacing_across_dst(expr, tz, after):
    # minute-only schedules fire at the same minutes of every real hour, DST or not,
    # in zones whose offsets are whole hours
    seq = ticks_until(expr, tz, after, after + dt.timedelta(hours=30))
    offsets = {t.astimezone(ZoneInfo(tz)).utcoffset() for t in seq}
    assume(all(o.total_seconds() % 3600 == 0 for o in offsets))
    minutes = _values(_MACRO.get(expr, expr).split()[0], 0)[0]
    assert all(t.minute in minutes for t in seq)
    expected = oracle_ticks(expr, "UTC", after, after + dt.timedelta(hours=30))
    assert seq == expected


@QUICK
@given(st.sampled_from(["30 2 * * *", "30 1 * * *", "0 2 * * *", "45 0 * * *", "@daily", "0 12 * * *"]),
       zones, instants)
def test_fixed_daily_fires_once_per_local_day(expr, tz, after):
    seq = ticks_until(expr, tz, after, after + dt.timedelta(days=10))
    days = [t.astimezone(ZoneInfo(tz)).date() for t in seq]
    assert len(days) == len(set(days))  # never twice on one day (overlaps)
    first = after.astimezone(ZoneInfo(tz)).date() + dt.timedelta(days=1)
    last = (after + dt.timedelta(days=9)).astimezone(ZoneInfo(tz)).date()
    d = first
    while d < last:  # and never skipped (gaps): every full local day in between has its tick
        assert d in days
        d += dt.timedelta(days=1)


# --- due runs ---------------------------------------------------------------------------------------
@QUICK
@given(expressions, zones, instants, st.integers(0, 60 * 24 * 60), st.one_of(st.none(), st.integers(0, 7200)),
       st.booleans())
def test_at_most_one_catch_up_run_whatever_the_outage(expr, tz, last, outage_minutes, deadline, suspend):
    now = last + dt.timedelta(minutes=outage_minutes, seconds=17)
    d = sch.due_runs(expr, tz, last_schedule_time=last, creation_time=last - dt.timedelta(days=3), now=now,
                     starting_deadline_seconds=deadline, suspend=suspend)
    assert d.next_time > now and d.next_time == sch.next_schedule_time(expr, tz, now)
    assert d.requeue_after > 0
    assert d.requeue_after == (d.next_time - now).total_seconds() + sch.REQUEUE_SLACK_SECONDS
    if d.latest_tick is None:
        assert d.run_at is None and d.skipped_missed == 0 and not d.too_late
        assert sch.next_schedule_time(expr, tz, last) > now
        return
    assert last < d.latest_tick <= now
    assert d.latest_tick == sch.previous_schedule_time(expr, tz, now)
    if suspend:
        assert d.run_at is None and not d.too_late
    elif deadline is not None and (now - d.latest_tick).total_seconds() > deadline:
        assert d.run_at is None and d.too_late
    else:
        assert d.run_at == d.latest_tick and not d.too_late
    if not d.many_missed:
        missed = ticks_until(expr, tz, last, now)
        assert d.skipped_missed + (d.run_at is not None) == len(missed)
        assert len(missed) <= sch.MAX_MISSED_TICKS
    else:
        assert d.skipped_missed >= sch.MAX_MISSED_TICKS


@QUICK
@given(dense, zones, near_transition, st.lists(st.integers(1, 6 * 3600), min_size=1, max_size=40),
       st.one_of(st.none(), st.integers(0, 3600)))
def test_reconcile_loop_runs_each_tick_at_most_once_and_in_order(expr, tz, created, gaps, deadline):
    """An operator that reconciles at arbitrary moments (outages included) and records each run's
    tick in lastScheduleTime starts runs for distinct, increasing ticks, one per reconcile at most."""
    now, last, runs = created, None, []
    for gap in gaps:
        now += dt.timedelta(seconds=gap)
        d = sch.due_runs(expr, tz, last_schedule_time=last, creation_time=created, now=now,
                         starting_deadline_seconds=deadline, suspend=False)
        if d.run_at is not None:
            assert d.run_at <= now and (last is None or d.run_at > last)
            assert oracle_is_tick(expr, tz, d.run_at)
            runs.append(d.run_at)
            last = d.run_at
        elif d.too_late:
            last = d.latest_tick  # the caller records the skipped tick as handled
    assert runs == sorted(set(runs))


@SLOW
@given(dense, zones, near_transition)
def test_reconciling_at_every_tick_runs_every_tick(expr, tz, created):
    seq = ticks_until(expr, tz, created, created + dt.timedelta(hours=14))
    last, runs = None, []
    for t in seq:
        d = sch.due_runs(expr, tz, last_schedule_time=last, creation_time=created, now=t + dt.timedelta(seconds=2),
                         starting_deadline_seconds=60, suspend=False)
        assert d.skipped_missed == 0 and not d.too_late
        runs.append(d.run_at)
        last = d.run_at
    assert runs == seq


# --- history and triggers ----------------------------------------------------------------------------
PHASES = st.sampled_from(list(c.PHASES))


@QUICK
@given(st.lists(PHASES, max_size=30), st.integers(0, 6), st.integers(0, 6), st.randoms(use_true_random=False))
def test_trim_runs_properties(phases, ok_limit, failed_limit, rnd):
    runs = [{"runId": i + 1, "phase": p, "reason": "", "startTime": "", "completionTime": "",
             "messagesScanned": i, "savedReceipts": 0, "attempt": 1} for i, p in enumerate(phases)]
    shuffled = list(runs)
    rnd.shuffle(shuffled)
    out = rstatus.trim_runs(shuffled, ok_limit, failed_limit)
    ids = [r["runId"] for r in out]
    assert ids == sorted(ids)  # newest last
    assert all(r in runs for r in out)
    newest_overall = runs[-1]["runId"] if runs else None

    def newest(phase, n):
        return sorted((r["runId"] for r in runs if r["phase"] == phase), reverse=True)[:n]

    for phase, limit in ((c.PHASE_FINISHED, ok_limit), (c.PHASE_FAILED, failed_limit)):
        kept = sorted(i for i in ids if runs[i - 1]["phase"] == phase)
        expected = set(newest(phase, limit))
        if newest_overall is not None and runs[-1]["phase"] == phase:
            expected.add(newest_overall)  # the newest run is always kept
        assert set(kept) == expected
    active = [r["runId"] for r in runs if r["phase"] not in c.TERMINAL_PHASES]
    assert [i for i in ids if i in active] == active
    assert rstatus.trim_runs(out, ok_limit, failed_limit) == out  # idempotent


@QUICK
@given(st.lists(st.tuples(st.booleans(), st.one_of(st.none(), st.sampled_from(["a", "b", "c", ""]))), max_size=30),
       st.booleans())
def test_applies_start_one_run_per_generation_and_per_new_run_now_value(applies, has_schedule):
    """Each apply either edits the spec (new generation) or re-applies it; the run-now annotation is
    whatever the manifest says. Runs started = new generations (unscheduled) + run-now value changes."""
    generation, status, started = 1, {}, 0
    spec = {"schedule": "0 3 * * *"} if has_schedule else {}
    expected = 0 if has_schedule else 1
    seen_value = None
    for step, (edit, value) in enumerate([(False, None)] + applies):
        if edit and step:
            generation += 1
            expected += 0 if has_schedule else 1
        annotations = {c.RUN_NOW_ANNOTATION: value} if value is not None else {}
        if value and value != seen_value:
            if has_schedule or not (edit and step):
                expected += 1  # a run-now alongside an edit shares the edit's run
            seen_value = value
        meta = {"generation": generation, "annotations": annotations}
        trigger = runs.pending_trigger(meta, status, spec)
        if trigger is not None:
            started += 1
            status.update({"observedGeneration": trigger.generation})
            if trigger.run_now is not None:  # as status.queued records it
                status["observedRunNow"] = trigger.run_now
        assert runs.pending_trigger(meta, status, spec) is None
    assert started == expected
