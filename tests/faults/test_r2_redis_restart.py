"""R2: Redis is restarted empty (SIGKILL, then a fresh redis-server on the same port) while one run is
mid-batch and another is Queued behind it (maxWorkers 1). Every queue entry, payload, heartbeat and the
operator's stream cursor are gone. The operator notices and re-enqueues from the resources; both runs
Finish with exactly the ground truth, no duplicates, the queued run is started once, and no status is
left a phantom `Started`."""
from __future__ import annotations

import time

import pytest

from faultkit import BULK_MAILBOX, add, hold_receipt, restart_redis, wait_blocked_mid_run
from receiptsync_common import contract as c

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


def test_redis_restarted_empty_mid_run(world, report, mailboxes):
    world.start_operator(**{c.OPERATOR_ENV_MAX_WORKERS: "1"})
    box = mailboxes[BULK_MAILBOX]
    running = world.rsync("running", fromDate="2025-02-01", toDate="2025-06-15", backoffLimit=3)
    waiting = world.rsync("waiting", fromDate="2025-01-01", toDate="2025-03-31", backoffLimit=3)
    expected = {"running": box.receipts_between("2025-02-01", "2025-06-15"),
                "waiting": box.receipts_between("2025-01-01", "2025-03-31")}
    business = {"running": running["spec"]["businessId"], "waiting": waiting["spec"]["businessId"]}
    conn = hold_receipt(world, business["running"], min(expected["running"], key=lambda m: m.date))
    try:
        world.apply(world.secret("gmail", BULK_MAILBOX), running)
        world.wait_phase("running", c.PHASE_STARTED, timeout=40)
        world.apply(waiting)
        world.wait_status("waiting", lambda s: s.get("phase") == c.PHASE_QUEUED
                          and s.get("reason") == c.REASON_WAITING_FOR_WORKER, timeout=30)
        committed = wait_blocked_mid_run(world, business["running"], conn)
        assert world.redis.dbsize() > 0
        away = restart_redis(world.sandbox)
        assert world.redis.dbsize() == 0  # really empty: queue, payloads, heartbeats, cursor gone
    finally:
        conn.rollback()
        conn.close()

    done = {name: world.wait_terminal(name, timeout=100) for name in ("running", "waiting")}
    numbers = {"receipts_checked": 0, "attachments_checked": 0, "duplicates_found": 0}
    for name, status in done.items():
        assert status["phase"] == c.PHASE_FINISHED, (name, status)
        assert status["runId"] == 1, status
        for key, value in world.check_against_truth(business[name], expected[name]).items():
            numbers[key] += value
    # The queued run was never started twice; the running one at most retried (its worker may have
    # lost its Redis connection), never with two Jobs for one attempt.
    names = sorted(j["metadata"]["name"] for j in world.jobs())
    waiting_jobs = [n for n in names if n.startswith("rs-waiting-")]
    assert len(waiting_jobs) == 1 and waiting_jobs[0].endswith("-r1-a1"), names
    running_jobs = [n for n in names if n.startswith("rs-running-")]
    assert len(running_jobs) == len(set(running_jobs)) == done["running"]["attempt"], names
    # No phantom Started: settled, both stay Finished, the queue is empty, no worker Job active.
    time.sleep(4)  # longer than the heartbeat timeout
    for name in ("running", "waiting"):
        assert world.status(name)["phase"] == c.PHASE_FINISHED
    assert all(world.redis.zcard(c.queue_key(p)) == 0 for p in c.PRIORITIES)
    assert not [j for j in world.jobs() if (j.get("status") or {}).get("active")]
    add(report, "R2", faults_injected=1, runs=2, attempts=sum(s["attempt"] for s in done.values()),
        committed_before_fault=committed, **numbers)
    print(f"redis away {away:.1f}s; running attempts {done['running']['attempt']}")
