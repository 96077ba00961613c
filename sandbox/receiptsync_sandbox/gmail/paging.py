"""Opaque page tokens: where the next page starts, and what search it belongs to.

messages.list resumes after the last (internalDate, historyId) it returned rather than at an
offset, so mail arriving between pages neither repeats nor skips older results.
"""
from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from .errors import invalid_argument


def search_fingerprint(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


def encode_token(position: Any, fingerprint: str) -> str:
    payload = json.dumps({"p": position, "f": fingerprint}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def decode_token(token: str, fingerprint: str) -> Any:
    """The position stored in ``token``; 400 if it is garbage or from another search."""
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
        position, stored_fingerprint = payload["p"], payload["f"]
    except Exception:
        raise invalid_argument("Invalid pageToken") from None
    if stored_fingerprint != fingerprint:
        raise invalid_argument("Invalid pageToken: it belongs to a different request")
    return position
