"""One loop for all resources: schedules, lost or late attempts, and (every RESYNC_EVERY_PASSES
passes) what could not be done at once (a run that could not start while Redis was away, a failed
status patch, the release of the finalizer an older operator put on a resource being deleted). A
deletion's cleanup is not retried here: what it missed goes anyway (cleanup.py). Each resource is
handled on its own: an API error for one never skips the others. Each pass is counted (a metric), so
tests can wait for one."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from redis.exceptions import RedisError

from receiptsync_common import contract

from . import metrics, runs
from . import status as st
from .attempts import Attempts
from .context import Context, log_extra
from .finalizers import Finalizers, has_ours
from .resource_cache import Key, Resource
from .run_starter import RunStarter

logger = logging.getLogger("receiptsync_operator.watchdog")
RESYNC_EVERY_PASSES = 10
FAILED = object()  # a step of one resource that failed (logged, or Redis noted as away)


def attempt_ids(view: Mapping[str, Any]) -> list[str]:
    """Job ids of the attempts going: the current one and any overlapping older runs'."""
    current = [view["jobId"]] if view.get("jobId") and st.is_active(view) else []
    return current + [entry["jobId"] for entry in st.background_runs(view)]


def needs_check(view: Mapping[str, Any], *, job_known: bool, queued_ids: Collection[str]) -> bool:
    """Is there an attempt to look at? Not for a run waiting in the queue as the dispatcher last saw
    it (nothing can have happened to it); yes once it has (or should have) a worker Job, or when it
    is neither in the queue nor started (just enqueued, or lost from the queue: check() tells)."""
    if st.background_runs(view):
        return True
    job_id = view.get("jobId")
    if not job_id or view.get("phase") not in (contract.PHASE_QUEUED, contract.PHASE_STARTED):
        return False
    if view.get("phase") == contract.PHASE_STARTED or view.get("workerJob") or job_known:
        return True
    return job_id not in queued_ids


class Watchdog:
    def __init__(self, ctx: Context, starter: RunStarter, attempts: Attempts, finalizers: Finalizers,
                 is_waiting: Callable[[str], bool]) -> None:
        self.ctx = ctx
        self.starter = starter
        self.attempts = attempts
        self.finalizers = finalizers
        self._is_waiting = is_waiting

    async def run(self) -> None:
        passes = 0
        while True:
            await asyncio.sleep(self.ctx.settings.check_interval)
            passes += 1
            try:
                await self.watchdog_pass(resync=passes % RESYNC_EVERY_PASSES == 0)
            except Exception:  # the next pass tries again; the loop must not die of a hiccup
                logger.exception("watchdog pass failed")
            metrics.WATCHDOG_PASSES.inc()

    def _job_known(self, item: Resource, key: Key, view: Mapping[str, Any]) -> bool:
        parsed = runs.parse_job_id(view.get("jobId") or "")
        return (parsed is not None
                and self.ctx.jobs.get(key[0], runs.job_name_for(item.meta, parsed[2], parsed[3])) is not None)

    async def watchdog_pass(self, *, resync: bool) -> None:
        to_check: list[Key] = []
        for key in self.ctx.resources.keys():
            item = self.ctx.resources.get(key)
            if item is None:
                continue
            done = await self._for_one(key, "housekeeping", self._housekeeping(item, key, resync=resync))
            if done is FAILED or not done:
                continue
            view = self.ctx.writer.view(key)
            queued = [j for j in attempt_ids(view) if self._is_waiting(j)]
            if needs_check(view, job_known=self._job_known(item, key, view), queued_ids=queued):
                to_check.append(key)
            else:
                self.ctx.redis_warnings.reset(key)
        if not to_check:
            return
        job_ids = [j for key in to_check for j in attempt_ids(self.ctx.writer.view(key))]
        try:
            heartbeats = await self.ctx.queue.heartbeats(job_ids)
        except (RedisError, OSError) as exc:
            for key in to_check:
                self.ctx.redis_unavailable(key, exc)
            return
        for key in to_check:
            checked = await self._for_one(key, "checking the attempt", self.attempts.check(key, heartbeats=heartbeats))
            if checked is not FAILED:
                self.ctx.redis_warnings.reset(key)

    async def _for_one(self, key: Key, doing: str, step: Awaitable[Any]) -> Any:
        """One resource's step, its result or FAILED: Redis away is noted against that resource (one
        Warning, reset once it answers again), anything else logged; the other resources go on."""
        try:
            return await step
        except (RedisError, OSError) as exc:
            self.ctx.redis_unavailable(key, exc)
        except Exception as exc:  # noqa: BLE001 - this resource only
            logger.warning("%s failed: %r", doing, exc, extra=log_extra(key))
        return FAILED

    async def _housekeeping(self, item: Resource, key: Key, *, resync: bool) -> bool:
        """The per-resource part of a pass; False when there is nothing more to check."""
        if item.meta.get("deletionTimestamp"):  # still known: our legacy finalizer's release failed
            if resync and has_ours(item.meta):
                await self.finalizers.finalize({"metadata": item.meta, "spec": item.spec, "status": item.status})
            return False
        await self.starter.schedule(key)
        if resync and runs.next_run(item.meta, self.ctx.writer.view(key), item.spec) is not None:
            await self.starter.start_run(key)  # e.g. a run that could not start while Redis was away
        if resync and self.ctx.writer.pending(key) and not self.ctx.writer.scheduled(key):
            async with item.lock:
                await self.ctx.writer.write(key, {})  # news left over from a failed status patch
        return True
