"""How long things wait before they are tried again, and when a failure is worth telling about.

* Attempts: a failed attempt's retry waits ``base·2^(n-1)`` seconds (n = the failed attempt's number),
  at most ``cap``, like Kubernetes' own Job back-off (10 s doubling to 6 min), with jitter so retries
  of many resources that failed together (a database outage) do not come back together.
* Job creations the API refused for now (RBAC, quota, 5xx): per attempt, 1 s doubling to a minute.
* Queue entries whose dispatch keeps failing are set aside (dead-letter) after a number of failures.
"""
from __future__ import annotations

import dataclasses
import datetime as dt

JITTER = 0.2  # +-10 %


def retry_delay(failed_attempt: int, *, base: float, cap: float, rand: float) -> float:
    """Seconds before the attempt after ``failed_attempt`` may start; ``rand`` in [0, 1)."""
    exponent = min(max(failed_attempt, 1) - 1, 32)
    delay = min(cap, base * 2 ** exponent)
    return max(0.0, delay * (1 - JITTER / 2 + JITTER * rand))


def retry_at(now: dt.datetime, failed_attempt: int, *, base: float, cap: float, rand: float) -> dt.datetime:
    """When the next attempt may start, to the whole second (status shows it to the second)."""
    moment = now + dt.timedelta(seconds=retry_delay(failed_attempt, base=base, cap=cap, rand=rand))
    return moment.replace(microsecond=0) + (dt.timedelta(seconds=1) if moment.microsecond else dt.timedelta())


def event_worth_posting(failures: int) -> bool:
    """One Event per doubling of a long refusal keeps it visible without flooding: 1, 2, 4, 8, then
    every 16th."""
    return failures in (1, 2, 4, 8) or (failures > 0 and failures % 16 == 0)


@dataclasses.dataclass
class CreationBackoff:
    """Exponential backoff per job id for refused Job creations (monotonic seconds)."""

    base: float = 1.0
    cap: float = 60.0
    failures: dict[str, int] = dataclasses.field(default_factory=dict)
    not_before: dict[str, float] = dataclasses.field(default_factory=dict)

    def failed(self, key: str, now: float) -> float:
        count = self.failures.get(key, 0) + 1
        self.failures[key] = count
        delay = min(self.cap, self.base * 2 ** (count - 1))
        self.not_before[key] = now + delay
        return delay

    def succeeded(self, key: str) -> None:
        self.failures.pop(key, None)
        self.not_before.pop(key, None)

    def blocked(self, now: float) -> set[str]:
        return {key for key, when in self.not_before.items() if when > now}

    def attempts(self, key: str) -> int:
        return self.failures.get(key, 0)


@dataclasses.dataclass
class FailureCounter:
    """Consecutive dispatch failures per queue entry; ``failed`` says when one is to be set aside."""

    limit: int = 5
    counts: dict[str, int] = dataclasses.field(default_factory=dict)

    def failed(self, key: str) -> bool:
        self.counts[key] = self.counts.get(key, 0) + 1
        return self.counts[key] >= self.limit

    def succeeded(self, key: str) -> None:
        self.counts.pop(key, None)

    def count(self, key: str) -> int:
        return self.counts.get(key, 0)
