"""Gmail's per-user quota as a token bucket per mailbox.

Each call costs its method's units (a batch costs the sum of its parts). The bucket refills at
``rate`` units/s up to ``burst``; a call that does not fit is refused, costs nothing, and is told
when it would fit (Retry-After, whole seconds rounded up, like Google's header).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

# Quota units per method (Gmail API "Usage limits").
METHOD_COSTS = {
    "users.getProfile": 1,
    "users.messages.list": 5,
    "users.messages.get": 5,
    "users.messages.attachments.get": 5,
    "users.history.list": 2,
}


@dataclass
class Bucket:
    level: float
    updated: float


class QuotaLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.buckets: dict[str, Bucket] = {}

    def try_consume(self, mailbox: str, units: float, rate: float, burst: float) -> float | None:
        """Take ``units`` from ``mailbox``'s bucket; None when taken, else seconds until they fit."""
        now = self.clock()
        bucket = self.buckets.get(mailbox)
        if bucket is None:
            bucket = self.buckets[mailbox] = Bucket(level=burst, updated=now)
        bucket.level = min(burst, bucket.level + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.level >= units:
            bucket.level -= units
            return None
        needed = min(units, burst) - bucket.level
        return needed / rate if rate > 0 else math.inf

    def reset(self) -> None:
        self.buckets.clear()


def retry_after_header(wait_s: float) -> int:
    """Retry-After in whole seconds, at least 1 (the header has no fractions)."""
    if math.isinf(wait_s):
        return 60
    return max(1, math.ceil(wait_s))
