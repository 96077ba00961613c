"""R3: the active operator is SIGKILLed mid-run (no cleanup, its Lease left to expire) with a standby
replica waiting; a second resource is applied while nobody leads. The standby takes over: the running
attempt is adopted (no duplicate worker Job, no second attempt, no second run), the new resource is
queued and started exactly once, status continues to Finished, receipts == ground truth."""
from __future__ import annotations

import pytest

from faultkit import BULK_MAILBOX, FAULT_MAILBOX, add, hold_receipt, wait_blocked_mid_run, wait_until
from receiptsync_common import contract as c

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


def test_operator_killed_mid_run_standby_takes_over(world, report, mailboxes):
    a = world.start_operator(wait=False)
    b = world.start_operator(wait=False)
    leader = wait_until(lambda: next((op for op in (a, b) if op.logged("leading")), None), timeout=30,
                        message="a leader")
    standby = b if leader is a else a
    first, last = "2025-02-01", "2025-06-15"
    body = world.rsync("adopted", fromDate=first, toDate=last)
    business = body["spec"]["businessId"]
    expected = mailboxes[BULK_MAILBOX].receipts_between(first, last)
    conn = hold_receipt(world, business, min(expected, key=lambda m: m.date))
    try:
        world.apply(world.secret("gmail", BULK_MAILBOX), world.secret("gmail-f", FAULT_MAILBOX), body)
        started = world.wait_phase("adopted", c.PHASE_STARTED, timeout=40)
        committed = wait_blocked_mid_run(world, business, conn)
        leader.kill()  # SIGKILL: no cleanup, no Lease release
        late = world.rsync("late", secret="gmail-f", fromDate="2025-03-01", toDate="2025-05-31")
        world.apply(late)  # nobody leads right now
        standby.wait_leading(timeout=30)
    finally:
        conn.rollback()
        conn.close()

    done = world.wait_terminal("adopted", timeout=90)
    late_done = world.wait_terminal("late", timeout=90)
    assert done["phase"] == late_done["phase"] == c.PHASE_FINISHED, (done, late_done)
    # The adopted attempt: same run, same attempt, same Job.
    assert (done["runId"], done["attempt"], done["jobId"]) == (1, 1, started["jobId"]), done
    assert (late_done["runId"], late_done["attempt"]) == (1, 1), late_done
    names = sorted(j["metadata"]["name"] for j in world.jobs())
    assert len(names) == 2 and all(n.endswith("-r1-a1") for n in names), names
    assert not standby.logged("run queued") or len(standby.logged("run queued")) == 1  # only "late"
    assert len(standby.logged("worker Job created")) == 1  # only "late": "adopted" was never started again
    numbers = world.check_against_truth(business, expected)
    late_numbers = world.check_against_truth(late["spec"]["businessId"],
                                             mailboxes[FAULT_MAILBOX].receipts_between("2025-03-01", "2025-05-31"))
    assert [(r[1], r[2]) for r in world.sync_runs(business)] == [(1, 1)]
    lease = world.get("lease", world.lease)
    assert lease["spec"]["holderIdentity"] == standby.identity
    add(report, "R3", faults_injected=1, runs=2, attempts=2, committed_before_fault=committed,
        receipts_checked=numbers["receipts_checked"] + late_numbers["receipts_checked"],
        duplicates_found=numbers["duplicates_found"] + late_numbers["duplicates_found"],
        duplicate_worker_jobs=len(names) - len(set(names)))
