"""What a receipt is made of, read from a Gmail ``users.messages.get`` (format=full) resource.

Pure functions over the JSON Gmail returns: headers (MIME encoded words decoded), received time
(``internalDate``), readable body text (text/plain preferred, HTML reduced to text), the
attachment parts worth keeping (PDF, images), and the amount/currency found in subject, then body,
then PDF text.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import email.errors
import email.header
import email.utils
import html.parser
import re
from decimal import Decimal
from typing import Any, Iterable, Iterator

from .money import Money, best_amount

KEPT_ATTACHMENT_TYPES = ("application/pdf", "image/")
# Files named *.pdf sent as application/octet-stream still count as PDFs.
_PDF_NAME = re.compile(r"\.pdf$", re.IGNORECASE)
_IMAGE_NAME = re.compile(r"\.(png|jpe?g|gif|webp|heic|tiff?)$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class AttachmentPart:
    part_id: str
    filename: str
    mime_type: str
    size: int
    attachment_id: str | None  # fetch with attachments.get when set
    inline_data: bytes | None  # small parts arrive inline in the message


@dataclasses.dataclass(frozen=True)
class MessageFields:
    message_id: str
    thread_id: str | None
    history_id: str | None
    subject: str
    sender: str  # decoded From header as written ("Name <addr>")
    sender_email: str
    received_at: dt.datetime  # aware, UTC
    body_text: str
    attachments: tuple[AttachmentPart, ...]


def read_message(message: dict[str, Any]) -> MessageFields:
    payload = message.get("payload") or {}
    headers = header_map(payload.get("headers") or [])
    sender = decode_header_value(headers.get("from", ""))
    return MessageFields(
        message_id=message["id"],
        thread_id=message.get("threadId"),
        history_id=message.get("historyId"),
        subject=decode_header_value(headers.get("subject", "")),
        sender=sender,
        sender_email=email.utils.parseaddr(sender)[1].lower(),
        received_at=received_at(message, headers),
        body_text=body_text(payload),
        attachments=tuple(attachment_parts(payload)),
    )


def header_map(headers: Iterable[dict[str, str]]) -> dict[str, str]:
    """Lower-cased header name → first value."""
    found: dict[str, str] = {}
    for header in headers:
        found.setdefault(str(header.get("name", "")).lower(), str(header.get("value", "")))
    return found


def decode_header_value(value: str) -> str:
    """RFC 2047 encoded words (``=?utf-8?b?...?=``) → text; plain values pass through."""
    if "=?" not in value:
        return " ".join(value.split())
    try:
        return " ".join(str(email.header.make_header(email.header.decode_header(value))).split())
    except (email.errors.HeaderParseError, LookupError, UnicodeDecodeError, ValueError):
        return " ".join(value.split())


def received_at(message: dict[str, Any], headers: dict[str, str]) -> dt.datetime:
    """Gmail's ``internalDate`` (ms since epoch); the Date header only if that is missing."""
    internal = message.get("internalDate")
    if internal is not None:
        return dt.datetime.fromtimestamp(int(internal) / 1000, tz=dt.timezone.utc)
    parsed = email.utils.parsedate_to_datetime(headers["date"]) if headers.get("date") else None
    if parsed is None:
        raise ValueError(f"message {message.get('id')} has neither internalDate nor Date")
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc)


def decode_body_data(data: str) -> bytes:
    """Gmail's base64url (padding optional) → bytes."""
    try:
        return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        return b""


def walk_parts(part: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield part
    for child in part.get("parts") or []:
        yield from walk_parts(child)


def body_text(payload: dict[str, Any]) -> str:
    """The message's readable text: its text/plain parts, else its text/html parts as text."""
    plain, markup = [], []
    for part in walk_parts(payload):
        if part.get("filename"):
            continue
        mime = (part.get("mimeType") or "").lower()
        data = (part.get("body") or {}).get("data")
        if not data or not mime.startswith("text/"):
            continue
        text = decode_body_data(data).decode(_charset(part), errors="replace")
        (markup if mime == "text/html" else plain).append(text)
    if plain:
        return "\n".join(plain)
    return "\n".join(html_to_text(m) for m in markup)


def _charset(part: dict[str, Any]) -> str:
    content_type = header_map(part.get("headers") or []).get("content-type", "")
    match = re.search(r'charset="?([\w.:-]+)"?', content_type, re.IGNORECASE)
    charset = match.group(1) if match else "utf-8"
    try:
        "".encode(charset)
        return charset
    except LookupError:
        return "utf-8"


class _TextCollector(html.parser.HTMLParser):
    _BLOCKS = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "table"}
    _CELLS = {"td", "th"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self._BLOCKS:
            self.chunks.append("\n")
        elif tag in self._CELLS:
            self.chunks.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1
        elif tag in self._BLOCKS:
            self.chunks.append("\n")
        elif tag in self._CELLS:
            self.chunks.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.chunks.append(data)


def html_to_text(markup: str) -> str:
    collector = _TextCollector()
    collector.feed(markup)
    collector.close()
    lines = (" ".join(line.split()) for line in "".join(collector.chunks).splitlines())
    return "\n".join(line for line in lines if line)


def is_kept_attachment(filename: str, mime_type: str) -> bool:
    mime = mime_type.lower()
    if any(mime.startswith(kind) for kind in KEPT_ATTACHMENT_TYPES):
        return True
    return bool(_PDF_NAME.search(filename) or _IMAGE_NAME.search(filename))


def attachment_parts(payload: dict[str, Any]) -> Iterator[AttachmentPart]:
    for index, part in enumerate(walk_parts(payload)):
        filename = part.get("filename") or ""
        mime_type = part.get("mimeType") or "application/octet-stream"
        body = part.get("body") or {}
        if not filename or not is_kept_attachment(filename, mime_type):
            continue
        inline = decode_body_data(body["data"]) if body.get("data") else None
        if body.get("attachmentId") is None and inline is None:
            continue
        yield AttachmentPart(
            part_id=str(part.get("partId") or index),
            filename=filename,
            mime_type=effective_mime_type(filename, mime_type),
            size=int(body.get("size") or (len(inline) if inline is not None else 0)),
            attachment_id=body.get("attachmentId"),
            inline_data=inline,
        )


def effective_mime_type(filename: str, mime_type: str) -> str:
    if mime_type.lower() == "application/octet-stream" and _PDF_NAME.search(filename):
        return "application/pdf"
    return mime_type.lower()


def find_money(subject: str, body: str, pdf_texts: Iterable[str]) -> tuple[Money | None, str | None]:
    """(amount, where it was found): subject first, then body, then each PDF's text."""
    for source, text in (("subject", subject), ("body", body)):
        money = best_amount(text)
        if money:
            return money, source
    for text in pdf_texts:
        money = best_amount(text)
        if money:
            return money, "pdf"
    return None, None


def normalize_amount(amount: Decimal) -> Decimal:
    """Two decimal places, as money is stored (an absurdly long number stays as it is; the store
    keeps no amount for it)."""
    try:
        return amount.quantize(Decimal("0.01"))
    except ArithmeticError:
        return amount
