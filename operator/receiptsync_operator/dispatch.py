"""Pure dispatch: which queued attempts get a worker Job now, everyone else's place in line, and
when a changed place is worth a status write.

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


EXACT_PLACES = 3  # the first few in line always see their exact place


def place_worth_writing(shown: int | None, position: int) -> bool:
    """Is a waiting run's new place in line worth a status write, given the place it last showed
    (None: none yet)? Each write is an API call per waiting run, and with N waiting every start moves
    all N, so only coarse steps are written: the first place, then each time it has halved (or
    doubled, when runs of a higher priority come in ahead), and exactly within the first
    ``EXACT_PLACES`` (so always when it becomes next). About log2(N) + 3 writes per run."""
    if shown is None:
        return True
    if position == shown:
        return False
    if position <= EXACT_PLACES or shown <= EXACT_PLACES:
        return True
    return position * 2 <= shown or position >= shown * 2
