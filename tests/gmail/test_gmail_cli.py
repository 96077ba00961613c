"""`python -m receiptsync_sandbox.gmail` as a process: READY line, serving the client, clean stop."""
from __future__ import annotations

import signal
import subprocess
import sys

from googleapiclient.discovery import build
from google.oauth2.credentials import Credentials

from gmail_helpers import ALICE
from receiptsync_sandbox.testing import emulator_admin


def test_cli_serves_until_terminated(mailbox_dir, tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "receiptsync_sandbox.gmail", "--port", "0", "--mailbox-dir", str(mailbox_dir),
         "--state-dir", str(tmp_path / "state"), "--latency-ms", "5", "--no-quota", "--seed", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline().strip()
        assert line.startswith("READY http://127.0.0.1:"), line + process.stderr.read()
        url = line.split(" ", 1)[1] + "/"
        credentials = Credentials(None, refresh_token=f"refresh-token-for:{ALICE}", client_id="c", client_secret="s",
                                  token_uri=url + "token")
        gmail = build("gmail", "v1", credentials=credentials, static_discovery=True,
                      client_options={"api_endpoint": url})
        assert gmail.users().getProfile(userId="me").execute()["messagesTotal"] == 8
        config = emulator_admin(url, "_emulator/config", timeout=5)
        assert config["quota_enabled"] is False and config["latency_ms"] == 5 and config["seed"] == 1
        assert (tmp_path / "state" / f"{ALICE}.history.json").exists()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
