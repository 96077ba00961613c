"""R9: load. N ReceiptSyncs (default 60; RECEIPTSYNC_FAULTS_LOAD=200 for the full issue-8 size, which
does not fit the suite's time budget on a 2-core machine: every attempt is a real worker process) across
20 businesses sharing 3 mailboxes, maxWorkers 4, mixed priorities and overlapping date ranges. All
Finish; the worker Jobs running at once never exceed maxWorkers; the emulator's per-mailbox quota never
refuses a call (workers of one mailbox share one token bucket); every business's receipts equal the
union of its resources' ranges in the ground truth, with no duplicates even though several resources of
one business upsert the same receipts concurrently."""
from __future__ import annotations

import os
import threading
import time

import pytest

from faultkit import LOAD_MAILBOXES, add
from receiptsync_common import contract as c

pytestmark = [pytest.mark.slow]

COUNT = int(os.environ.get("RECEIPTSYNC_FAULTS_LOAD", "60"))
BUSINESSES = 20
MAX_WORKERS = 4
RANGES = [("2025-04-01", "2025-04-30"), ("2025-05-01", "2025-06-30"), ("2025-04-15", "2025-05-20"),
          ("2025-06-01", "2025-06-30"), ("2025-03-31", "2025-06-30")]
PRIORITIES = ["high", "default", "low"]


@pytest.mark.timeout(60 + COUNT * 3)
def test_many_receiptsyncs_across_businesses_sharing_mailboxes(world, report, mailboxes):
    world.start_operator(**{c.OPERATOR_ENV_MAX_WORKERS: str(MAX_WORKERS)})
    world.reset_emulator_stats()
    secrets = [world.secret(f"gmail-{i}", address) for i, address in enumerate(LOAD_MAILBOXES)]
    plan = {}  # name -> (business, mailbox, range)
    objects = []
    for index in range(COUNT):
        b = index % BUSINESSES
        mailbox = b % len(LOAD_MAILBOXES)
        first, last = RANGES[(index // BUSINESSES) % len(RANGES)]
        name = f"load-{index:03d}"
        business = f"{world.ns}-biz{b:02d}"
        plan[name] = (business, LOAD_MAILBOXES[mailbox], first, last)
        objects.append(world.rsync(name, business=business, secret=f"gmail-{mailbox}", fromDate=first, toDate=last,
                                   priority=PRIORITIES[index % 3], backoffLimit=2, timeout="120s"))

    # Watch concurrency the whole time: active worker Jobs never above maxWorkers.
    peak, stop = [0], threading.Event()

    def watch():
        while not stop.is_set():
            active = sum(1 for j in world.jobs() if (j.get("status") or {}).get("active"))
            peak[0] = max(peak[0], active)
            time.sleep(0.3)

    watcher = threading.Thread(target=watch, daemon=True)
    began = time.monotonic()
    world.apply(*secrets)
    world.apply(*objects)
    watcher.start()
    try:
        def all_done():
            items = (world.get(c.PLURAL) or {}).get("items") or []
            phases = {i["metadata"]["name"]: (i.get("status") or {}).get("phase") for i in items}
            return phases if len(phases) == COUNT and all(p in c.TERMINAL_PHASES for p in phases.values()) else None

        from faultkit import wait_until
        phases = wait_until(all_done, timeout=COUNT * 3, interval=1.0, message=f"{COUNT} ReceiptSyncs terminal")
    finally:
        stop.set()
        watcher.join(5)
    elapsed = time.monotonic() - began
    failed = {n: world.status(n) for n, p in phases.items() if p != c.PHASE_FINISHED}
    assert not failed, f"{len(failed)} not Finished: {list(failed.items())[:3]}"
    assert peak[0] <= MAX_WORKERS, f"{peak[0]} worker Jobs active at once (maxWorkers {MAX_WORKERS})"

    stats = world.emulator_stats()["mailboxes"]
    refused = {address: stats.get(address, {}).get("rate_limited", 0) for address in LOAD_MAILBOXES}
    assert all(v == 0 for v in refused.values()), f"the mailbox quota refused calls: {refused}"

    totals = {"receipts_checked": 0, "attachments_checked": 0, "duplicates_found": 0}
    for b in range(BUSINESSES):
        business = f"{world.ns}-biz{b:02d}"
        mine = [v for v in plan.values() if v[0] == business]
        box = mailboxes[mine[0][1]]
        expected = {m.message_id: m for _, _, first, last in mine for m in box.receipts_between(first, last)}
        for key, value in world.check_against_truth(business, list(expected.values())).items():
            totals[key] += value
    attempts = sum(world.status(n).get("attempt", 1) for n in phases)
    add(report, "R9", runs=COUNT, attempts=attempts, businesses=BUSINESSES, peak_active_workers=peak[0],
        quota_refusals=sum(refused.values()), seconds=int(elapsed), **totals)
    print(f"{COUNT} ReceiptSyncs finished in {elapsed:.0f}s, peak {peak[0]} workers, {attempts} attempts")
