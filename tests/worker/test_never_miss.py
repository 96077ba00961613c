"""Issue 12 acceptance: no mix of runs makes the worker miss a receipt. The real worker (its entry
function, in-process) against the real Gmail emulator, Redis and PostgreSQL; the ground truth is the
mail each test delivered.

Cursors are tested with ``overlap 0`` (the emulator indexes new mail at once) so a cursor that moved
when it must not would skip receipts, except in the history-before-index test, where the emulator's
search index trails its history and the worker's overlap must cover that."""
from __future__ import annotations

import datetime as dt
import math
import time

import pytest

from receiptsync_common import contract

from never_miss_kit import Inbox, Runner, saved_ids

INCREMENTAL = dict(mode=contract.MODE_INCREMENTAL)


@pytest.fixture
def runner(redis_url, fresh_database, emulator) -> Runner:
    return Runner(redis_url, fresh_database, emulator, overlap_seconds=0)


@pytest.fixture
def inbox(mailbox_dir, emulator) -> Inbox:
    return Inbox(mailbox_dir, emulator)


def test_a_query_narrowed_backfill_does_not_move_the_cursor(runner, inbox):
    """Scenario 1: incremental; three receipts arrive; a January backfill narrowed by query; incremental."""
    inbox.deliver(4, days_ago=20)
    inbox.deliver(2, days_ago=300, sender="orders@vendor-b.example")
    first = runner.run("cur", "cur", inbox)
    assert (first["status"], first["saved_receipts"]) == ("Finished", 6)
    new = inbox.deliver(3, days_ago=0)
    january = (dt.date.today() - dt.timedelta(days=300)).replace(day=1)
    backfill = runner.run("cur-backfill", "cur", inbox, mode=contract.MODE_FULL, date_from=january.isoformat(),
                          date_to=(january + dt.timedelta(days=60)).isoformat(), explicit_from=True,
                          explicit_to=True, query="from:orders@vendor-b.example")
    assert backfill["status"] == "Finished"
    again = runner.run("cur", "cur", inbox)
    assert again["status"] == "Finished" and again["used_history"] is True
    assert again["saved_receipts"] == 3
    assert set(new) <= saved_ids(runner.database_url, "cur")
    assert saved_ids(runner.database_url, "cur") == inbox.ids()


def test_a_second_mailbox_of_the_business_has_its_own_cursor(runner, inbox, mailbox_dir, emulator):
    """Scenario 2: a second ReceiptSync of the same business for another mailbox saves its receipts."""
    inbox.deliver(3, days_ago=1)
    assert runner.run("first-account", "two", inbox)["saved_receipts"] == 3
    other = Inbox(mailbox_dir, emulator)
    other.deliver(4, days_ago=90)  # older than the first mailbox's last success
    other.deliver(1, days_ago=0)
    second = runner.run("second-account", "two", other)
    assert (second["status"], second["saved_receipts"]) == ("Finished", 5)
    # and each mailbox keeps going from its own cursor
    late = inbox.deliver(2, days_ago=0)
    assert runner.run("first-account", "two", inbox)["used_history"] is True
    assert saved_ids(runner.database_url, "two") == inbox.ids() | other.ids() and set(late) <= inbox.ids()


@pytest.mark.parametrize("mode", [contract.MODE_INCREMENTAL, contract.MODE_FULL])
def test_a_capped_resource_reaches_every_receipt_in_ceil_n_over_cap_runs(runner, inbox, mode):
    """Scenario 3: maxMessages 5 on a window with 12 receipts: 5, 5, 2 — then done."""
    inbox.deliver(12, others=3, days_ago=5)
    cap, runs = 5, []
    for _ in range(math.ceil(12 / cap)):
        runs.append(runner.run("capped", f"cap-{mode}", inbox, mode=mode, max_messages=cap))
    assert [r["saved_receipts"] for r in runs] == [5, 5, 2]
    assert [r["capped"] for r in runs] == [True, True, False]
    assert all(r["status"] == "Finished" for r in runs)
    assert "maxMessages=5" in runs[0]["outcome_message"] and "continues" in runs[0]["outcome_message"]
    assert saved_ids(runner.database_url, f"cap-{mode}") == inbox.ids()
    # receipts arriving later are picked up too (newest first), within the cap; an incremental
    # resource fetches only them, a full one starts its window over (it refreshes what it saved)
    inbox.deliver(2, days_ago=0)
    after = runner.run("capped", f"cap-{mode}", inbox, mode=mode, max_messages=cap)
    assert after["saved_receipts"] == 2 and saved_ids(runner.database_url, f"cap-{mode}") == inbox.ids()
    assert after["capped"] is (mode == contract.MODE_FULL)


def test_a_receipt_in_history_before_the_search_index_is_not_lost(redis_url, fresh_database, emulator, inbox, knobs):
    """Scenario 4: Gmail's history reports a message that the search listing does not return yet."""
    lag, overlap = 2.0, 3.0
    runner = Runner(redis_url, fresh_database, emulator, overlap_seconds=overlap)
    inbox.deliver(3, days_ago=2)
    assert runner.run("lag", "lag", inbox)["saved_receipts"] == 3  # no cursor: the whole window
    time.sleep(overlap + 0.2)
    runner.run("lag", "lag", inbox)  # now the first run's history id is old enough to be the cursor
    knobs(search_lag_s=lag)
    new = inbox.deliver(2, days_ago=0)
    during = runner.run("lag", "lag", inbox)
    # history has them, the search index not yet: nothing of them could be saved by this run
    assert during["used_history"] is True and during["saved_receipts"] == 0
    assert not set(new) & saved_ids(fresh_database, "lag")
    time.sleep(lag + 0.2)
    after = runner.run("lag", "lag", inbox)
    assert after["saved_receipts"] == 2
    assert saved_ids(fresh_database, "lag") == inbox.ids()
