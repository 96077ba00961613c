"""Counters benchmarks and tests read from GET /_emulator/stats.

Per mailbox: quota units consumed, calls by method, calls refused by quota (429/403), injected
failures; globally: HTTP requests and batches. Times are wall-clock epoch seconds of the first and
last charged call, so a benchmark can compare its elapsed time with units / rate.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class MailboxStats:
    units: int = 0
    requests: Counter = field(default_factory=Counter)  # method -> calls (any outcome)
    rate_limited: int = 0  # refused by the quota bucket
    injected_429: int = 0
    injected_5xx: int = 0
    errors: Counter = field(default_factory=Counter)  # status -> other error answers
    first_charged_at: float | None = None
    last_charged_at: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "units": self.units,
            "requests": dict(self.requests),
            "requests_total": sum(self.requests.values()),
            "rate_limited": self.rate_limited,
            "injected_429": self.injected_429,
            "injected_5xx": self.injected_5xx,
            "responses_429": self.rate_limited + self.injected_429,
            "errors": {str(code): count for code, count in self.errors.items()},
            "first_charged_at": self.first_charged_at,
            "last_charged_at": self.last_charged_at,
        }


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.mailboxes: dict[str, MailboxStats] = {}
        self.http_requests = 0
        self.batch_requests = 0
        self.token_grants = 0
        self.token_refusals = 0
        self.since = time.time()

    def of(self, mailbox: str) -> MailboxStats:
        return self.mailboxes.setdefault(mailbox, MailboxStats())

    def charged(self, mailbox: str, units: int) -> None:
        entry = self.of(mailbox)
        now = time.time()
        entry.units += units
        entry.first_charged_at = entry.first_charged_at or now
        entry.last_charged_at = now

    def as_json(self, quota: dict[str, Any]) -> dict[str, Any]:
        return {
            "since": self.since,
            "http_requests": self.http_requests,
            "batch_requests": self.batch_requests,
            "token_grants": self.token_grants,
            "token_refusals": self.token_refusals,
            "quota": quota,
            "mailboxes": {address: entry.as_json() for address, entry in sorted(self.mailboxes.items())},
        }
