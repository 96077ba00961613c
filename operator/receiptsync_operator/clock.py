"""The time the scheduler reads, injectable: production uses the system clock; tests pass their own
(in-process, tests/operator/clocks.py) or point the operator at an offset file (the testing knob below, for e2e tests).

Only scheduling decisions (which tick is due, lastScheduleTime, nextScheduleTime) read this clock.
Everything measured against the worker's own timestamps (heartbeat age, spec.timeout) keeps the
system clock, so shifting scheduled time in a test never makes a healthy worker look lost.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
from typing import Protocol

logger = logging.getLogger(__name__)


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware."""


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)


class OffsetFileClock:
    """Testing knob (RECEIPTSYNC_TEST_CLOCK_OFFSET_FILE): ``base`` plus the number of seconds written
    in ``path`` (missing, empty or unreadable: 0). The file is re-read whenever it changes, so a test
    can move time forward (or back) while the operator runs."""

    def __init__(self, path: str, base: Clock | None = None) -> None:
        self.path = path
        self._base = base or SystemClock()
        self._stamp: tuple[int, int, int] | None = None
        self._offset = 0.0

    def offset(self) -> float:
        try:
            info = os.stat(self.path)
        except OSError:
            self._stamp, self._offset = None, 0.0
            return 0.0
        stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
        if stamp != self._stamp:
            try:
                with open(self.path, encoding="utf-8") as handle:
                    text = handle.read().strip()
                self._offset = float(text) if text else 0.0
                self._stamp = stamp
            except (OSError, ValueError) as exc:
                logger.warning("clock offset file %s unreadable: %s", self.path, exc)
        return self._offset

    def now(self) -> dt.datetime:
        return self._base.now() + dt.timedelta(seconds=self.offset())


def from_offset_file(path: str) -> Clock:
    """The scheduler's clock: the system clock, or the testing knob's when ``path`` is set."""
    if not path:
        return SystemClock()
    logger.warning("scheduler clock shifted by the offset in %s (a testing setting)", path)
    return OffsetFileClock(path)
