"""One chunk of message ids → receipt rows ready to save: messages.get in a batch, then the kept
attachments with attachments.get in size-bounded batches, then extraction.

Nothing is dropped silently: a message whose extraction fails is reported in ``failed`` (not marked
done, so a later attempt tries again until it is quarantined), and one saved without part of its
content (an attachment too large or gone, a PDF whose text could not be read) in ``skipped``.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Callable, Iterator

from . import attachments as attachment_bytes
from .extract import MessageFields, decode_body_data, find_money, normalize_amount, read_message
from .gmail_client import GmailClient, Stopped
from .pdfguard import PdfGuard
from .store import AttachmentRow, ReceiptRow

log = logging.getLogger(__name__)
MiB = 1024 * 1024
PdfText = Callable[[bytes], tuple[str, "str | None"]]


@dataclasses.dataclass
class FetchedChunk:
    message_ids: list[str]  # the ids finished by this chunk (failed ones are not)
    receipts: list[ReceiptRow]
    attachments: list[AttachmentRow]
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)  # id -> reason (saved incompletely)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)  # id -> error (not saved)
    held_bytes: int = 0  # attachment bytes reserved in the pipeline's budget until saved


@dataclasses.dataclass(frozen=True)
class FetchLimits:
    max_attachment_bytes: int = 10 * MiB  # larger attachments are not downloaded (Gmail's own cap is 25 MB)
    batch_bytes: int = 8 * MiB  # attachments.get batches are cut at this many declared bytes


_default_guard: PdfGuard | None = None
_guard_lock = threading.Lock()


def default_pdf_text(content: bytes) -> tuple[str, str | None]:
    global _default_guard
    with _guard_lock:
        if _default_guard is None:
            _default_guard = PdfGuard()
    return _default_guard.text(content)


def fetch_chunk(client: GmailClient, message_ids: list[str], batch_size: int, limits: FetchLimits = FetchLimits(),
                pdf_text: PdfText = default_pdf_text,
                reserve_bytes: Callable[[int], bool] = lambda amount: True) -> FetchedChunk:
    messages = client.messages(message_ids)
    chunk = FetchedChunk(message_ids=[], receipts=[], attachments=[])
    fields: list[MessageFields] = []
    for message_id in message_ids:
        message = messages.get(message_id)
        if message is None:
            chunk.message_ids.append(message_id)  # deleted between list and get: nothing to save
            continue
        try:
            fields.append(read_message(message))
        except Exception as exc:  # noqa: BLE001 - one bad message must not fail the attempt
            _failed(chunk, message_id, "unreadable", exc)
    wanted = plan_downloads(fields, limits.max_attachment_bytes, chunk.skipped)
    contents: dict[tuple[str, str], bytes] = {}
    for group in group_by_bytes(wanted, batch_size, limits.batch_bytes):
        declared = sum(size for _, size in group)
        if not reserve_bytes(declared):
            raise Stopped()
        chunk.held_bytes += declared
        keys = [key for key, _ in group]
        for key, data in client.attachments(keys).items():
            contents[key] = decode_body_data(data)
    for message in fields:
        try:
            rows = list(_attachment_rows(message, contents, chunk.skipped))
            chunk.receipts.append(receipt_row(message, rows, pdf_text, chunk.skipped))
            chunk.attachments.extend(rows)
            chunk.message_ids.append(message.message_id)
        except Exception as exc:  # noqa: BLE001
            chunk.skipped.pop(message.message_id, None)
            _failed(chunk, message.message_id, "extraction_failed", exc)
    return chunk


def _failed(chunk: FetchedChunk, message_id: str, reason: str, exc: BaseException) -> None:
    chunk.failed[message_id] = f"{reason}: {type(exc).__name__}"
    log.warning("message %s: %s (%s)", message_id, reason, type(exc).__name__)


def plan_downloads(fields: list[MessageFields], max_bytes: int,
                   skipped: dict[str, str]) -> list[tuple[tuple[str, str], int]]:
    """((message id, attachment id), declared size) to download; oversized parts are noted in
    ``skipped`` instead (pure apart from that)."""
    wanted = []
    for message in fields:
        for part in message.attachments:
            if part.inline_data is not None or not part.attachment_id:
                continue
            if part.size > max_bytes:
                skipped[message.message_id] = "attachment_too_large"
                continue
            wanted.append(((message.message_id, part.attachment_id), part.size))
    return wanted


def group_by_bytes(items: list[tuple[tuple[str, str], int]], max_items: int, max_bytes: int) -> Iterator[list]:
    """Consecutive groups of at most ``max_items`` whose sizes add up to at most ``max_bytes`` (an
    item larger than that goes alone)."""
    group: list = []
    total = 0
    for item in items:
        if group and (len(group) >= max_items or total + item[1] > max_bytes):
            yield group
            group, total = [], 0
        group.append(item)
        total += item[1]
    if group:
        yield group


def _attachment_rows(message: MessageFields, contents: dict[tuple[str, str], bytes],
                     skipped: dict[str, str]) -> Iterator[AttachmentRow]:
    for part in message.attachments:
        content = (part.inline_data if part.inline_data is not None
                   else contents.get((message.message_id, part.attachment_id or "")))
        if content is None:
            skipped.setdefault(message.message_id, "attachment_missing")
            continue
        yield AttachmentRow(
            gmail_message_id=message.message_id,
            part_id=part.part_id,
            filename=part.filename,
            mime_type=part.mime_type,
            size_bytes=len(content),
            sha256=attachment_bytes.sha256_hex(content),
            content=content,
        )


def receipt_row(message: MessageFields, attachments: list[AttachmentRow], pdf_text: PdfText = default_pdf_text,
                skipped: dict[str, str] | None = None) -> ReceiptRow:
    def pdf_texts() -> Iterator[str]:  # read only when subject and body named no amount
        for row in attachments:
            if attachment_bytes.is_pdf(row.mime_type, row.content):
                text, problem = pdf_text(row.content)
                if problem and skipped is not None:
                    skipped.setdefault(message.message_id, f"pdf_{problem}")
                yield text

    money, source = find_money(message.subject, message.body_text, pdf_texts())
    return ReceiptRow(
        gmail_message_id=message.message_id,
        gmail_thread_id=message.thread_id,
        subject=message.subject,
        sender=message.sender,
        sender_email=message.sender_email,
        received_at=message.received_at,
        amount=normalize_amount(money.amount) if money else None,
        currency=money.currency if money else None,
        amount_source=source,
        attachment_count=len(attachments),
    )
