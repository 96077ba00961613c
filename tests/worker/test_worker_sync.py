"""End to end: the real ``receiptsync-worker`` process against the Gmail emulator (real
google-api-python-client and google-auth), real Redis and real PostgreSQL, checked against the sample
mailbox's ground truth."""
from __future__ import annotations

import datetime as dt
import shutil
import signal
from decimal import Decimal

import pytest
import redis

from receiptsync_common import contract
from receiptsync_sandbox.gmail.samples import build_eml
from receiptsync_sandbox.testing import wait_until
from worker_testkit import CLIENT_SECRET, TODAY, db_rows, parse_result

FULL_RANGE = dict(date_from=(TODAY - dt.timedelta(days=200)).isoformat(), date_to=TODAY.isoformat(),
                  explicit_from=True, explicit_to=True)


def saved_receipts(database_url: str, business_id: str) -> dict[str, tuple]:
    rows = db_rows(database_url, "SELECT gmail_message_id, subject, sender, received_at, amount, currency"
                                 " FROM receipts WHERE business_id = %s", business_id)
    return {row[0]: row[1:] for row in rows}


def saved_attachments(database_url: str, business_id: str) -> set[tuple]:
    rows = db_rows(database_url, "SELECT gmail_message_id, filename, mime_type, size_bytes, sha256,"
                                 " encode(sha256(content), 'hex') FROM receipt_attachments WHERE business_id = %s",
                   business_id)
    assert all(row[4] == row[5] for row in rows)  # the stored hash is the hash of the stored bytes
    return {row[:5] for row in rows}


def expected_attachments(receipts) -> set[tuple]:
    return {(m.message_id, a.filename, a.mime_type, a.size, a.sha256) for m in receipts for a in m.attachments}


def stream_entries(redis_url: str, job_id: str) -> list[dict]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    return [fields for _, fields in client.xrange(contract.EVENTS_STREAM) if fields.get(contract.HB_JOB_ID) == job_id]


def test_full_sync_matches_ground_truth_then_rerun_adds_nothing(jobs, alice, emulator, redis_url):
    payload = jobs.payload(**FULL_RANGE)
    result = jobs.run(payload, alice.address)
    assert result.returncode == 0, result.stdout + result.stderr

    # receipts: exactly the ground truth's, with their fields
    saved = saved_receipts(jobs.database_url, "biz-1")
    assert set(saved) == {m.message_id for m in alice.receipts}
    for truth in alice.receipts:
        subject, sender, received_at, amount, currency = saved[truth.message_id]
        assert (subject, sender) == (truth.subject, truth.sender)
        assert received_at == truth.date
        assert (amount, currency) == (truth.amount, truth.currency), truth.file_name
    assert saved_attachments(jobs.database_url, "biz-1") == expected_attachments(alice.receipts)

    # log markers (CONTRACT section 5)
    markers = (contract.LOG_JOB_START, contract.LOG_JOB_DONE, contract.LOG_JOB_FAIL)
    assert [len(result.events(m)) for m in markers] == [1, 1, 0]
    assert result.lines[0]["event"] == contract.LOG_JOB_START and result.lines[-1]["event"] == contract.LOG_JOB_DONE
    done = result.events(contract.LOG_JOB_DONE)[0]
    assert {k: done[k] for k in ("job_id", "business_id", "namespace", "name")} == {
        "job_id": payload.job_id, "business_id": "biz-1", "namespace": "tests", "name": "sync"}
    assert (done["messages_scanned"], done["saved_receipts"]) == (len(alice.receipts), len(alice.receipts))

    # heartbeats: hash and stream, Started with the range first, Finished last
    beat = jobs.redis.hgetall(contract.heartbeat_key(payload.job_id))
    assert beat[contract.HB_PHASE] == contract.PHASE_FINISHED and beat[contract.HB_REASON] == contract.REASON_SUCCEEDED
    assert beat[contract.HB_SAVED] == str(len(alice.receipts))
    entries = stream_entries(redis_url, payload.job_id)
    assert entries[0][contract.HB_PHASE] == contract.PHASE_STARTED
    ranged = [e for e in entries if contract.HB_DATE_FROM in e]
    assert (ranged[0][contract.HB_DATE_FROM], ranged[0][contract.HB_DATE_TO]) == (payload.date_from, payload.date_to)
    assert all(contract.HB_DATE_FROM in e for e in entries[entries.index(ranged[0]):])
    assert entries[-1][contract.HB_PHASE] == contract.PHASE_FINISHED
    assert len(entries) >= 3  # start, at least one saved batch, end

    # the quota was respected: Gmail never had to refuse us
    assert emulator.stats(alice.address)["rate_limited"] == 0

    # run it again (the next run of the resource): same rows, nothing new
    again = jobs.payload(run_id=2, **FULL_RANGE)
    result = jobs.run(again, alice.address)
    assert result.returncode == 0
    assert result.events(contract.LOG_JOB_DONE)[0]["saved_receipts"] == 0
    assert saved_receipts(jobs.database_url, "biz-1") == saved
    attachments = len(expected_attachments(alice.receipts))
    assert db_rows(jobs.database_url, "SELECT count(*) FROM receipt_attachments") == [(attachments,)]
    runs = db_rows(jobs.database_url,
                   "SELECT job_id, status, messages_scanned, saved_receipts FROM sync_runs ORDER BY run_id")
    assert runs == [(payload.job_id, "Finished", len(alice.receipts), len(alice.receipts)),
                    (again.job_id, "Finished", len(alice.receipts), 0)]


