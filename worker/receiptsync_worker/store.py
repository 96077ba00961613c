"""PostgreSQL: receipts, their attachments, one ``sync_runs`` row per attempt, per-business sync state.

Every write is one transaction made of idempotent upserts, so a retried transaction (after the
connection dropped) or a re-run of the same messages never duplicates a row.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from decimal import Decimal
from typing import Callable, Iterable, TypeVar

import psycopg

from receiptsync_common import contract

from . import migrations

T = TypeVar("T")
log = logging.getLogger(__name__)

TRANSIENT_ERRORS = (psycopg.OperationalError, psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)

# sync_runs.status: Started while the attempt runs; Finished or Failed (the attempt's phase) when it
# ends; Lost when a later attempt of the same run started while this one was still Started (its
# worker was killed or vanished before closing the row) - then reason is WorkerLost.
STATUS_STARTED = "Started"
STATUS_LOST = "Lost"
REASON_WORKER_LOST = contract.REASON_WORKER_LOST


@dataclasses.dataclass(frozen=True)
class ReceiptRow:
    gmail_message_id: str
    gmail_thread_id: str | None
    subject: str
    sender: str
    sender_email: str
    received_at: dt.datetime
    amount: Decimal | None
    currency: str | None
    amount_source: str | None
    attachment_count: int


@dataclasses.dataclass(frozen=True)
class AttachmentRow:
    gmail_message_id: str
    part_id: str
    filename: str
    mime_type: str
    size_bytes: int
    sha256: str
    content: bytes


@dataclasses.dataclass(frozen=True)
class BusinessState:
    mailbox: str
    history_id: int | None
    last_success_at: dt.datetime | None


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


class DatabaseUnavailable(RuntimeError):
    """The database kept failing after every retry."""


class Store:
    """One connection, re-opened when it drops; ``transact`` retries a whole transaction."""

    def __init__(self, url: str, attempts: int = 5, first_delay: float = 0.5) -> None:
        self._url = url
        self._attempts = attempts
        self._first_delay = first_delay
        self._conn: psycopg.Connection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._url, autocommit=True, connect_timeout=10)
        return self._conn

    def transact(self, work: Callable[[psycopg.Connection], T]) -> T:
        """Run ``work`` in a transaction; on a transient error reconnect and run it again."""
        delay = self._first_delay
        for attempt in range(1, self._attempts + 1):
            try:
                conn = self._connection()
                with conn.transaction():
                    return work(conn)
            except TRANSIENT_ERRORS as exc:
                self.close()
                if attempt == self._attempts:
                    raise DatabaseUnavailable(f"database error after {attempt} tries: {exc}") from exc
                log.warning("transient database error, retrying in %.1fs: %s", delay, exc)
                time.sleep(delay)
                delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")

    # --- schema -----------------------------------------------------------------------------------
    def migrate(self) -> list[str]:
        delay = self._first_delay
        for attempt in range(1, self._attempts + 1):
            try:
                return migrations.apply_all(self._connection())
            except TRANSIENT_ERRORS as exc:
                self.close()
                if attempt == self._attempts:
                    raise DatabaseUnavailable(f"database error after {attempt} tries: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")

    # --- runs and state ---------------------------------------------------------------------------
    def business_state(self, business_id: str) -> BusinessState | None:
        def read(conn: psycopg.Connection) -> BusinessState | None:
            row = conn.execute(
                "SELECT mailbox, history_id, last_success_at FROM business_sync_state WHERE business_id = %s",
                (business_id,),
            ).fetchone()
            if row is None:
                return None
            return BusinessState(row[0], int(row[1]) if row[1] is not None else None, row[2])

        return self.transact(read)

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
                " date_from, date_to, started_at, status)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (job_id) DO UPDATE SET started_at = EXCLUDED.started_at, status = EXCLUDED.status,"
                " date_from = EXCLUDED.date_from, date_to = EXCLUDED.date_to, finished_at = NULL,"
                " reason = NULL, error = NULL",
                (run.job_id, run.run_key, run.business_id, run.namespace, run.name, run.run_id, run.attempt, run.mode,
                 run.date_from, run.date_to, run.started_at, STATUS_STARTED),
            )
            return lost

        lost = self.transact(write)
        if lost:
            log.info("closed %d earlier attempt(s) of run %s as %s", lost, run.run_key, STATUS_LOST)
        return lost

    def run_finished(
        self,
        *,
        job_id: str,
        status: str,
        reason: str,
        error: str | None,
        used_history: bool,
        success_state: tuple[str, str, int | None, dt.datetime] | None = None,
        run_key: str | None = None,
    ) -> None:
        """Close the attempt's row. On success also advance the business state (business_id, mailbox,
        history_id, since) and drop the run's checkpoint, in the same transaction, so the state never
        runs ahead of the data."""

        def write(conn: psycopg.Connection) -> None:
            conn.execute(
                "UPDATE sync_runs SET finished_at = now(), status = %s, reason = %s, error = %s,"
                " used_history = %s WHERE job_id = %s",
                (status, reason, error, used_history, job_id),
            )
            if success_state is not None:
                business_id, mailbox, history_id, since = success_state
                conn.execute(
                    "INSERT INTO business_sync_state (business_id, mailbox, history_id, last_success_at, last_job_id)"
                    " VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (business_id) DO UPDATE SET mailbox = EXCLUDED.mailbox,"
                    " history_id = CASE WHEN business_sync_state.mailbox = EXCLUDED.mailbox"
                    "   THEN GREATEST(business_sync_state.history_id, EXCLUDED.history_id)"
                    "   ELSE EXCLUDED.history_id END,"
                    " last_success_at = GREATEST(business_sync_state.last_success_at, EXCLUDED.last_success_at),"
                    " last_job_id = EXCLUDED.last_job_id, updated_at = now()",
                    (business_id, mailbox, history_id, since, job_id),
                )
            if run_key is not None:
                conn.execute("DELETE FROM sync_checkpoints WHERE run_key = %s", (run_key,))

        self.transact(write)

    def resume_point(self, run_key: str, job_id: str) -> tuple[set[str], int, int]:
        """(message ids the run already finished, messages scanned and receipts saved by its
        earlier attempts)."""

        def read(conn: psycopg.Connection) -> tuple[set[str], int, int]:
            done = {row[0] for row in conn.execute(
                "SELECT gmail_message_id FROM sync_checkpoints WHERE run_key = %s", (run_key,))}
            scanned, saved = conn.execute(
                "SELECT COALESCE(SUM(messages_scanned), 0), COALESCE(SUM(saved_receipts), 0)"
                " FROM sync_runs WHERE run_key = %s AND job_id <> %s", (run_key, job_id)).fetchone()
            return done, int(scanned), int(saved)

        return self.transact(read)

    # --- receipts ---------------------------------------------------------------------------------
    def existing_message_ids(self, business_id: str, message_ids: Iterable[str]) -> set[str]:
        ids = list(message_ids)
        if not ids:
            return set()
        return self.transact(
            lambda conn: {
                row[0]
                for row in conn.execute(
                    "SELECT gmail_message_id FROM receipts WHERE business_id = %s AND gmail_message_id = ANY(%s)",
                    (business_id, ids),
                )
            }
        )

    def save_batch(self, batch: "SavedBatch") -> int:
        """In one transaction: upsert the receipts and their attachments, mark every message of the
        batch done in the run's checkpoint, and add to the attempt's counters. Returns how many
        receipts are new."""

        def write(conn: psycopg.Connection) -> int:
            new = _save_receipts(conn, batch.business_id, batch.job_id, batch.receipts, batch.attachments)
            if batch.done_message_ids:
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO sync_checkpoints (run_key, gmail_message_id) VALUES (%s, %s)"
                        " ON CONFLICT DO NOTHING",
                        [(batch.run_key, message_id) for message_id in batch.done_message_ids],
                    )
            conn.execute(
                "UPDATE sync_runs SET messages_scanned = messages_scanned + %s,"
                " saved_receipts = saved_receipts + %s WHERE job_id = %s",
                (len(batch.done_message_ids), new, batch.job_id),
            )
            return new

        return self.transact(write)


@dataclasses.dataclass(frozen=True)
class SavedBatch:
    business_id: str
    job_id: str
    run_key: str
    receipts: list[ReceiptRow]
    attachments: list[AttachmentRow]
    done_message_ids: list[str]  # every message examined, receipt or not (deleted ones too)


def _save_receipts(
    conn: psycopg.Connection,
    business_id: str,
    job_id: str,
    receipts: list[ReceiptRow],
    attachments: list[AttachmentRow],
) -> int:
    if not receipts:
        return 0
    # COPY into a scratch table, then one INSERT ... ON CONFLICT: fast and idempotent.
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS batch_receipts (business_id text, gmail_message_id text,"
        " gmail_thread_id text, subject text, sender text, sender_email text, received_at timestamptz,"
        " amount numeric, currency text, amount_source text, attachment_count integer, first_job_id text)"
        " ON COMMIT DELETE ROWS"
    )
    with conn.cursor().copy(
        "COPY batch_receipts (business_id, gmail_message_id, gmail_thread_id, subject, sender, sender_email,"
        " received_at, amount, currency, amount_source, attachment_count, first_job_id) FROM STDIN"
    ) as copy:
        for r in receipts:
            copy.write_row((business_id, r.gmail_message_id, r.gmail_thread_id, r.subject, r.sender,
                            r.sender_email, r.received_at, r.amount, r.currency, r.amount_source,
                            r.attachment_count, job_id))
    rows = conn.execute(
        "INSERT INTO receipts (business_id, gmail_message_id, gmail_thread_id, subject, sender, sender_email,"
        " received_at, amount, currency, amount_source, attachment_count, first_job_id)"
        " SELECT DISTINCT ON (gmail_message_id) business_id, gmail_message_id, gmail_thread_id, subject, sender,"
        " sender_email, received_at, amount, currency, amount_source, attachment_count, first_job_id"
        " FROM batch_receipts ORDER BY gmail_message_id"
        " ON CONFLICT (business_id, gmail_message_id) DO UPDATE SET"
        " subject = EXCLUDED.subject, sender = EXCLUDED.sender, sender_email = EXCLUDED.sender_email,"
        " received_at = EXCLUDED.received_at, amount = EXCLUDED.amount, currency = EXCLUDED.currency,"
        " amount_source = EXCLUDED.amount_source, attachment_count = EXCLUDED.attachment_count"
        " RETURNING (xmax = 0) AS inserted"
    ).fetchall()
    if attachments:
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS batch_attachments (business_id text, gmail_message_id text,"
            " part_id text, filename text, mime_type text, size_bytes integer, sha256 text, content bytea)"
            " ON COMMIT DELETE ROWS"
        )
        with conn.cursor().copy(
            "COPY batch_attachments (business_id, gmail_message_id, part_id, filename, mime_type, size_bytes,"
            " sha256, content) FROM STDIN"
        ) as copy:
            for a in attachments:
                copy.write_row((business_id, a.gmail_message_id, a.part_id, a.filename, a.mime_type,
                                a.size_bytes, a.sha256, a.content))
        conn.execute(
            "INSERT INTO receipt_attachments (business_id, gmail_message_id, part_id, filename, mime_type,"
            " size_bytes, sha256, content)"
            " SELECT DISTINCT ON (gmail_message_id, part_id) business_id, gmail_message_id, part_id, filename,"
            " mime_type, size_bytes, sha256, content FROM batch_attachments ORDER BY gmail_message_id, part_id"
            " ON CONFLICT (business_id, gmail_message_id, part_id) DO NOTHING"
        )
    return sum(1 for (inserted,) in rows if inserted)
