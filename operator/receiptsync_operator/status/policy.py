"""When a status change is written: at once (a transition: phase or reason) or deferred, and by how
much. Deferring coalesces counters and small news into the next write, which keeps a run to a handful
of API writes while status stays fresh. Pure functions of the times they are given."""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

# A worker's Started heartbeat (about 0.4 s after the Job is applied) nearly always makes the
# "Job created, waiting for it to start" write unnecessary: it waits this long for it.
WORKER_STARTING_DELAY = 3.0
# A run that waits less than PLACE_FIRST_DELAY for a slot never gets a place-in-line write. Later
# places go out once the run has held them PLACE_SETTLE seconds (a run that starts meanwhile carries
# the news in its start write, at no extra call), near the front at most every WAITING_MIN_GAP
# seconds, further back at most every PLACE_REFRESH (a far place moves with every start, and each
# write is an API call per waiting run: a thousand waiting made most of their status writes so).
PLACE_FIRST_DELAY = 2.0
PLACE_SETTLE = 2.0
WAITING_MIN_GAP = 2.0
PLACE_REFRESH = 30.0
# Pod trouble (Unschedulable, ImagePullBackOff) is news, but not a transition: it waits this long for
# the pod to recover by itself (an image pull retried once) before it is written.
POD_TROUBLE_DELAY = 1.0


def is_transition(patch: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """Phase or reason changes are written at once; everything else may wait."""
    return any(k in patch and patch[k] != status.get(k) for k in ("phase", "reason"))


def progress_interval(started: dt.datetime | None, now: dt.datetime, minimum: float, maximum: float) -> float:
    """Gap between counter-only status writes: grows with the attempt's age so a long run stays
    within a handful of writes, while short runs update every ``minimum`` seconds."""
    if started is None:
        return minimum
    return max(minimum, min(maximum, (now - started).total_seconds()))


def remaining(interval: float, last_write: float | None, now: float) -> float:
    """Delay so that writes of one kind are at least ``interval`` apart (monotonic seconds)."""
    return interval if last_write is None else max(0.0, interval - (now - last_write))


def place_write_delay(last_written: float | None, now: float, *, near_front: bool) -> float:
    """Delay of a place-in-line write, ``last_written`` being when the previous one was due (None:
    this is the run's first, written at once)."""
    if last_written is None:
        return 0.0
    gap = WAITING_MIN_GAP if near_front else PLACE_REFRESH
    return max(PLACE_SETTLE, gap - (now - last_written))
