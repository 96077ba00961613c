"""Issue 12: poisoned messages cost a skipped message, never the attempt or the worker's memory.
The real worker process against the Gmail emulator, Redis and PostgreSQL; its peak RSS is read from
the kernel (wait4)."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import zlib

import pytest

from receiptsync_common import contract
from receiptsync_sandbox.gmail.message import message_id_for
from receiptsync_sandbox.gmail.samples import build_eml
from receiptsync_worker.store import MAX_EXTRACTION_TRIES
from worker_testkit import TODAY, db_rows, parse_result

RSS_LIMIT_MB = 300
FULL = dict(date_from=(TODAY - dt.timedelta(days=30)).isoformat(), date_to=TODAY.isoformat(),
            explicit_from=True, explicit_to=True)


def decompression_bomb(expanded: int = 256 * 1024 ** 2) -> bytes:
    """A one-page PDF whose 1 MB content stream inflates to ``expanded`` bytes."""
    packer, parts, block = zlib.compressobj(1), [], b"0 0 m " * 100_000
    for _ in range(expanded // len(block)):
        parts.append(packer.compress(block))
    stream = b"".join(parts) + packer.flush()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << >> >>",
               b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream"]
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += (b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
            + b"".join(b"%010d 00000 n \n" % o for o in offsets))
    return out + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)


def idna_message(address: str, date: dt.datetime) -> bytes:
    """A receipt whose text part names a charset that cannot decode with errors='replace'."""
    head = (f"From: Shop <billing@shop.example>\r\nTo: {address}\r\nSubject: Your receipt (charset trouble)\r\n"
            f"Date: {date.strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\nMessage-ID: <idna-poison@test>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=\"idna\"\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n")
    return head.encode() + "Total: 12.50 € café\r\n".encode()


@pytest.fixture(scope="module")
def poisoned(mailbox_dir, emulator):
    address = "poisoned@example.com"
    folder = mailbox_dir / address
    folder.mkdir(parents=True, exist_ok=True)
    date = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(days=2)
    shop = "Shop <billing@shop.example>"
    files = {
        "ok.eml": build_eml(subject="Your receipt 1", sender=shop, to=address, date=date, text="Total: $10.00"),
        "big.eml": build_eml(subject="Your receipt 2", sender=shop, to=address, date=date, text="Total: $20.00",
                             attachments=(("statement.pdf", "application/pdf",
                                           b"%PDF-1.4\n" + os.urandom(50 * 1024 ** 2)),)),
        "bomb.eml": build_eml(subject="Your receipt 3", sender=shop, to=address, date=date,
                              text="See the attached invoice.",
                              attachments=(("invoice.pdf", "application/pdf", decompression_bomb()),)),
        "idna.eml": idna_message(address, date),
    }
    for name, raw in files.items():
        (folder / name).write_bytes(raw)
    emulator.admin("/_emulator/rescan", {})
    return address, {name.removesuffix(".eml"): message_id_for(name) for name in files}


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a live process (the high-water mark of its own memory since exec), 0 once gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> set[int]:
    found: set[int] = set()
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as listing:
                found.update(int(child) for child in listing.read().split())
    except OSError:
        pass
    return found


def run_measured(jobs, payload, address: str, tmp_path) -> tuple[object, float, float]:
    """The worker as a process; (its result, its peak RSS in MB, the PDF helper's peak RSS in MB),
    sampled from /proc while it runs."""
    out, err = tmp_path / f"{payload.job_id}.out", tmp_path / f"{payload.job_id}.err"
    worker_peak, helper_peak = 0.0, 0.0
    with open(out, "w") as stdout, open(err, "w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "receiptsync_worker.main"], env=jobs.env(payload, address),
                                   stdout=stdout, stderr=stderr)
        while process.poll() is None:
            worker_peak = max(worker_peak, peak_rss_mb(process.pid))
            helper_peak = max([helper_peak, *(peak_rss_mb(child) for child in children(process.pid))])
            time.sleep(0.02)
    return parse_result(process.returncode, out.read_text(), err.read_text()), worker_peak, helper_peak


def test_bombs_and_huge_attachments_are_skipped_and_memory_stays_bounded(jobs, poisoned, tmp_path):
    address, ids = poisoned
    result, rss_mb, helper_mb = run_measured(jobs, jobs.payload(**FULL), address, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    print(f"worker peak RSS {rss_mb:.0f} MB, PDF helper peak RSS {helper_mb:.0f} MB")
    assert 0 < rss_mb < RSS_LIMIT_MB and helper_mb < RSS_LIMIT_MB
    done = result.events(contract.LOG_JOB_DONE)[0]
    assert done["phase"] == contract.PHASE_FINISHED and done["skipped_messages"] == 3
    [(skipped, count, saved)] = db_rows(jobs.database_url,
                                        "SELECT skipped, skipped_messages, saved_receipts FROM sync_runs")
    assert skipped == {ids["big"]: "attachment_too_large", ids["bomb"]: "pdf_bomb",
                       ids["idna"]: "unreadable: UnicodeError"} and count == 3
    # the receipts themselves are saved (without what could not be read), except the unreadable one
    assert saved == 3 and {row[0] for row in db_rows(jobs.database_url, "SELECT gmail_message_id FROM receipts")} == {
        ids["ok"], ids["big"], ids["bomb"]}
    assert db_rows(jobs.database_url, "SELECT count(*) FROM receipt_attachments WHERE gmail_message_id = %s",
                   ids["big"]) == [(0,)]
    assert "3 messages skipped" in done["message"]


def test_a_message_that_keeps_failing_extraction_is_quarantined(jobs, poisoned, tmp_path):
    address, ids = poisoned
    for run_id in range(1, MAX_EXTRACTION_TRIES + 2):
        result = jobs.run(jobs.payload(run_id=run_id, **FULL), address)
        assert result.returncode == 0, result.stdout[-2000:]
    runs = db_rows(jobs.database_url,
                   "SELECT run_id, skipped ? %s, quarantined_messages FROM sync_runs ORDER BY run_id", ids["idna"])
    # tried (and counted as skipped) MAX_EXTRACTION_TRIES times, then quarantined: no longer fetched
    assert runs == [(n, True, 0) for n in range(1, MAX_EXTRACTION_TRIES + 1)] + [(MAX_EXTRACTION_TRIES + 1, False, 1)]
    failures = db_rows(jobs.database_url,
                       "SELECT gmail_message_id, tries, quarantined_at IS NOT NULL FROM message_failures")
    assert failures == [(ids["idna"], MAX_EXTRACTION_TRIES, True)]
    done = result.events(contract.LOG_JOB_DONE)[0]
    assert done["quarantined_messages"] == 1 and "quarantined" in done["message"]