def test_secrets_never_reach_logs_or_redis(jobs, alice, emulator, redis_url, knobs):
    # A run that succeeds and one that fails on auth: both must keep every secret to themselves.
    ok = jobs.run(jobs.payload(**FULL_RANGE, max_messages=30), alice.address)
    knobs(revoked=[alice.address])
    failed = jobs.run(jobs.payload(run_id=2, **FULL_RANGE), alice.address)
    assert ok.returncode == 0 and failed.returncode != 0
    refresh_token = f"refresh-token-for:{alice.address}"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    dump = []
    for key in client.keys("*"):
        kind = client.type(key)
        value = {"string": client.get, "hash": client.hgetall, "set": client.smembers,
                 "zset": lambda k: client.zrange(k, 0, -1), "list": lambda k: client.lrange(k, 0, -1),
                 "stream": lambda k: client.xrange(k)}[kind](key)
        dump.append(f"{key} {value}")
    for text in (ok.stdout + ok.stderr, failed.stdout + failed.stderr, "\n".join(dump)):
        assert refresh_token not in text
        assert CLIENT_SECRET not in text
        assert "ya29." not in text  # the emulator's access tokens
    runs = db_rows(jobs.database_url, "SELECT coalesce(error, '') FROM sync_runs")
    assert all(refresh_token not in row[0] and CLIENT_SECRET not in row[0] for row in runs)


def test_revoked_token_fails_at_once(jobs, alice, emulator, knobs):
    knobs(revoked=[alice.address])
    refusals_before = emulator.stats()["token_refusals"]
    payload = jobs.payload(**FULL_RANGE)
    result = jobs.run(payload, alice.address)
    assert result.returncode != 0
    fail = result.events(contract.LOG_JOB_FAIL)
    assert len(fail) == 1 and len(result.events(contract.LOG_JOB_START)) == 1
    assert fail[0]["reason"] == contract.REASON_GMAIL_AUTH_ERROR
    assert "reconnect Gmail" in fail[0]["error"]
    beat = jobs.redis.hgetall(contract.heartbeat_key(payload.job_id))
    assert (beat[contract.HB_PHASE], beat[contract.HB_REASON]) == (contract.PHASE_FAILED,
                                                                   contract.REASON_GMAIL_AUTH_ERROR)
    assert "reconnect Gmail" in beat[contract.HB_MESSAGE]
    assert emulator.stats()["token_refusals"] - refusals_before == 1  # no retries inside the attempt
    assert db_rows(jobs.database_url, "SELECT status, reason FROM sync_runs") == [
        ("Failed", contract.REASON_GMAIL_AUTH_ERROR)]


def test_429_storm_is_honoured_and_the_sync_completes(jobs, alice, emulator, knobs):
    knobs(error_rate_429=0.3, error_rate_5xx=0.05, seed=11)
    before = emulator.stats(alice.address)
    result = jobs.run(jobs.payload(**FULL_RANGE), alice.address, timeout=180)
    assert result.returncode == 0, result.stdout[-2000:]
    after = emulator.stats(alice.address)
    assert after["injected_429"] - before.get("injected_429", 0) > 10
    assert result.events(contract.LOG_JOB_DONE)[0]["gmail_retries"] > 10
    assert set(saved_receipts(jobs.database_url, "biz-1")) == {m.message_id for m in alice.receipts}
    assert saved_attachments(jobs.database_url, "biz-1") == expected_attachments(alice.receipts)


def test_max_messages_caps_the_scan(jobs, alice):
    result = jobs.run(jobs.payload(**FULL_RANGE, max_messages=17), alice.address)
    assert result.returncode == 0
    done = result.events(contract.LOG_JOB_DONE)[0]
    assert done["messages_scanned"] == 17
    assert "maxMessages" in done["message"]
    # Gmail lists newest first: the cap keeps the newest receipts
    newest = sorted(alice.receipts, key=lambda m: m.date, reverse=True)[:17]
    assert set(saved_receipts(jobs.database_url, "biz-1")) == {m.message_id for m in newest}
    # a capped run is not a complete sync: the business's history id is not advanced
    assert db_rows(jobs.database_url, "SELECT count(*) FROM business_sync_state") == [(0,)]


