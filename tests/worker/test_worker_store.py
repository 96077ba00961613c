"""PostgreSQL side with a real server: migrations are idempotent, upserts never duplicate, the
checkpoint is written with the data, and the business state moves only on success."""
from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from decimal import Decimal

import psycopg

from receiptsync_worker import cursor as cursors
from receiptsync_worker import migrations
from receiptsync_worker.store import AttachmentRow, ReceiptRow, RunEnd, RunRecord, SavedBatch, Store

from worker_testkit import db_rows

NOW = dt.datetime(2025, 5, 1, 12, tzinfo=dt.timezone.utc)


def receipt(mid: str, amount: str | None = "10.00") -> ReceiptRow:
    return ReceiptRow(gmail_message_id=mid, gmail_thread_id="t", subject=f"Receipt {mid}", sender="S <s@x.example>",
                      sender_email="s@x.example", received_at=NOW, amount=Decimal(amount) if amount else None,
                      currency="USD" if amount else None, amount_source="body" if amount else None, attachment_count=1)


def attachment(mid: str) -> AttachmentRow:
    return AttachmentRow(gmail_message_id=mid, part_id="1", filename="r.pdf", mime_type="application/pdf",
                         size_bytes=3, sha256="ab" * 32, content=b"pdf")


def run(job_id: str, run_key: str = "ns/n/u/1") -> RunRecord:
    return RunRecord(job_id=job_id, run_key=run_key, business_id="b", namespace="ns", name="n", run_id=1, attempt=1,
                     mode="full", date_from=dt.date(2025, 1, 1), date_to=dt.date(2025, 5, 1), started_at=NOW)


def test_migrations_apply_once_even_concurrently(fresh_database):
    results: list[list[str]] = []

    def migrate() -> None:
        with psycopg.connect(fresh_database, autocommit=True) as conn:
            results.append(migrations.apply_all(conn))

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    versions = [m.version for m in migrations.available()]
    assert versions[0] == "0001"
    assert sorted(results, key=len, reverse=True)[0] == versions and sum(len(r) for r in results) == len(versions)
    assert Store(fresh_database).migrate() == []
    assert db_rows(fresh_database, "SELECT version FROM schema_migrations ORDER BY version") == [(v,) for v in versions]
    columns = {row[0] for row in db_rows(fresh_database, "SELECT column_name FROM information_schema.columns"
                                          " WHERE table_name = 'receipts'")}
    assert {"business_id", "gmail_message_id", "subject", "sender", "received_at", "amount", "currency"} <= columns


def test_save_batch_is_idempotent_and_checkpoints(fresh_database):
    store = Store(fresh_database)
    store.migrate()
    store.run_started(run("job-1"))
    batch = SavedBatch(business_id="b", job_id="job-1", run_key="ns/n/u/1",
                       receipts=[receipt("m1"), receipt("m2", None)], attachments=[attachment("m1")],
                       done_message_ids=["m1", "m2", "gone"])
    assert store.save_batch(batch) == 2
    # The same batch again: a transaction retried after its COMMIT answer was lost (it had committed).
    # Nothing is new, and the counters stay exact: three messages scanned, two receipts saved.
    assert store.save_batch(batch) == 0
    assert db_rows(fresh_database, "SELECT gmail_message_id, amount, currency FROM receipts ORDER BY 1") == [
        ("m1", Decimal("10.00"), "USD"), ("m2", None, None)]
    assert db_rows(fresh_database, "SELECT count(*) FROM receipt_attachments") == [(1,)]
    assert db_rows(fresh_database, "SELECT messages_scanned, saved_receipts FROM sync_runs") == [(3, 2)]
    # a second attempt of the same run resumes from the checkpoint and the earlier counters
    resume = store.resume_point("ns/n/u/1", "ns/n/u/1", "job-2")
    assert resume.done == {"m1", "m2", "gone"} and (resume.scanned, resume.saved, resume.done_by_run) == (3, 2, 3)
    # a different business is a different receipt
    other = SavedBatch(business_id="c", job_id="job-1", run_key="x", receipts=[receipt("m1")], attachments=[],
                       done_message_ids=["m1"])
    assert store.save_batch(other) == 1
    store.close()


def test_cursor_moves_only_with_success_per_mailbox(fresh_database):
    store = Store(fresh_database)
    store.migrate()
    store.run_started(run("job-1"))
    store.save_batch(SavedBatch(business_id="b", job_id="job-1", run_key="ns/n/u/1", receipts=[receipt("m1")],
                                attachments=[], done_message_ids=["m1"]))
    store.run_finished(RunEnd(job_id="job-1", status="Failed", reason="GmailApiError", error="boom",
                              used_history=False))
    assert store.cursor("b", "a@x.example") is None
    store.run_started(run("job-2"))
    move = (lambda hid, at: (lambda stored: cursors.advance(stored, hid, at, dt.timedelta(0))))
    store.run_finished(RunEnd(job_id="job-2", status="Finished", reason="Succeeded", error=None, used_history=False,
                              message="Scanned 1 message.", window_done="ns/n/u/1", cursor_key=("b", "A@x.example"),
                              advance=move(500, NOW)))
    assert store.cursor("b", "a@x.example") == cursors.Cursor(500, NOW)
    assert store.cursor("b", "other@x.example") is None  # another mailbox of the business: its own cursor
    assert db_rows(fresh_database, "SELECT count(*) FROM sync_checkpoints") == [(0,)]
    assert db_rows(fresh_database, "SELECT outcome_message FROM sync_runs WHERE job_id = 'job-2'") == [
        ("Scanned 1 message.",)]
    # an older history id never moves the cursor backwards
    store.run_started(run("job-3", "ns/n/u/2"))
    store.run_finished(RunEnd(job_id="job-3", status="Finished", reason="Succeeded", error=None, used_history=True,
                              cursor_key=("b", "a@x.example"), advance=move(400, NOW - dt.timedelta(days=1))))
    assert store.cursor("b", "a@x.example").history_id == 500
    assert db_rows(fresh_database, "SELECT job_id, status FROM sync_runs ORDER BY job_id") == [
        ("job-1", "Failed"), ("job-2", "Finished"), ("job-3", "Finished")]
    store.close()


