"""Amount and currency of every generated receipt, read the way the worker reads them (real emulator,
real google-api-python-client, the worker's fetch and extraction, PDF text included), against the
sample generator's ground truth: 100 % agreement, and no amount invented for receipts that have none."""
from __future__ import annotations

import shutil

import pytest

from receiptsync_sandbox.gmail.samples import generate_mailbox
from receiptsync_worker.fetch import fetch_chunk
from worker_testkit import gmail_client

MAILBOXES = {
    # make demo's mailbox (end_date None: it ends today, as the demo's does)
    "demo": dict(count=150, receipt_ratio=0.3, months=18, seed=7, end_date=None),
    # a 1,000-message mailbox, half receipts, another seed: more PDFs and amount styles
    "large": dict(count=1000, receipt_ratio=0.5, months=18, seed=21, end_date=None),
}


@pytest.mark.parametrize("kind", sorted(MAILBOXES))
def test_saved_amounts_agree_with_ground_truth(kind, mailbox_dir, emulator, knobs):
    address = f"amounts-{kind}@example.com"
    truth = generate_mailbox(mailbox_dir, address, **MAILBOXES[kind])
    try:
        emulator.admin("/_emulator/rescan", {})
        knobs(quota_enabled=False)  # the quota is tested elsewhere; here only the content matters
        client, _ = gmail_client(emulator, address)
        ids = [mid for page in client.message_id_pages("") for mid in page]
        rows = {}
        for start in range(0, len(ids), 50):
            rows.update({r.gmail_message_id: r for r in fetch_chunk(client, ids[start:start + 50], 50).receipts})
    finally:
        shutil.rmtree(mailbox_dir / address, ignore_errors=True)

    receipts = [m for m in truth if m.is_receipt]
    with_amount = [m for m in receipts if m.amount is not None]
    assert len(with_amount) >= 40
    assert any(m.amount_in == ("pdf",) for m in with_amount)  # some amounts are only in the PDF
    wrong = [(m.file_name, m.subject, m.amount, m.currency, m.amount_in, rows[m.message_id].amount,
              rows[m.message_id].currency) for m in receipts
             if (rows[m.message_id].amount, rows[m.message_id].currency) != (m.amount, m.currency)]
    assert wrong == [], f"{len(wrong)} of {len(receipts)} receipts disagree with the ground truth"
    # and the amount came from a place the generator wrote it
    assert all(rows[m.message_id].amount_source in m.amount_in for m in with_amount)
