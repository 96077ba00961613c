"""GmailClient's retries against the real emulator: they stop at the attempt's deadline or after the
last try, and the failure says what Gmail answered (and nothing secret)."""
from __future__ import annotations

import time

import pytest

from receiptsync_common import contract
from receiptsync_worker import backoff
from receiptsync_worker.gmail_client import GmailApiError, GmailClient, GmailTimeout
from worker_testkit import CLIENT_SECRET, TODAY, gmail_client


@pytest.fixture
def client_for(emulator, alice):
    def make(**kw) -> GmailClient:
        client, make.token = gmail_client(emulator, alice.address, **kw)
        return client

    return make


def assert_nothing_secret(message: str, token: str) -> None:
    assert token not in message and CLIENT_SECRET not in message and "refresh-token-for" not in message


def test_retries_stop_at_the_deadline_and_say_what_gmail_did(client_for, knobs):
    knobs(error_rate_5xx=1.0, seed=2)
    client = client_for(deadline=time.monotonic() + 2.5)
    began = time.monotonic()
    with pytest.raises(GmailTimeout) as raised:
        client.profile()
    assert time.monotonic() - began < 2.5  # no retry was started past the deadline
    message = str(raised.value)
    assert message.startswith("Gmail users.getProfile answered ")
    assert "backendError" in message and "times; last: 50" in message and "timeout" in message
    assert_nothing_secret(message, client_for.token)


def test_exhausted_retries_fail_with_gmail_api_error(client_for, knobs, monkeypatch):
    monkeypatch.setattr(backoff, "MAX_TRIES", 3)
    monkeypatch.setattr(backoff, "delay", lambda try_number, retry_after=None: 0.01)
    knobs(error_rate_5xx=1.0, seed=3)
    client = client_for(deadline=time.monotonic() + 60)
    with pytest.raises(GmailApiError) as raised:
        client.profile()
    assert not isinstance(raised.value, GmailTimeout)
    assert "users.getProfile answered" in str(raised.value) and " 3 times; last: " in str(raised.value)

    # a batch: every sub-request keeps failing
    with pytest.raises(GmailApiError) as raised:
        client.messages(["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"])
    message = str(raised.value)
    assert message.startswith("Gmail messages.get answered ") and "(2 item(s) of the batch unanswered)" in message
    assert_nothing_secret(message, client_for.token)


def test_a_storm_that_ends_before_the_deadline_is_ridden_out(client_for, knobs, monkeypatch):
    monkeypatch.setattr(backoff, "delay", lambda try_number, retry_after=None: 0.05)
    knobs(error_rate_5xx=0.5, seed=4)
    client = client_for(deadline=time.monotonic() + 30)
    assert client.profile()["emailAddress"]


def test_worker_reports_the_gmail_outage_not_just_timeout(jobs, alice, knobs):
    """Gmail answers 5xx to everything: the attempt ends by itself before its timeout, with the reason
    Timeout and a message naming what Gmail answered, in the log and the heartbeat."""
    knobs(error_rate_5xx=1.0, seed=6)
    payload = jobs.payload(date_from=TODAY.isoformat(), date_to=TODAY.isoformat(), explicit_from=True,
                           explicit_to=True, timeout_seconds=4)
    began = time.monotonic()
    result = jobs.run(payload, alice.address, timeout=30)
    assert time.monotonic() - began < 4 + 3  # the process exits within the attempt's timeout (+ start-up)
    fail = result.events(contract.LOG_JOB_FAIL)[0]
    assert fail["reason"] == contract.REASON_TIMEOUT
    assert fail["error"].startswith("Gmail users.getProfile answered ") and "backendError" in fail["error"]
    beat = jobs.redis.hgetall(contract.heartbeat_key(payload.job_id))
    assert beat[contract.HB_REASON] == contract.REASON_TIMEOUT and beat[contract.HB_MESSAGE] == fail["error"]
