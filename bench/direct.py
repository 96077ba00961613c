"""Worker runs started directly as processes, N at a time, with no operator and no Kubernetes: what a
plain loop (or a KEDA ScaledJob's bare minimum) would do. P3's overhead ratio divides by this, and P6
profiles one such run.

Each run's job payload is built by the operator's own function (``runs.build_payload``) for the same
spec a ReceiptSync would have and written to Redis under the operator's key; the worker process gets
the environment its Job would give it (the `receiptsync-worker` entrypoint, the image's ENV, the
job id and identity, Redis/PostgreSQL/Gmail, the credentials JSON). Each process is reaped with
wait4, so its CPU (user + sys, its own children included) is exact.
"""
from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from receiptsync_common import attempt_identity, contract
from receiptsync_common.jobspec import JobPayload
from receiptsync_operator import runs

WORKER = str(Path(sys.executable).parent / "receiptsync-worker")
IMAGE_ENV = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}  # Dockerfile.worker's ENV


@dataclasses.dataclass(frozen=True)
class DirectRun:
    payload: JobPayload
    credentials_json: str


@dataclasses.dataclass
class Outcome:
    job_id: str
    exit_code: int
    cpu_seconds: float
    wall_seconds: float
    log: Path


def payload_for(namespace: str, name: str, spec: dict[str, Any], run_id: int = 1, uid: str | None = None) -> JobPayload:
    meta = {"namespace": namespace, "name": name, "uid": uid or str(uuid.uuid4())}
    return runs.build_payload(meta, spec, run_id=run_id, attempt=1, now=dt.datetime.now(dt.timezone.utc))


def worker_env(payload: JobPayload, credentials_json: str, connections: dict[str, str], folder: Path) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(folder), "HOSTNAME": f"direct-{payload.job_id[-24:]}",
           **IMAGE_ENV,
           contract.ENV_JOB_ID: payload.job_id,
           contract.ENV_REDIS_URL: connections["redis"],
           contract.ENV_DATABASE_URL: connections["database"],
           contract.ENV_GMAIL_API_ENDPOINT: connections["gmail"],
           contract.ENV_GMAIL_CREDENTIALS: credentials_json,
           "RECEIPTSYNC_TERMINATION_MESSAGE_PATH": str(folder / f"{payload.job_id}.termination")}
    # What the operator writes into the Job: the attempt's identity (the worker checks the payload
    # against it). No heartbeat key: unsigned heartbeats, which nobody reads here.
    env[contract.ENV_ATTEMPT_IDENTITY] = attempt_identity.identity_json(payload)
    return env


def run_all(jobs: list[DirectRun], parallelism: int, connections: dict[str, str], folder: Path,
            prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run every job, ``parallelism`` at a time (a new one as soon as one exits); ``prefix`` runs the
    worker under another program (a profiler). Returns wall time, per-run CPU and exit codes."""
    folder.mkdir(parents=True, exist_ok=True)
    client = redis.Redis.from_url(connections["redis"])
    pending = list(reversed(jobs))
    lock = threading.Lock()
    outcomes: list[Outcome] = []

    def slot() -> None:
        while True:
            with lock:
                if not pending:
                    return
                job = pending.pop()
            outcomes.append(run_one(job, client, connections, folder, prefix))

    began = time.monotonic()
    threads = [threading.Thread(target=slot, name=f"direct-{i}") for i in range(parallelism)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - began
    client.close()
    return {"runs": len(jobs), "parallelism": parallelism, "wall_seconds": wall,
            "finished": sum(1 for o in outcomes if o.exit_code == 0),
            "exit_codes": dict(collections.Counter(str(o.exit_code) for o in outcomes)),
            "cpu_seconds_total": sum(o.cpu_seconds for o in outcomes),
            "cpu_seconds": [o.cpu_seconds for o in outcomes], "wall_seconds_each": [o.wall_seconds for o in outcomes],
            "failed_logs": [str(o.log) for o in outcomes if o.exit_code != 0][:5]}


def run_one(job: DirectRun, client: redis.Redis, connections: dict[str, str], folder: Path,
            prefix: tuple[str, ...] = ()) -> Outcome:
    payload = job.payload
    client.set(contract.job_key(payload.job_id), payload.to_json())
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"{payload.job_id}.log"
    began = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen([*prefix, WORKER], env=worker_env(payload, job.credentials_json, connections, folder),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=folder)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Outcome(payload.job_id, proc.returncode, usage.ru_utime + usage.ru_stime, time.monotonic() - began, log)


def job_done(log: Path) -> dict[str, Any] | None:
    """The JOB_DONE / JOB_FAIL line a run logged."""
    for line in log.read_text(errors="replace").splitlines():
        if contract.LOG_JOB_DONE in line or contract.LOG_JOB_FAIL in line:
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None
