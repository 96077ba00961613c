"""Issue 12's decisions as pure functions: the cursor, which runs cover it, the cap, download groups,
the termination message, stall detection, the local quota bucket. Plus the Stalled outcome end to end."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json

import redis

from receiptsync_common import contract
from receiptsync_common.jobspec import JobPayload
from receiptsync_worker import cursor as cursors
from receiptsync_worker.fetch import group_by_bytes
from receiptsync_worker.heartbeat import is_stalled
from receiptsync_worker.outcome import Counters, Outcome, finished_message, termination_message
from receiptsync_worker.pdfguard import PdfGuard
from receiptsync_worker.pipeline import IdFilter, select_ids
from receiptsync_worker.redisguard import FallbackBucket, LocalBucket

T0 = dt.datetime(2025, 5, 1, 12, tzinfo=dt.timezone.utc)
MIN = dt.timedelta(minutes=1)
BASE = JobPayload(job_id="j", namespace="ns", name="n", uid="u" * 36, business_id="b", run_id=1, attempt=1,
                  mode=contract.MODE_INCREMENTAL, priority="default", max_messages=5000, timeout_seconds=3600)


def test_cursor_moves_to_an_id_only_once_it_is_older_than_the_overlap():
    overlap = 10 * MIN
    first = cursors.advance(None, 100, T0, overlap)
    assert first == cursors.Cursor(None, None, 100, T0)  # nothing trusted yet
    soon = cursors.advance(first, 120, T0 + 2 * MIN, overlap)
    assert soon == first  # the older pending id stays pending (it is promoted first)
    later = cursors.advance(soon, 150, T0 + 11 * MIN, overlap)
    assert later == cursors.Cursor(100, T0, 150, T0 + 11 * MIN)
    assert cursors.advance(later, 90, T0 + 30 * MIN, overlap).history_id == 150  # never backwards
    assert cursors.advance(None, 100, T0, dt.timedelta(0)) == cursors.Cursor(100, T0)  # no lag: at once


def test_only_runs_that_cover_everything_since_the_cursor_move_it():
    zone_date = (lambda t: t.date())
    cur = cursors.Cursor(5, T0)
    first = T0.date() - dt.timedelta(days=3)
    assert cursors.covers_since_cursor(BASE, first, cur, zone_date)
    assert not cursors.covers_since_cursor(dataclasses.replace(BASE, query="from:x"), first, cur, zone_date)
    assert cursors.covers_since_cursor(dataclasses.replace(BASE, query=")("), first, cur, zone_date)  # nothing left
    dated = dataclasses.replace(BASE, date_from="2025-01-01", explicit_from=True)
    assert not cursors.covers_since_cursor(dated, first, cur, zone_date)
    full = dataclasses.replace(BASE, mode=contract.MODE_FULL)
    assert cursors.covers_since_cursor(full, first, cur, zone_date)
    assert not cursors.covers_since_cursor(full, T0.date(), cur, zone_date)  # its window starts after the cursor
    assert cursors.covers_since_cursor(full, T0.date(), None, zone_date)


def test_window_key_names_the_spec_not_the_run():
    key = cursors.window_key(BASE, "A@x.example")
    assert key == cursors.window_key(dataclasses.replace(BASE, run_id=7, attempt=2, job_id="k"), "a@x.example")
    for other in (dataclasses.replace(BASE, query="from:x"), dataclasses.replace(BASE, mode=contract.MODE_FULL),
                  dataclasses.replace(BASE, date_from="2025-01-01", explicit_from=True),
                  dataclasses.replace(BASE, uid="v" * 36)):
        assert cursors.window_key(other, "a@x.example") != key
    assert cursors.window_key(BASE, "b@x.example") != key


def test_the_cap_counts_fetches_not_ids_seen():
    page = [f"m{i}" for i in range(10)]
    saved = {"m0", "m1", "m2", "m3", "m4"}
    id_filter = IdFilter(done={"m5"}, max_messages=3, already_saved=lambda ids: saved & set(ids),
                         quarantined={"m6"})
    quarantined: set[str] = set()
    todo, budget, left_over = select_ids(page, id_filter, set(), 3, quarantined)
    assert (todo, budget, left_over, quarantined) == (["m7", "m8", "m9"], 0, False, {"m6"})
    todo, budget, left_over = select_ids(page + ["m10"], id_filter, set(), 3)
    assert (todo, left_over) == (["m7", "m8", "m9"], True)
    # with history, only its ids; a repeated page adds nothing
    seen: set[str] = set()
    assert select_ids(page, IdFilter(done=set(), only={"m2"}), seen, 5)[0] == ["m2"]
    assert select_ids(page, IdFilter(done=set(), only={"m2"}), seen, 5)[0] == []


def test_attachment_downloads_are_grouped_by_bytes_and_count():
    items = [(("m", str(i)), size) for i, size in enumerate([3, 3, 3, 10, 1, 1, 1])]
    groups = [[size for _, size in group] for group in group_by_bytes(items, max_items=2, max_bytes=6)]
    assert groups == [[3, 3], [3], [10], [1, 1], [1]]


def test_termination_message_is_short_json_without_secrets():
    outcome = Outcome(contract.PHASE_FINISHED, contract.REASON_SUCCEEDED, "x" * 10_000)
    text = termination_message(outcome, Counters(5, 4, 1, 0, True), "job-1")
    body = json.loads(text)
    assert len(text.encode()) <= 4096
    assert (body["outcome"], body["reason"], body["job_id"]) == ("Finished", "Succeeded", "job-1")
    assert body["counters"] == {"messages_scanned": 5, "saved_receipts": 4, "skipped_messages": 1,
                                "quarantined_messages": 0, "capped": True}


def test_finished_message_names_the_cap_and_what_was_skipped():
    text = finished_message(Counters(10, 5, 2, 1, True), "2025-01-01", "2025-01-31", 5)
    assert "maxMessages=5" in text and "2 messages skipped" in text and "1 message quarantined" in text
    assert finished_message(Counters(1, 1), "a", "b", 5) == "Scanned 1 messages and saved 1 new receipts from a to b."


def test_stall_and_pdf_time_limit():
    assert is_stalled(100.0, 161.0, 60) and not is_stalled(100.0, 159.0, 60) and not is_stalled(0, 1e9, None)
    guard = PdfGuard(timeout=0.0001)
    assert guard.text(b"%PDF-1.4 anything") == ("", "timeout")
    assert PdfGuard(max_bytes=10).text(b"%PDF-1.4 too long") == ("", "too_large")
    guard.close()


class _Down:
    def reserve(self, units):
        raise redis.ConnectionError("down")


def test_local_bucket_keeps_the_rate_while_redis_is_away():
    now = [0.0]
    local = LocalBucket(rate=100, capacity=50, clock=lambda: now[0])
    assert local.reserve(50) == 0 and local.reserve(50) == 0.5
    now[0] = 0.5
    assert local.reserve(50) == 0.5  # 50 units came back in half a second, and paid what was owed
    bucket = FallbackBucket(_Down(), LocalBucket(rate=100, capacity=50, clock=lambda: now[0]), retry_after=5,
                            clock=lambda: now[0])
    assert bucket.reserve(10) == 0 and bucket.fallbacks == 1


def test_no_progress_fails_the_attempt_as_stalled(jobs, alice, knobs):
    knobs(latency_ms=4000)
    payload = jobs.payload(mode=contract.MODE_FULL)
    result = jobs.run(payload, alice.address, extra_env={"RECEIPTSYNC_STALL_SECONDS": "1.5",
                                                         "RECEIPTSYNC_FINAL_HEARTBEAT_SECONDS": "1"})
    assert result.returncode == 1
    fail = result.events(contract.LOG_JOB_FAIL)[0]
    assert fail["reason"] == "Stalled" and "no progress" in fail["error"]
    assert jobs.termination_message(payload)["reason"] == "Stalled"
