"""Pure dispatch: which queued attempts get a worker Job now, and everyone else's place in line.

Order is priority (high, default, low), then enqueue time (FIFO), then job id (a stable tie-break).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from receiptsync_common import contract


@dataclasses.dataclass(frozen=True)
class Entry:
    job_id: str
    priority: str
    score: float  # enqueue time


@dataclasses.dataclass(frozen=True)
class Plan:
    start: tuple[str, ...]  # job ids to start now, in order
    waiting: dict[str, int]  # job id -> place in line (1 = next), for those not started
    total_waiting: int


def _rank(entry: Entry) -> tuple[int, float, str]:
    try:
        level = contract.PRIORITIES.index(entry.priority)
    except ValueError:
        level = len(contract.PRIORITIES)
    return level, entry.score, entry.job_id


def ordered(entries: Iterable[Entry]) -> list[Entry]:
    return sorted(entries, key=_rank)


def plan(entries: Iterable[Entry], *, active: int, max_workers: int, blocked: Iterable[str] = ()) -> Plan:
    """``blocked`` job ids (e.g. their Job creation is backing off) keep their place but are not
    started; the free slots go to the next ones in line."""
    blocked = set(blocked)
    free = max(0, max_workers - active)
    start: list[str] = []
    waiting: list[str] = []
    for entry in ordered(entries):
        if free > 0 and entry.job_id not in blocked:
            start.append(entry.job_id)
            free -= 1
        else:
            waiting.append(entry.job_id)
    return Plan(
        start=tuple(start),
        waiting={job_id: i + 1 for i, job_id in enumerate(waiting)},
        total_waiting=len(waiting),
    )
