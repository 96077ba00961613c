"""Reading a Gmail message resource: headers, time, body text, attachments, amount source order."""
from __future__ import annotations

import base64
import datetime as dt
import email.header
from decimal import Decimal

from receiptsync_worker import extract


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def message(subject: str, parts: list[dict], sender: str = "Shop <billing@shop.example>") -> dict:
    return {
        "id": "m1", "threadId": "t1", "historyId": "77", "internalDate": "1717245296000",
        "payload": {"partId": "", "mimeType": "multipart/mixed", "filename": "",
                    "headers": [{"name": "From", "value": sender}, {"name": "Subject", "value": subject}],
                    "body": {"size": 0}, "parts": parts},
    }


def test_headers_time_and_plain_body():
    encoded_subject = email.header.Header("קבלה מספר 123", "utf-8").encode()
    assert encoded_subject.startswith("=?utf-8?b?")
    msg = message(encoded_subject, [
        {"partId": "0", "mimeType": "text/plain", "filename": "", "body": {"data": b64("Total: ₪ 42.00")}},
    ], sender="=?utf-8?q?=D7=97=D7=A0=D7=95=D7=AA?= <a@b.example>")
    fields = extract.read_message(msg)
    assert fields.subject == "קבלה מספר 123"
    assert fields.sender == "חנות <a@b.example>" and fields.sender_email == "a@b.example"
    assert fields.received_at == dt.datetime(2024, 6, 1, 12, 34, 56, tzinfo=dt.timezone.utc)
    assert fields.body_text == "Total: ₪ 42.00"
    assert fields.attachments == ()


def test_html_body_when_no_plain_part():
    msg = message("Your receipt", [{"partId": "0", "mimeType": "multipart/alternative", "filename": "", "body": {},
                                    "parts": [{"partId": "0.0", "mimeType": "text/html", "filename": "", "body": {
                                        "data": b64("<style>x{}</style><p>Total</p><td>$</td><td>5.00</td>")}}]}])
    assert extract.read_message(msg).body_text == "Total\n$ 5.00"


def test_attachment_parts_keep_pdfs_and_images_only():
    msg = message("Invoice", [
        {"partId": "1", "mimeType": "application/pdf", "filename": "inv.pdf",
         "body": {"attachmentId": "A1", "size": 900}},
        {"partId": "2", "mimeType": "image/png", "filename": "logo.png", "body": {"data": b64(b"\x89PNG"), "size": 4}},
        {"partId": "3", "mimeType": "application/octet-stream", "filename": "scan.PDF",
         "body": {"attachmentId": "A3", "size": 5}},
        {"partId": "4", "mimeType": "application/zip", "filename": "x.zip", "body": {"attachmentId": "A4", "size": 5}},
        {"partId": "5", "mimeType": "text/plain", "filename": "", "body": {"data": b64("hi")}},
    ])
    parts = extract.read_message(msg).attachments
    assert [(p.part_id, p.mime_type, p.attachment_id, p.inline_data) for p in parts] == [
        ("1", "application/pdf", "A1", None), ("2", "image/png", None, b"\x89PNG"),
        ("3", "application/pdf", "A3", None)]


def test_money_source_order_subject_body_pdf():
    assert extract.find_money("Receipt ₪ 10.00", "Total $20", ["EUR 30"])[1] == "subject"
    assert extract.find_money("Receipt", "Total $20", ["EUR 30"])[0].amount == Decimal("20")
    money, source = extract.find_money("Receipt", "thanks", iter(["Total EUR 30,50"]))
    assert (money.amount, money.currency, source) == (Decimal("30.50"), "EUR", "pdf")
    assert extract.find_money("Receipt", "thanks", []) == (None, None)
