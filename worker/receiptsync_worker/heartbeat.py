"""Heartbeats on the shared protocol: HSET contract.heartbeat_key(job_id) (+ EXPIRE) and XADD to
contract.EVENTS_STREAM, in one MULTI, with the contract's HB_* fields.

:class:`Heartbeats` writes one heartbeat; :class:`Ticker` repeats the latest progress every
``HEARTBEAT_INTERVAL_SECONDS`` so the operator sees the worker alive during long quota waits.
"""
from __future__ import annotations

import dataclasses
import socket
import threading
from typing import Callable

import redis

from receiptsync_common import contract

from .joblog import now_rfc3339


@dataclasses.dataclass
class Progress:
    """Run counters, shared between the saving thread and the ticker."""

    scanned: int = 0
    saved: int = 0
    date_from: str | None = None
    date_to: str | None = None
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    def add(self, scanned: int, saved: int) -> None:
        with self._lock:
            self.scanned += scanned
            self.saved += saved

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            return self.scanned, self.saved


def heartbeat_fields(
    *,
    job_id: str,
    phase: str,
    reason: str,
    message: str,
    progress: Progress,
    worker: str,
    time: str,
) -> dict[str, str]:
    scanned, saved = progress.snapshot()
    fields = {
        contract.HB_JOB_ID: job_id,
        contract.HB_PHASE: phase,
        contract.HB_REASON: reason,
        contract.HB_MESSAGE: message,
        contract.HB_SCANNED: str(scanned),
        contract.HB_SAVED: str(saved),
        contract.HB_TIME: time,
        contract.HB_WORKER: worker,
    }
    if progress.date_from and progress.date_to:
        fields[contract.HB_DATE_FROM] = progress.date_from
        fields[contract.HB_DATE_TO] = progress.date_to
    return fields


class Heartbeats:
    def __init__(
        self,
        client: redis.Redis,
        job_id: str,
        progress: Progress,
        redact: Callable[[str], str],
        worker: str | None = None,
    ) -> None:
        self._client = client
        self._job_id = job_id
        self.progress = progress
        self._redact = redact
        self._worker = worker or socket.gethostname()
        self._lock = threading.Lock()
        self._phase = contract.PHASE_STARTED
        self._reason = contract.REASON_SYNCING
        self._message = "Worker started."
        self._final = False

    def beat(self, phase: str | None = None, reason: str | None = None, message: str | None = None) -> None:
        """Write the current progress (optionally a new phase/reason/message). After a terminal
        heartbeat nothing more is written, so a late tick cannot overwrite Finished/Failed."""
        with self._lock:
            if self._final:
                return
            self._phase = phase or self._phase
            self._reason = reason or self._reason
            self._message = self._redact(message) if message is not None else self._message
            self._final = self._phase in contract.TERMINAL_PHASES
            fields = heartbeat_fields(
                job_id=self._job_id, phase=self._phase, reason=self._reason, message=self._message,
                progress=self.progress, worker=self._worker, time=now_rfc3339(),
            )
            key = contract.heartbeat_key(self._job_id)
            pipe = self._client.pipeline(transaction=True)
            pipe.hset(key, mapping=fields)
            pipe.expire(key, contract.HEARTBEAT_KEY_TTL_SECONDS)
            pipe.xadd(contract.EVENTS_STREAM, fields, maxlen=contract.EVENTS_STREAM_MAXLEN, approximate=True)
            pipe.execute()


class Ticker:
    """Background thread: ``heartbeats.beat()`` every ``interval`` seconds until stopped."""

    def __init__(self, heartbeats: Heartbeats, interval: float = contract.HEARTBEAT_INTERVAL_SECONDS) -> None:
        self._heartbeats = heartbeats
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> "Ticker":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._heartbeats.beat()
            except redis.RedisError:
                # A missed beat is tolerated by the operator; the next tick tries again.
                pass