def test_crash_mid_run_then_retry_resumes_without_loss_or_duplicates(jobs, alice, emulator, knobs):
    knobs(latency_ms=150)  # slow enough to kill the worker between batches
    first = jobs.payload(**FULL_RANGE, attempt=1)
    # one fetcher: batches commit one after another, so there is a moment with some but not all saved
    process = jobs.start(first, alice.address, extra_env={contract.WORKER_ENV_FETCH_THREADS: "1"})
    wait_until(lambda: db_rows(jobs.database_url, "SELECT count(*) FROM sync_checkpoints")[0][0] >= 25
               if _has_schema(jobs.database_url) else False, timeout=60, interval=0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=10)
    committed = db_rows(jobs.database_url, "SELECT count(*) FROM receipts")[0][0]
    assert 0 < committed < len(alice.receipts)

    knobs(latency_ms=0)
    gets_before = emulator.stats(alice.address)["requests"]["users.messages.get"]
    second = jobs.payload(**FULL_RANGE, attempt=2)
    result = jobs.run(second, alice.address)
    assert result.returncode == 0
    gets = emulator.stats(alice.address)["requests"]["users.messages.get"] - gets_before
    assert gets == len(alice.receipts) - committed  # resumed: only what was not committed is fetched
    assert set(saved_receipts(jobs.database_url, "biz-1")) == {m.message_id for m in alice.receipts}
    assert saved_attachments(jobs.database_url, "biz-1") == expected_attachments(alice.receipts)
    done = result.events(contract.LOG_JOB_DONE)[0]
    assert done["messages_scanned"] == len(alice.receipts)  # run progress includes the first attempt
    assert db_rows(jobs.database_url, "SELECT count(*) FROM sync_checkpoints") == [(0,)]  # cleared on success
    # the killed attempt's row is not left Started forever: the second attempt closed it as Lost
    assert db_rows(jobs.database_url, "SELECT job_id, status, reason FROM sync_runs ORDER BY attempt") == [
        (first.job_id, "Lost", contract.REASON_WORKER_LOST), (second.job_id, "Finished", contract.REASON_SUCCEEDED)]


def _has_schema(database_url: str) -> bool:
    return bool(db_rows(database_url, "SELECT 1 FROM pg_tables WHERE tablename = 'sync_checkpoints'"))


def test_sigterm_stops_after_the_current_batch(jobs, alice, knobs):
    knobs(latency_ms=150)
    payload = jobs.payload(**FULL_RANGE)
    process = jobs.start(payload, alice.address, extra_env={contract.WORKER_ENV_FETCH_THREADS: "1"})
    wait_until(lambda: _has_schema(jobs.database_url)
               and db_rows(jobs.database_url, "SELECT count(*) FROM sync_checkpoints")[0][0] > 0, timeout=60,
               interval=0.05)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=20)
    result = parse_result(process.returncode, stdout, stderr)
    assert result.returncode != 0
    fail = result.events(contract.LOG_JOB_FAIL)[0]
    assert fail["reason"] == contract.REASON_CANCELLED
    # whatever it reported saved is committed, and the checkpoint matches the data
    assert fail["saved_receipts"] == db_rows(jobs.database_url, "SELECT count(*) FROM receipts")[0][0]
    assert db_rows(jobs.database_url, "SELECT count(*) FROM sync_checkpoints")[0][0] == fail["messages_scanned"]


def test_attempt_timeout_fails_with_timeout(jobs, alice, knobs):
    knobs(latency_ms=600)
    payload = jobs.payload(**FULL_RANGE, timeout_seconds=2)
    result = jobs.run(payload, alice.address)
    assert result.returncode != 0
    assert result.events(contract.LOG_JOB_FAIL)[0]["reason"] == contract.REASON_TIMEOUT
    assert jobs.redis.hget(contract.heartbeat_key(payload.job_id), contract.HB_REASON) == contract.REASON_TIMEOUT


def test_missing_payload_fails_cleanly(jobs, alice):
    payload = jobs.payload(**FULL_RANGE)
    jobs.redis.delete(contract.job_key(payload.job_id))
    result = jobs.run(payload, alice.address)
    assert result.returncode != 0
    assert [line["event"] for line in result.lines if "event" in line] == [contract.LOG_JOB_START,
                                                                           contract.LOG_JOB_FAIL]
    assert result.events(contract.LOG_JOB_FAIL)[0]["reason"] == contract.REASON_WORKER_ERROR


@pytest.fixture
def bob(mailbox_dir, emulator):
    """A mailbox of our own that this test may grow."""
    from receiptsync_sandbox.gmail.samples import generate_mailbox

    address = "bob@example.com"
    truth = generate_mailbox(mailbox_dir, address, 80, 0.25, months=2, seed=3, end_date=TODAY - dt.timedelta(days=1))
    emulator.admin("/_emulator/rescan", {})
    yield address, truth
    shutil.rmtree(mailbox_dir / address, ignore_errors=True)


