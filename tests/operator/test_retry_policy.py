"""Retries wait like Kubernetes' Job back-off, jittered; status says when; refusals back off too."""
from __future__ import annotations

import datetime as dt

from receiptsync_common import contract as c
from receiptsync_operator import retry_policy as rp
from receiptsync_operator import status as st

NOW = dt.datetime(2025, 6, 15, 12, 0, 0, tzinfo=dt.timezone.utc)


def test_delays_double_from_ten_seconds_up_to_six_minutes():
    middle = [rp.retry_delay(n, base=10, cap=360, rand=0.5) for n in range(1, 9)]
    assert middle == [10, 20, 40, 80, 160, 320, 360, 360]


def test_jitter_stays_within_ten_percent():
    assert rp.retry_delay(1, base=10, cap=360, rand=0.0) == 9.0
    assert abs(rp.retry_delay(1, base=10, cap=360, rand=0.9999) - 11.0) < 1e-3
    assert rp.retry_delay(1000, base=10, cap=360, rand=0.5) == 360  # no overflow for huge attempts


def test_retry_at_is_a_whole_second_not_before_the_delay():
    when = rp.retry_at(NOW + dt.timedelta(microseconds=300_000), 1, base=10, cap=360, rand=0.5)
    assert when == NOW + dt.timedelta(seconds=11) and when.microsecond == 0


def test_status_says_when_the_retry_starts():
    when = rp.retry_at(NOW, 2, base=10, cap=360, rand=0.5)
    patch = st.retrying({"runId": 3, "attempt": 2}, reason=c.REASON_DATABASE_ERROR, detail="PostgreSQL is down.",
                        next_attempt=3, max_attempts=4, job_id="ns.x.u.r3.a3", now=NOW, spec={}, retry_at=when)
    assert patch["message"] == ("Attempt 2 ended with DatabaseError: PostgreSQL is down; attempt 3 of 4 is queued, "
                                "retrying at 2025-06-15T12:00:20Z")
    assert patch["phase"] == c.PHASE_QUEUED and patch["reason"] == c.REASON_DATABASE_ERROR


def test_event_cadence_for_a_long_refusal():
    assert [n for n in range(1, 50) if rp.event_worth_posting(n)] == [1, 2, 4, 8, 16, 32, 48]
    assert not rp.event_worth_posting(0)


def test_creation_backoff_doubles_and_caps():
    b = rp.CreationBackoff(base=1, cap=8)
    assert [b.failed("j", 0) for _ in range(5)] == [1, 2, 4, 8, 8]
    assert b.blocked(now=7.9) == {"j"} and b.blocked(now=8.1) == set()
    b.succeeded("j")
    assert b.attempts("j") == 0 and b.blocked(0) == set()


def test_dead_letter_after_consecutive_failures_only():
    counter = rp.FailureCounter(limit=3)
    assert not counter.failed("a") and not counter.failed("a")
    counter.succeeded("a")  # a success in between starts the count again
    assert not counter.failed("a") and not counter.failed("a") and counter.failed("a")
