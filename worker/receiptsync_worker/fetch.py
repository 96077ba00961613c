"""One chunk of message ids → receipt rows ready to save: messages.get in a batch, then the kept
attachments with attachments.get in a batch, then extraction."""
from __future__ import annotations

import dataclasses
import logging
from typing import Iterator

from . import attachments as attachment_bytes
from .extract import MessageFields, decode_body_data, find_money, normalize_amount, read_message
from .gmail_client import GmailClient
from .store import AttachmentRow, ReceiptRow

log = logging.getLogger(__name__)


@dataclasses.dataclass
class FetchedChunk:
    message_ids: list[str]  # every id of the chunk: all are done once this chunk is saved
    receipts: list[ReceiptRow]
    attachments: list[AttachmentRow]


def fetch_chunk(client: GmailClient, message_ids: list[str], batch_size: int) -> FetchedChunk:
    messages = client.messages(message_ids)
    fields: list[MessageFields] = []
    for message_id in message_ids:
        message = messages.get(message_id)
        if message is None:
            continue  # deleted between list and get: nothing to save
        try:
            fields.append(read_message(message))
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("skipping unreadable message %s: %s", message_id, exc)
    contents = _attachment_contents(client, fields, batch_size)
    chunk = FetchedChunk(message_ids=list(message_ids), receipts=[], attachments=[])
    for message in fields:
        rows = [row for row in _attachment_rows(message, contents)]
        chunk.receipts.append(receipt_row(message, rows))
        chunk.attachments.extend(rows)
    return chunk


def _attachment_contents(client: GmailClient, fields: list[MessageFields], batch_size: int) -> dict[tuple[str, str], bytes]:
    wanted = [(m.message_id, part.attachment_id) for m in fields for part in m.attachments
              if part.inline_data is None and part.attachment_id]
    contents: dict[tuple[str, str], bytes] = {}
    for start in range(0, len(wanted), batch_size):
        for key, data in client.attachments(wanted[start : start + batch_size]).items():
            contents[key] = decode_body_data(data)
    return contents


def _attachment_rows(message: MessageFields, contents: dict[tuple[str, str], bytes]) -> Iterator[AttachmentRow]:
    for part in message.attachments:
        content = part.inline_data if part.inline_data is not None else contents.get((message.message_id, part.attachment_id or ""))
        if content is None:
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


def receipt_row(message: MessageFields, attachments: list[AttachmentRow]) -> ReceiptRow:
    pdf_texts = (attachment_bytes.pdf_text(a.content) for a in attachments
                 if attachment_bytes.is_pdf(a.mime_type, a.content))
    money, source = find_money(message.subject, message.body_text, pdf_texts)
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
