"""R5: Gmail misbehaves.

* A storm while a run is going: first every call answered 429 with `Retry-After: 1` (we watch the
  emulator's counters every 25 ms: consecutive refused calls are never closer than the Retry-After the
  worker was given), then 429s, 5xx and slow answers at random; then the storm stops and, from then on,
  the worker never exceeds the mailbox's quota (the emulator's own quota refuses nothing). The run
  completes in its first attempt with exactly the ground truth.
* Gmail answering 5xx forever: the run fails after backoffLimit retries — Failed, a reason, and a
  message saying what Gmail did — within the attempt timeouts.
"""
from __future__ import annotations

import time

import pytest

from faultkit import BULK_MAILBOX, FAULT_MAILBOX, add
from receiptsync_common import contract as c

pytestmark = [pytest.mark.slow]


@pytest.mark.timeout(150)
def test_storm_of_429_5xx_and_slow_answers(world, report, mailboxes):
    world.start_operator()
    first, last = "2025-01-01", "2025-06-30"
    body = world.rsync("storm", fromDate=first, toDate=last, backoffLimit=0, timeout="90s")
    business = body["spec"]["businessId"]
    expected = mailboxes[BULK_MAILBOX].receipts_between(first, last)
    world.reset_emulator_stats()
    world.emulator_config(error_rate_429=1.0, seed=5)
    world.apply(world.secret("gmail", BULK_MAILBOX), body)

    # Phase 1: everything refused with Retry-After: 1 -> watch the refusals arrive.
    seen, began = [], time.monotonic()
    last_count = 0
    while time.monotonic() - began < 6:
        count = world.emulator_stats(BULK_MAILBOX).get("injected_429", 0)
        if count != last_count:
            seen.append((time.monotonic(), count - last_count))
            last_count = count
        time.sleep(0.025)
    assert len(seen) >= 3, f"too few refused calls to judge: {seen}"
    # Before the lister exists, the only call in flight is users.getProfile: one caller, one at a time.
    gaps = [b[0] - a[0] for a, b in zip(seen, seen[1:])]
    assert all(n == 1 for _, n in seen[:4]), seen
    assert min(gaps[:3]) >= 0.9, f"a retry came sooner than Retry-After (1 s): gaps {gaps}"

    # Phase 2: a mixed storm with slow answers.
    world.emulator_config(error_rate_429=0.15, error_rate_5xx=0.15, slow_rate=0.3, slow_ms=400)
    time.sleep(4)
    storm = world.emulator_stats(BULK_MAILBOX)
    # Phase 3: calm. From now on the quota is never exceeded.
    world.emulator_config(error_rate_429=0.0, error_rate_5xx=0.0, slow_rate=0.0)
    world.reset_emulator_stats()
    done = world.wait_terminal("storm", timeout=100)
    after = world.emulator_stats(BULK_MAILBOX)
    quota = world.emulator_config()
    assert done["phase"] == c.PHASE_FINISHED, done
    assert done["attempt"] == 1, done  # the worker rode the storm out itself
    numbers = world.check_against_truth(business, expected)
    assert after.get("rate_limited", 0) == 0, after
    assert after.get("injected_429", 0) == 0 and after.get("injected_5xx", 0) == 0
    # The calm phase had calls to judge (the run still had work when the storm stopped), and however
    # short it was, they stayed within Gmail's quota: a burst plus rate x the time they spanned.
    assert after.get("units", 0) > 0, f"no call after the storm: nothing to check the quota on: {after}"
    assert quota["quota_enabled"], quota
    window = after["last_charged_at"] - after["first_charged_at"]
    assert after["units"] <= quota["quota_rate"] * window + quota["quota_burst"], (after, quota)
    injected = last_count + storm.get("injected_429", 0) + storm.get("injected_5xx", 0)
    add(report, "R5", faults_injected=injected, runs=1, quota_refusals_after_storm=after.get("rate_limited", 0),
        units_after_storm=after["units"], min_retry_gap_ms=int(min(gaps[:3]) * 1000), **numbers)


@pytest.fixture(scope="module")
def gmail_down(fault_sandbox, mailboxes, tmp_path_factory):
    """One run against a Gmail that answers 5xx to everything (backoffLimit 1, timeout 12s)."""
    from faultkit import World

    world = World(fault_sandbox, tmp_path_factory.mktemp("r5-down"), mailboxes)
    try:
        world.start_operator()
        world.emulator_config(error_rate_5xx=1.0, seed=6)
        world.apply(world.secret("gmail", FAULT_MAILBOX), world.rsync("down", backoffLimit=1, timeout="12s"))
        began = time.monotonic()
        failed = world.wait_phase("down", c.PHASE_FAILED, timeout=90)
        elapsed = time.monotonic() - began
        world.emulator_config(error_rate_5xx=0.0)
        yield failed, elapsed, len(world.jobs()), world.emulator_stats(FAULT_MAILBOX).get("injected_5xx", 0)
    finally:
        world.close()


@pytest.mark.timeout(120)
def test_permanent_5xx_fails_after_the_backoff_limit(gmail_down, report):
    failed, elapsed, jobs, injected = gmail_down
    assert failed["attempt"] == 2, failed  # backoffLimit 1: one retry, then Failed
    assert failed["reason"] in (c.REASON_BACKOFF_LIMIT_EXCEEDED, c.REASON_GMAIL_API_ERROR), failed
    assert {x["type"]: x["status"] for x in failed["conditions"]} == {"Complete": "False", "Failed": "True"}
    assert jobs <= 2  # timed-out attempts' Jobs are deleted by the operator; never more than one per attempt
    assert elapsed < 60  # bounded by 2 x spec.timeout, not by the client's own retry budget
    add(report, "R5", faults_injected=injected, runs=1, permanent_failure_seconds=int(elapsed))
    print(f"permanent 5xx -> {failed['reason']} after {elapsed:.0f}s: {failed['message']}")


@pytest.mark.timeout(120)
def test_permanent_5xx_failure_message_says_what_gmail_did(gmail_down):
    failed, _, _, _ = gmail_down
    message = failed["message"]
    assert "Gmail" in message and any(s in message for s in ("500", "503", "5xx", "backendError")), message
