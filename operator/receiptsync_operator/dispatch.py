"""Pure dispatch: which queued attempts get a worker Job now, everyone else's place in line, and
when a changed place is worth a status write.

Order is priority (high, default, low), then enqueue time (FIFO), then job id (a stable tie-break).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

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


def _level(priority: str) -> int:
    """0 for the highest priority; an unknown one after every known one."""
    try:
        return contract.PRIORITIES.index(priority)
    except ValueError:
        return len(contract.PRIORITIES)


def _rank(entry: Entry) -> tuple[int, float, str]:
    return _level(entry.priority), entry.score, entry.job_id


def ordered(entries: Iterable[Entry]) -> list[Entry]:
    return sorted(entries, key=_rank)


def plan(entries: Iterable[Entry], *, active: int, max_workers: int, blocked: Iterable[str] = (),
         now: float | None = None) -> Plan:
    """``blocked`` job ids (e.g. their Job creation is backing off) keep their place but are not
    started; the free slots go to the next ones in line. Entries scored after ``now`` (a retry
    waiting for its back-off) are neither started nor in line yet."""
    blocked = set(blocked)
    free = max(0, max_workers - active)
    start: list[str] = []
    waiting: list[str] = []
    for entry in ordered(entries):
        if now is not None and entry.score > now:
            continue
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


# The next in line always sees its exact place (and a run leaving that place); further back only
# coarse steps: with a fast-moving queue, exact 3rd-2nd-1st writes were a third of its status writes.
EXACT_PLACES = 1
PUSHED_BACK_PLACES = 3
REFRESH_EVERY = 1.0  # seconds between passes while every worker slot is busy
PLACE_STEP = 4  # further back, a place is rewritten once it is a quarter (or four times) of the one shown


def place_worth_writing(shown: int | None, position: int) -> bool:
    """Is a waiting run's new place in line worth a status write, given the place it last showed
    (None: none yet)? Each write is an API call per waiting run, and with N waiting every start moves
    all N, so only coarse steps are written: the first place, then each time it has fallen to a
    quarter (or grown fourfold, when runs of a higher priority come in ahead), and exactly within the
    first ``EXACT_PLACES`` (so always when it becomes next). About log4(N) + 2 writes per run."""
    if shown is None:
        return True
    if position == shown:
        return False
    if position <= EXACT_PLACES or shown <= EXACT_PLACES:
        return True
    if shown < position <= PUSHED_BACK_PLACES:
        return True  # pushed back near the front (runs of a higher priority came in): rare, and news
    return position * PLACE_STEP <= shown or position >= shown * PLACE_STEP


def pass_worth_it(*, synced: bool, active: int, max_workers: int, since_last_pass: float) -> bool:
    """Is a dispatch pass worth reading the whole queue now? Not while every slot is taken (it could
    start nothing) unless the last pass is ``REFRESH_EVERY`` old: the waiting runs' places, the
    queue-depth metrics and due retries are refreshed at that pace. Without this, each of N
    ReceiptSyncs created at once woke a pass that read all N entries: O(N²) work for nothing."""
    return not synced or active < max_workers or since_last_pass >= REFRESH_EVERY


def arrival_place(waiting_by_priority: Mapping[str, int], priority: str) -> int:
    """The place of a run just enqueued (and counted) at ``priority``: behind everyone waiting at
    its priority or a higher one (FIFO within a priority)."""
    ahead = sum(n for p, n in waiting_by_priority.items() if _level(p) <= _level(priority))
    return max(1, ahead)


def next_due(entries: Iterable[Entry], now: float) -> float | None:
    """The earliest score still in the future (when a waiting retry becomes due), if any."""
    future = [e.score for e in entries if e.score > now]
    return min(future) if future else None


def slot_free_now(*, synced: bool, dispatching: bool, waiting_total: int | None, enqueued_since_dispatch: int,
                  active: int, max_workers: int, backing_off: bool) -> bool:
    """May a just-enqueued attempt get its worker Job at once, before the dispatcher's next pass?
    Only if the slots are known (our Jobs listed), no dispatch is going, nobody waited at the last
    dispatch nor was enqueued since (they are ahead of it), a slot is free, and its own Job creation
    is not backing off."""
    return (synced and not dispatching and waiting_total == 0 and enqueued_since_dispatch == 0
            and active < max_workers and not backing_off)
