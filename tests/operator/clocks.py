"""Test clocks: time that only moves when a test says so."""
from __future__ import annotations

import datetime as dt


class FakeClock:
    """A scheduler clock (clock.Clock) that only moves when told to."""

    def __init__(self, start: dt.datetime) -> None:
        self._now = start

    def now(self) -> dt.datetime:
        return self._now

    def set(self, moment: dt.datetime) -> None:
        self._now = moment

    def advance(self, seconds: float) -> None:
        self._now += dt.timedelta(seconds=seconds)


class Ticker:
    """A monotonic clock (a ``() -> float``) that only moves when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.value = start

    def __call__(self) -> float:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += seconds
