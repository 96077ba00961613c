"""At most one log line per key per interval (e.g. one "Redis unavailable" warning per resource per
minute instead of one per second), counting what was held back."""
from __future__ import annotations

import time
from collections.abc import Callable, Hashable


class Throttle:
    def __init__(self, interval: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._monotonic = monotonic
        self._last: dict[Hashable, float] = {}
        self._held: dict[Hashable, int] = {}

    def allow(self, key: Hashable) -> int | None:
        """None when ``key`` spoke less than ``interval`` seconds ago (counted as held back); else
        how many were held back since its last line (0 the first time)."""
        now = self._monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)

    def reset(self, key: Hashable) -> None:
        """The condition is over: the next occurrence is logged at once."""
        self._last.pop(key, None)
        self._held.pop(key, None)