def add_receipts(mailbox_dir, address: str, count: int, tag: str) -> None:
    folder = mailbox_dir / address
    for index in range(count):
        raw = build_eml(subject=f"Your receipt {tag}-{index}", sender="Shop <billing@shop.example>", to=address,
                        date=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5), text=f"Total: ${index + 1}.50")
        temporary = folder / f"new-{tag}-{index}.tmp"
        temporary.write_bytes(raw)
        temporary.rename(folder / f"new-{tag}-{index}.eml")
        # and some mail that is not a receipt
        other = build_eml(subject=f"Lunch {tag}-{index}?", sender="Dana <dana@friends.example>", to=address,
                          date=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=4), text="See you")
        (folder / f"other-{tag}-{index}.eml").write_bytes(other)


def test_incremental_uses_history_then_falls_back_on_404(jobs, bob, emulator, mailbox_dir):
    address, truth = bob
    truth_receipts = {m.message_id for m in truth if m.is_receipt}
    no_overlap = {"extra_env": {"RECEIPTSYNC_CURSOR_OVERLAP_SECONDS": "0"}}  # the emulator indexes at once
    # 1st incremental run: no state yet → the full rule (12 months) via the date range
    first = jobs.run(jobs.payload(mode=contract.MODE_INCREMENTAL, business_id="bob"), address, **no_overlap)
    assert first.returncode == 0 and first.events(contract.LOG_JOB_DONE)[0]["used_history"] is False
    assert set(saved_receipts(jobs.database_url, "bob")) == truth_receipts
    state = db_rows(jobs.database_url, "SELECT mailbox, history_id FROM business_sync_state WHERE business_id = 'bob'")
    assert state and state[0][0] == address

    # new mail arrives; the 2nd incremental run reads Gmail history and fetches only the new receipts
    add_receipts(mailbox_dir, address, 3, "h")
    emulator.admin("/_emulator/rescan", {})
    history_calls = emulator.stats(address)["requests"].get("users.history.list", 0)
    gets_before = emulator.stats(address)["requests"]["users.messages.get"]
    second = jobs.run(jobs.payload(mode=contract.MODE_INCREMENTAL, business_id="bob", run_id=2), address, **no_overlap)
    done = second.events(contract.LOG_JOB_DONE)[0]
    assert done["used_history"] is True and (done["messages_scanned"], done["saved_receipts"]) == (3, 3)
    assert emulator.stats(address)["requests"]["users.history.list"] > history_calls
    assert emulator.stats(address)["requests"]["users.messages.get"] - gets_before == 3
    saved = saved_receipts(jobs.database_url, "bob")
    assert len(saved) == len(truth_receipts) + 3
    new_amounts = sorted(row[3] for mid, row in saved.items() if mid not in truth_receipts)
    assert new_amounts == [Decimal("1.50"), Decimal("2.50"), Decimal("3.50")]
    assert db_rows(jobs.database_url, "SELECT history_id FROM business_sync_state")[0][0] > state[0][1]

    # nothing new: history says so, and nothing is fetched
    third = jobs.run(jobs.payload(mode=contract.MODE_INCREMENTAL, business_id="bob", run_id=3), address, **no_overlap)
    assert (third.events(contract.LOG_JOB_DONE)[0]["messages_scanned"], third.returncode) == (0, 0)

    # history expired (404): the date range since the last success is synced instead, nothing lost
    add_receipts(mailbox_dir, address, 2, "x")
    emulator.admin("/_emulator/rescan", {})
    emulator.admin("/_emulator/history/expire", {"mailbox": address})
    fourth = jobs.run(jobs.payload(mode=contract.MODE_INCREMENTAL, business_id="bob", run_id=4), address, **no_overlap)
    done = fourth.events(contract.LOG_JOB_DONE)[0]
    assert fourth.returncode == 0 and done["used_history"] is False
    assert done["saved_receipts"] == 2
    # the window starts a day before the cursor was read (a message's date may trail its arrival)
    assert done["date_from"] in {(TODAY - dt.timedelta(days=d)).isoformat() for d in (1, 2)}
    assert len(saved_receipts(jobs.database_url, "bob")) == len(truth_receipts) + 5


def test_user_query_narrows_the_receipts(jobs, alice):
    globex = {m.message_id for m in alice.receipts if m.sender_address == "orders@globex.example"}
    assert globex
    result = jobs.run(jobs.payload(**FULL_RANGE, query=") OR (from:orders@globex.example"), alice.address)
    assert result.returncode == 0
    assert set(saved_receipts(jobs.database_url, "biz-1")) == globex
