"""Attachment bytes for sample mail: PDF documents (reportlab) and small PNG images.

Both are byte-for-byte deterministic for the same inputs (reportlab's ``invariant`` mode drops the
creation time and random document id), so sample mailboxes and their sha256 ground truth repeat.
"""
from __future__ import annotations

import io
import random
import struct
import zlib

from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas


def pdf_document(lines: list[str], title: str = "") -> bytes:
    """A one-page PDF whose extractable text is ``lines`` (Latin-1 range: standard fonts only)."""
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=A4, invariant=1)
    page.setTitle(title)
    page.setFont("Helvetica-Bold", 16)
    y = 780
    for index, line in enumerate(lines):
        page.drawString(60, y, line)
        if index == 0:
            page.setFont("Helvetica", 11)
        y -= 24 if index == 0 else 16
    page.showPage()
    page.save()
    return buffer.getvalue()


def png_image(rng: random.Random, width: int = 48, height: int = 32) -> bytes:
    """A small RGB PNG of noise over a paper-white background (a "photo of a receipt")."""
    rows = []
    for _ in range(height):
        pixels = bytearray()
        for _ in range(width):
            shade = 230 + rng.randrange(26) if rng.random() < 0.8 else rng.randrange(80)
            pixels += bytes((shade, shade, shade))
        rows.append(b"\x00" + bytes(pixels))  # filter type 0 per row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) \
        + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
