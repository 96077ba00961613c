"""Helpers for the Gmail emulator tests: the threaded emulator with real google-auth credentials and
the real discovery-built client pointed at it, and a way to deliver one more message."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.http import BatchHttpRequest

from receiptsync_sandbox.gmail.samples import build_eml
from receiptsync_sandbox.gmail.threaded import ThreadedEmulator

SAMPLE_END = dt.date(2025, 6, 30)
ALICE = "alice@example.com"
BOB = "bob@example.com"


class RunningEmulator(ThreadedEmulator):
    """The threaded emulator plus the real Google client pointed at it."""

    def credentials(self, address: str = ALICE, refresh_token: str | None = None) -> Credentials:
        return Credentials(None, refresh_token=refresh_token or f"refresh-token-for:{address}",
                           client_id="sandbox-client", client_secret="sandbox-secret", token_uri=self.token_uri)

    def service(self, address: str = ALICE, credentials: Credentials | None = None):
        return build("gmail", "v1", credentials=credentials or self.credentials(address), static_discovery=True,
                     client_options={"api_endpoint": self.url}, cache_discovery=False)

    def batch(self, callback=None) -> BatchHttpRequest:
        return BatchHttpRequest(callback=callback, batch_uri=self.url + "batch")


def write_message(folder: Path, name: str, **fields) -> Path:
    """Drop one message into a mailbox folder the way a mail delivery would: write, then rename."""
    defaults = {"subject": "Hello", "sender": "Someone <someone@example.org>", "to": ALICE,
                "date": dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.timezone.utc), "text": "hello"}
    raw = build_eml(**{**defaults, **fields})
    temporary = folder / f".{name}.tmp"
    temporary.write_bytes(raw)
    final = folder / name
    temporary.rename(final)
    return final
