"""Attachment bytes → what we store (size, sha256); PDF text is read by :mod:`.pdfguard`."""
from __future__ import annotations

import hashlib


def sha256_hex(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def is_pdf(mime_type: str, content: bytes) -> bool:
    return mime_type == "application/pdf" or content.startswith(b"%PDF-")
