"""PostgreSQL: receipts, their attachments, one ``sync_runs`` row per attempt, the per-mailbox cursor,
the window checkpoints that let a capped run be continued, and messages whose extraction failed.

Every write is one transaction of idempotent statements, and the counters are derived from what
the transaction newly inserted, so a transaction retried after its COMMIT's answer was lost (it may
have committed) never counts twice.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from typing import Callable, Iterable, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict

from receiptsync_common import contract, migrations

from .cursor import Cursor
from .rows import AttachmentRow, ReceiptRow, save_receipts

__all__ = ["AttachmentRow", "ReceiptRow", "Store", "SavedBatch", "RunRecord", "Resume", "DatabaseUnavailable",
           "TRANSIENT_ERRORS", "connect_options"]

T = TypeVar("T")
log = logging.getLogger(__name__)

TRANSIENT_ERRORS = (psycopg.OperationalError, psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)

# sync_runs.status: Started while the attempt runs; Finished or Failed (the attempt's phase) when it
# ends; Lost when a later attempt of the same run started while this one was still Started (its
# worker was killed or vanished before closing the row) - then reason is WorkerLost.
STATUS_STARTED = "Started"
STATUS_LOST = "Lost"
REASON_WORKER_LOST = contract.REASON_WORKER_LOST
# A message whose extraction failed this many times (once per attempt) is quarantined: never fetched again.
MAX_EXTRACTION_TRIES = 3
STATEMENT_TIMEOUT_MS = 300_000


def connect_options(url: str, statement_timeout_ms: int = STATEMENT_TIMEOUT_MS) -> dict[str, object]:
    """Keepalives and a TCP user timeout, so a half-open connection (the server's address gone after
    a failover) fails within about a minute instead of hanging; and a statement timeout. Options the
    URL already carries are kept."""
    existing = str(conninfo_to_dict(url).get("options") or "")
    return {
        "autocommit": True, "connect_timeout": 10,
        "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3,
        "tcp_user_timeout": 60_000,
        "options": f"{existing} -c statement_timeout={int(statement_timeout_ms)}".strip(),
    }


@dataclasses.dataclass(frozen=True)
class RunRecord:
    job_id: str
    run_key: str
    business_id: str
    namespace: str
    name: str
    run_id: int
    attempt: int
    mode: str
    date_from: dt.date | None
    date_to: dt.date | None
    started_at: dt.datetime
    mailbox: str | None = None
    window_key: str | None = None


@dataclasses.dataclass(frozen=True)
class Resume:
    done: set[str]  # message ids finished in this window (by this run or an earlier, capped one)
    done_by_run: int  # of those, how many this run did (they count against its maxMessages)
    scanned: int  # counters of the run's earlier attempts
    saved: int


@dataclasses.dataclass(frozen=True)
class SavedBatch:
    business_id: str
    job_id: str
    run_key: str
    receipts: list[ReceiptRow]
    attachments: list[AttachmentRow]
    done_message_ids: list[str]  # every message finished, receipt or not (deleted ones too)
    window_key: str = ""  # '' = the run's own key
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)  # id -> reason (not fully processed)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)  # id -> error (extraction failed)


@dataclasses.dataclass(frozen=True)
class Totals:
    """The attempt's counters after a batch (absolute, so a retried transaction cannot skew them),
    and the receipts this transaction inserted."""
    scanned: int
    saved: int
    skipped: int
    new: int = 0


@dataclasses.dataclass(frozen=True)
class RunEnd:
    job_id: str
    status: str
    reason: str
    error: str | None
    used_history: bool
    message: str = ""
    capped: bool = False
    quarantined: int = 0
    window_done: str | None = None  # the window this run finished: its checkpoints go
    cursor_key: tuple[str, str] | None = None  # (business, mailbox) whose cursor moves
    advance: Callable[[Cursor | None], Cursor] | None = None


class DatabaseUnavailable(RuntimeError):
    """The database kept failing after every retry."""


class Store:
    """One connection, re-opened when it drops; ``transact`` retries a whole transaction."""

    def __init__(self, url: str, attempts: int = 5, first_delay: float = 0.5,
                 statement_timeout_ms: int = STATEMENT_TIMEOUT_MS) -> None:
        self._url = url
        self._attempts = attempts
        self._first_delay = first_delay
        self._options = connect_options(url, statement_timeout_ms)
        self._conn: psycopg.Connection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._url, **self._options)
        return self._conn

    def _retrying(self, work: Callable[[], T]) -> T:
        delay = self._first_delay
        for attempt in range(1, self._attempts + 1):
            try:
                return work()
            except TRANSIENT_ERRORS as exc:
                self.close()
                if attempt == self._attempts:
                    raise DatabaseUnavailable(f"database error after {attempt} tries: {exc}") from exc
                log.warning("transient database error, retrying in %.1fs: %s", delay, exc)
                time.sleep(delay)
                delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")

    def transact(self, work: Callable[[psycopg.Connection], T]) -> T:
        """Run ``work`` in a transaction; on a transient error reconnect and run it again."""
        def once() -> T:
            conn = self._connection()
            with conn.transaction():
                return work(conn)
        return self._retrying(once)

    def migrate(self) -> list[str]:
        """Apply the schema migrations. Never called by a worker attempt (the operator applies them,
        and a worker's role has no DDL); for tools and tests that prepare a database themselves."""
        return self._retrying(lambda: migrations.apply_all(self._connection()))

    # --- the cursor -------------------------------------------------------------------------------
    def cursor(self, business_id: str, mailbox: str) -> Cursor | None:
        return self.transact(lambda conn: _read_cursor(conn, business_id, mailbox, lock=False))

    def quarantined_ids(self, business_id: str) -> set[str]:
        return self.transact(lambda conn: {row[0] for row in conn.execute(
            "SELECT gmail_message_id FROM message_failures WHERE business_id = %s AND quarantined_at IS NOT NULL",
            (business_id,))})

    # --- runs -------------------------------------------------------------------------------------
    def run_started(self, run: RunRecord) -> int:
        """Open (or re-open) the attempt's row. In the same transaction, earlier attempts of the same
        run still ``Started`` are closed as ``Lost`` (reason WorkerLost): a new attempt exists only
        because the operator gave up on them, and a killed worker never closes its own row. Returns
        how many rows were closed so."""

        def write(conn: psycopg.Connection) -> int:
            lost = conn.execute(
                "UPDATE sync_runs SET status = %s, reason = %s, finished_at = %s, error = %s"
                " WHERE run_key = %s AND attempt < %s AND job_id <> %s AND status = %s",
                (STATUS_LOST, REASON_WORKER_LOST, run.started_at,
                 f"the worker of this attempt ended without closing it; attempt {run.attempt} took over",
                 run.run_key, run.attempt, run.job_id, STATUS_STARTED),
            ).rowcount
            conn.execute(
                "INSERT INTO sync_runs (job_id, run_key, business_id, namespace, name, run_id, attempt, mode,"
                " date_from, date_to, started_at, status, mailbox, window_key)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (job_id) DO UPDATE SET started_at = EXCLUDED.started_at, status = EXCLUDED.status,"
                " date_from = EXCLUDED.date_from, date_to = EXCLUDED.date_to, finished_at = NULL,"
                " reason = NULL, error = NULL, mailbox = EXCLUDED.mailbox, window_key = EXCLUDED.window_key",
                (run.job_id, run.run_key, run.business_id, run.namespace, run.name, run.run_id, run.attempt, run.mode,
                 run.date_from, run.date_to, run.started_at, STATUS_STARTED, run.mailbox, run.window_key),
            )
            return lost

        lost = self.transact(write)
        if lost:
            log.info("closed %d earlier attempt(s) of run %s as %s", lost, run.run_key, STATUS_LOST)
        return lost

    def run_finished(self, end: RunEnd) -> None:
        """Close the attempt's row with its outcome (the durable record the operator can read when the
        final heartbeat is lost). In the same transaction, a run that finished its window drops the
        window's checkpoints, and a covering run moves its mailbox's cursor, so the cursor never runs
        ahead of the data."""

        def write(conn: psycopg.Connection) -> None:
            conn.execute(
                "UPDATE sync_runs SET finished_at = now(), status = %s, reason = %s, error = %s,"
                " used_history = %s, outcome_message = %s, capped = %s, quarantined_messages = %s"
                " WHERE job_id = %s",
                (end.status, end.reason, end.error, end.used_history, end.message, end.capped, end.quarantined,
                 end.job_id),
            )
            if end.cursor_key is not None and end.advance is not None:
                business_id, mailbox = end.cursor_key
                moved = end.advance(_read_cursor(conn, business_id, mailbox, lock=True))
                _write_cursor(conn, business_id, mailbox, moved, end.job_id)
            if end.window_done is not None:
                conn.execute("DELETE FROM sync_checkpoints WHERE window_key = %s", (end.window_done,))

        self.transact(write)

    def resume_point(self, window_key: str, run_key: str, job_id: str) -> Resume:
        def read(conn: psycopg.Connection) -> Resume:
            done: set[str] = set()
            by_run = 0
            for message_id, its_run in conn.execute(
                    "SELECT gmail_message_id, run_key FROM sync_checkpoints WHERE window_key = %s", (window_key,)):
                done.add(message_id)
                by_run += its_run == run_key
            scanned, saved = conn.execute(
                "SELECT COALESCE(SUM(messages_scanned), 0), COALESCE(SUM(saved_receipts), 0)"
                " FROM sync_runs WHERE run_key = %s AND job_id <> %s", (run_key, job_id)).fetchone()
            return Resume(done, by_run, int(scanned), int(saved))

        return self.transact(read)

    # --- receipts ---------------------------------------------------------------------------------
    def existing_message_ids(self, business_id: str, message_ids: Iterable[str]) -> set[str]:
        ids = list(message_ids)
        if not ids:
            return set()
        return self.transact(lambda conn: {row[0] for row in conn.execute(
            "SELECT gmail_message_id FROM receipts WHERE business_id = %s AND gmail_message_id = ANY(%s)",
            (business_id, ids))})

    def save_batch(self, batch: SavedBatch) -> int:
        """:meth:`save`; returns how many receipts are new."""
        return self.save(batch).new

    def save(self, batch: SavedBatch) -> Totals:
        """In one transaction: upsert the receipts and their attachments, mark the finished messages
        done in the window's checkpoint, record failed and skipped ones, and add to the attempt's
        counters only what this transaction newly inserted. Returns the attempt's totals."""
        window_key = batch.window_key or batch.run_key

        def write(conn: psycopg.Connection) -> Totals:
            new = save_receipts(conn, batch.business_id, batch.job_id, batch.receipts, batch.attachments)
            newly_done = 0
            if batch.done_message_ids:
                newly_done = len(conn.execute(
                    "INSERT INTO sync_checkpoints (window_key, run_key, business_id, gmail_message_id)"
                    " SELECT %s, %s, %s, unnest(%s::text[]) ON CONFLICT DO NOTHING RETURNING gmail_message_id",
                    (window_key, batch.run_key, batch.business_id,
                     list(dict.fromkeys(batch.done_message_ids)))).fetchall())
            if batch.failed:
                _record_failures(conn, batch.business_id, batch.job_id, batch.failed)
            skipped = json.dumps({**batch.skipped, **batch.failed})
            row = conn.execute(
                "UPDATE sync_runs SET messages_scanned = messages_scanned + %s, saved_receipts = saved_receipts + %s,"
                " skipped = skipped || %s::jsonb,"
                " skipped_messages = (SELECT count(*) FROM jsonb_object_keys(skipped || %s::jsonb))"
                " WHERE job_id = %s RETURNING messages_scanned, saved_receipts, skipped_messages",
                (newly_done, new, skipped, skipped, batch.job_id)).fetchone()
            return Totals(*row, new=new) if row else Totals(0, 0, 0, new)

        return self.transact(write)


def _read_cursor(conn: psycopg.Connection, business_id: str, mailbox: str, lock: bool) -> Cursor | None:
    row = conn.execute(
        "SELECT history_id, last_success_at, pending_history_id, pending_at FROM business_sync_state"
        " WHERE business_id = %s AND mailbox = %s" + (" FOR UPDATE" if lock else ""),
        (business_id, mailbox.lower())).fetchone()
    if row is None:
        return None
    as_int = (lambda value: int(value) if value is not None else None)
    return Cursor(as_int(row[0]), row[1], as_int(row[2]), row[3])


def _write_cursor(conn: psycopg.Connection, business_id: str, mailbox: str, cursor: Cursor, job_id: str) -> None:
    conn.execute(
        "INSERT INTO business_sync_state (business_id, mailbox, history_id, last_success_at, pending_history_id,"
        " pending_at, last_job_id) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (business_id, mailbox) DO UPDATE SET history_id = EXCLUDED.history_id,"
        " last_success_at = EXCLUDED.last_success_at, pending_history_id = EXCLUDED.pending_history_id,"
        " pending_at = EXCLUDED.pending_at, last_job_id = EXCLUDED.last_job_id, updated_at = now()",
        (business_id, mailbox.lower(), cursor.history_id, cursor.at, cursor.pending_history_id, cursor.pending_at,
         job_id))


def _record_failures(conn: psycopg.Connection, business_id: str, job_id: str, failed: dict[str, str]) -> None:
    """One try per attempt (a retried transaction of the same attempt does not count again); the
    message is quarantined when its tries reach MAX_EXTRACTION_TRIES."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO message_failures (business_id, gmail_message_id, tries, last_error, last_job_id)"
            " VALUES (%s, %s, 1, %s, %s)"
            " ON CONFLICT (business_id, gmail_message_id) DO UPDATE SET"
            " tries = message_failures.tries"
            " + (message_failures.last_job_id IS DISTINCT FROM EXCLUDED.last_job_id)::int,"
            " last_error = EXCLUDED.last_error, last_job_id = EXCLUDED.last_job_id, last_failed_at = now()",
            [(business_id, message_id, error[:500], job_id) for message_id, error in failed.items()])
        cur.execute(
            "UPDATE message_failures SET quarantined_at = now() WHERE business_id = %s"
            " AND gmail_message_id = ANY(%s) AND tries >= %s AND quarantined_at IS NULL",
            (business_id, list(failed), MAX_EXTRACTION_TRIES))
