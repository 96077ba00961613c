"""Attempts after they are queued: heartbeats into status, what the worker's Job and Pod say, and
the end of an attempt (a retry that waits its back-off, or the run's failure).

Liveness is judged on one clock, the operator's: when it received each heartbeat, never the
timestamps workers write with their own node's clock.
"""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from receiptsync_common import contract
from receiptsync_common.jobspec import JobPayload

from . import job_state, runs
from . import status as st
from .context import Context, log_extra, utcnow
from .dispatcher import Dispatcher
from .events import WARNING
from .kube import ApiError
from .resource_cache import Key, Resource
from .retry_policy import retry_at
from .status import messages as say
from .status import policy

logger = logging.getLogger("receiptsync_operator.attempts")

FAILED_CREATE_LOOK_AFTER = 5.0  # a Job without a pod this long: ask its Events why
FAILED_CREATE_LOOK_EVERY = 10.0


class Liveness:
    """Per attempt, on the operator's monotonic clock: since when it is known to run, and when a
    heartbeat (new to us) was last received."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._heard: dict[str, tuple[str | None, float]] = {}  # job id -> (heartbeat's own time, received)
        self._started: dict[str, float] = {}

    def heard(self, job_id: str, stamp: str | None) -> None:
        """A heartbeat (from the stream or the hash): only one not seen before counts as news."""
        previous = self._heard.get(job_id)
        if previous is None or previous[0] != stamp:
            self._heard[job_id] = (stamp, self._monotonic())

    def started(self, job_id: str) -> None:
        self._started.setdefault(job_id, self._monotonic())

    def running_for(self, job_id: str) -> float:
        return self._monotonic() - self._started.setdefault(job_id, self._monotonic())

    def silent_for(self, job_id: str) -> float:
        """Since the last new heartbeat, or since we started watching the attempt."""
        received = self._heard.setdefault(job_id, (None, self._monotonic()))[1]
        return self._monotonic() - received

    def forget(self, job_id: str) -> None:
        self._heard.pop(job_id, None)
        self._started.pop(job_id, None)


class Attempts:
    def __init__(self, ctx: Context, dispatcher: Dispatcher,
                 lookup: Callable[[Key], Awaitable[Resource | None]]) -> None:
        self.ctx = ctx
        self.dispatcher = dispatcher
        self._lookup = lookup
        self.liveness = Liveness()
        self._events_looked: dict[Key, float] = {}
        self._events_forbidden = False

    # --- heartbeats --------------------------------------------------------------------------------
    async def on_heartbeat(self, hb: dict[str, str]) -> None:
        parsed = runs.parse_job_id(hb.get(contract.HB_JOB_ID, ""))
        if parsed is None or not self.ctx.in_scope(parsed[0]):
            return
        key = parsed[:2]
        item = await self._lookup(key)
        if item is None:
            return
        async with item.lock:
            await self.apply_heartbeat(item, key, hb)

    async def apply_heartbeat(self, item: Resource, key: Key, hb: Mapping[str, str]) -> bool:
        """Apply one heartbeat (the caller holds the lock); True if it changed the phase."""
        job_id = hb.get(contract.HB_JOB_ID, "")
        self.liveness.heard(job_id, hb.get(contract.HB_TIME))
        current = self.ctx.writer.view(key)
        update = st.from_heartbeat(current, item.spec, hb, utcnow())
        if update is None:
            background = st.background_heartbeat(current, item.spec, hb, utcnow())
            if background is not None and await self.ctx.writer.write(key, background[0]):
                self.ctx.events.post(item.meta, *background[1])
            return False
        if update.patch.get("phase") == contract.PHASE_STARTED:
            self.liveness.started(job_id)
        hb_time = st.parse_time(hb.get(contract.HB_TIME))
        hb_epoch = hb_time.timestamp() if hb_time else None
        if update.failure is not None:
            # The worker said it failed and exits by itself: its Job stays for its logs.
            await self.end_attempt(item, key, *update.failure, extra=update.patch, stop_job=False)
            return True
        if update.transition:
            if await self.ctx.writer.write(key, update.patch, heartbeat_time=hb_epoch):
                progress = update.patch.get("progress") or {}
                logger.info("run %s", update.patch.get("phase", "").lower(), extra=log_extra(
                    key, job_id=current.get("jobId"), phase=update.patch.get("phase"),
                    reason=update.patch.get("reason"), messages_scanned=progress.get("messagesScanned"),
                    saved_receipts=progress.get("savedReceipts")))
                if update.event:
                    self.ctx.events.post(item.meta, *update.event)
            if update.patch.get("phase") in contract.TERMINAL_PHASES:
                self.liveness.forget(job_id)
            return True
        started = st.parse_time(current.get("startedAt"))
        interval = policy.progress_interval(started, utcnow(), self.ctx.settings.progress_interval,
                                               self.ctx.settings.progress_max_interval)
        delay = policy.remaining(interval, self.ctx.writer.last_deferred_write(key), time.monotonic())
        self.ctx.writer.defer(key, update.patch, delay=delay, lock=item.lock)
        return False

    # --- the end of an attempt -----------------------------------------------------------------------
    async def end_attempt(self, item: Resource, key: Key, reason: str, detail: str,
                          extra: Mapping[str, Any] | None = None, stop_job: bool = True) -> None:
        """The current attempt failed or was lost (the caller holds the lock): retry after its
        back-off, or fail the run."""
        current = self.ctx.writer.view(key)
        attempt = int(current.get("attempt") or 1)
        old_job_id = current.get("jobId") or ""
        old_job_name = current.get("workerJob") or runs.job_name_for(item.meta, int(current.get("runId") or 1), attempt)
        decision = runs.after_failure(attempt, item.spec, reason, detail)
        now = utcnow()
        extra = dict(extra or {})
        if isinstance(decision, runs.Retry):
            previous = await self.ctx.queue.payload(old_job_id) if old_job_id else None
            if previous is None:
                previous = runs.build_payload(item.meta, item.spec, run_id=int(current.get("runId") or 1),
                                              attempt=attempt, now=now)
            payload = runs.next_attempt_payload(previous, item.meta, now)
            when = retry_at(now, attempt, base=self.ctx.settings.retry_base, cap=self.ctx.settings.retry_cap,
                            rand=random.random())
            await self.dispatcher.enqueue(payload, score=when.timestamp())
            patch = {**extra, **st.retrying(current, reason=reason, detail=detail, next_attempt=decision.next_attempt,
                                            max_attempts=decision.max_attempts, job_id=payload.job_id, now=now,
                                            spec=item.spec, retry_at=when)}
            if await self.ctx.writer.write(key, patch):
                logger.warning("attempt ended, retrying", extra=log_extra(
                    key, job_id=old_job_id, reason=reason, error=detail, next_attempt=decision.next_attempt,
                    retry_at=st.rfc3339(when)))
                self.ctx.events.post(item.meta, WARNING, reason, patch["message"])
            self.dispatcher.wake_later((when - now).total_seconds())
        else:
            patch = st.failed(current, reason=decision.reason, message=decision.message, now=now,
                              spec=item.spec, extra=extra)
            if await self.ctx.writer.write(key, patch):
                logger.warning("run failed", extra=log_extra(key, job_id=old_job_id, reason=decision.reason,
                                                             error=detail))
                self.ctx.events.post(item.meta, WARNING, decision.reason, decision.message)
        self.liveness.forget(old_job_id)
        # The old attempt must not go on beside the new one (a hung worker still holds its slot).
        await self.ctx.queue.dequeue(old_job_id)
        if stop_job:
            await self.stop_job(key[0], old_job_name, only_if_active=True)

    async def stop_job(self, namespace: str, name: str, *, only_if_active: bool) -> None:
        """Foreground deletion: the Job goes only once its pod is gone, so its slot stays counted
        until then (never two attempts of one run side by side)."""
        job = self.ctx.jobs.get(namespace, name)
        if job is None or (only_if_active and not job_state.is_active(job)):
            return
        try:
            await self.ctx.kube.delete(f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}", propagation="Foreground")
        except ApiError as exc:
            if exc.status != 404:
                logger.warning("could not delete worker Job %s: %s", name, exc)

    # --- is it still alive? ----------------------------------------------------------------------------
    async def check(self, key: Key, heartbeats: Mapping[str, Mapping[str, str]] | None = None) -> None:
        """Catches what the stream can miss: a final heartbeat that came while we were down, a worker
        that died silently, a Job that failed or vanished, a pod that cannot start."""
        item = self.ctx.resources.get(key)
        if item is None or item.meta.get("deletionTimestamp"):
            return
        if st.background_runs(self.ctx.writer.view(key)):
            async with item.lock:
                await self._check_background(item, key, heartbeats)
        async with item.lock:
            current = self.ctx.writer.view(key)
            job_id = current.get("jobId")
            if current.get("phase") not in (contract.PHASE_QUEUED, contract.PHASE_STARTED) or not job_id:
                return
            hb = await self._heartbeat(job_id, heartbeats)
            if hb and await self.apply_heartbeat(item, key, hb):
                return
            current = self.ctx.writer.view(key)
            parsed = runs.parse_job_id(job_id)
            if parsed is None:
                return
            job_name = runs.job_name_for(item.meta, parsed[2], parsed[3])
            state = await self._attempt_state(key, job_name, job_id)
            if state is None:
                return  # still waiting for a slot
            if (state == job_state.JOB_GONE and current.get("phase") == contract.PHASE_QUEUED
                    and not current.get("workerJob")):
                await self._requeue(item, key, current)  # the queue lost it (e.g. Redis restarted)
                return
            if state != job_state.JOB_ACTIVE and await self._worker_said(item, key, job_name, job_id):
                return
            if await self._check_pod(item, key, job_name, current, state):
                return
            verdict = self._verdict(key, job_name, job_id, current, state)
            if verdict is not None:
                await self.end_attempt(item, key, *verdict)

    async def _heartbeat(self, job_id: str, prefetched: Mapping[str, Mapping[str, str]] | None) -> Mapping[str, str]:
        if prefetched is not None and job_id in prefetched:
            return prefetched[job_id]
        return await self.ctx.queue.heartbeat(job_id)

    async def _attempt_state(self, key: Key, job_name: str, job_id: str) -> str | None:
        """job_state.JOB_* of an attempt's worker Job; None while it still waits in the queue."""
        job = self.ctx.jobs.get(key[0], job_name)
        if job is None and await self.ctx.queue.contains(job_id):
            return None
        if job is None and not await self.ctx.job_exists(key[0], job_name):
            return job_state.JOB_GONE
        return job_state.state(self.ctx.jobs.get(key[0], job_name))

    async def _worker_said(self, item: Resource, key: Key, job_name: str, job_id: str) -> bool:
        """The worker's termination message, when its final heartbeat was lost: applied as one."""
        for pod in self.ctx.jobs.pods_of(key[0], job_name):
            outcome = job_state.termination_outcome(pod, job_id)
            if outcome is not None:
                logger.info("outcome read from the worker's termination message", extra=log_extra(key, job_id=job_id))
                return await self.apply_heartbeat(item, key, outcome)
        return False

    def _verdict(self, key: Key, job_name: str, job_id: str, view: Mapping[str, Any],
                 state: str) -> tuple[str, str] | None:
        started = view.get("phase") == contract.PHASE_STARTED
        codes = [job_state.exit_code(p) for p in self.ctx.jobs.pods_of(key[0], job_name)]
        verdict = runs.check_attempt(
            view, self.ctx.resources.get(key).spec if self.ctx.resources.get(key) else {},
            job_state=state, job_bad_for=self.ctx.jobs.bad_for(key[0], job_name, state),
            job_gone_grace=self.ctx.settings.job_gone_grace,
            running_for=self.liveness.running_for(job_id) if started else None,
            silent_for=self.liveness.silent_for(job_id) if started else None,
            heartbeat_timeout=self.ctx.settings.heartbeat_timeout,
            exit_code=next((c for c in codes if c is not None), None),
        )
        if verdict is not None:
            self.ctx.jobs.forget_job(key[0], job_name)
        return verdict

    async def _check_pod(self, item: Resource, key: Key, job_name: str, current: Mapping[str, Any], state: str) -> bool:
        """Kubernetes' own words about the worker's pod into status; True if the attempt ended."""
        settings = self.ctx.settings
        trouble = None
        for pod in self.ctx.jobs.pods_of(key[0], job_name):
            first = job_state.pod_trouble(pod, trouble_for=0.0, start_timeout=settings.worker_start_timeout,
                                          image_pull_timeout=settings.image_pull_timeout)
            if first is None:
                continue
            held = self.ctx.jobs.trouble_for(key[0], first.pod, first.word)
            trouble = job_state.pod_trouble(pod, trouble_for=held, start_timeout=settings.worker_start_timeout,
                                            image_pull_timeout=settings.image_pull_timeout)
            break
        waiting = current.get("phase") == contract.PHASE_QUEUED and state == job_state.JOB_ACTIVE
        if trouble is None and waiting and not self.ctx.jobs.pods_of(key[0], job_name):
            trouble = await self._failed_create(key, job_name)
        if trouble is not None and trouble.verdict == job_state.FATAL:
            detail = trouble.message
            if trouble.word == "Unschedulable":
                detail = say.unschedulable_too_long(trouble.message, settings.worker_start_timeout)
            elif trouble.word in job_state.IMAGE_PULL_WORDS:
                detail = say.image_pull_too_long(trouble.message, settings.image_pull_timeout)
            await self.end_attempt(item, key, trouble.reason, detail)
            return True
        if not waiting:
            return False
        if trouble is not None:
            patch = st.pod_news(current, message=say.pod_waiting(job_name, trouble.word, trouble.pod, trouble.detail))
            if patch is not None:
                await self.ctx.writer.write(key, patch)
            return False
        if self.ctx.jobs.age(key[0], job_name) > settings.worker_start_timeout:
            await self.end_attempt(item, key, contract.REASON_WORKER_LOST,
                                   say.not_started(job_name, settings.worker_start_timeout))
            return True
        return False

    async def _failed_create(self, key: Key, job_name: str) -> job_state.PodTrouble | None:
        """A pod-less Job: the Job controller's FailedCreate Event, if there is one (asked at most
        every FAILED_CREATE_LOOK_EVERY seconds per Job)."""
        job_key = (key[0], job_name)
        now = time.monotonic()
        if self._events_forbidden or self.ctx.jobs.age(*job_key) < FAILED_CREATE_LOOK_AFTER \
                or now - self._events_looked.get(job_key, -1e9) < FAILED_CREATE_LOOK_EVERY:
            return None
        self._events_looked[job_key] = now
        try:
            listing = await self.ctx.kube.get(f"/api/v1/namespaces/{key[0]}/events", params={
                "fieldSelector": f"involvedObject.kind=Job,involvedObject.name={job_name}"})
        except ApiError as exc:
            if exc.status == 403:
                self._events_forbidden = True
                logger.warning("not allowed to list Events: FailedCreate is not reported (RBAC)")
            return None
        message = job_state.failed_create(listing.get("items") or [])
        if message is None:
            return None
        held = self.ctx.jobs.age(*job_key)
        verdict = job_state.FATAL if held >= self.ctx.settings.worker_start_timeout else job_state.PENDING
        return job_state.PodTrouble("FailedCreate", message, job_name, verdict, contract.REASON_FAILED_CREATE)

    async def _check_background(self, item: Resource, key: Key,
                                heartbeats: Mapping[str, Mapping[str, str]] | None = None) -> None:
        """The overlapping older runs (concurrencyPolicy Allow): a final heartbeat the stream missed,
        or a worker Job that failed, ran past its deadline or vanished, ends the run (no retry)."""
        for entry in st.background_runs(self.ctx.writer.view(key)):
            job_id = entry["jobId"]
            hb = await self._heartbeat(job_id, heartbeats)
            if hb:
                await self.apply_heartbeat(item, key, hb)
            current = self.ctx.writer.view(key)
            entry = st.background_run_of(current, job_id)
            parsed = runs.parse_job_id(job_id)
            if entry is None or parsed is None:
                continue
            job_name = runs.job_name_for(item.meta, parsed[2], parsed[3])
            state = await self._attempt_state(key, job_name, job_id)
            if state is None:
                continue  # still waiting for a slot
            view = {"phase": entry.get("phase"), "workerJob": job_name}
            verdict = self._verdict(key, job_name, job_id, view, state)
            if verdict is None:
                continue
            reason, detail = verdict
            message = say.background_failed(entry.get("runId"), reason, detail)
            patch = st.end_background_run(current, entry, phase=contract.PHASE_FAILED, reason=reason,
                                          message=message, now=utcnow(), spec=item.spec)
            if await self.ctx.writer.write(key, patch):
                self.ctx.events.post(item.meta, WARNING, reason, message)
            self.liveness.forget(job_id)
            await self.ctx.queue.dequeue(job_id)
            await self.stop_job(key[0], job_name, only_if_active=True)

    async def _requeue(self, item: Resource, key: Key, current: Mapping[str, Any]) -> None:
        job_id = current["jobId"]
        parsed = runs.parse_job_id(job_id)
        payload: JobPayload | None = await self.ctx.queue.payload(job_id)
        if payload is None and parsed is not None:
            payload = runs.build_payload(item.meta, item.spec, run_id=parsed[2], attempt=parsed[3], now=utcnow())
        if payload is None:
            return
        enqueued = st.parse_time(current.get("enqueuedAt")) or utcnow()
        await self.dispatcher.enqueue(payload, score=enqueued.timestamp())
        logger.warning("re-enqueued a queued attempt missing from the queue", extra=log_extra(key, job_id=job_id))
        self.dispatcher.wake()
