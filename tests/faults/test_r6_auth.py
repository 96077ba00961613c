"""R6: a revoked refresh token fails the run at once — Failed, reason GmailAuthError, exactly one
attempt (one worker Job, one sync_runs row), whatever backoffLimit says; and the token is not in any
status, Event or log line."""
from __future__ import annotations

import time

import pytest

from faultkit import FAULT_MAILBOX, add
from receiptsync_common import contract as c

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_revoked_refresh_token_fails_once_with_gmail_auth_error(world, report):
    world.start_operator()
    world.emulator_config(revoked=[FAULT_MAILBOX])
    refusals_before = world.emulator_stats()["token_refusals"]
    world.apply(world.secret("gmail", FAULT_MAILBOX), world.rsync("revoked", backoffLimit=3))
    failed = world.wait_phase("revoked", c.PHASE_FAILED, timeout=60)
    business = world.businesses[-1]

    assert failed["reason"] == c.REASON_GMAIL_AUTH_ERROR, failed
    assert failed["attempt"] == 1 and failed["runId"] == 1
    assert "reconnect Gmail for this business" in failed["message"], failed["message"]  # what the user must do
    assert {x["type"]: x["status"] for x in failed["conditions"]} == {"Complete": "False", "Failed": "True"}
    # Exactly one attempt: one worker Job, one sync_runs row, and nothing comes after it.
    time.sleep(4)  # longer than the heartbeat timeout: a retry would have been queued by now
    assert len(world.jobs()) == 1, [j["metadata"]["name"] for j in world.jobs()]
    assert world.status("revoked")["attempt"] == 1
    runs = world.sync_runs(business)
    assert [(r[2], r[3], r[4]) for r in runs] == [(1, c.PHASE_FAILED, c.REASON_GMAIL_AUTH_ERROR)], runs
    assert world.saved_count(business) == 0
    assert world.emulator_stats()["token_refusals"] > refusals_before  # the emulator really refused the grant
    assert c.REASON_GMAIL_AUTH_ERROR in [e.get("reason") for e in world.events("revoked")]
    fails = [line for line in world.worker_log_lines() if line.get("event") == c.LOG_JOB_FAIL]
    assert len(fails) == 1 and fails[0].get("reason") == c.REASON_GMAIL_AUTH_ERROR, fails
    add(report, "R6", faults_injected=1, runs=1, attempts=len(runs))
