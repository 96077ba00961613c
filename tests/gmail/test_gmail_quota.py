"""Quota units, 429 with Retry-After, injected faults, latency, and the stats that count them."""
from __future__ import annotations

import json
import time
import urllib.error

import pytest
from googleapiclient.errors import HttpError

from gmail_helpers import ALICE
from receiptsync_sandbox.gmail.samples import generate_mailbox


def first_ids(gmail, count: int) -> list[str]:
    return [item["id"] for item in gmail.users().messages().list(userId="me", maxResults=count).execute()["messages"]]


def test_stats_count_units_exactly(emulator):
    gmail = emulator.service()
    emulator.admin("_emulator/stats/reset", {})
    ids = first_ids(gmail, 3)  # list: 5
    full = gmail.users().messages().get(userId="me", id=ids[0]).execute()  # get: 5
    gmail.users().getProfile(userId="me").execute()  # 1
    gmail.users().history().list(userId="me", startHistoryId=full["historyId"]).execute()  # 2
    with_attachment = next(item["id"] for item in gmail.users().messages().list(userId="me", q="has:attachment")
                           .execute()["messages"])  # list: 5
    message = gmail.users().messages().get(userId="me", id=with_attachment).execute()  # get: 5
    part = next(part for part in message["payload"]["parts"] if part["filename"])
    gmail.users().messages().attachments().get(userId="me", messageId=with_attachment,
                                               id=part["body"]["attachmentId"]).execute()  # 5
    batch = emulator.batch()
    for message_id in ids:
        batch.add(gmail.users().messages().get(userId="me", id=message_id, format="minimal"))  # 3 x 5
    batch.execute()

    stats = emulator.stats()
    alice = stats["mailboxes"][ALICE]
    assert alice["units"] == 5 + 5 + 1 + 2 + 5 + 5 + 5 + 15
    assert alice["requests"] == {"users.messages.list": 2, "users.messages.get": 5, "users.getProfile": 1,
                                 "users.history.list": 1, "users.messages.attachments.get": 1}
    assert stats["batch_requests"] == 1
    assert stats["http_requests"] == 8 + 1  # seven plain calls and one batch (token calls count too: +1)
    assert stats["quota"] == {"enabled": True, "rate_units_per_s": 250.0, "burst_units": 250.0, "status": 429}
    emulator.admin("_emulator/stats/reset", {})
    assert emulator.stats()["mailboxes"] == {}


def test_over_quota_is_429_with_retry_after_and_costs_nothing(emulator):
    gmail = emulator.service()
    ids = first_ids(gmail, 8)
    emulator.configure(quota_rate=10, quota_burst=30)  # 6 gets fit; a refill of 5 units takes 0.5 s
    emulator.admin("_emulator/stats/reset", {})
    for message_id in ids[:6]:
        gmail.users().messages().get(userId="me", id=message_id, format="minimal").execute()
    with pytest.raises(HttpError) as excinfo:
        gmail.users().messages().get(userId="me", id=ids[6], format="minimal").execute(num_retries=0)
    assert excinfo.value.resp.status == 429
    assert excinfo.value.resp["retry-after"] == "1"
    error = json.loads(excinfo.value.content)["error"]
    assert error["errors"][0]["reason"] == "rateLimitExceeded" and error["status"] == "RESOURCE_EXHAUSTED"
    assert error["message"].startswith("User-rate limit exceeded.  Retry after ")
    alice = emulator.stats()["mailboxes"][ALICE]
    assert alice["units"] == 30 and alice["rate_limited"] == 1 and alice["responses_429"] == 1
    time.sleep(0.6)
    assert gmail.users().messages().get(userId="me", id=ids[6], format="minimal").execute()["id"] == ids[6]


def test_403_user_rate_limit_variant(emulator):
    gmail = emulator.service()
    emulator.configure(quota_rate=1, quota_burst=1, quota_status=403)
    gmail.users().getProfile(userId="me").execute()
    with pytest.raises(HttpError) as excinfo:
        gmail.users().getProfile(userId="me").execute()
    assert excinfo.value.resp.status == 403 and excinfo.value.resp["retry-after"] == "1"
    assert json.loads(excinfo.value.content)["error"]["errors"][0]["reason"] == "userRateLimitExceeded"


