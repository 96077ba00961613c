"""Operator e2e fixtures: the real `receiptsync-operator` as a subprocess against the session sandbox,
one namespace and one Redis database per test (the operator is scoped to that namespace), and a
stand-in worker (standin_worker.py) that speaks the real heartbeat protocol."""
from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from receiptsync_common import contract
from receiptsync_sandbox.gmail.auth import authorized_user
from receiptsync_sandbox.testing import (OperatorProcess, TenantWorld, closing_world, operator_env,
                                        receiptsync_manifest, wait_until)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CRD = ROOT / "manifests" / "crds" / "receiptsyncs.yaml"
STANDIN = HERE / "standin_worker.py"
# The operators here are quick to lead (a 4 s lease in a fresh namespace).
LEAD_TIMEOUT = 20
_db_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def crd(sandbox):
    sandbox.kubectl("apply", "-f", str(CRD))
    # `kubectl wait` fails at once ("status.conditions accessor error") while a just-created CRD has
    # no status yet: wait for the condition to exist first.
    name = f"crd/{contract.PLURAL}.{contract.GROUP}"
    wait_until(lambda: (sandbox.get(name) or {}).get("status", {}).get("conditions"), timeout=30,
               message="the CRD's status")
    sandbox.kubectl("wait", "--for=condition=Established", name, "--timeout=30s")
    return True


class Env(TenantWorld):
    """One test's world: a tenant namespace (TenantWorld), a Redis DB, operators, kubectl helpers."""

    def __init__(self, sandbox, tmp_path: Path) -> None:
        super().__init__(sandbox, tmp_path)
        base = sandbox.env["REDIS_URL"].rsplit("/", 1)[0]
        self.redis_url = f"{base}/{next(_db_numbers) % 16}"
        self.redis = redis.Redis.from_url(self.redis_url, decode_responses=True)
        self.redis.flushdb()
        self.clock_file = tmp_path / "clock-offset"

    # --- operator ---------------------------------------------------------------------------------
    def operator_env(self, **overrides: str) -> dict[str, str]:
        settings = {
            contract.OPERATOR_ENV_MAX_WORKERS: "4",
            contract.OPERATOR_ENV_HEARTBEAT_TIMEOUT: "3",
            contract.OPERATOR_ENV_WORKER_COMMAND: json.dumps([sys.executable, str(STANDIN)]),
            contract.OPERATOR_ENV_LEASE_DURATION: "4",
            contract.OPERATOR_ENV_DELETE_REDIS_TIMEOUT: "3",
            # The scheduler's clock knob: absent file = real time; tests move it with set_clock().
            contract.OPERATOR_ENV_TEST_CLOCK_OFFSET_FILE: str(self.clock_file),
            **overrides,
        }
        return operator_env(self.sandbox, namespace=self.ns, redis_url=self.redis_url, lease_name=self.lease,
                            identity=f"op-{len(self.operators)}-{uuid.uuid4().hex[:4]}", kubeconfig=self.kubeconfig,
                            **settings)

    def start_operator(self, wait: bool = True, **overrides: str) -> OperatorProcess:
        env = self.operator_env(**overrides)
        op = OperatorProcess(env, self.tmp / f"{env[contract.OPERATOR_ENV_POD_NAME]}.log", self.operator_user,
                             lead_timeout=LEAD_TIMEOUT).start()
        self.operators.append(op)
        if wait:
            op.wait_leading()
        return op

    def set_clock(self, moment) -> None:
        """Make the operators' scheduler clock read ``moment`` now (then run on in real time)."""
        import datetime as dt

        offset = (moment - dt.datetime.now(dt.timezone.utc)).total_seconds()
        tmp = self.clock_file.with_suffix(".tmp")
        tmp.write_text(f"{offset:.3f}")
        tmp.replace(self.clock_file)

    # --- kubectl --------------------------------------------------------------------------------------
    def apply(self, *objects: dict) -> None:
        # A YAML stream of JSON documents (the sandbox's OpenAPI cannot validate `kind: List`).
        self.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(o) for o in objects))

    def secret(self, name: str = "gmail", key: str = contract.DEFAULT_CREDENTIALS_KEY) -> dict:
        creds = authorized_user("demo@example.com", self.sandbox.env.get("GMAIL_TOKEN_URI", ""),
                                client_id="c", client_secret="s")
        return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                "stringData": {key: json.dumps(creds)}}

    @staticmethod
    def rsync(name: str, *, query: str = "standin:duration=1", secret: str = "gmail", **spec: Any) -> dict:
        body = {"businessId": name.replace(".", "-"), "mode": "full", "fromDate": "2025-01-01", "toDate": "2025-01-31",
                "query": query, "gmail": {"secretRef": {"name": secret}}}
        body.update(spec)
        return receiptsync_manifest(name, body)

    def wait_status(self, name: str, predicate, timeout: float = 20, message: str = "") -> dict:
        last: list[dict] = [{}]

        def probe() -> dict | None:
            last[0] = self.status(name)
            return last[0] if predicate(last[0]) else None

        try:
            return wait_until(probe, timeout, 0.1, message=message or f"{name} status")
        except AssertionError as exc:  # say what the status was at the end, not at the start
            raise AssertionError(f"{exc} (last: {last[0]})") from None

    def wait_phase(self, name: str, phase: str, timeout: float = 20, reason: str | None = None) -> dict:
        return self.wait_status(
            name, lambda s: s.get("phase") == phase and (reason is None or s.get("reason") == reason),
            timeout, message=f"{name} phase {phase} {reason or ''}")

    def jobs(self) -> list[dict]:
        return (self.get("jobs") or {}).get("items") or []

    def events(self, name: str) -> list[dict]:
        items = (self.get("events") or {}).get("items") or []
        mine = [e for e in items if (e.get("involvedObject") or {}).get("name") == name]
        return sorted(mine, key=lambda e: e.get("eventTime") or e.get("lastTimestamp") or "")

    def queue(self) -> dict[str, list[str]]:
        return {p: self.redis.zrange(contract.queue_key(p), 0, -1) for p in contract.PRIORITIES}

    def watch_phases(self, name: str) -> "PhaseWatch":
        return PhaseWatch(self, name)

    def close(self) -> None:
        for op in self.operators:
            op.stop()
        self.redis.flushdb()
        self.redis.close()
        super().close()


class PhaseWatch:
    """`kubectl get -w`: every status the API server showed, in order."""

    def __init__(self, env: Env, name: str) -> None:
        # Watch the namespace's list (a named watch fails before the object exists) and keep ours.
        args = [str(Path(sys.executable).parent / "kubectl"), "-n", env.ns, "get", contract.PLURAL, "-w",
                "-o", "jsonpath={.metadata.name}|{.status.phase}|{.status.reason}|{.status.message}{\"\\n\"}"]
        self.name = name
        self.proc = subprocess.Popen(args, env=env.sandbox.process_env(), stdout=subprocess.PIPE, text=True)
        self.seen: list[tuple[str, str, str]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            name, _, rest = line.rstrip("\n").partition("|")
            if name != self.name:
                continue
            parts = (rest.split("|", 2) + ["", ""])[:3]
            if not self.seen or self.seen[-1] != tuple(parts):
                self.seen.append(tuple(parts))

    def phases(self) -> list[str]:
        out: list[str] = []
        for phase, _, _ in self.seen:
            if phase and (not out or out[-1] != phase):
                out.append(phase)
        return out

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def env(sandbox, crd, tmp_path):
    with closing_world(Env(sandbox, tmp_path), tmp_path) as world:
        yield world
