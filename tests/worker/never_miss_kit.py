"""Helpers for the "never miss a receipt" tests (issue 12): a mailbox that grows under test control
with its own ground truth, and the real worker run in-process through its entry function
(``Attempt.run``) against the real Redis, PostgreSQL and Gmail emulator."""
from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import os
import tempfile
import uuid
from pathlib import Path

from receiptsync_common import contract
from receiptsync_common.jobspec import JobPayload
from receiptsync_sandbox.gmail.message import message_id_for
from receiptsync_sandbox.gmail.samples import build_eml
from receiptsync_worker.config import Guards, Settings, Tuning
from receiptsync_worker.sync import Attempt

from worker_testkit import Emulator, credentials_json, db_rows, migrate

NOW = lambda: dt.datetime.now(dt.timezone.utc)  # noqa: E731
_serial = itertools.count()


@dataclasses.dataclass(frozen=True)
class Delivered:
    message_id: str
    date: dt.datetime
    sender: str


class Inbox:
    """A mailbox folder of the emulator that tests deliver mail into; remembers its receipts."""

    def __init__(self, mailbox_dir: Path, emulator: Emulator, address: str | None = None) -> None:
        self.address = address or f"inbox-{uuid.uuid4().hex[:10]}@example.com"
        self.folder = Path(mailbox_dir) / self.address
        self.folder.mkdir(parents=True, exist_ok=True)
        self.emulator = emulator
        self.receipts: list[Delivered] = []

    def deliver(self, receipts: int, others: int = 1, days_ago: float = 0.0,
                sender: str = "billing@vendor-a.example") -> list[str]:
        """New mail now (new history ids), dated ``days_ago`` days back; returns the receipts' ids."""
        date = (NOW() - dt.timedelta(days=days_ago, minutes=2)).replace(microsecond=0)
        ids = []
        for index in range(receipts + others):
            n = next(_serial)
            is_receipt = index < receipts
            subject = f"Your receipt #{n}" if is_receipt else f"Lunch on Friday #{n}?"
            raw = build_eml(subject=subject, sender=f"Shop <{sender}>", to=self.address, date=date,
                            text=f"Total: ${n % 90 + 1}.50" if is_receipt else "See you there",
                            message_id=f"<m{n}-{uuid.uuid4().hex[:8]}@test>")
            name = f"m{n:06d}.eml"
            temporary = self.folder / f".{name}.tmp"
            temporary.write_bytes(raw)
            temporary.rename(self.folder / name)
            if is_receipt:
                delivered = Delivered(message_id_for(name), date, sender)
                self.receipts.append(delivered)
                ids.append(delivered.message_id)
        self.emulator.admin("/_emulator/rescan", {})
        return ids

    def ids(self) -> set[str]:
        return {r.message_id for r in self.receipts}


class Runner:
    """Runs attempts of ReceiptSync resources in-process, the way ``receiptsync-worker`` does."""

    def __init__(self, redis_url: str, database_url: str, emulator: Emulator, overlap_seconds: float = 0.0) -> None:
        self.redis_url = redis_url
        self.database_url = database_url
        migrate(database_url)  # the operator's part: workers never migrate
        self.emulator = emulator
        self.overlap_seconds = overlap_seconds
        self.runs: dict[str, int] = {}
        self.uids: dict[str, str] = {}
        import redis

        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)

    def payload(self, name: str, business_id: str, **fields) -> JobPayload:
        run_id = self.runs[name] = self.runs.get(name, 0) + 1
        uid = self.uids.setdefault(name, str(uuid.uuid4()))
        job_id = contract.make_job_id("tests", name, uid, run_id, 1)
        values = dict(mode=contract.MODE_INCREMENTAL, priority=contract.PRIORITY_DEFAULT, max_messages=5000,
                      timeout_seconds=300, months_back=12)
        values.update(fields)
        payload = JobPayload(job_id=job_id, namespace="tests", name=name, uid=uid, business_id=business_id,
                             run_id=run_id, attempt=1, **values)
        self.redis.set(contract.job_key(job_id), payload.to_json())
        return payload

    def run(self, name: str, business_id: str, inbox: Inbox, **fields) -> dict:
        """One attempt of the next run of resource ``name``; returns its sync_runs row as a dict."""
        payload = self.payload(name, business_id, **fields)
        settings = Settings(
            job_id=payload.job_id, redis_url=self.redis_url, database_url=self.database_url,
            gmail_endpoint=self.emulator.url,
            credentials_json=credentials_json(inbox.address, self.emulator.url + "/token"),
            worker_name="test", tuning=Tuning(),
            guards=Guards(cursor_overlap_seconds=self.overlap_seconds, final_heartbeat_seconds=2,
                          termination_message_path=os.path.join(tempfile.gettempdir(), f"rs-term-{payload.job_id}")))
        code = Attempt(settings).run()
        row = run_row(self.database_url, payload.job_id)
        row["exit_code"] = code
        return row


def run_row(database_url: str, job_id: str) -> dict:
    columns = ("status", "reason", "messages_scanned", "saved_receipts", "capped", "used_history", "date_from",
               "date_to", "outcome_message", "skipped", "skipped_messages", "quarantined_messages")
    rows = db_rows(database_url, f"SELECT {', '.join(columns)} FROM sync_runs WHERE job_id = %s", job_id)
    assert rows, f"no sync_runs row for {job_id}"
    return dict(zip(columns, rows[0]))


def saved_ids(database_url: str, business_id: str) -> set[str]:
    return {row[0] for row in db_rows(database_url, "SELECT gmail_message_id FROM receipts WHERE business_id = %s",
                                      business_id)}
