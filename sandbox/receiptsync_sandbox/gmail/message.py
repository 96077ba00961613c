"""One RFC 822 file parsed into what the API serves: ids, dates, the MIME part tree, search text.

Ids are derived from the file's name inside its mailbox folder, so they survive restarts (and the
sample generator can tell tests which id each sample gets).
"""
from __future__ import annotations

import base64
import datetime as dt
import email
import email.header
import email.utils
import hashlib
import re
from dataclasses import dataclass, field
from email import policy
from email.message import Message

from .query import SearchDoc
from .text import collapse_spaces, html_to_text

SNIPPET_LENGTH = 200
_FOLD = re.compile(r"\r?\n(?=[ \t])")


def message_id_for(file_name: str) -> str:
    """The Gmail id of the message stored as ``file_name`` (relative to its mailbox folder)."""
    return hashlib.sha1(file_name.encode("utf-8")).hexdigest()[:16]


def attachment_id_for(message_id: str, part_id: str) -> str:
    digest = hashlib.sha256(f"{message_id}/{part_id}".encode()).digest()
    return "ANGjdJ" + base64.urlsafe_b64encode(digest * 2).decode().rstrip("=")


@dataclass
class Part:
    part_id: str
    mime_type: str
    filename: str
    headers: list[tuple[str, str]]
    content: bytes = b""  # decoded body of a leaf part
    charset: str = "utf-8"
    parts: list["Part"] = field(default_factory=list)
    attachment_id: str | None = None


@dataclass
class StoredMessage:
    id: str
    file_name: str
    raw: bytes
    internal_ms: int
    root: Part
    snippet: str
    search: SearchDoc
    message_id_header: str
    thread_key: str | None  # Message-ID of the thread's first message, from References/In-Reply-To
    attachments: dict[str, bytes]
    labels: tuple[str, ...] = ("INBOX",)
    history_id: int = 0
    arrived_at: float = 0.0  # time.monotonic() when the emulator first saw it (search index lag)

    def header(self, name: str) -> str:
        wanted = name.lower()
        return next((value for key, value in self.root.headers if key.lower() == wanted), "")


def parse_message(file_name: str, raw: bytes, fallback_ms: int) -> StoredMessage:
    """Parse ``raw``; ``fallback_ms`` (the file's mtime) stands in for a missing/broken Date."""
    # compat32 is several times faster than policy.default; headers are decoded by _header_text.
    parsed = email.message_from_bytes(raw, policy=policy.compat32)
    message_id = message_id_for(file_name)
    root = _part_tree(parsed, "", message_id)
    texts = _body_texts(root)
    filenames = [part.filename for part in _leaves(root) if part.filename]
    headers = dict((key.lower(), value) for key, value in reversed(root.headers))
    internal_ms = _date_ms(headers.get("date", ""), fallback_ms)
    body_text = "\n".join(texts)
    search = SearchDoc.build(
        internal_ms=internal_ms, subject=headers.get("subject", ""), sender=headers.get("from", ""),
        to=headers.get("to", ""), cc=headers.get("cc", ""), bcc=headers.get("bcc", ""), body=body_text,
        filenames=filenames, size=len(raw), message_id=headers.get("message-id", ""),
        list_id=headers.get("list-id", ""),
    )
    return StoredMessage(
        id=message_id, file_name=file_name, raw=raw, internal_ms=internal_ms, root=root,
        snippet=collapse_spaces(body_text)[:SNIPPET_LENGTH], search=search,
        message_id_header=headers.get("message-id", "").strip(),
        thread_key=_thread_key(headers), attachments=_attachment_bodies(root),
    )


def _part_tree(node: Message, part_id: str, message_id: str) -> Part:
    headers = [(key, _header_text(value)) for key, value in node.items()]
    part = Part(part_id=part_id, mime_type=node.get_content_type(), filename=_filename(node), headers=headers)
    if node.is_multipart():
        children = node.get_payload()
        prefix = f"{part_id}." if part_id else ""
        part.parts = [_part_tree(child, f"{prefix}{index}", message_id) for index, child in enumerate(children)]
        return part
    part.content = _decoded_content(node)
    part.charset = _charset(node)
    if part.filename or not part.mime_type.startswith("text/"):
        part.attachment_id = attachment_id_for(message_id, part_id)
    return part


def _header_text(value: object) -> str:
    """The header unfolded and decoded (RFC 2047 encoded words, raw UTF-8); as-is if undecodable."""
    if isinstance(value, email.header.Header):
        return _decode_words(str(value))
    text = _FOLD.sub("", str(value))
    if _has_surrogates(text):  # raw 8-bit header bytes: modern mailers send UTF-8
        text = text.encode("ascii", "surrogateescape").decode("utf-8", "replace")
    return _decode_words(text) if "=?" in text else text


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= char <= "\udcff" for char in text)


def _decode_words(raw: str) -> str:
    try:
        return str(email.header.make_header(email.header.decode_header(raw)))
    except Exception:  # a malformed encoded word: show it as it came
        return raw


def _filename(node: Message) -> str:
    try:
        name = node.get_filename() or ""
    except Exception:
        return ""
    return _header_text(name)


def _decoded_content(node: Message) -> bytes:
    try:
        payload = node.get_payload(decode=True)
    except Exception:
        payload = None
    return payload if isinstance(payload, bytes) else b""


def _leaves(part: Part) -> list[Part]:
    if not part.parts:
        return [part]
    return [leaf for child in part.parts for leaf in _leaves(child)]


def _body_texts(root: Part) -> list[str]:
    """Readable text of the non-attachment text parts (HTML reduced to its words)."""
    texts = []
    for leaf in _leaves(root):
        if leaf.filename or leaf.mime_type not in ("text/plain", "text/html"):
            continue
        text = decode_text(leaf)
        texts.append(html_to_text(text) if leaf.mime_type == "text/html" else text)
    return texts


def _charset(node: Message) -> str:
    try:
        return node.get_content_charset() or "utf-8"
    except Exception:
        return "utf-8"


def decode_text(part: Part) -> str:
    try:
        return part.content.decode(part.charset, errors="replace")
    except (LookupError, UnicodeError):  # a charset Python does not know, or one without 'replace'
        return part.content.decode("utf-8", errors="replace")


def _attachment_bodies(root: Part) -> dict[str, bytes]:
    return {leaf.attachment_id: leaf.content for leaf in _leaves(root) if leaf.attachment_id}


def _date_ms(value: str, fallback_ms: int) -> int:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return fallback_ms
    if parsed is None:
        return fallback_ms
    if parsed.tzinfo is None:  # "-0000": the sender did not know its zone; Gmail reads UTC
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return int(parsed.timestamp() * 1000)


def _thread_key(headers: dict[str, str]) -> str | None:
    references = headers.get("references", "").split()
    if references:
        return references[0]
    reply_to = headers.get("in-reply-to", "").split()
    return reply_to[0] if reply_to else None
