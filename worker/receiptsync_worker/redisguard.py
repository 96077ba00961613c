"""Redis is not a single point of failure for an attempt.

* Clients retry each command with exponential backoff and jitter (redis-py ``Retry``) on connection
  errors and timeouts, a bounded number of times.
* Quota reservations fall back to a local token bucket at the same rate while Redis is away, and go
  back to the shared bucket when it answers again (:class:`FallbackBucket`).
* Heartbeats are best-effort (the ticker tries again); the final one is retried for a while
  (:func:`keep_trying`), and the outcome is also recorded durably elsewhere.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, TypeVar

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)
T = TypeVar("T")

COMMAND_RETRIES = 3
RETRY_BASE_SECONDS = 0.05
RETRY_CAP_SECONDS = 1.0
SOCKET_TIMEOUT_SECONDS = 5.0
# While Redis is away the shared bucket is tried again at most this often; sooner while this
# attempt's Redis user may not use it yet (the operator grants it once the worker names its mailbox).
SHARED_BUCKET_RETRY_SECONDS = 5.0
NOT_YET_PERMITTED_RETRY_SECONDS = 1.0
RETRIED_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.BusyLoadingError)


def make_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, decode_responses=True, socket_timeout=SOCKET_TIMEOUT_SECONDS, socket_connect_timeout=3,
        retry=Retry(ExponentialWithJitterBackoff(base=RETRY_BASE_SECONDS, cap=RETRY_CAP_SECONDS), COMMAND_RETRIES,
                    supported_errors=RETRIED_ERRORS),
        retry_on_error=list(RETRIED_ERRORS),
    )


def keep_trying(action: Callable[[], T], seconds: float, what: str, pause: float = 1.0,
                sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> T:
    """``action()`` until it succeeds or ``seconds`` have passed (then its last RedisError is raised)."""
    deadline = clock() + seconds
    while True:
        try:
            return action()
        except redis.RedisError as exc:
            if clock() + pause >= deadline:
                raise
            log.warning("%s failed, trying again: %s", what, type(exc).__name__)
            sleep(pause)


class LocalBucket:
    """A token bucket in this process (same contract as ``QuotaBucket.reserve``): take units now,
    even into debt, and answer how long to wait before using them."""

    def __init__(self, rate: float, capacity: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = float(rate)
        self.capacity = float(capacity)
        self._clock = clock
        self._tokens = float(capacity)
        self._at = clock()
        self._lock = threading.Lock()

    def reserve(self, units: float) -> float:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate) - units
            self._at = now
            return -self._tokens / self.rate if self._tokens < 0 else 0.0


class FallbackBucket:
    """The mailbox's shared bucket in Redis, or a local one while Redis does not answer."""

    def __init__(self, shared, local: LocalBucket, retry_after: float = SHARED_BUCKET_RETRY_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.shared = shared
        self.local = local
        self._retry_after = retry_after
        self._clock = clock
        self._shared_from = 0.0  # monotonic time from which the shared bucket is tried again
        self._lock = threading.Lock()
        self.fallbacks = 0  # reservations served locally

    def reserve(self, units: float) -> float:
        if self._clock() >= self._shared_from:
            try:
                return self.shared.reserve(units)
            except redis.RedisError as exc:
                pause = NOT_YET_PERMITTED_RETRY_SECONDS if isinstance(exc, redis.exceptions.NoPermissionError) \
                    else self._retry_after
                with self._lock:
                    if self._clock() >= self._shared_from:
                        log.warning("Redis quota bucket unavailable (%s); using a local bucket for %.0fs",
                                    type(exc).__name__, pause)
                    self._shared_from = self._clock() + pause
        with self._lock:
            self.fallbacks += 1
        return self.local.reserve(units)
