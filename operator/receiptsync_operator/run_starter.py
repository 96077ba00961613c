"""Starting runs: for a spec edit or a run-now value (:func:`runs.next_run`), or a schedule tick
(:func:`runs.schedule_step`), after the checks of the spec a worker cannot do for itself (the
operator reads no Secret: a missing one shows on the worker's pod). Enqueueing and Job creation
are the dispatcher's; stopping replaced runs' Jobs is the attempts'."""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from receiptsync_common import contract

from . import runs, validation
from . import status as st
from .attempts import Attempts
from .context import Context, log_extra, utcnow
from .dispatcher import Dispatcher
from .events import WARNING
from .resource_cache import Key, Resource
from .status import messages as say

logger = logging.getLogger("receiptsync_operator.runs")


class RunStarter:
    def __init__(self, ctx: Context, dispatcher: Dispatcher, attempts: Attempts) -> None:
        self.ctx = ctx
        self.dispatcher = dispatcher
        self.attempts = attempts
        self._schedule_memo: dict[Key, tuple[tuple, dt.datetime | None]] = {}

    def forget(self, key: Key) -> None:
        self._schedule_memo.pop(key, None)

    async def start_run(self, key: Key) -> None:
        """A run for a spec edit or a run-now value, if one is due and no run is going; else, for a
        scheduled resource, status.observedGeneration catches up with a spec edit at once."""
        item = self.ctx.resources.get(key)
        if item is None:
            return
        async with item.lock:
            current = self.ctx.writer.view(key)
            trigger = runs.next_run(item.meta, current, item.spec)
            if trigger is None:
                news = runs.observed_generation_news(item.meta, current, item.spec)
                if news:
                    await self.ctx.writer.write(key, news)
                return
            await self.start(item, key, current, trigger)
        self.dispatcher.wake()

    async def start(self, item: Resource, key: Key, current: Mapping[str, Any], trigger: runs.Trigger, *,
                    replace: bool = False, extra: Mapping[str, Any] | None = None) -> bool:
        """Start a run for ``trigger`` (the caller holds the lock); ``extra``: status news to write
        with it. With ``replace``, runs still going are stopped first. True if the status was written."""
        now = utcnow()
        run_id = runs.next_run_id(current)
        common = dict(now=now, generation=trigger.generation, run_now=trigger.run_now,
                      trigger=trigger.kind, spec=item.spec, schedule_time=trigger.schedule_time)
        reason = contract.REASON_INVALID_SPEC
        try:
            # The operator never reads Secrets: a missing Gmail Secret or key shows on the worker's
            # pod (CreateContainerConfigError), which status names.
            validation.validate(item.spec, None, check_secret=False)
            payload = runs.build_payload(item.meta, item.spec, run_id=run_id, attempt=1, now=now)
        except validation.InvalidSpec as exc:
            message = str(exc)
            logger.warning("run cannot start: %s", message, extra=log_extra(key, run=run_id, reason=reason))
            patch = {**(extra or {}), **st.invalid_spec(current, message=message, run_id=run_id, reason=reason,
                                                         **common)}
            if await self.ctx.writer.write(key, patch):
                self.ctx.events.post(item.meta, WARNING, reason, message)
                return True
            return False
        if replace:
            # Replace: the runs still going end first (their attempts out of the queue, Jobs deleted).
            stop_patch, stopped = st.replaced(current, new_run_id=run_id, now=now)
            for entry in stopped:
                await self._stop_run(item, key, entry, say.replace_event(entry.get("runId"), run_id))
            current = st.apply(current, stop_patch)
        # Redis first: a status that says Queued is always backed by a queue entry.
        await self.dispatcher.enqueue(payload, score=now.timestamp())
        patch = {**(extra or {}), **st.queued(current, run_id=run_id, job_id=payload.job_id,
                                               date_range=runs.known_range(payload), **common)}
        # A free slot and nobody ahead: the worker Job now, and Queued + workerJob in one write.
        job_name = await self.dispatcher.start_now(item, key, payload)
        if job_name is not None:
            patch = st.merge(patch, st.worker_starting(st.apply(current, patch), job_name=job_name))
        else:  # every slot busy: its place in line goes out with this write
            place = self.dispatcher.place_on_arrival(key, payload.job_id, payload.priority, st.apply(current, patch))
            patch = st.merge(patch, place or {})
        if not await self.ctx.writer.write(key, patch):
            return False
        logger.info("run queued", extra=log_extra(key, run=run_id, job_id=payload.job_id,
                                                    priority=payload.priority, trigger=trigger.kind))
        # No Event for Queued itself: one goes out if the run has to wait for a slot.
        return True

    async def _stop_run(self, item: Resource, key: Key, entry: Mapping[str, Any], message: str) -> None:
        job_id = entry.get("jobId") or ""
        parsed = runs.parse_job_id(job_id)
        await self.ctx.queue.dequeue(job_id)
        job_name = entry.get("workerJob") or (runs.job_name_for(item.meta, parsed[2], parsed[3]) if parsed else "")
        if job_name:
            await self.ctx.job_exists(key[0], job_name)
            await self.attempts.stop_job(key[0], job_name, only_if_active=True)
        logger.info("run stopped", extra=log_extra(key, job_id=job_id, run=entry.get("runId")))
        self.ctx.events.post(item.meta, WARNING, contract.REASON_REPLACED, message)

    async def schedule(self, key: Key) -> None:
        """Start a run for a due tick, skip it, or just keep nextScheduleTime right. Cheap when
        nothing can have changed: the decision is only recomputed when its inputs change or the
        next tick has come."""
        item = self.ctx.resources.get(key)
        if item is None or not runs.is_scheduled(item.spec):
            self._schedule_memo.pop(key, None)
            return
        now = self.ctx.clock.now()
        memo = self._schedule_memo.get(key)
        if memo is not None and memo[0] == runs.schedule_inputs(item.meta, item.spec, self.ctx.writer.view(key)) \
                and (memo[1] is None or now < memo[1]):
            return
        async with item.lock:
            current = self.ctx.writer.view(key)
            step = runs.schedule_step(item.meta, item.spec, current, now)
            if step is None:
                return
            if step.trigger is not None:
                written = await self.start(item, key, current, step.trigger, replace=step.replace, extra=step.patch)
            else:
                written = await self.ctx.writer.write(key, step.patch) if step.patch else True
            if not written:
                return  # try again on the next tick
            for event in step.events:
                self.ctx.events.post(item.meta, *event)
                logger.info(event[2], extra=log_extra(key, reason=event[1]))
            self._schedule_memo[key] = (runs.schedule_inputs(item.meta, item.spec, self.ctx.writer.view(key)),
                                        step.next_time)
        if step.trigger is not None:
            self.dispatcher.wake()
