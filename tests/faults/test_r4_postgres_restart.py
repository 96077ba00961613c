"""R4: PostgreSQL goes away and comes back while a worker is half-way through a batch transaction (it
blocks on a receipt row we hold, so the fault lands mid-transaction with some batches already committed).
The worker retries its transaction against the restarted server: the run Finishes in the same attempt,
receipts == ground truth, no duplicates, attachments intact, status counters true.

Two ways down: `pg_ctl stop -m fast` (a restart: clients cut, open transactions rolled back) and
`-m immediate` (a crash). The sandbox runs PostgreSQL with synchronous_commit=off, which by design
forgets the last acknowledged commits on a crash; the crash case turns it on for the database (as in
production), so that what the worker was told is committed really is."""
from __future__ import annotations

import psycopg
import pytest

from faultkit import BULK_MAILBOX, add, hold_receipt, restart_postgres, wait_blocked_mid_run
from receiptsync_common import contract as c

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


@pytest.fixture
def durable_commits(world):
    def alter(value: str) -> None:
        name = world.database_url.rsplit("/", 1)[1]
        with psycopg.connect(world.database_url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" {value}')

    alter("SET synchronous_commit = on")
    yield
    alter("RESET synchronous_commit")


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restarted_mid_transaction(world, report, mailboxes, durable_commits, mode):
    world.start_operator()
    first, last = "2025-02-01", "2025-06-15"
    name = f"pg-{mode}"
    body = world.rsync(name, fromDate=first, toDate=last, backoffLimit=2)
    business = body["spec"]["businessId"]
    expected = mailboxes[BULK_MAILBOX].receipts_between(first, last)
    conn = hold_receipt(world, business, min(expected, key=lambda m: m.date))
    world.apply(world.secret("gmail", BULK_MAILBOX), body)
    committed = wait_blocked_mid_run(world, business, conn)
    away = restart_postgres(world.sandbox, mode=mode)  # also ends our holding connection
    conn.close()

    done = world.wait_terminal(name, timeout=100)
    assert done["phase"] == c.PHASE_FINISHED, done
    numbers = world.check_against_truth(business, expected)
    # The worker retried its own transaction: no second attempt was needed.
    assert (done["runId"], done["attempt"]) == (1, 1), done
    assert done["progress"]["savedReceipts"] == len(expected), done["progress"]
    assert len(world.jobs()) == 1
    runs = world.rows("SELECT attempt, status, saved_receipts FROM sync_runs WHERE business_id = %s", business)
    assert runs == [(1, c.PHASE_FINISHED, len(expected))], runs
    retried = [line for line in world.worker_log_lines() if "transient database error" in str(line.get("msg"))]
    assert retried, "the worker never saw the database go away"
    add(report, "R4", faults_injected=1, runs=1, attempts=done["attempt"], committed_before_fault=committed,
        transaction_retries=len(retried), **numbers)
    print(f"postgres ({mode}) away {away:.1f}s, {committed} receipts committed before")
