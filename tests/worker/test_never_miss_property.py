"""Issue 12, property: random sequences of runs (incremental, full, dated backfills, query-narrowed
runs, two mailboxes of one business, small caps) interleaved with new mail arriving. A run capped by
maxMessages is run again until its window is done (as a resource's next runs would). After a final
plain incremental run of each mailbox, the saved receipts are exactly the receipts inside the windows
that were ever asked for (each run's window as recorded in sync_runs, its query applied, counting
mail that had arrived before it ran). The emulator, Redis and PostgreSQL are real; the worker runs
through its entry function."""
from __future__ import annotations

import datetime as dt
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from receiptsync_common import contract

from never_miss_kit import Inbox, Runner, saved_ids

VENDOR_A, VENDOR_B = "billing@vendor-a.example", "orders@vendor-b.example"
QUERY = f"from:{VENDOR_B}"
MAX_RUNS_PER_STEP = 12

deliveries = st.tuples(st.just("mail"), st.sampled_from([0, 1]), st.integers(1, 4),
                       st.sampled_from([0, 0, 1, 3, 20, 45]), st.sampled_from([VENDOR_A, VENDOR_B]))
runs = st.tuples(st.just("run"), st.sampled_from([0, 1]),
                 st.sampled_from(["incremental", "full", "backfill", "query-incremental", "query-full"]),
                 st.sampled_from([2, 3, 5000]))
steps = st.lists(st.one_of(deliveries, runs), min_size=3, max_size=8)


def run_fields(kind: str, cap: int) -> dict:
    today = dt.datetime.now(dt.timezone.utc).date()
    fields: dict = {"max_messages": cap,
                    "mode": contract.MODE_FULL if kind.endswith("full") else contract.MODE_INCREMENTAL}
    if kind == "backfill":
        fields.update(date_from=(today - dt.timedelta(days=30)).isoformat(),
                      date_to=(today - dt.timedelta(days=2)).isoformat(), explicit_from=True, explicit_to=True)
    if kind.startswith("query"):
        fields["query"] = QUERY
    return fields


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(plan=steps)
def test_any_mix_of_runs_saves_every_receipt_of_every_window_asked_for(plan, redis_url, fresh_database, emulator,
                                                                       mailbox_dir):
    business = "prop-" + uuid.uuid4().hex[:8]
    runner = Runner(redis_url, fresh_database, emulator, overlap_seconds=0)
    inboxes = [Inbox(mailbox_dir, emulator), Inbox(mailbox_dir, emulator)]
    expected: set[str] = set()

    def run_until_done(box: int, kind: str, cap: int) -> None:
        inbox = inboxes[box]
        present = list(inbox.receipts)  # mail that had arrived before the run
        for _ in range(MAX_RUNS_PER_STEP):
            row = runner.run(f"{kind}-{box}", business, inbox, **run_fields(kind, cap))
            assert (row["status"], row["exit_code"]) == ("Finished", 0), row
            first, last = row["date_from"], row["date_to"]
            expected.update(r.message_id for r in present if first <= r.date.date() <= last
                            and (not kind.startswith("query") or r.sender == VENDOR_B))
            if not row["capped"]:
                return
        raise AssertionError(f"{kind} with maxMessages={cap} never finished its window")

    for step in plan:
        if step[0] == "mail":
            _, box, count, days_ago, sender = step
            inboxes[box].deliver(count, others=1, days_ago=days_ago, sender=sender)
        else:
            _, box, kind, cap = step
            run_until_done(box, kind, cap)
    for box in (0, 1):
        run_until_done(box, "incremental", 5000)
    assert saved_ids(fresh_database, business) == expected
