"""The dispatcher's shell around the pure :mod:`dispatch`: it owns the worker slots, the queue as it
last saw it, the back-off of refused Job creations and the dead-letter counts, and it is the only one
that enqueues (so "what the last dispatch saw, plus what was enqueued since" stays true).

Each queue entry is handled on its own: a malformed payload, a spec that became invalid or an API
error for one resource never stops the others; an entry that keeps failing is set aside.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from redis.exceptions import RedisError

from receiptsync_common import contract
from receiptsync_common.jobspec import JobPayload

from . import dispatch, job_state, metrics, runs, worker_job
from . import status as st
from .context import Context, log_extra, redact, utcnow
from .events import NORMAL, WARNING
from .kube import ApiError
from .resource_cache import Key, Resource
from .retry_policy import CreationBackoff, FailureCounter, event_worth_posting
from .status import messages as say
from .status import policy

logger = logging.getLogger("receiptsync_operator.dispatcher")

# (item, key, reason, detail) -> the run's current attempt ends (retry or fail), the caller holds the lock.
EndAttempt = Callable[..., Awaitable[None]]


class Dispatcher:
    def __init__(self, ctx: Context, lookup: Callable[[Key], Awaitable[Resource | None]]) -> None:
        self.ctx = ctx
        self._lookup = lookup
        self.end_attempt: EndAttempt | None = None  # wired by the controller (attempts.end_attempt)
        self.backoff = CreationBackoff()
        self.failures = FailureCounter(limit=ctx.settings.dead_letter_after)
        self._wake = asyncio.Event()
        # Worker slots are taken under this lock (a dispatch, or an immediate start).
        self._slots = asyncio.Lock()
        self._queued_ids: frozenset[str] = frozenset()  # the queue as the last dispatch saw it
        self._waiting_total: int | None = None  # waiting after the last dispatch (None: none yet)
        self._enqueued_since_dispatch = 0  # entries the last dispatch has not seen
        self._waiting_by_priority: Counter[str] = Counter()  # as the last pass left them, plus enqueued since
        self._event_pending: set[str] = set()  # placed on arrival, Queued Event not posted yet
        self._waiting_since: dict[str, float] = {}  # job id -> when the dispatcher first saw it wait
        self._place_shown: dict[Key, tuple[str, int]] = {}  # key -> (job id, place in line last written)
        self._waiting_written: dict[Key, float] = {}
        self._last_pass = float("-inf")  # monotonic time of the last pass that read the queue

    # --- what others ask --------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def wake_later(self, delay: float) -> None:
        asyncio.get_running_loop().call_later(max(0.0, delay), self._wake.set)

    def is_waiting(self, job_id: str) -> bool:
        """In the queue as the last dispatch saw it."""
        return job_id in self._queued_ids

    def forget(self, key: Key) -> None:
        self._place_shown.pop(key, None)
        self._waiting_written.pop(key, None)

    def active(self) -> int:
        return self.ctx.jobs.slots_held(self.ctx.settings.namespace or None)

    async def enqueue(self, payload: JobPayload, score: float) -> None:
        await self.ctx.queue.enqueue(payload, score=score)
        self._enqueued_since_dispatch += 1
        self._waiting_by_priority[payload.priority] += 1

    async def start_now(self, item: Resource, key: Key, payload: JobPayload) -> str | None:
        """Create the worker Job of an attempt just enqueued (by the caller, who holds the lock) at
        once if a slot is free and nothing waits ahead of it: its name, else None (the dispatcher
        starts it in order, with back-off and Events should the creation be refused)."""
        free = dispatch.slot_free_now(
            synced=self.ctx.jobs_synced(), dispatching=self._slots.locked(), waiting_total=self._waiting_total,
            enqueued_since_dispatch=self._enqueued_since_dispatch - 1, active=self.active(),
            max_workers=self.ctx.settings.max_workers,
            backing_off=payload.job_id in self.backoff.blocked(time.monotonic()))
        if not free:
            return None
        job_name = runs.job_name_for(item.meta, payload.run_id, payload.attempt)
        async with self._slots:  # free (checked just above): taken without waiting
            try:
                await self._create_job(item, key, payload, job_name)
            except OSError:
                return None  # credentials could not be issued (database or Redis away): the dispatcher retries
            except ApiError as exc:
                if exc.status != 409:
                    return None  # the dispatcher tries again, and tells
                await self.ctx.queue.dequeue(payload.job_id)  # it exists already: never twice
            self._enqueued_since_dispatch -= 1
        return job_name

    # --- the loop --------------------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that comes
                # as the wake-up does, and shutdown then waits on this loop forever.
                async with asyncio.timeout(1.0):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.dispatch_once()
            except (RedisError, OSError) as exc:
                logger.warning("dispatch skipped, Redis unavailable: %s", exc)
                await asyncio.sleep(1.0)
            except Exception:
                logger.exception("dispatch failed")
                await asyncio.sleep(1.0)

    async def dispatch_once(self) -> None:
        mono = time.monotonic()
        if not dispatch.pass_worth_it(synced=self.ctx.jobs_synced(), active=self.active(),
                                      max_workers=self.ctx.settings.max_workers,
                                      since_last_pass=mono - self._last_pass):
            return
        self._last_pass = mono
        async with self._slots:
            self._enqueued_since_dispatch = 0
            entries = [e for e in await self.ctx.queue.entries() if self._in_scope(e.job_id)]
            self._queued_ids = frozenset(e.job_id for e in entries)
            for priority in contract.PRIORITIES:
                metrics.QUEUE_DEPTH.labels(priority).set(sum(1 for e in entries if e.priority == priority))
            if not self.ctx.jobs_synced():
                return  # capacity is unknown until our Jobs have been listed once
            metrics.ACTIVE_WORKERS.set(self.active())
            now = time.time()
            blocked = self.backoff.blocked(time.monotonic())
            # A slot the chosen entry did not take (it could not start: malformed, refused, backing
            # off) goes to the next in line in the same pass: a bad entry never holds the others up.
            tried: set[str] = set()
            while True:
                plan = dispatch.plan([e for e in entries if e.job_id not in tried], active=self.active(),
                                     max_workers=self.ctx.settings.max_workers, blocked=blocked, now=now)
                if not plan.start:
                    break
                for job_id in plan.start:
                    await self._start_guarded(job_id)
                tried.update(plan.start)
            self._waiting_total = plan.total_waiting
            self._waiting_by_priority = Counter(e.priority for e in entries if e.job_id in plan.waiting)
        due = dispatch.next_due(entries, now)
        if due is not None:
            self.wake_later(due - now)
        mono = time.monotonic()
        self._waiting_since = {job_id: self._waiting_since.get(job_id, mono) for job_id in plan.waiting}
        # An entry's score is when it was enqueued (or became due): it waited since then, even if this
        # is the first pass to see it (passes are skipped while every slot is busy).
        scores = {e.job_id: e.score for e in entries}
        self._event_pending = {j for j in self._event_pending if j in plan.waiting}  # not a set of all N
        for job_id, position in plan.waiting.items():
            waited = max(mono - self._waiting_since[job_id], now - scores.get(job_id, now))
            if waited >= policy.PLACE_FIRST_DELAY:
                if job_id in self._event_pending:
                    self._event_pending.discard(job_id)
                    self._post_waiting_event(job_id)
                try:
                    await self._show_place_in_line(job_id, position, plan.total_waiting)
                except Exception as exc:  # noqa: BLE001 - news only; the next pass tries again
                    logger.warning("place in line not shown: %r", exc, extra={"job_id": job_id})

    def _in_scope(self, job_id: str) -> bool:
        parsed = runs.parse_job_id(job_id)
        return parsed is None or self.ctx.in_scope(parsed[0])  # malformed ids are ours to set aside

    async def _start_guarded(self, job_id: str) -> None:
        """One entry: whatever goes wrong stays with it; after ``dead_letter_after`` failures in a row
        it is set aside and its run fails (when its resource can still be reached)."""
        try:
            await self.start_attempt(job_id)
        except (RedisError, OSError):
            raise  # not this entry's fault: the whole pass stops and is retried
        except Exception as exc:  # noqa: BLE001
            logger.warning("could not start queued attempt: %r", exc, extra={"job_id": job_id})
            if self.failures.failed(job_id):
                await self._dead_letter(job_id, exc)
        else:
            self.failures.succeeded(job_id)

    async def _dead_letter(self, job_id: str, exc: BaseException) -> None:
        count = self.failures.count(job_id)
        self.failures.succeeded(job_id)
        await self.ctx.queue.set_aside(job_id, time.time())
        metrics.DEAD_LETTERS.inc()
        logger.error("queue entry set aside (dead-letter) after %d failed dispatches: %r", count, exc,
                     extra={"job_id": job_id})
        parsed = runs.parse_job_id(job_id)
        if parsed is None or self.end_attempt is None:
            return
        try:
            item = await self._lookup(parsed[:2])
            if item is None:
                return
            async with item.lock:
                if st.is_current_job(self.ctx.writer.view(parsed[:2]), job_id):
                    await self.end_attempt(item, parsed[:2], contract.REASON_DEAD_LETTER,
                                           say.dead_letter(count, redact(str(exc))), stop_job=False)
        except Exception as again:  # noqa: BLE001 - the resource itself cannot be reached: logged above
            logger.warning("could not fail the set-aside run: %r", again, extra={"job_id": job_id})

    async def start_attempt(self, job_id: str) -> None:
        parsed = runs.parse_job_id(job_id)
        if parsed is None:
            raise ValueError(f"malformed queue entry {job_id!r}")
        namespace, name, run_id, attempt = parsed
        key = (namespace, name)
        item = await self._lookup(key)
        if item is None:
            await self.ctx.queue.forget(job_id)  # its resource is gone
            return
        async with item.lock:
            current = self.ctx.writer.view(key)
            is_current = st.is_current_job(current, job_id)
            if (not is_current and st.background_run_of(current, job_id) is None) or item.meta.get("deletionTimestamp"):
                logger.info("dropping stale queue entry", extra=log_extra(key, job_id=job_id))
                await self.ctx.queue.forget(job_id)
                return
            job_name = runs.job_name_for(item.meta, run_id, attempt)
            if await self.ctx.job_exists(namespace, job_name):
                await self.ctx.queue.dequeue(job_id)  # started before a restart: never twice
                return
            payload = await self.ctx.queue.payload(job_id) or runs.build_payload(
                item.meta, item.spec, run_id=run_id, attempt=attempt, now=utcnow())
            try:
                await self._create_job(item, key, payload, job_name)
            except ApiError as exc:
                if exc.status == 409:
                    await self.ctx.queue.dequeue(job_id)
                    return
                await self._job_create_failed(item, key, job_id, is_current, exc)
                return
            self._place_shown.pop(key, None)
            # Usually the worker's Started heartbeat comes first and carries this news with it (a
            # place-in-line write still pending waits for it too: its deadline is replaced).
            if is_current:
                self.ctx.writer.defer(key, st.worker_starting(current, job_name=job_name),
                                      delay=policy.WORKER_STARTING_DELAY, lock=item.lock, reset=True)
            else:
                self.ctx.writer.defer(key, {"runs": st.upsert_run(current.get("runs"), {
                    "runId": run_id, "workerJob": job_name})}, delay=policy.WORKER_STARTING_DELAY, lock=item.lock)

    async def _create_job(self, item: Resource, key: Key, payload: JobPayload, job_name: str) -> None:
        """Create an attempt's worker Job and take it out of the queue (ApiError if refused). The
        Job itself is the record (no Event: the worker's Started one names it)."""
        manifest = worker_job.build(payload, item.meta, item.spec, self.ctx.settings)
        if self.ctx.credentials is not None:  # the attempt's own credentials first: its Job references them
            await self.ctx.credentials.provision(payload, item.meta, job_name)
        created = await self.ctx.kube.create(f"/apis/batch/v1/namespaces/{key[0]}/jobs", manifest)
        self.backoff.succeeded(payload.job_id)
        self.ctx.jobs.created(created)
        await self.ctx.queue.dequeue(payload.job_id)
        metrics.JOBS_CREATED.inc()
        logger.info("worker Job created", extra=log_extra(key, job_id=payload.job_id, job=job_name,
                                                          run=payload.run_id, attempt=payload.attempt))

    async def _job_create_failed(self, item: Resource, key: Key, job_id: str, is_current: bool, exc: ApiError) -> None:
        detail = redact(exc.message or str(exc))
        reason = {403: "Forbidden", 422: "Invalid"}.get(exc.status, exc.reason or str(exc.status))
        metrics.JOB_CREATE_FAILURES.labels(reason).inc()
        if job_state.creation_refusal_is_permanent(exc.status, exc.message):
            logger.warning("worker Job refused for good", extra=log_extra(key, job_id=job_id, status=exc.status))
            self.backoff.succeeded(job_id)
            await self.ctx.queue.dequeue(job_id)
            if is_current and self.end_attempt is not None:
                await self.end_attempt(item, key, contract.REASON_WORKER_JOB_REJECTED,
                                       say.job_rejected(exc.status, detail), stop_job=False)
            return
        delay = self.backoff.failed(job_id, time.monotonic())
        message = say.job_create_failed(reason, detail)
        logger.warning("worker Job creation refused", extra=log_extra(key, job_id=job_id, status=exc.status,
                                                                       retry_in=delay))
        if event_worth_posting(self.backoff.attempts(job_id)):
            self.ctx.events.post(item.meta, WARNING, contract.REASON_WORKER_JOB_CREATE_FAILED, message)
        patch = st.job_create_failed(self.ctx.writer.view(key), message=message) if is_current else None
        if patch is not None:
            await self.ctx.writer.write(key, patch)
        self.wake_later(delay)

    def place_on_arrival(self, key: Key, job_id: str, priority: str,
                         current: Mapping[str, Any]) -> dict[str, Any] | None:
        """A run just enqueued behind busy slots (the caller holds its lock): its place in line, from
        the last pass's queue plus what came since, to go out with its Queued write (the write the
        dispatcher would otherwise make 2 s later). None while a slot is free (it should start at
        once) or before the first pass. Its Queued Event waits, as anyone's, until it has waited
        PLACE_FIRST_DELAY: a slot that frees a moment later is no news."""
        if self._waiting_total is None or self.active() < self.ctx.settings.max_workers:
            return None
        total = sum(self._waiting_by_priority.values())
        position = dispatch.arrival_place(self._waiting_by_priority, priority)
        patch = st.waiting(current, position=position, total=total, max_workers=self.ctx.settings.max_workers)
        if patch is None:
            return None
        self._place_shown[key] = (job_id, position)
        self._waiting_written[key] = time.monotonic()
        self._event_pending.add(job_id)  # posted once it has waited PLACE_FIRST_DELAY, as for anyone
        return patch

    def _post_waiting_event(self, job_id: str) -> None:
        parsed = runs.parse_job_id(job_id)
        item = self.ctx.resources.get(parsed[:2]) if parsed else None
        if item is None:
            return
        current = self.ctx.writer.view(parsed[:2])
        if current.get("jobId") == job_id and current.get("phase") == contract.PHASE_QUEUED:
            self._queued_event(item, current, current.get("message") or "")

    def _queued_event(self, item: Resource, current: Mapping[str, Any], message: str) -> None:
        """It had to wait for a slot: worth a line in `kubectl describe` (once per attempt)."""
        self.ctx.events.post(item.meta, NORMAL, contract.PHASE_QUEUED,
                             say.waiting_event(current.get("runId"), current.get("attempt"), message))

    async def _show_place_in_line(self, job_id: str, position: int, total: int) -> None:
        parsed = runs.parse_job_id(job_id)
        if parsed is None:
            return
        key = parsed[:2]
        item = self.ctx.resources.get(key)
        shown = self._place_shown.get(key)
        shown_position = shown[1] if shown is not None and shown[0] == job_id else None
        # Decided first: with a long queue nearly every waiting run's answer is "not worth a write".
        if item is None or not dispatch.place_worth_writing(shown_position, position):
            return
        async with item.lock:
            current = self.ctx.writer.view(key)
            if current.get("jobId") != job_id or current.get("phase") != contract.PHASE_QUEUED:
                return
            if current.get("reason") == contract.REASON_WORKER_JOB_CREATE_FAILED:
                return  # the refusal is the more useful news
            self._place_shown[key] = (job_id, position)
            patch = st.waiting(current, position=position, total=total, max_workers=self.ctx.settings.max_workers)
            if patch is None:
                return
            if shown_position is None:
                self._queued_event(item, current, patch["message"])
            now = time.monotonic()
            gap = policy.place_write_delay(self._waiting_written.get(key), now,
                                           near_front=position <= dispatch.PUSHED_BACK_PLACES)
            self._waiting_written[key] = now + gap
            self.ctx.writer.defer(key, patch, delay=gap, lock=item.lock)


