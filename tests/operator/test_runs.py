"""Run triggers, payloads, retry decisions and lost/late attempts."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from receiptsync_common import contract as c
from receiptsync_operator import runs
from receiptsync_operator.validation import InvalidSpec

NOW = dt.datetime(2025, 6, 15, 12, 0, 0, tzinfo=dt.timezone.utc)
META = {"namespace": "team-a", "name": "acme.sync", "uid": "0123456789abcdef", "generation": 1}
SPEC = {"businessId": "acme", "gmail": {"secretRef": {"name": "s"}}}


def meta(**kw):
    return {**META, **kw}


# --- triggers -----------------------------------------------------------------------------------------
def test_first_sight_starts_a_run():
    t = runs.next_run(meta(), {})
    assert t.kind == runs.TRIGGER_GENERATION and t.generation == 1


def test_same_generation_starts_nothing():
    assert runs.next_run(meta(), {"observedGeneration": 1, "phase": "Finished"}) is None


def test_new_generation_starts_a_run():
    assert runs.next_run(meta(generation=2), {"observedGeneration": 1, "phase": "Finished"}).generation == 2


def test_trigger_waits_while_a_run_is_active():
    for phase in ("Pending", "Queued", "Started"):
        status = {"observedGeneration": 1, "phase": phase}
        assert runs.pending_trigger(meta(generation=2), status) is not None
        assert runs.next_run(meta(generation=2), status) is None


def test_run_now_each_new_value_once():
    ann = {c.RUN_NOW_ANNOTATION: "2025-06-15T12:00"}
    status = {"observedGeneration": 1, "phase": "Finished"}
    t = runs.next_run(meta(annotations=ann), status)
    assert t.kind == runs.TRIGGER_RUN_NOW and t.run_now == "2025-06-15T12:00"
    assert runs.next_run(meta(annotations=ann), {**status, "observedRunNow": "2025-06-15T12:00"}) is None
    # Without observedRunNow (a schema without it), the newest status.runs entry remembers it.
    assert runs.next_run(meta(annotations=ann),
                         {**status, "runs": [{"runId": 1, "runNow": "2025-06-15T12:00"}]}) is None
    # A run started without the annotation (an edit, a tick) does not make the old value new again.
    assert runs.next_run(meta(annotations=ann), {**status, "runs": [{"runId": 1, "runNow": "2025-06-15T12:00"},
                                                                   {"runId": 2}]}) is None
    again = runs.next_run(meta(annotations={c.RUN_NOW_ANNOTATION: "again"}), {**status, "observedRunNow": "x"})
    assert again.run_now == "again"


def test_generation_run_records_the_current_run_now_value():
    t = runs.next_run(meta(generation=2, annotations={c.RUN_NOW_ANNOTATION: "old"}),
                      {"observedGeneration": 1, "observedRunNow": "old"})
    assert t.kind == runs.TRIGGER_GENERATION and t.run_now == "old"


def test_run_now_with_new_generation_is_one_run():
    t = runs.next_run(meta(annotations={c.RUN_NOW_ANNOTATION: "v1"}), {})
    assert t.kind == runs.TRIGGER_GENERATION and t.run_now == "v1"


def test_empty_run_now_is_ignored():
    assert runs.next_run(meta(annotations={c.RUN_NOW_ANNOTATION: ""}), {"observedGeneration": 1}) is None


def test_deleting_starts_nothing():
    assert runs.next_run(meta(deletionTimestamp="2025-01-01T00:00:00Z"), {}) is None


def test_run_ids_count_up():
    assert runs.next_run_id({}) == 1 and runs.next_run_id({"runId": 7}) == 8


# --- job ids ---------------------------------------------------------------------------------------------
def test_job_ids_are_deterministic_and_parse_back():
    job_id = runs.job_id_for(META, 3, 2)
    assert job_id == runs.job_id_for(META, 3, 2) == "team-a.acme.sync.01234567.r3.a2"
    assert runs.parse_job_id(job_id) == ("team-a", "acme.sync", 3, 2)


@pytest.mark.parametrize("bad", ["", "nodots", "ns.name.uid.r1", "ns.name.uid.rx.a1", "ns.name.uid.r1.b1",
                                 ".n.u.r1.a1"])
def test_parse_job_id_rejects_garbage(bad):
    assert runs.parse_job_id(bad) is None


# --- payloads ---------------------------------------------------------------------------------------------
def test_payload_full_range():
    spec = {**SPEC, "mode": "full", "fromDate": "2025-01-01", "toDate": "2025-01-31", "priority": "high",
            "timeout": "90s", "maxMessages": 10, "query": "from:shop", "timeZone": "Asia/Jerusalem"}
    p = runs.build_payload(META, spec, run_id=1, attempt=1, now=NOW)
    assert (p.date_from, p.date_to) == ("2025-01-01", "2025-01-31")
    assert p.priority == "high" and p.timeout_seconds == 90 and p.max_messages == 10
    assert p.time_zone == "Asia/Jerusalem" and p.explicit_from and p.explicit_to
    assert p.job_id == "team-a.acme.sync.01234567.r1.a1" and p.enqueued_at == "2025-06-15T12:00:00Z"
    assert runs.known_range(p) == ("2025-01-01", "2025-01-31")


def test_payload_incremental_without_dates_leaves_range_to_worker():
    p = runs.build_payload(META, SPEC, run_id=1, attempt=1, now=NOW)
    assert p.mode == "incremental" and (p.date_from, p.date_to) == ("2024-06-15", "2025-06-15")
    assert runs.known_range(p) is None


def test_payload_today_in_time_zone():
    late = dt.datetime(2025, 6, 15, 23, 30, tzinfo=dt.timezone.utc)
    p = runs.build_payload(META, {**SPEC, "mode": "full", "timeZone": "Asia/Tokyo", "monthsBack": 1},
                           run_id=1, attempt=1, now=late)
    assert (p.date_from, p.date_to) == ("2025-05-16", "2025-06-16")


@pytest.mark.parametrize("extra,field", [({"fromDate": "2025-02-30"}, "fromDate"),
                                         ({"fromDate": "2099-01-01"}, "fromDate"),
                                         ({"timeZone": "Nowhere/City"}, "timeZone")])
def test_payload_invalid(extra, field):
    with pytest.raises(InvalidSpec, match=field):
        runs.build_payload(META, {**SPEC, **extra}, run_id=1, attempt=1, now=NOW)


def test_next_attempt_payload_keeps_run_and_range():
    p = runs.build_payload(META, {**SPEC, "fromDate": "2025-01-01"}, run_id=4, attempt=1, now=NOW)
    later = NOW + dt.timedelta(minutes=1)
    q = runs.next_attempt_payload(p, META, later)
    assert q.run_id == 4 and q.attempt == 2 and q.job_id.endswith(".r4.a2")
    assert (q.date_from, q.date_to) == (p.date_from, p.date_to) and q.enqueued_at == "2025-06-15T12:01:00Z"


# --- retries ------------------------------------------------------------------------------------------------
def test_retry_until_backoff_limit():
    spec = {**SPEC, "backoffLimit": 2}
    assert runs.after_failure(1, spec, c.REASON_WORKER_LOST, "x") == runs.Retry(2, 3)
    assert runs.after_failure(2, spec, c.REASON_GMAIL_API_ERROR, "x") == runs.Retry(3, 3)
    f = runs.after_failure(3, spec, c.REASON_TIMEOUT, "late")
    assert isinstance(f, runs.Fail) and f.reason == c.REASON_BACKOFF_LIMIT_EXCEEDED
    assert "Timeout" in f.message and "backoffLimit 2" in f.message


def test_backoff_limit_zero_fails_first_time():
    f = runs.after_failure(1, {**SPEC, "backoffLimit": 0}, c.REASON_WORKER_LOST, "x")
    assert f.reason == c.REASON_BACKOFF_LIMIT_EXCEEDED


def test_default_backoff_limit_is_three():
    assert runs.after_failure(3, SPEC, c.REASON_WORKER_LOST, "x") == runs.Retry(4, 4)
    assert isinstance(runs.after_failure(4, SPEC, c.REASON_WORKER_LOST, "x"), runs.Fail)


@pytest.mark.parametrize("reason", sorted(c.NON_RETRYABLE_REASONS))
def test_non_retryable_fail_at_once(reason):
    f = runs.after_failure(1, {**SPEC, "backoffLimit": 10}, reason, "invalid_grant")
    assert isinstance(f, runs.Fail) and f.reason == reason


# --- attempt health (every duration on the operator's own clock) -------------------------------------------
def started(**kw):
    return {"phase": "Started", "startedAt": "2025-06-15T11:59:00Z", "lastHeartbeatTime": "2025-06-15T11:59:58Z",
            "workerJob": "rs-x-r1-a1", **kw}


def check(status, spec=SPEC, **kw):
    args = dict(job_state=runs.JOB_ACTIVE, job_bad_for=0.0, heartbeat_timeout=30, job_gone_grace=2,
                running_for=60.0, silent_for=2.0)
    args.update(kw)
    return runs.check_attempt(status, spec, **args)


def test_healthy_attempt():
    assert check(started()) is None


def test_silent_worker_is_lost():
    reason, detail = check(started(), heartbeat_timeout=3, silent_for=60.0)
    assert reason == c.REASON_WORKER_LOST and "no heartbeat for 60s" in detail


def test_worker_timestamps_never_decide_liveness():
    # A worker whose clock is an hour behind (its lastHeartbeatTime looks ancient) but which we
    # heard a second ago is alive; one whose clock is ahead but silent on ours is lost.
    assert check(started(lastHeartbeatTime="2025-06-15T11:00:00Z", startedAt="2025-06-15T10:00:00Z"),
                 silent_for=1.0) is None
    assert check(started(lastHeartbeatTime="2099-01-01T00:00:00Z"), silent_for=31.0)[0] == c.REASON_WORKER_LOST


def test_timeout_on_the_operators_clock():
    assert check(started(), spec={**SPEC, "timeout": "90s"}, running_for=89.0) is None
    reason, detail = check(started(), spec={**SPEC, "timeout": "90s"}, running_for=91.0)
    assert reason == c.REASON_TIMEOUT and "90s" in detail


def test_failed_job_after_grace_is_lost_with_its_exit_code():
    assert check(started(), job_state=runs.JOB_FAILED, job_bad_for=0.5) is None
    reason, detail = check(started(), job_state=runs.JOB_FAILED, job_bad_for=2.5, exit_code=2)
    assert reason == c.REASON_WORKER_LOST and "failed (exit code 2)" in detail


def test_gone_job_while_queued_is_lost():
    reason, _ = check({"phase": "Queued", "workerJob": "j"}, job_state=runs.JOB_GONE, job_bad_for=3)
    assert reason == c.REASON_WORKER_LOST


def test_deadline_is_timeout():
    assert check({"phase": "Queued", "workerJob": "j"}, job_state=runs.JOB_DEADLINE)[0] == c.REASON_TIMEOUT


def test_queued_without_job_is_fine():
    assert check({"phase": "Queued"}, job_state=None, running_for=None, silent_for=None) is None


def test_terminal_phases_are_not_checked():
    assert check({"phase": "Finished"}, job_state=runs.JOB_GONE, job_bad_for=100) is None


def test_progress_interval_grows_with_age():
    from receiptsync_operator.status import policy

    assert policy.progress_interval(None, NOW, 2, 30) == 2
    assert policy.progress_interval(NOW - dt.timedelta(seconds=1), NOW, 2, 30) == 2
    assert policy.progress_interval(NOW - dt.timedelta(seconds=10), NOW, 2, 30) == 10
    assert policy.progress_interval(NOW - dt.timedelta(hours=1), NOW, 2, 30) == 30


def test_place_in_line_rewrites_settle_and_far_back_places_wait_for_the_refresh():
    from receiptsync_operator.status import policy

    assert policy.place_write_delay(None, 100.0, near_front=False) == 0  # the first place: at once
    # a rewrite waits PLACE_SETTLE even when the last was long ago (a start meanwhile carries it)
    assert policy.place_write_delay(0.0, 100.0, near_front=True) == policy.PLACE_SETTLE
    assert policy.place_write_delay(0.0, 100.0, near_front=False) == policy.PLACE_SETTLE
    # far back: at most one write per PLACE_REFRESH; near the front: per WAITING_MIN_GAP
    assert policy.place_write_delay(100.0, 105.0, near_front=False) == policy.PLACE_REFRESH - 5
    assert policy.place_write_delay(100.0, 100.5, near_front=True) == policy.PLACE_SETTLE
    assert policy.PLACE_REFRESH > policy.WAITING_MIN_GAP
    # one still due (written ahead of now) pushes the next one back by the whole gap
    assert policy.place_write_delay(110.0, 100.0, near_front=False) == policy.PLACE_REFRESH + 10


# --- what triggers a run (the one implementation: runs.pending_trigger) -------------------------------------
RUN_NOW = c.RUN_NOW_ANNOTATION
SCHEDULED = {"schedule": "0 3 * * *"}


def kinds(t):
    return None if t is None else t.kind


def test_unscheduled_runs_once_per_generation():
    assert kinds(runs.pending_trigger(meta(), {}, {})) == "generation"
    assert runs.pending_trigger(meta(), {"observedGeneration": 1}, {}) is None  # re-apply: same generation
    assert kinds(runs.pending_trigger(meta(generation=2), {"observedGeneration": 1}, {})) == "generation"


def test_scheduled_resource_never_runs_from_generation():
    assert runs.pending_trigger(meta(), {}, SCHEDULED) is None
    assert runs.pending_trigger(meta(generation=7), {"observedGeneration": 3}, SCHEDULED) is None


def test_scheduled_resource_with_an_impossible_schedule_reports_once_per_generation():
    for spec in ({"schedule": "0 0 30 2 *"}, {"schedule": "@hourly", "timeZone": "Mars/Olympus"}):
        assert kinds(runs.pending_trigger(meta(), {}, spec)) == "generation"
        assert runs.pending_trigger(meta(), {"observedGeneration": 1}, spec) is None


def test_dropping_the_schedule_runs_once():
    # the last run was a scheduled one, for generation 3; the edit that drops the schedule is generation 4
    assert kinds(runs.pending_trigger(meta(generation=4), {"observedGeneration": 3}, {})) == "generation"


def test_generation_reset_still_runs():
    # a restored object whose status names a higher generation runs for its own generation
    assert kinds(runs.pending_trigger(meta(generation=1), {"observedGeneration": 5}, {})) == "generation"


def test_run_now_once_per_new_value_for_both_kinds():
    for spec in ({}, SCHEDULED):
        status = {"observedGeneration": 1}
        t = runs.pending_trigger(meta(annotations={RUN_NOW: "2025-06-01T10:00"}), status, spec)
        assert kinds(t) == "run-now" and t.run_now == "2025-06-01T10:00"
        status["observedRunNow"] = t.run_now
        assert runs.pending_trigger(meta(annotations={RUN_NOW: "2025-06-01T10:00"}), status, spec) is None
        assert kinds(runs.pending_trigger(meta(annotations={RUN_NOW: "again"}), status, spec)) == "run-now"


def test_run_now_empty_or_absent_is_not_a_trigger():
    status = {"observedGeneration": 1}
    assert runs.pending_trigger(meta(annotations={RUN_NOW: ""}), status, {}) is None
    assert runs.pending_trigger(meta(annotations={}), status, {}) is None
    assert runs.pending_trigger(meta(annotations={"other/annotation": "x"}), status, SCHEDULED) is None


def test_run_now_and_edit_together_are_one_run():
    t = runs.pending_trigger(meta(generation=2, annotations={RUN_NOW: "x"}), {"observedGeneration": 1}, {})
    assert kinds(t) == "generation" and t.run_now == "x"
    after = {"observedGeneration": 2, "observedRunNow": "x"}
    assert runs.pending_trigger(meta(generation=2, annotations={RUN_NOW: "x"}), after, {}) is None


def test_generation_none_is_not_a_trigger():
    assert runs.pending_trigger(meta(generation=None), {}, {}) is None


# --- the schedule step ----------------------------------------------------------------------------------------
UTC = dt.timezone.utc
CREATED = "2025-06-15T10:00:30Z"


def smeta(**kw):
    return {**META, "creationTimestamp": CREATED, **kw}


def sspec(**kw):
    return {**SPEC, "schedule": "*/1 * * * *", **kw}


def at(h, m, s=0):
    return dt.datetime(2025, 6, 15, h, m, s, tzinfo=UTC)


def test_nothing_due_reports_the_next_tick_once():
    step = runs.schedule_step(smeta(), sspec(), {}, at(10, 0, 40))
    assert step.trigger is None and step.patch == {"nextScheduleTime": "2025-06-15T10:01:00Z"}
    assert step.next_time == at(10, 1)
    # already written: no churn
    assert runs.schedule_step(smeta(), sspec(), step.patch, at(10, 0, 50)).patch == {}


def test_due_tick_starts_a_run_for_that_tick():
    step = runs.schedule_step(smeta(), sspec(), {"nextScheduleTime": "2025-06-15T10:01:00Z"}, at(10, 1, 1))
    assert step.trigger.kind == runs.TRIGGER_SCHEDULE and step.trigger.schedule_time == at(10, 1)
    assert step.patch == {"nextScheduleTime": "2025-06-15T10:02:00Z"} and not step.replace
    handled = {"lastScheduleTime": "2025-06-15T10:01:00Z", "nextScheduleTime": "2025-06-15T10:02:00Z"}
    assert runs.schedule_step(smeta(), sspec(), handled, at(10, 1, 30)).trigger is None


def test_scheduled_runs_consume_a_pending_run_now_value():
    step = runs.schedule_step(smeta(annotations={RUN_NOW: "v1"}), sspec(), {}, at(10, 1))
    assert step.trigger.run_now == "v1"


@pytest.mark.parametrize("policy, start, replace", [
    ("Forbid", False, False), (None, False, False), ("Replace", True, True), ("Allow", True, False)])
def test_concurrency_policies_with_a_run_going(policy, start, replace):
    status = {"phase": "Started", "runId": 1, "lastScheduleTime": "2025-06-15T10:01:00Z"}
    spec = sspec(**({"concurrencyPolicy": policy} if policy else {}))
    step = runs.schedule_step(smeta(), spec, status, at(10, 2, 1))
    assert (step.trigger is not None) == start and step.replace == replace
    if not start:  # Forbid: the tick is skipped for good, never run late
        assert step.patch["lastSkippedScheduleTime"] == "2025-06-15T10:02:00Z"
        assert step.events[0][1] == "ScheduleSkipped"
        finished = {**status, **step.patch, "phase": "Finished"}
        assert runs.schedule_step(smeta(), spec, finished, at(10, 2, 30)).trigger is None
        assert runs.schedule_step(smeta(), spec, finished, at(10, 3, 0)).trigger.schedule_time == at(10, 3)


def test_forbid_counts_overlapping_background_runs_as_going():
    status = {"phase": "Finished", "runId": 2, "lastScheduleTime": "2025-06-15T10:01:00Z",
              "runs": [{"runId": 1, "phase": "Started", "jobId": "j1"}, {"runId": 2, "phase": "Finished"}]}
    assert runs.schedule_step(smeta(), sspec(), status, at(10, 2)).trigger is None


def test_suspend_starts_nothing_and_clears_next_then_resume_catches_up_once():
    status = {"lastScheduleTime": "2025-06-15T10:01:00Z", "nextScheduleTime": "2025-06-15T10:02:00Z"}
    step = runs.schedule_step(smeta(), sspec(suspend=True), status, at(10, 5, 10))
    assert step.trigger is None and step.patch == {"nextScheduleTime": None}
    resumed = runs.schedule_step(smeta(), sspec(), {**status, "nextScheduleTime": None}, at(10, 5, 20))
    assert resumed.trigger.schedule_time == at(10, 5)  # the most recent missed tick, once
    assert resumed.events and resumed.events[0][1] == "MissedSchedule"  # 10:02..10:04 skipped


def test_missed_tick_past_the_deadline_is_skipped_and_remembered():
    status = {"lastScheduleTime": "2025-06-15T10:01:00Z", "nextScheduleTime": "2025-06-15T10:02:00Z"}
    step = runs.schedule_step(smeta(), sspec(startingDeadlineSeconds=30), status, at(10, 12, 40))
    assert step.trigger is None and step.patch["lastSkippedScheduleTime"] == "2025-06-15T10:12:00Z"
    assert step.events[0][1] == "MissedSchedule"
    within = runs.schedule_step(smeta(), sspec(startingDeadlineSeconds=60), status, at(10, 12, 40))
    assert within.trigger.schedule_time == at(10, 12)  # outage catch-up: one run, the most recent tick


def test_first_tick_comes_after_creation():
    step = runs.schedule_step(smeta(), sspec(schedule="0 * * * *"), {}, at(10, 30))
    assert step.trigger is None and step.next_time == at(11, 0)


def test_invalid_schedule_has_no_next_time_and_is_reported_by_pending_trigger():
    step = runs.schedule_step(smeta(), sspec(schedule="0 0 30 2 *"), {"nextScheduleTime": "x"}, at(10, 30))
    assert step.trigger is None and step.patch == {"nextScheduleTime": None} and step.next_time is None


def test_not_scheduled_or_deleting_is_no_step():
    assert runs.schedule_step(smeta(), SPEC, {}, at(10, 30)) is None
    assert runs.schedule_step(smeta(deletionTimestamp="2025-06-15T10:00:00Z"), sspec(), {}, at(10, 30)) is None


# --- the scheduling loop, driven by a fake clock -----------------------------------------------------------
def run_loop(spec, start, until, *, lateness=dt.timedelta(seconds=7), run_seconds=20.0, creation=None):
    """What the operator does, minus I/O: look at the schedule whenever the clock reaches the step's
    next_time (a little late, as a timer would be), start the run it asks for, finish it
    ``run_seconds`` later. Returns the ticks runs were started for."""
    from clocks import FakeClock
    from receiptsync_operator.status import apply

    clock = FakeClock(start)
    m = smeta(creationTimestamp=(creation or start).strftime("%Y-%m-%dT%H:%M:%SZ"))
    status: dict = {}
    started: list[dt.datetime] = []
    while clock.now() < until:
        step = runs.schedule_step(m, spec, status, clock.now())
        status = apply(status, step.patch)
        if step.trigger is not None:
            started.append(step.trigger.schedule_time)
            status = apply(status, {"phase": "Started", "runId": len(started),
                                    "lastScheduleTime": step.trigger.schedule_time.strftime("%Y-%m-%dT%H:%M:%SZ")})
            clock.advance(run_seconds)
            status = apply(status, {"phase": "Finished"})
            continue
        clock.set(max(clock.now(), step.next_time + lateness))
    return started


def test_loop_every_minute_one_run_per_tick_without_drift():
    ticks = run_loop(sspec(), at(10, 0, 30), at(11, 0, 30), lateness=dt.timedelta(seconds=13))
    assert ticks == [at(10, 1) + dt.timedelta(minutes=i) for i in range(60)]


def test_loop_new_york_daily_0230_across_spring_forward_and_fall_back():
    ny = ZoneInfo("America/New_York")
    spec = sspec(schedule="30 2 * * *", timeZone="America/New_York")
    spring = run_loop(spec, dt.datetime(2025, 3, 7, 12, tzinfo=UTC), dt.datetime(2025, 3, 10, 12, tzinfo=UTC))
    assert [t.astimezone(ny).strftime("%m-%d %H:%M %Z") for t in spring] == [
        "03-08 02:30 EST", "03-09 03:00 EDT", "03-10 02:30 EDT"]  # the missing 02:30 runs when clocks jump
    fall = run_loop(sspec(schedule="30 1 * * *", timeZone="America/New_York"),
                    dt.datetime(2025, 11, 1, 12, tzinfo=UTC), dt.datetime(2025, 11, 3, 12, tzinfo=UTC))
    assert [t.astimezone(ny).strftime("%m-%d %H:%M %Z") for t in fall] == [
        "11-02 01:30 EDT", "11-03 01:30 EST"]  # the repeated 01:30 runs once


def test_loop_new_york_hourly_across_fall_back_runs_every_real_hour():
    ticks = run_loop(sspec(schedule="0 * * * *", timeZone="America/New_York"),
                     dt.datetime(2025, 11, 2, 3, 30, tzinfo=UTC), dt.datetime(2025, 11, 2, 8, 30, tzinfo=UTC))
    assert ticks == [dt.datetime(2025, 11, 2, h, tzinfo=UTC) for h in (4, 5, 6, 7, 8)]  # 5 real hours, 5 runs


def test_loop_jerusalem_across_both_transitions():
    il = ZoneInfo("Asia/Jerusalem")
    # spring forward Friday 2025-03-28 02:00 -> 03:00
    spring = run_loop(sspec(schedule="30 2 * * *", timeZone="Asia/Jerusalem"),
                      dt.datetime(2025, 3, 26, 12, tzinfo=UTC), dt.datetime(2025, 3, 29, 12, tzinfo=UTC))
    assert [t.astimezone(il).strftime("%m-%d %H:%M %Z") for t in spring] == [
        "03-27 02:30 IST", "03-28 03:00 IDT", "03-29 02:30 IDT"]
    # fall back Sunday 2025-10-26 02:00 -> 01:00: hourly fires every real hour, fixed times once
    hourly = run_loop(sspec(schedule="0 * * * *", timeZone="Asia/Jerusalem"),
                      dt.datetime(2025, 10, 25, 21, 30, tzinfo=UTC), dt.datetime(2025, 10, 26, 0, 30, tzinfo=UTC))
    assert len(hourly) == 3 and len(set(hourly)) == 3
    once = run_loop(sspec(schedule="30 1 * * *", timeZone="Asia/Jerusalem"),
                    dt.datetime(2025, 10, 25, 12, tzinfo=UTC), dt.datetime(2025, 10, 27, 12, tzinfo=UTC))
    assert [t.astimezone(il).strftime("%m-%d %H:%M %Z") for t in once] == ["10-26 01:30 IDT", "10-27 01:30 IST"]


def test_loop_outage_catches_up_once():
    # the loop starts 3 hours after creation (the operator was down): one run for the latest tick
    ticks = run_loop(sspec(schedule="0 * * * *"), at(13, 10), at(15, 30), creation=at(10, 0, 30))
    assert ticks == [at(13, 0), at(14, 0), at(15, 0)]


def test_failure_message_reads_as_one_sentence_when_the_worker_ended_its_own():
    from receiptsync_operator import runs

    outcome = runs.after_failure(2, {"backoffLimit": 1}, "Timeout", "Gmail answered 503 five times.")
    assert outcome.message.endswith("Gmail answered 503 five times; backoffLimit 1 reached")
    assert ".;" not in outcome.message
