"""Fixtures for the Gmail emulator tests (helpers live in gmail_helpers.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from gmail_helpers import ALICE, BOB, SAMPLE_END, RunningEmulator, write_message
from receiptsync_sandbox.gmail.config import EmulatorConfig
from receiptsync_sandbox.gmail.samples import generate_mailbox


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """A read-only mailbox dir shared by the tests: 60 samples for Alice, a few for Bob."""
    root = tmp_path_factory.mktemp("gmail-samples")
    generate_mailbox(root, ALICE, 60, receipt_ratio=0.4, months=6, seed=7, end_date=SAMPLE_END)
    generate_mailbox(root, BOB, 5, receipt_ratio=0.4, months=2, seed=8, end_date=SAMPLE_END)
    return root


@pytest.fixture(scope="session")
def sample_truth(sample_dir) -> list[dict]:
    return json.loads((sample_dir / ALICE / "ground-truth.json").read_text())


@pytest.fixture(scope="session")
def shared_emulator(sample_dir):
    """One emulator for the read-only API tests (quota off so their order does not matter)."""
    with RunningEmulator(sample_dir, EmulatorConfig(quota_enabled=False)) as running:
        yield running


@pytest.fixture
def gmail(shared_emulator):
    return shared_emulator.service(ALICE)


@pytest.fixture
def mailbox_dir(tmp_path) -> Path:
    """A small writable mailbox dir for tests that add mail or change knobs."""
    root = tmp_path / "mdir"
    generate_mailbox(root, ALICE, 8, receipt_ratio=0.5, months=1, seed=3, end_date=SAMPLE_END)
    return root


@pytest.fixture
def emulator(mailbox_dir):
    with RunningEmulator(mailbox_dir) as running:
        yield running


@pytest.fixture
def new_message():
    return write_message