def test_batch_parts_spend_their_own_units(emulator):
    gmail = emulator.service()
    ids = first_ids(gmail, 8)
    emulator.configure(quota_rate=1, quota_burst=25)  # 5 gets fit
    emulator.admin("_emulator/stats/reset", {})
    answers = {}
    batch = emulator.batch(callback=lambda request_id, response, error: answers.__setitem__(request_id, error))
    for message_id in ids:
        batch.add(gmail.users().messages().get(userId="me", id=message_id, format="minimal"), request_id=message_id)
    batch.execute()
    refused = [error for error in answers.values() if error is not None]
    assert len(refused) == 3
    assert all(error.resp.status == 429 and int(error.resp["retry-after"]) >= 1 for error in refused)
    assert emulator.stats()["mailboxes"][ALICE]["units"] == 25


def test_quota_buckets_are_per_mailbox(mailbox_dir, emulator):
    generate_mailbox(mailbox_dir, "carol@example.com", 2, seed=1, end_date="2025-01-01")
    emulator.configure(quota_rate=1, quota_burst=1)
    emulator.service().users().getProfile(userId="me").execute()
    carol = emulator.service("carol@example.com")
    assert carol.users().getProfile(userId="me").execute()["emailAddress"] == "carol@example.com"


def test_quota_off_never_refuses(emulator):
    emulator.configure(quota_enabled=False, quota_rate=1, quota_burst=1)
    gmail = emulator.service()
    for _ in range(5):
        gmail.users().getProfile(userId="me").execute()
    assert emulator.stats()["mailboxes"][ALICE]["units"] == 5


def test_injected_5xx_in_googles_shape_and_counted(emulator):
    gmail = emulator.service()
    emulator.configure(error_rate_5xx=1.0)
    with pytest.raises(HttpError) as excinfo:
        gmail.users().getProfile(userId="me").execute()
    assert excinfo.value.resp.status in (500, 503)
    assert json.loads(excinfo.value.content)["error"]["errors"][0]["reason"] == "backendError"
    assert emulator.stats()["mailboxes"][ALICE]["injected_5xx"] == 1


def test_injected_faults_repeat_with_the_same_seed(emulator):
    gmail = emulator.service()
    gmail.users().getProfile(userId="me").execute()  # token fetched before the dice roll

    def outcomes() -> list[int]:
        statuses = []
        for _ in range(30):
            try:
                gmail.users().getProfile(userId="me").execute()
                statuses.append(200)
            except HttpError as error:
                statuses.append(error.resp.status)
        return statuses

    emulator.configure(quota_enabled=False, error_rate_5xx=0.3, error_rate_429=0.2, seed=42)
    first = outcomes()
    emulator.configure(seed=42)
    assert outcomes() == first
    assert {200, 429} <= set(first) and set(first) & {500, 503}
    alice = emulator.stats()["mailboxes"][ALICE]
    assert alice["injected_429"] == 2 * first.count(429)
    assert alice["injected_5xx"] == 2 * (first.count(500) + first.count(503))


def test_latency_is_per_http_request_so_a_batch_pays_once(emulator):
    gmail = emulator.service()
    ids = first_ids(gmail, 8)
    emulator.configure(latency_ms=200)
    started = time.monotonic()
    gmail.users().messages().get(userId="me", id=ids[0], format="minimal").execute()
    single = time.monotonic() - started
    batch = emulator.batch()
    for message_id in ids:
        batch.add(gmail.users().messages().get(userId="me", id=message_id, format="minimal"))
    started = time.monotonic()
    batch.execute()
    batched = time.monotonic() - started
    assert 0.2 <= single < 0.6
    assert 0.2 <= batched < 0.6


def test_slow_knob_delays_calls(emulator):
    gmail = emulator.service()
    gmail.users().getProfile(userId="me").execute()
    emulator.configure(slow_rate=1.0, slow_ms=300)
    started = time.monotonic()
    gmail.users().getProfile(userId="me").execute()
    assert time.monotonic() - started >= 0.3


def test_config_endpoint_rejects_unknown_keys(emulator):
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        emulator.configure(no_such_knob=1)
    assert excinfo.value.code == 400
    assert emulator.admin("_emulator/config")["latency_ms"] == 0
