"""Fault-suite fixtures: a sandbox of our own (its Redis and PostgreSQL get restarted, its Gmail emulator
gets storms), mailboxes with ground truth, a World per test (namespace, Redis DB, the real operator whose
workers are the real worker image run by the node agent), and the per-R report printed at the end."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from faultkit import BULK_MAILBOX, CRD, END_DATE, FAULT_MAILBOX, LOAD_MAILBOXES, Mailbox, World
from receiptsync_common import contract
from receiptsync_sandbox.gmail.samples import generate_mailbox
from receiptsync_sandbox.testing import Sandbox, closing_world


@pytest.fixture(scope="session")
def mailboxes(tmp_path_factory) -> dict[str, Mailbox]:
    folder = tmp_path_factory.mktemp("fault-mailboxes")
    boxes = {FAULT_MAILBOX: Mailbox(FAULT_MAILBOX, generate_mailbox(folder, FAULT_MAILBOX, 150, 0.4, months=6,
                                                                    seed=81, end_date=END_DATE))}
    boxes[BULK_MAILBOX] = Mailbox(BULK_MAILBOX, generate_mailbox(folder, BULK_MAILBOX, 200, 0.6, months=6, seed=82,
                                                                 end_date=END_DATE))
    for index, address in enumerate(LOAD_MAILBOXES):
        boxes[address] = Mailbox(address, generate_mailbox(folder, address, 40, 0.5, months=3, seed=90 + index,
                                                           end_date=END_DATE))
    boxes["_dir"] = folder  # type: ignore[assignment]
    return boxes


# --- the sandbox ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def fault_sandbox(mailboxes):
    """Our own sandbox: the faults below restart its Redis and PostgreSQL, which no other suite may see."""
    with Sandbox(operator=False, mailbox_dir=mailboxes["_dir"]) as running:
        running.kubectl("apply", "-f", str(CRD))
        running.kubectl("wait", "--for=condition=Established", f"crd/{contract.PLURAL}.{contract.GROUP}",
                        "--timeout=30s")
        _migrate(running.env["DATABASE_URL"])
        yield running


def _migrate(database_url: str) -> None:
    """Apply the worker's schema once up front, so table locks taken by tests never meet a migration."""
    from receiptsync_worker.store import Store

    store = Store(database_url)
    store.migrate()
    store.close()


# --- the report ----------------------------------------------------------------------------------------
REPORT: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(int))
REPORT_PATH: list[Path] = []


@pytest.fixture(scope="session")
def report(tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "faults-report.json"
    REPORT_PATH.append(path)
    yield REPORT
    path.write_text(json.dumps(REPORT, indent=1, sort_keys=True))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not REPORT:
        return
    terminalreporter.section("ReceiptSync fault suite (tests/faults)")
    keys = ("faults_injected", "runs", "receipts_checked", "duplicates_found", "secrets_found")
    terminalreporter.write_line(f"{'item':<5} " + " ".join(f"{k:>17}" for k in keys) + "  other")
    for item in sorted(REPORT):
        row = REPORT[item]
        other = {k: v for k, v in row.items() if k not in keys}
        terminalreporter.write_line(f"{item:<5} " + " ".join(f"{row.get(k, 0):>17}" for k in keys) + f"  {other}")
    if REPORT_PATH:
        terminalreporter.write_line(f"written to {REPORT_PATH[0]}")


@pytest.fixture
def world(fault_sandbox, mailboxes, tmp_path):
    with closing_world(World(fault_sandbox, tmp_path, mailboxes), tmp_path) as w:
        yield w