def test_failed_extractions_are_counted_once_per_attempt_and_quarantined(fresh_database):
    store = Store(fresh_database)
    store.migrate()
    for attempt in (1, 2, 3):
        job = f"job-{attempt}"
        store.run_started(dataclasses.replace(run(job, f"ns/n/u/{attempt}"), attempt=1))
        batch = SavedBatch(business_id="b", job_id=job, run_key=f"ns/n/u/{attempt}", receipts=[receipt("ok")],
                           attachments=[], done_message_ids=["ok"], failed={"bad": "unreadable: UnicodeError"},
                           skipped={"big": "attachment_too_large"})
        first = store.save(batch)
        again = store.save(batch)  # retried transaction: nothing counted twice
        assert (first.scanned, first.skipped) == (again.scanned, again.skipped) == (1, 2)
        quarantined = store.quarantined_ids("b")
        assert quarantined == (set() if attempt < 3 else {"bad"})
    assert db_rows(fresh_database, "SELECT tries FROM message_failures WHERE gmail_message_id = 'bad'") == [(3,)]
    assert db_rows(fresh_database, "SELECT skipped, skipped_messages FROM sync_runs WHERE job_id = 'job-1'") == [
        ({"bad": "unreadable: UnicodeError", "big": "attachment_too_large"}, 2)]
    # the failed message is never checkpointed: a later attempt tries it again
    assert db_rows(fresh_database, "SELECT DISTINCT gmail_message_id FROM sync_checkpoints") == [("ok",)]
    store.close()


def test_connections_have_keepalives_and_a_statement_timeout(fresh_database):
    store = Store(fresh_database, statement_timeout_ms=1234)
    store.migrate()
    assert store.transact(lambda conn: conn.execute("SHOW statement_timeout").fetchone()[0]) == "1234ms"
    assert store.transact(lambda conn: conn.info.get_parameters()) is not None
    conn = store._connection()
    parameters = conn.info.get_parameters()
    assert (parameters.get("keepalives"), parameters.get("tcp_user_timeout")) == ("1", "60000")
    store.close()


def test_transaction_retried_after_connection_loss(fresh_database):
    store = Store(fresh_database, first_delay=0.05)
    store.migrate()
    store.run_started(run("job-1"))
    # Kill our own backend: the next transaction fails with a lost connection and is run again.
    with psycopg.connect(fresh_database, autocommit=True) as admin:
        pids = [row[0] for row in admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    batch = SavedBatch(business_id="b", job_id="job-1", run_key="k", receipts=[receipt("m9")], attachments=[],
                       done_message_ids=["m9"])
    assert store.save_batch(batch) == 1
    assert db_rows(fresh_database, "SELECT count(*) FROM receipts") == [(1,)]
    store.close()


def test_a_new_attempt_closes_earlier_attempts_left_started_as_lost(fresh_database):
    store = Store(fresh_database)
    store.migrate()
    first = dataclasses.replace(run("job-a1"), attempt=1)
    store.run_started(first)  # its worker is killed: the row is never closed
    store.run_started(dataclasses.replace(run("other-run"), run_key="ns/n/u/2"))  # another run: untouched
    store.run_started(dataclasses.replace(first, job_id="job-a1"))  # the same attempt again: not its own loss
    assert db_rows(fresh_database, "SELECT status FROM sync_runs WHERE job_id = 'job-a1'") == [("Started",)]

    second_start = NOW + dt.timedelta(minutes=5)
    assert store.run_started(dataclasses.replace(first, job_id="job-a2", attempt=2, started_at=second_start)) == 1
    assert db_rows(fresh_database, "SELECT job_id, status, reason, finished_at FROM sync_runs ORDER BY job_id") == [
        ("job-a1", "Lost", "WorkerLost", second_start), ("job-a2", "Started", None, None),
        ("other-run", "Started", None, None)]
    # the lost attempt's counters still count for the run's resume point; finished attempts stay as they are
    store.run_finished(RunEnd(job_id="job-a2", status="Failed", reason="Timeout", error="slow", used_history=False))
    assert store.run_started(dataclasses.replace(first, job_id="job-a3", attempt=3)) == 0
    rows = db_rows(fresh_database, "SELECT job_id, status FROM sync_runs WHERE run_key = 'ns/n/u/1' ORDER BY job_id")
    assert rows == [("job-a1", "Lost"), ("job-a2", "Failed"), ("job-a3", "Started")]
    assert db_rows(fresh_database, "SELECT col_description('sync_runs'::regclass, attnum) FROM pg_attribute"
                                   " WHERE attrelid = 'sync_runs'::regclass AND attname = 'status'")[0][0].startswith(
        "Started | Finished | Failed | Lost")
    store.close()
