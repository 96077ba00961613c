"""Gmail quota as a token bucket in Redis, shared by every worker syncing the same mailbox.

Gmail allows 250 quota units a second per mailbox (15,000 a minute). Each worker *reserves* units
before a request: one atomic Lua script refills the bucket by elapsed time (Redis's own clock, so
workers on different hosts agree), takes the units even into debt, and answers how long the caller
must wait before sending. Reservations are served in arrival order, so nobody starves and all
workers of a mailbox together never exceed the rate.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

import redis

from receiptsync_common import contract

GMAIL_UNITS_PER_SECOND = 250.0
# Half of the one second Gmail tolerates as a burst: requests arrive with some jitter, so we keep
# headroom rather than hitting the server's limit to the unit.
DEFAULT_BURST_UNITS = 125.0

UNITS_MESSAGES_LIST = 5
UNITS_MESSAGES_GET = 5
UNITS_ATTACHMENTS_GET = 5
UNITS_HISTORY_LIST = 2
UNITS_GET_PROFILE = 1

# KEYS[1] bucket hash; ARGV rate (units/s), capacity (units), units wanted.
# Returns the wait in microseconds (as a string: Lua numbers become integers on the way out).
_RESERVE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
tokens = math.min(capacity, tokens + (now - ts) * rate / 1000000)
tokens = tokens - wanted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
local wait = 0
if tokens < 0 then
  wait = -tokens * 1000000 / rate
end
redis.call('PEXPIRE', KEYS[1], math.floor((capacity / rate) * 1000 + wait / 1000) + 60000)
return tostring(math.floor(wait))
"""


class QuotaBucket:
    """Reserve Gmail quota units for one mailbox; ``acquire`` sleeps until they are ours."""

    def __init__(
        self,
        client: redis.Redis,
        mailbox: str,
        rate: float = GMAIL_UNITS_PER_SECOND,
        capacity: float = DEFAULT_BURST_UNITS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._key = contract.quota_key(mailbox)
        self.rate = float(rate)
        self.capacity = float(capacity)
        self._sleep = sleep
        self._script = client.register_script(_RESERVE)
        self._lock = threading.Lock()
        self.units_reserved = 0

    def reserve(self, units: float) -> float:
        """Take ``units`` now; returns seconds to wait before using them."""
        wait_us = self._script(keys=[self._key], args=[self.rate, self.capacity, units])
        with self._lock:
            self.units_reserved += int(units)
        return int(wait_us) / 1_000_000

    def acquire(self, units: float) -> float:
        """Reserve and sleep until the units are available; returns the time slept."""
        wait = self.reserve(units)
        if wait > 0:
            self._sleep(wait)
        return wait


def batch_size_for(capacity: float, units_per_call: int, ceiling: int = 100) -> int:
    """Largest batch whose units fit one bucket's burst (Gmail answers 429 to bigger bursts)."""
    return max(1, min(ceiling, int(capacity // units_per_call)))
