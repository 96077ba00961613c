"""Sample mailboxes: deterministic, realistic, and their ground truth agrees with the files."""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from pypdf import PdfReader

from receiptsync_sandbox.gmail.message import decode_text, parse_message
from receiptsync_sandbox.gmail.query import compile_query
from receiptsync_sandbox.gmail.sample_content import RECEIPT_TERMS
from receiptsync_sandbox.gmail.samples import generate_mailbox

END = dt.date(2025, 6, 30)
ADDRESS = "demo@example.com"


def tree(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def parsed(folder: Path, name: str):
    return parse_message(name, (folder / name).read_bytes(), 0)


def leaves(part):
    return [part] if not part.parts else [leaf for child in part.parts for leaf in leaves(child)]


def test_same_arguments_same_bytes(tmp_path):
    first = generate_mailbox(tmp_path / "a", ADDRESS, 120, seed=5, end_date=END)
    second = generate_mailbox(tmp_path / "b", ADDRESS, 120, seed=5, end_date=END)
    assert first == second
    assert tree(tmp_path / "a" / ADDRESS) == tree(tmp_path / "b" / ADDRESS)
    other = generate_mailbox(tmp_path / "c", ADDRESS, 120, seed=6, end_date=END)
    assert [item.subject for item in other] != [item.subject for item in first]


def test_counts_dates_and_order(tmp_path):
    truth = generate_mailbox(tmp_path, ADDRESS, 200, receipt_ratio=0.25, months=18, seed=1, end_date=END)
    assert len(truth) == 200 and sum(item.is_receipt for item in truth) == 50
    start = dt.datetime(2023, 12, 30, tzinfo=dt.timezone.utc)
    end = dt.datetime(2025, 7, 1, tzinfo=dt.timezone.utc)
    assert all(start <= item.date < end for item in truth)
    assert [item.date for item in truth] == sorted(item.date for item in truth)
    assert [item.file_name for item in truth] == sorted(path.name for path in (tmp_path / ADDRESS).glob("*.eml"))
    assert truth[-1].date - truth[0].date > dt.timedelta(days=400)  # spread over the months


def test_regenerating_replaces_old_samples(tmp_path):
    generate_mailbox(tmp_path, ADDRESS, 30, seed=1, end_date=END)
    generate_mailbox(tmp_path, ADDRESS, 10, seed=1, end_date=END)
    assert len(list((tmp_path / ADDRESS).glob("*.eml"))) == 10


def test_mix_of_languages_currencies_and_attachments(tmp_path):
    truth = generate_mailbox(tmp_path, ADDRESS, 400, seed=2, end_date=END)
    receipts = [item for item in truth if item.is_receipt]
    assert {item.language for item in receipts} == {"en", "he"}
    assert {item.currency for item in receipts} >= {"ILS", "USD", "EUR", "GBP"}
    assert {item.kind for item in truth} == {"receipt", "newsletter", "personal", "notification"}
    mime_types = {attachment.mime_type for item in receipts for attachment in item.attachments}
    assert mime_types == {"application/pdf", "image/png"}
    assert any("pdf" in item.amount_in and item.amount_in == ("pdf",) for item in receipts)  # amount only in the PDF
    assert any(attachment.filename.startswith("חשבונית") for item in receipts for attachment in item.attachments)
    assert any(item.attachments for item in truth if not item.is_receipt)  # photos, newsletters: not receipts


def test_receipt_terms_tell_receipts_apart(tmp_path):
    truth = generate_mailbox(tmp_path, ADDRESS, 300, seed=3, end_date=END)
    query = compile_query(" OR ".join(f'"{term}"' for term in RECEIPT_TERMS))
    for item in truth:
        message = parsed(tmp_path / ADDRESS, item.file_name)
        assert query.matches(message.search) is item.is_receipt, item.subject


def test_amounts_are_where_the_truth_says(tmp_path):
    truth = generate_mailbox(tmp_path, ADDRESS, 300, seed=4, end_date=END)
    for item in (item for item in truth if item.amount is not None):
        message = parsed(tmp_path / ADDRESS, item.file_name)
        plain, grouped = f"{item.amount:.2f}", f"{item.amount:,.2f}"
        if "subject" in item.amount_in:
            assert plain in item.subject or grouped in item.subject
        body = "\n".join(decode_text(leaf) for leaf in leaves(message.root)
                         if leaf.mime_type.startswith("text/") and not leaf.filename)
        assert ("body" in item.amount_in) == (plain in body or grouped in body), item.file_name
        pdfs = [leaf for leaf in leaves(message.root) if leaf.mime_type == "application/pdf"]
        if "pdf" in item.amount_in:
            text = PdfReader(io.BytesIO(pdfs[0].content)).pages[0].extract_text()
            assert "Total: " in text and grouped in text, text
        assert item.currency in {"ILS", "USD", "EUR", "GBP"} and Decimal(item.amount) > 0


def test_attachment_truth_matches_the_files(tmp_path):
    truth = generate_mailbox(tmp_path, ADDRESS, 150, seed=5, end_date=END)
    for item in truth:
        message = parsed(tmp_path / ADDRESS, item.file_name)
        assert message.id == item.message_id
        found = [(leaf.filename, leaf.mime_type, len(leaf.content), hashlib.sha256(leaf.content).hexdigest())
                 for leaf in leaves(message.root) if leaf.filename]
        assert found == [(a.filename, a.mime_type, a.size, a.sha256) for a in item.attachments]
        assert message.header("Subject") == item.subject
        assert message.internal_ms == int(item.date.timestamp()) * 1000


def test_command_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "receiptsync_sandbox.gmail.samples", "--out", str(tmp_path),
                             "--address", ADDRESS, "--count", "25", "--seed", "9", "--end-date", "2025-01-31"],
                            capture_output=True, text=True, timeout=60, check=True)
    assert "wrote 25 messages (5 receipts)" in result.stdout
    assert len(list((tmp_path / ADDRESS).glob("sample-*.eml"))) == 25
    assert (tmp_path / ADDRESS / "ground-truth.json").exists()
