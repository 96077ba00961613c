"""Operator e2e fixtures: the real `receiptsync-operator` as a subprocess against the session sandbox,
one namespace and one Redis database per test (the operator is scoped to that namespace), and a
stand-in worker (standin_worker.py) that speaks the real heartbeat protocol."""
from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from receiptsync_common import contract

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CRD = ROOT / "manifests" / "crds" / "receiptsyncs.yaml"
STANDIN = HERE / "standin_worker.py"
OPERATOR_BIN = Path(sys.executable).parent / "receiptsync-operator"
_db_numbers = itertools.count(1)


def wait_until(condition, timeout: float = 20.0, interval: float = 0.1, message: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s: {message or condition}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def crd(sandbox):
    sandbox.kubectl("apply", "-f", str(CRD))
    sandbox.kubectl("wait", "--for=condition=Established", f"crd/{contract.PLURAL}.{contract.GROUP}", "--timeout=30s")
    return True


class OperatorProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> "OperatorProcess":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(OPERATOR_BIN)], env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    @property
    def identity(self) -> str:
        return self.env[contract.OPERATOR_ENV_POD_NAME]

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(raw))
            except ValueError:
                out.append({"message": raw})
        return out

    def logged(self, message: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("message") == message]

    def wait_leading(self, timeout: float = 20) -> None:
        wait_until(lambda: self.logged("leading"), timeout, message=f"{self.identity} leading")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        """A crash: SIGKILL, no cleanup, no lease release."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class Env:
    """One test's world: namespace, Redis DB, operators, and kubectl helpers."""

    def __init__(self, sandbox, tmp_path: Path) -> None:
        self.sandbox = sandbox
        self.ns = "t-" + uuid.uuid4().hex[:8]
        self.tmp = tmp_path
        base = sandbox.env["REDIS_URL"].rsplit("/", 1)[0]
        self.redis_url = f"{base}/{next(_db_numbers) % 16}"
        self.redis = redis.Redis.from_url(self.redis_url, decode_responses=True)
        self.redis.flushdb()
        self.operators: list[OperatorProcess] = []
        self.lease = "rs-" + self.ns
        self.clock_file = tmp_path / "clock-offset"
        sandbox.kubectl("create", "namespace", self.ns)

    # --- operator ---------------------------------------------------------------------------------
    def operator_env(self, **overrides: str) -> dict[str, str]:
        from receiptsync_sandbox.services import free_port

        env = {
            **self.sandbox.process_env(),
            contract.OPERATOR_ENV_REDIS_URL: self.redis_url,
            contract.OPERATOR_ENV_NAMESPACE: self.ns,
            contract.OPERATOR_ENV_MAX_WORKERS: "4",
            contract.OPERATOR_ENV_HEARTBEAT_TIMEOUT: "3",
            contract.OPERATOR_ENV_WORKER_COMMAND: json.dumps([sys.executable, str(STANDIN)]),
            contract.OPERATOR_ENV_WORKER_DATABASE_URL: self.sandbox.env.get("DATABASE_URL", ""),
            contract.OPERATOR_ENV_WORKER_GMAIL_API_ENDPOINT: self.sandbox.env.get("GMAIL_API_ENDPOINT", ""),
            contract.OPERATOR_ENV_METRICS_PORT: str(free_port()),
            contract.OPERATOR_ENV_LEASE_NAME: self.lease,
            contract.OPERATOR_ENV_LEASE_NAMESPACE: self.ns,
            contract.OPERATOR_ENV_LEASE_DURATION: "4",
            contract.OPERATOR_ENV_POD_NAME: f"op-{len(self.operators)}-{uuid.uuid4().hex[:4]}",
            contract.OPERATOR_ENV_DELETE_REDIS_TIMEOUT: "3",
            # The scheduler's clock knob: absent file = real time; tests move it with set_clock().
            contract.OPERATOR_ENV_TEST_CLOCK_OFFSET_FILE: str(self.clock_file),
            "PYTHONUNBUFFERED": "1",
        }
        env.update(overrides)
        return env

    def start_operator(self, wait: bool = True, **overrides: str) -> OperatorProcess:
        env = self.operator_env(**overrides)
        op = OperatorProcess(env, self.tmp / f"{env[contract.OPERATOR_ENV_POD_NAME]}.log").start()
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
    def kubectl(self, *args: str, check: bool = True, input: str | None = None):
        return self.sandbox.kubectl("-n", self.ns, *args, check=check, input=input)

    def apply(self, *objects: dict) -> None:
        # A YAML stream of JSON documents (the sandbox's OpenAPI cannot validate `kind: List`).
        self.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(o) for o in objects))

    def secret(self, name: str = "gmail", key: str = contract.DEFAULT_CREDENTIALS_KEY) -> dict:
        creds = {"client_id": "c", "client_secret": "s", "refresh_token": "refresh-token-for:demo@example.com",
                 "token_uri": self.sandbox.env.get("GMAIL_TOKEN_URI", "")}
        return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                "stringData": {key: json.dumps(creds)}}

    @staticmethod
    def rsync(name: str, *, query: str = "standin:duration=1", secret: str = "gmail", **spec: Any) -> dict:
        body = {"businessId": name.replace(".", "-"), "mode": "full", "fromDate": "2025-01-01", "toDate": "2025-01-31",
                "query": query, "gmail": {"secretRef": {"name": secret}}}
        body.update(spec)
        return {"apiVersion": contract.API_VERSION, "kind": contract.KIND, "metadata": {"name": name}, "spec": body}

    def get(self, kind: str, name: str | None = None) -> dict | None:
        result = self.kubectl("get", kind, *([name] if name else []), "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def status(self, name: str) -> dict:
        obj = self.get(contract.PLURAL, name)
        return (obj or {}).get("status") or {}

    def wait_status(self, name: str, predicate, timeout: float = 20, message: str = "") -> dict:
        return wait_until(lambda: (lambda s: s if predicate(s) else None)(self.status(name)), timeout,
                          message=message or f"{name} status")

    def wait_phase(self, name: str, phase: str, timeout: float = 20, reason: str | None = None) -> dict:
        return self.wait_status(
            name, lambda s: s.get("phase") == phase and (reason is None or s.get("reason") == reason),
            timeout, message=f"{name} phase {phase} {reason or ''} (last: {self.status(name)})")

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
    world = Env(sandbox, tmp_path)
    try:
        yield world
    finally:
        world.close()
        if os.environ.get("RECEIPTSYNC_KEEP_OPERATOR_LOGS"):
            print(f"operator logs in {tmp_path}")
