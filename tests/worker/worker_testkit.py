"""Worker test helpers: the Gmail emulator as a subprocess on a free port, sample mailboxes with ground
truth, job payloads in the real Redis, and the real ``receiptsync-worker`` run as a subprocess."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import psycopg
import redis

from receiptsync_common import attempt_identity, contract, migrations
from receiptsync_common.jobspec import JobPayload
from receiptsync_sandbox.gmail.auth import authorized_user
from receiptsync_sandbox.testing import emulator_admin

CLIENT_SECRET = "client-secret-5b0f6c1d9e"


class Emulator:
    def __init__(self, mailbox_dir: Path, *flags: str) -> None:
        self.mailbox_dir = mailbox_dir
        self.process = subprocess.Popen(
            [sys.executable, "-m", "receiptsync_sandbox.gmail", "--port", "0", "--mailbox-dir", str(mailbox_dir),
             *flags],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        line = self.process.stdout.readline()
        assert line.startswith("READY "), f"emulator did not start: {line!r}"
        self.url = line.split()[1].rstrip("/")

    def admin(self, path: str, body: dict | None = None) -> Any:
        return emulator_admin(self.url, path, body)

    def configure(self, **changes: Any) -> None:
        self.admin("/_emulator/config", changes)

    def stats(self, address: str | None = None) -> dict:
        stats = self.admin("/_emulator/stats")
        return stats["mailboxes"].get(address, {}) if address else stats

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@dataclasses.dataclass
class Mailbox:
    address: str
    folder: Path
    truth: list  # receiptsync_sandbox.gmail.samples.SampleMessage

    @property
    def receipts(self) -> list:
        return [m for m in self.truth if m.is_receipt]


TODAY = dt.datetime.now(dt.timezone.utc).date()


def credentials_json(address: str, token_uri: str, refresh_token: str | None = None) -> str:
    return json.dumps(authorized_user(address, token_uri, client_id="client-id.apps.example",
                                      client_secret=CLIENT_SECRET, refresh_token=refresh_token))


def gmail_client(emulator: Emulator, address: str, **kw: Any):
    """The worker's own GmailClient for ``address`` on the emulator, with a fresh access token;
    returns (client, access token)."""
    from receiptsync_worker import credentials as creds
    from receiptsync_worker.gmail_client import GmailClient

    authorized = creds.parse_authorized_user(credentials_json(address, emulator.url + "/token"))
    credentials = creds.build_credentials(authorized)
    creds.refresh(credentials)
    return GmailClient(credentials, emulator.url, **kw), credentials.token


@dataclasses.dataclass
class WorkerResult:
    returncode: int
    lines: list[dict]
    stdout: str
    stderr: str

    def events(self, marker: str) -> list[dict]:
        return [line for line in self.lines if line.get("event") == marker]


class Jobs:
    """Writes payloads the way the operator does and runs the worker for them."""

    def __init__(self, redis_url: str, database_url: str, emulator: Emulator) -> None:
        self.redis_url = redis_url
        self.database_url = database_url
        migrate(database_url)  # the operator's part: workers never migrate
        self.emulator = emulator
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)
        self.uid = str(uuid.uuid4())

    def payload(self, *, name: str = "sync", run_id: int = 1, attempt: int = 1, business_id: str = "biz-1",
                **fields: Any) -> JobPayload:
        job_id = contract.make_job_id("tests", name, self.uid, run_id, attempt)
        defaults = dict(mode=contract.MODE_FULL, priority=contract.PRIORITY_DEFAULT, max_messages=5000,
                        timeout_seconds=600, months_back=12)
        defaults.update(fields)
        payload = JobPayload(job_id=job_id, namespace="tests", name=name, uid=self.uid, business_id=business_id,
                             run_id=run_id, attempt=attempt, **defaults)
        self.redis.set(contract.job_key(job_id), payload.to_json())
        return payload

    def env(self, payload: JobPayload, address: str, refresh_token: str | None = None,
            extra_env: dict[str, str] | None = None) -> dict[str, str]:
        return {
            **os.environ,
            # outside Kubernetes: never /dev/termination-log
            "RECEIPTSYNC_TERMINATION_MESSAGE_PATH": self.termination_path(payload),
            contract.ENV_JOB_ID: payload.job_id,
            contract.ENV_ATTEMPT_IDENTITY: attempt_identity.identity_json(payload),  # the operator's Job spec
            contract.ENV_REDIS_URL: self.redis_url,
            contract.ENV_DATABASE_URL: self.database_url,
            contract.ENV_GMAIL_API_ENDPOINT: self.emulator.url,
            contract.ENV_GMAIL_CREDENTIALS: credentials_json(address, self.emulator.url + "/token", refresh_token),
            **(extra_env or {}),
        }

    def termination_path(self, payload: JobPayload) -> str:
        return os.path.join(tempfile.gettempdir(), f"receiptsync-termination-{payload.job_id}")

    def termination_message(self, payload: JobPayload) -> dict:
        with open(self.termination_path(payload), encoding="utf-8") as handle:
            return json.load(handle)

    def start(self, payload: JobPayload, address: str, **kw: Any) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "receiptsync_worker.main"], env=self.env(payload, address, **kw),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, payload: JobPayload, address: str, timeout: float = 120, **kw: Any) -> WorkerResult:
        process = self.start(payload, address, **kw)
        stdout, stderr = process.communicate(timeout=timeout)
        return parse_result(process.returncode, stdout, stderr)


def parse_result(returncode: int, stdout: str, stderr: str) -> WorkerResult:
    lines = []
    for raw in stdout.splitlines():
        lines.append(json.loads(raw))  # every stdout line must be JSON
    return WorkerResult(returncode, lines, stdout, stderr)


def migrate(database_url: str) -> None:
    """Apply the schema migrations as the operator does at its start (issue 14: never a worker)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        migrations.apply_all(conn)


def db_rows(database_url: str, sql: str, *params: Any) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql, params).fetchall()
