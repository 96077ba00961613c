"""Heartbeats on the shared protocol: DEL + HSET contract.heartbeat_key(job_id) (+ EXPIRE) and XADD
to contract.EVENTS_STREAM, in one MULTI, with the contract's HB_* fields, signed with the attempt's
heartbeat key when it has one (attempt_auth: the operator ignores what does not verify).

:class:`Heartbeats` writes one heartbeat; :class:`Ticker` repeats the latest progress every
``HEARTBEAT_INTERVAL_SECONDS`` so the operator sees the worker alive during long quota waits, and
watches for progress: none for ``stall_seconds`` calls ``on_stall`` once.

Heartbeats are best-effort: a failed one is tried again at the next tick. The terminal heartbeat is
marked sent only once Redis took it, and :meth:`Heartbeats.final` keeps trying for a while.
"""
from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time
from typing import Callable

import redis

from receiptsync_common import attempt_auth, contract

from .joblog import now_rfc3339
from .redisguard import keep_trying

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Progress:
    """Run counters, shared between the saving thread and the ticker."""

    scanned: int = 0
    saved: int = 0
    date_from: str | None = None
    date_to: str | None = None
    mailbox: str | None = None  # once known: the operator grants the mailbox's quota bucket then
    skipped: int = 0
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)
    last_progress: float = dataclasses.field(default_factory=time.monotonic)

    def add(self, scanned: int, saved: int) -> None:
        with self._lock:
            self.scanned += scanned
            self.saved += saved
        self.touch()

    def set(self, scanned: int, saved: int, skipped: int) -> None:
        with self._lock:
            self.scanned, self.saved, self.skipped = scanned, saved, skipped
        self.touch()

    def touch(self) -> None:
        """Something moved (a page listed, a chunk fetched, a batch saved)."""
        self.last_progress = time.monotonic()

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
    if progress.mailbox:
        fields[contract.HB_MAILBOX] = progress.mailbox
    return fields


class Heartbeats:
    def __init__(
        self,
        client: redis.Redis,
        job_id: str,
        progress: Progress,
        redact: Callable[[str], str],
        worker: str | None = None,
        key: str = "",
    ) -> None:
        self._client = client
        self._key = key  # the attempt's heartbeat key (hex): every heartbeat carries its MAC
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
        """Write the current progress (optionally a new phase/reason/message); RedisError if Redis
        did not take it. After a terminal heartbeat was written nothing more is, so a late tick
        cannot overwrite Finished/Failed."""
        with self._lock:
            if self._final:
                return
            self._phase = phase or self._phase
            self._reason = reason or self._reason
            self._message = self._redact(message) if message is not None else self._message
            fields = heartbeat_fields(
                job_id=self._job_id, phase=self._phase, reason=self._reason, message=self._message,
                progress=self.progress, worker=self._worker, time=now_rfc3339(),
            )
            if self._key:
                fields = attempt_auth.sign_heartbeat(self._key, fields)
            key = contract.heartbeat_key(self._job_id)
            pipe = self._client.pipeline(transaction=True)
            pipe.delete(key)  # the hash is exactly this heartbeat (its MAC covers all of it)
            pipe.hset(key, mapping=fields)
            pipe.expire(key, contract.HEARTBEAT_KEY_TTL_SECONDS)
            pipe.xadd(contract.EVENTS_STREAM, fields, maxlen=contract.EVENTS_STREAM_MAXLEN, approximate=True)
            pipe.execute()
            self._final = self._phase in contract.TERMINAL_PHASES  # only once it was written

    def try_beat(self, *args: str | None) -> bool:
        try:
            self.beat(*args)
            return True
        except redis.RedisError as exc:
            log.warning("heartbeat not sent (%s); the next one tries again", type(exc).__name__)
            return False

    def final(self, phase: str, reason: str, message: str, within: float) -> bool:
        """The terminal heartbeat, tried again for up to ``within`` seconds; whether it was sent."""
        try:
            keep_trying(lambda: self.beat(phase, reason, message), within, "final heartbeat")
            return True
        except redis.RedisError as exc:
            log.error("final heartbeat lost after %.0fs: %s; the outcome is in sync_runs and the termination"
                      " message", within, type(exc).__name__)
            return False

    @property
    def sent_final(self) -> bool:
        return self._final


class Ticker:
    """Background thread: ``heartbeats.beat()`` every ``interval`` seconds (or at once when nudged)
    until stopped; calls ``on_stall`` once when the progress has not moved for ``stall_seconds``."""

    def __init__(self, heartbeats: Heartbeats, interval: float = contract.HEARTBEAT_INTERVAL_SECONDS,
                 stall_seconds: float | None = None, on_stall: Callable[[float], None] = lambda idle: None) -> None:
        self._heartbeats = heartbeats
        self._interval = interval
        self._stall_seconds = stall_seconds
        self._on_stall = on_stall
        self._stop = threading.Event()
        self._nudged = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> "Ticker":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._nudged.set()
        self._thread.join(timeout=10)

    def nudge(self) -> None:
        """Beat soon (from this thread, so the caller never waits for Redis)."""
        self._nudged.set()

    def _run(self) -> None:
        stalled = False
        next_beat = time.monotonic() + self._interval
        while not self._stop.is_set():
            self._nudged.wait(max(0.0, min(next_beat - time.monotonic(), 0.5)))
            if self._stop.is_set():
                return
            if not stalled and is_stalled(self._heartbeats.progress.last_progress, time.monotonic(),
                                          self._stall_seconds):
                stalled = True
                self._on_stall(time.monotonic() - self._heartbeats.progress.last_progress)
            if self._nudged.is_set() or time.monotonic() >= next_beat:
                self._nudged.clear()
                next_beat = time.monotonic() + self._interval
                # A missed beat is tolerated by the operator; the next tick tries again.
                self._heartbeats.try_beat()


def is_stalled(last_progress: float, now: float, stall_seconds: float | None) -> bool:
    return stall_seconds is not None and now - last_progress >= stall_seconds
