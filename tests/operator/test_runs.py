"""Run triggers, payloads, retry decisions and lost/late attempts."""
from __future__ import annotations

import datetime as dt

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
    assert runs.next_run(meta(annotations=ann), {**status, "runs": [{"runId": 1, "runNow": "2025-06-15T12:00"}]}) is None
    assert runs.next_run(meta(annotations=ann), {**status, "runs": [{"runId": 1, "runNow": "2025-06-15T12:00"},
                                                                   {"runId": 2}]}) is not None
    assert runs.next_run(meta(annotations={c.RUN_NOW_ANNOTATION: "again"}), {**status, "observedRunNow": "x"}).run_now == "again"


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


@pytest.mark.parametrize("bad", ["", "nodots", "ns.name.uid.r1", "ns.name.uid.rx.a1", "ns.name.uid.r1.b1", ".n.u.r1.a1"])
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


# --- attempt health -------------------------------------------------------------------------------------------
def started(**kw):
    return {"phase": "Started", "startedAt": "2025-06-15T11:59:00Z", "lastHeartbeatTime": "2025-06-15T11:59:58Z",
            "workerJob": "rs-x-r1-a1", **kw}


def check(status, spec=SPEC, **kw):
    args = dict(now=NOW, last_heartbeat=None, job_state=runs.JOB_ACTIVE, job_bad_for=0.0,
                heartbeat_timeout=30, job_gone_grace=2)
    args.update(kw)
    return runs.check_attempt(status, spec, **args)


def test_healthy_attempt():
    assert check(started()) is None


def test_silent_worker_is_lost():
    reason, detail = check(started(lastHeartbeatTime="2025-06-15T11:59:00Z"), heartbeat_timeout=3)
    assert reason == c.REASON_WORKER_LOST and "no heartbeat for 60s" in detail


def test_fresh_hash_heartbeat_counts():
    assert check(started(lastHeartbeatTime="2025-06-15T11:00:00Z"), heartbeat_timeout=3,
                 last_heartbeat=NOW - dt.timedelta(seconds=1)) is None


def test_timeout():
    reason, _ = check(started(startedAt="2025-06-15T11:58:00Z"), spec={**SPEC, "timeout": "90s"},
                      last_heartbeat=NOW)
    assert reason == c.REASON_TIMEOUT


def test_failed_job_after_grace_is_lost():
    assert check(started(), job_state=runs.JOB_FAILED, job_bad_for=0.5) is None
    reason, detail = check(started(), job_state=runs.JOB_FAILED, job_bad_for=2.5)
    assert reason == c.REASON_WORKER_LOST and "failed" in detail


def test_gone_job_while_queued_is_lost():
    reason, _ = check({"phase": "Queued", "workerJob": "j"}, job_state=runs.JOB_GONE, job_bad_for=3)
    assert reason == c.REASON_WORKER_LOST


def test_deadline_is_timeout():
    assert check({"phase": "Queued", "workerJob": "j"}, job_state=runs.JOB_DEADLINE)[0] == c.REASON_TIMEOUT


def test_queued_without_job_is_fine():
    assert check({"phase": "Queued"}, job_state=None) is None


def test_terminal_phases_are_not_checked():
    assert check({"phase": "Finished"}, job_state=runs.JOB_GONE, job_bad_for=100) is None


def test_progress_interval_grows_with_age():
    assert runs.progress_interval(None, NOW, 2, 30) == 2
    assert runs.progress_interval(NOW - dt.timedelta(seconds=1), NOW, 2, 30) == 2
    assert runs.progress_interval(NOW - dt.timedelta(seconds=10), NOW, 2, 30) == 10
    assert runs.progress_interval(NOW - dt.timedelta(hours=1), NOW, 2, 30) == 30
