"""Attachment bytes → what we store (size, sha256) and what we read (PDF text for the amount)."""
from __future__ import annotations

import hashlib
import io
import logging

import pypdf
from pypdf.errors import PyPdfError

log = logging.getLogger(__name__)
# Enough for the totals on a receipt; long statements need not be read to the end.
MAX_PDF_PAGES = 5


def sha256_hex(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def is_pdf(mime_type: str, content: bytes) -> bool:
    return mime_type == "application/pdf" or content.startswith(b"%PDF-")


def pdf_text(content: bytes) -> str:
    """Text of the first pages ('' for a PDF pypdf cannot read: the receipt is still saved)."""
    try:
        reader = pypdf.PdfReader(io.BytesIO(content))
        return "\n".join((page.extract_text() or "") for page in reader.pages[:MAX_PDF_PAGES])
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        log.warning("could not read PDF text: %s", type(exc).__name__)
        return ""
