"""Fault-suite helpers (fixtures in conftest.py): a sandbox of our own (its Redis and PostgreSQL get
restarted, its Gmail emulator gets storms), mailboxes with ground truth, the real `receiptsync-operator`
as a subprocess whose workers are the real `receiptsync-worker` image run by the sandbox's node agent,
and a per-R report.

Everything here is real: kopf, Redis, PostgreSQL, google-api-python-client against the emulator.
Only the faults are injected.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import redis

from receiptsync_common import contract
from receiptsync_sandbox.gmail.auth import authorized_user
from receiptsync_sandbox.testing import (OperatorProcess, Sandbox, TenantWorld, container_pids, emulator_admin,
                                        receiptsync_manifest, wait_until)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CRD = ROOT / "manifests" / "crds" / "receiptsyncs.yaml"

# Fixed end date: byte-identical mailboxes (and ground truth) on every run, whatever today is.
END_DATE = dt.date(2025, 6, 30)
FAULT_MAILBOX = "fault@example.com"
# Enough receipts for several quota-paced batches of 25, which commit one after another.
BULK_MAILBOX = "bulk@example.com"
LOAD_MAILBOXES = ("load-a@example.com", "load-b@example.com", "load-c@example.com")
# The client secret every test credential carries: grepped for in R8 (never in logs/status/Redis).
CLIENT_SECRET = "faults-client-secret-7c1e9a44d2"
_db_numbers = itertools.count(1)


# --- ground truth ------------------------------------------------------------------------------------
@dataclasses.dataclass
class Mailbox:
    address: str
    truth: list  # SampleMessage, oldest first

    def receipts_between(self, first: str, last: str) -> list:
        """Receipts whose day (UTC: the resources here set no timeZone) is in [first, last]."""
        a, b = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
        return [m for m in self.truth if m.is_receipt and a <= m.date.astimezone(dt.timezone.utc).date() <= b]


class World(TenantWorld):
    """One test's world: a tenant namespace (TenantWorld), a Redis DB, operators (real workers),
    kubectl, DB and emulator helpers."""

    def __init__(self, sandbox: Sandbox, tmp: Path, mailboxes: dict[str, Mailbox]) -> None:
        super().__init__(sandbox, tmp, prefix="f-")
        self.mailboxes = mailboxes
        base = sandbox.env["REDIS_URL"].rsplit("/", 1)[0]
        self.redis_url = f"{base}/{next(_db_numbers) % 16}"
        self.redis = redis.Redis.from_url(self.redis_url, decode_responses=True)
        self.redis.flushdb()
        self.database_url = sandbox.env["DATABASE_URL"]
        self.gmail = sandbox.env["GMAIL_API_ENDPOINT"].rstrip("/")
        self.businesses: list[str] = []
        self._emulator_before = self.emulator_config()

    # --- operator ---------------------------------------------------------------------------------------
    def operator_env(self, **overrides: str) -> dict[str, str]:
        return self._operator(**overrides).env

    def start_operator(self, wait: bool = True, **overrides: str) -> OperatorProcess:
        op = self._operator(**overrides).start()
        self.operators.append(op)
        if wait:
            op.wait_leading()
        return op

    def _operator(self, **overrides: str) -> OperatorProcess:
        identity = f"op-{len(self.operators)}-{uuid.uuid4().hex[:4]}"
        # A kubeconfig whose token names a service account: the API audit tells our calls apart.
        settings = {
            contract.OPERATOR_ENV_MAX_WORKERS: "4",
            contract.OPERATOR_ENV_HEARTBEAT_TIMEOUT: "3",
            contract.OPERATOR_ENV_WORKER_IMAGE: f"{contract.WORKER_IMAGE}:{contract.IMAGE_TAG}",
            contract.OPERATOR_ENV_LEASE_DURATION: "4",
            contract.OPERATOR_ENV_DELETE_REDIS_TIMEOUT: "3",
            contract.OPERATOR_ENV_WORKER_COMMAND: None,  # the worker image's own entrypoint
            **overrides,
        }
        return OperatorProcess.prepare(self.sandbox, self.tmp / f"{identity}.log", namespace=self.ns,
                                       redis_url=self.redis_url, identity=identity, lease_name=self.lease,
                                       service_account=self.operator_user, **settings)

    # --- kubectl ----------------------------------------------------------------------------------------
    def apply(self, *objects: dict, check: bool = True):
        return self.kubectl("apply", "-f", "-", check=check, input="\n---\n".join(json.dumps(o) for o in objects))

    def credentials(self, address: str, refresh_token: str | None = None) -> dict:
        return authorized_user(address, self.sandbox.env["GMAIL_TOKEN_URI"], client_id="faults-client.apps.example",
                               client_secret=CLIENT_SECRET, refresh_token=refresh_token)

    def secret(self, name: str, address: str, key: str = contract.DEFAULT_CREDENTIALS_KEY, **kw: Any) -> dict:
        return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                "stringData": {key: json.dumps(self.credentials(address, **kw))}}

    def rsync(self, name: str, *, business: str | None = None, secret: str = "gmail", **spec: Any) -> dict:
        business = business or f"{self.ns}-{name}"
        self.businesses.append(business)
        body = {"businessId": business, "mode": "full", "fromDate": "2025-01-01", "toDate": "2025-06-30",
                "gmail": {"secretRef": {"name": secret}}, "timeout": "60s", "backoffLimit": 3}
        body.update(spec)
        return receiptsync_manifest(name, body)

    def wait_status(self, name: str, predicate, timeout: float = 60, message: str = "") -> dict:
        last: list[dict] = [{}]

        def probe():
            last[0] = self.status(name)
            return last[0] if predicate(last[0]) else None

        try:
            return wait_until(probe, timeout, interval=0.2, message=message or f"{name} status")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last status: {json.dumps(last[0])[:1500]}") from None

    def wait_phase(self, name: str, phase: str, timeout: float = 60, reason: str | None = None) -> dict:
        return self.wait_status(
            name, lambda s: s.get("phase") == phase and (reason is None or s.get("reason") == reason), timeout,
            message=f"{name} phase {phase} {reason or ''}")

    def wait_terminal(self, name: str, timeout: float = 90) -> dict:
        return self.wait_status(name, lambda s: s.get("phase") in contract.TERMINAL_PHASES, timeout,
                                message=f"{name} Finished or Failed")

    def jobs(self) -> list[dict]:
        return (self.get("jobs") or {}).get("items") or []

    def pods(self) -> list[dict]:
        return (self.get("pods") or {}).get("items") or []

    def events(self, name: str | None = None) -> list[dict]:
        items = (self.get("events") or {}).get("items") or []
        return [e for e in items if name is None or (e.get("involvedObject") or {}).get("name") == name]

    def worker_pid(self, job_name: str) -> int | None:
        for pod in self.pods():
            owners = pod["metadata"].get("ownerReferences") or []
            if any(o.get("kind") == "Job" and o.get("name") == job_name for o in owners):
                pids = container_pids(pod)
                state = ((pod.get("status") or {}).get("containerStatuses") or [{}])[0].get("state") or {}
                if pids and "running" in state:
                    return pids[0]
        return None

    def worker_log_lines(self) -> list[dict]:
        """Every JSON line every worker pod of this namespace logged."""
        out = []
        for path in (self.sandbox.state_dir / "logs" / self.ns).glob("*/*.log"):
            for raw in path.read_text(errors="replace").splitlines():
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(line, dict):
                    out.append({**line, "_pod": path.parent.name})
        return out

    # --- Gmail emulator ---------------------------------------------------------------------------------
    def emulator(self, path: str, body: dict | None = None) -> Any:
        return emulator_admin(self.gmail, path, body)

    def emulator_config(self, **changes: Any) -> dict:
        return self.emulator("/_emulator/config", changes) if changes else self.emulator("/_emulator/config")

    def emulator_stats(self, address: str | None = None) -> dict:
        stats = self.emulator("/_emulator/stats")
        return stats["mailboxes"].get(address, {}) if address else stats

    def reset_emulator_stats(self) -> None:
        self.emulator("/_emulator/stats/reset", {})

    # --- PostgreSQL -------------------------------------------------------------------------------------
    def rows(self, sql: str, *params: Any) -> list[tuple]:
        with psycopg.connect(self.database_url, connect_timeout=10) as conn:
            return conn.execute(sql, params).fetchall()

    def saved_count(self, business: str) -> int:
        return self.rows("SELECT count(*) FROM receipts WHERE business_id = %s", business)[0][0]

    def check_against_truth(self, business: str, expected: list) -> dict[str, int]:
        """Saved receipts == ground truth (ids and fields), zero duplicates, attachments by sha256."""
        rows = self.rows("SELECT gmail_message_id, subject, sender, received_at FROM receipts WHERE business_id = %s",
                         business)
        ids = [r[0] for r in rows]
        duplicates = len(ids) - len(set(ids))
        duplicates += self.rows(
            "SELECT count(*) FROM (SELECT 1 FROM receipts WHERE business_id = %s"
            " GROUP BY business_id, gmail_message_id HAVING count(*) > 1) d", business)[0][0]
        want = {m.message_id: m for m in expected}
        missing = sorted(set(want) - set(ids))
        extra = sorted(set(ids) - set(want))
        assert not missing and not extra, (f"{business}: missing {missing[:5]} ({len(missing)}), "
                                           f"extra {extra[:5]} ({len(extra)})")
        for message_id, subject, sender, received_at in rows:
            truth = want[message_id]
            assert (subject, sender, received_at) == (truth.subject, truth.sender, truth.date), message_id
        attachments = self.rows(
            "SELECT gmail_message_id, filename, mime_type, size_bytes, sha256, encode(sha256(content), 'hex')"
            " FROM receipt_attachments WHERE business_id = %s", business)
        assert all(a[4] == a[5] for a in attachments), "a stored sha256 is not the hash of the stored bytes"
        got = [a[:5] for a in attachments]
        duplicates += len(got) - len(set(got))
        expected_attachments = {(m.message_id, a.filename, a.mime_type, a.size, a.sha256)
                                for m in expected for a in m.attachments}
        assert set(got) == expected_attachments, f"{business}: attachments differ from the ground truth"
        assert duplicates == 0, f"{business}: {duplicates} duplicate rows"
        return {"receipts_checked": len(expected), "attachments_checked": len(expected_attachments),
                "duplicates_found": duplicates}

    def sync_runs(self, business: str) -> list[tuple]:
        return self.rows("SELECT job_id, run_id, attempt, status, reason FROM sync_runs WHERE business_id = %s"
                         " ORDER BY run_id, attempt", business)

    def close(self) -> None:
        for op in self.operators:
            op.stop()
        try:
            before = dict(self._emulator_before)
            before["revoked"] = list(before.get("revoked") or [])
            self.emulator_config(**before)
        except Exception:  # noqa: BLE001 - best effort
            pass
        try:
            self.redis.flushdb()
            self.redis.close()
        except redis.RedisError:
            pass
        super().close()


def add(report: dict, item: str, **numbers: int) -> None:
    for key, value in numbers.items():
        report[item][key] += value


# --- restarting the sandbox's own stores (R2, R4) --------------------------------------------------------
def restart_redis(sandbox: Sandbox, down_seconds: float = 0.5) -> float:
    """Stop the sandbox's redis-server (SIGKILL: nothing saved, nothing flushed politely) and start an empty
    one on the same port; the sandbox's state file is updated so `down` stops the new one. Returns the
    seconds Redis was away."""
    from receiptsync_sandbox import services, statefile
    from receiptsync_sandbox.procs import identify
    from receiptsync_sandbox.up import child_env

    state = statefile.load(sandbox.state_dir)
    assert state is not None and state.redis_pid is not None
    port = int(sandbox.env["REDIS_URL"].rsplit(":", 1)[1].split("/", 1)[0])
    began = time.monotonic()
    os.kill(state.redis_pid.pid, signal.SIGKILL)
    wait_until(lambda: identify(state.redis_pid.pid) is None or not _alive(state.redis_pid), timeout=10,
               message="redis-server gone")
    time.sleep(down_seconds)
    server = services.start_redis(sandbox.state_dir / "redis", port=port, env=child_env(sandbox.state_dir))
    state.redis_pid = identify(server.pid)
    state.save()
    return time.monotonic() - began


def _alive(process) -> bool:
    from receiptsync_sandbox.procs import is_alive

    return is_alive(process)


def restart_postgres(sandbox: Sandbox, down_seconds: float = 1.0, mode: str = "immediate") -> float:
    """`pg_ctl stop -m <mode>` (immediate: a crash, every connection dies; fast: a clean restart that cuts
    clients and rolls back open transactions), then start the same data directory on the same port.
    Returns the seconds PostgreSQL was away."""
    from receiptsync_sandbox import services, statefile
    from receiptsync_sandbox.up import child_env

    state = statefile.load(sandbox.state_dir)
    assert state is not None and state.postgres
    pg = state.postgres
    server = services.PostgresServer(port=int(pg["port"]), data_dir=Path(pg["data_dir"]), bindir=pg["bindir"],
                                     run_as=pg.get("run_as"))
    began = time.monotonic()
    server.stop(mode)
    time.sleep(down_seconds)
    server.start(env=child_env(sandbox.state_dir))  # the sandbox's own options, nothing drifted
    return time.monotonic() - began


# --- holding a worker inside a batch transaction (R1-R4) --------------------------------------------------
def hold_receipt(world: "World", business: str, message) -> psycopg.Connection:
    """An uncommitted receipt row of ours for ``message``: the worker's batch upserting it blocks inside
    its transaction until we roll back (or the connection dies)."""
    conn = psycopg.connect(world.database_url, autocommit=False)
    conn.execute("INSERT INTO receipts (business_id, gmail_message_id, subject, sender, received_at, first_job_id)"
                 " VALUES (%s, %s, 'held by the test', 'test', now(), 'test')", (business, message.message_id))
    return conn


def lock_waiters(world: "World") -> int:
    return world.rows("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                      " WHERE NOT l.granted AND a.datname = current_database()")[0][0]


def blocked_by(world: "World", held: psycopg.Connection) -> int:
    """Sessions waiting for a row ``held``'s transaction wrote (a lock on its transaction id): the
    worker's upsert of the held receipt, not a DDL's short wait for a table lock."""
    return world.rows("SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'"
                      " AND %s = ANY(pg_blocking_pids(pid))", held.info.backend_pid)[0][0]


def wait_blocked_mid_run(world: "World", business: str, held: psycopg.Connection, timeout: float = 60) -> int:
    """Wait until the worker blocks on our held row; returns how many receipts it committed before.
    Usually some: the held row is the oldest receipt, listed last. But the worker saves whatever
    chunks are fetched in one transaction, and on a loaded machine that can be all of them, the held
    one too; the worker then blocks with nothing committed, which is the fault mid-transaction all
    the same (the report shows the count)."""
    wait_until(lambda: blocked_by(world, held) > 0, timeout=timeout, interval=0.05, message="worker blocked mid-run")
    return world.saved_count(business)
