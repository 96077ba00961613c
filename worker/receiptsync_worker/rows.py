"""Receipt and attachment rows, and the one statement pair that upserts a batch of them.

COPY into a scratch table, then one INSERT ... ON CONFLICT: fast and idempotent.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import psycopg

# receipts.amount is numeric(14, 2): a larger "amount" is a misread, stored as no amount rather
# than failing the whole batch transaction on every attempt.
MAX_AMOUNT = Decimal("999999999999.99")


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


def save_receipts(
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
            amount, currency, source = ((r.amount, r.currency, r.amount_source) if storable(r.amount)
                                        else (None, None, None))
            copy.write_row((business_id, r.gmail_message_id, r.gmail_thread_id, r.subject, r.sender,
                            r.sender_email, r.received_at, amount, currency, source,
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


def storable(amount: Decimal | None) -> bool:
    return amount is not None and amount.is_finite() and abs(amount) <= MAX_AMOUNT
