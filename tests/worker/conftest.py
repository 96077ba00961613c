"""Fixtures for the worker tests (helpers live in worker_testkit)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from receiptsync_sandbox.gmail.samples import generate_mailbox
from worker_testkit import TODAY, Emulator, Jobs, Mailbox


@pytest.fixture(scope="session")
def mailbox_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mailboxes")


@pytest.fixture(scope="session")
def alice(mailbox_dir) -> Mailbox:
    """300 messages over the last 6 months, ~20 % receipts (half of them with attachments)."""
    address = "alice@example.com"
    truth = generate_mailbox(mailbox_dir, address, 300, 0.2, months=6, seed=7, end_date=TODAY - dt.timedelta(days=1))
    return Mailbox(address, mailbox_dir / address, truth)


@pytest.fixture(scope="session")
def emulator(mailbox_dir, alice):
    """Shared emulator; tests that change its knobs restore them (see ``knobs``)."""
    emu = Emulator(mailbox_dir)
    yield emu
    emu.stop()


@pytest.fixture
def knobs(emulator):
    """Change emulator config for one test; the defaults come back afterwards."""
    before = emulator.admin("/_emulator/config")
    yield emulator.configure
    emulator.configure(**before)


@pytest.fixture
def jobs(redis_url, fresh_database, emulator) -> Jobs:
    return Jobs(redis_url, fresh_database, emulator)
