"""A stored message rendered as Gmail's Message resource in the formats messages.get offers.

int64 fields (historyId, internalDate) are JSON strings, as Google's APIs send them; body data is
base64url with padding; parts with a file name (or non-text leaves) carry an attachmentId instead.
"""
from __future__ import annotations

import base64
from typing import Any, Iterable

from .mailbox import Mailbox
from .message import Part, StoredMessage

FORMATS = ("full", "metadata", "minimal", "raw")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def message_reference(mailbox: Mailbox, message: StoredMessage) -> dict[str, str]:
    """``{"id", "threadId"}`` as messages.list and history.list return them."""
    return {"id": message.id, "threadId": mailbox.thread_id(message)}


def render(mailbox: Mailbox, message: StoredMessage, fmt: str, metadata_headers: Iterable[str] = ()) -> dict[str, Any]:
    resource: dict[str, Any] = {
        **message_reference(mailbox, message),
        "labelIds": list(message.labels),
        "snippet": message.snippet,
        "sizeEstimate": len(message.raw),
        "historyId": str(message.history_id),
        "internalDate": str(message.internal_ms),
    }
    if fmt == "raw":
        resource["raw"] = b64url(message.raw)
    elif fmt == "metadata":
        resource["payload"] = _metadata_payload(message.root, metadata_headers)
    elif fmt == "full":
        resource["payload"] = _full_part(message.root)
    return resource


def _metadata_payload(root: Part, wanted: Iterable[str]) -> dict[str, Any]:
    names = {name.lower() for name in wanted}
    headers = [header for header in root.headers if not names or header[0].lower() in names]
    return {"mimeType": root.mime_type, "headers": _headers(headers)}


def _full_part(part: Part) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "partId": part.part_id,
        "mimeType": part.mime_type,
        "filename": part.filename,
        "headers": _headers(part.headers),
        "body": _body(part),
    }
    if part.parts:
        rendered["parts"] = [_full_part(child) for child in part.parts]
    return rendered


def _body(part: Part) -> dict[str, Any]:
    if part.parts:
        return {"size": 0}
    if part.attachment_id:
        return {"attachmentId": part.attachment_id, "size": len(part.content)}
    body: dict[str, Any] = {"size": len(part.content)}
    if part.content:
        body["data"] = b64url(part.content)
    return body


def _headers(headers: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in headers]


def attachment(data: bytes) -> dict[str, Any]:
    """users.messages.attachments.get: the MessagePartBody of one attachment."""
    return {"size": len(data), "data": b64url(data)}
