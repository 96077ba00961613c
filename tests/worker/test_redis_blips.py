"""Issue 12: Redis is not a single point of failure for an attempt. The real worker process against
its own redis-server (restarted or stopped under it), the Gmail emulator and PostgreSQL."""
from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
import redis

from receiptsync_common import contract
from receiptsync_sandbox import services
from receiptsync_sandbox.gmail.samples import generate_mailbox
from receiptsync_sandbox.testing import wait_until
from worker_testkit import TODAY, Jobs, db_rows, parse_result

FULL = dict(date_from=(TODAY - dt.timedelta(days=200)).isoformat(), date_to=TODAY.isoformat(),
            explicit_from=True, explicit_to=True)


@pytest.fixture
def own_redis(tmp_path):
    server = services.start_redis(tmp_path / "redis")
    yield server
    server.stop()


def heartbeats_in_stream(url: str, job_id: str) -> int:
    try:
        client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=1)
        return sum(1 for _, e in client.xrange(contract.EVENTS_STREAM) if e.get(contract.HB_JOB_ID) == job_id)
    except redis.RedisError:
        return 0


def saved(database_url: str) -> set[str]:
    rows = db_rows(database_url, "SELECT gmail_message_id FROM receipts WHERE business_id = 'biz-1'")
    return {row[0] for row in rows}


def test_redis_restarted_for_10s_mid_sync_of_2000_messages(own_redis, tmp_path, fresh_database, emulator, mailbox_dir,
                                                            knobs):
    address = "blips@example.com"
    truth = generate_mailbox(mailbox_dir, address, 2000, 1.0, months=6, seed=12, end_date=TODAY - dt.timedelta(days=1))
    emulator.admin("/_emulator/rescan", {})
    knobs(quota_rate=5000, quota_burst=5000)
    jobs = Jobs(own_redis.url, fresh_database, emulator)
    payload = jobs.payload(**FULL)
    # 750 units/s: about 20 s for the whole sync, so the outage falls in its middle
    process = jobs.start(payload, address, extra_env={contract.WORKER_ENV_QUOTA_RATE: "750"})
    outage: dict[str, float] = {}

    def restart_redis() -> None:
        wait_until(lambda: _has_receipts(fresh_database, 200), timeout=60, interval=0.05)
        own_redis.stop()
        outage["start"] = time.monotonic()
        outage["saved_at_stop"] = len(saved(fresh_database))
        time.sleep(10)
        restarted = services.start_redis(tmp_path / "redis", port=own_redis.port)
        own_redis.pid = restarted.pid  # the fixture stops the new server
        outage["end"] = time.monotonic()

    restarter = threading.Thread(target=restart_redis)
    restarter.start()
    stdout, stderr = process.communicate(timeout=240)
    restarter.join()
    result = parse_result(process.returncode, stdout, stderr)
    assert result.returncode == 0, stdout[-3000:] + stderr[-2000:]
    done = result.events(contract.LOG_JOB_DONE)[0]
    assert outage["saved_at_stop"] < len(truth), "the sync ended before Redis went away"
    # the attempt rode out the outage: one attempt, Finished, every receipt, the local quota bucket used
    assert set(saved(fresh_database)) == {m.message_id for m in truth}
    assert db_rows(fresh_database, "SELECT attempt, status, messages_scanned, saved_receipts FROM sync_runs") == [
        (1, "Finished", len(truth), len(truth))]
    assert done["local_quota_reservations"] > 0 and done["final_heartbeat_sent"] is True
    # Redis is back: the final heartbeat is there
    beat = redis.Redis.from_url(own_redis.url, decode_responses=True).hgetall(contract.heartbeat_key(payload.job_id))
    assert beat[contract.HB_PHASE] == contract.PHASE_FINISHED and beat[contract.HB_SAVED] == str(len(truth))


def _has_receipts(database_url: str, count: int) -> bool:
    try:
        return len(saved(database_url)) >= count
    except Exception:  # noqa: BLE001 - the schema may not exist yet
        return False


def test_final_heartbeat_lost_the_outcome_is_durable(own_redis, fresh_database, emulator, alice, knobs):
    knobs(latency_ms=100)  # a few seconds of sync: Redis goes away right after the first heartbeat
    jobs = Jobs(own_redis.url, fresh_database, emulator)
    payload = jobs.payload(**FULL)
    process = jobs.start(payload, alice.address, extra_env={"RECEIPTSYNC_FINAL_HEARTBEAT_SECONDS": "3"})
    wait_until(lambda: heartbeats_in_stream(own_redis.url, payload.job_id) > 0, timeout=30, interval=0.01)
    own_redis.stop()
    stdout, stderr = process.communicate(timeout=120)
    result = parse_result(process.returncode, stdout, stderr)
    assert result.returncode == 0, stdout[-3000:]
    done = result.events(contract.LOG_JOB_DONE)[0]
    assert done["final_heartbeat_sent"] is False
    # what the operator can read without Redis: the sync_runs row and the termination message
    assert db_rows(fresh_database, "SELECT status, reason, outcome_message, saved_receipts FROM sync_runs") == [
        ("Finished", contract.REASON_SUCCEEDED, done["message"], len(alice.receipts))]
    message = jobs.termination_message(payload)
    assert (message["outcome"], message["reason"], message["job_id"]) == (
        contract.PHASE_FINISHED, contract.REASON_SUCCEEDED, payload.job_id)
    assert message["counters"]["saved_receipts"] == len(alice.receipts) and message["counters"]["capped"] is False
    assert "refresh-token" not in str(message) and "client-secret" not in str(message)
    assert saved(fresh_database) == {m.message_id for m in alice.receipts}
