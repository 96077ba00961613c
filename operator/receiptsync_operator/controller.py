"""The active replica's shell around the pure decisions: it reads the world (cache, Redis, API),
asks runs/status/dispatch what to do, and does it (enqueue, create Jobs, patch status, post Events).

Everything that decides about one resource holds that resource's lock, so a heartbeat, a watchdog
tick, a dispatch and a watch event never interleave their read-decide-write on the same status.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from redis.exceptions import RedisError

from receiptsync_common import contract
from receiptsync_common.jobspec import JobPayload

from . import dispatch, jobs, metrics, runs, validation
from . import status as st
from .clock import Clock, from_offset_file
from .config import Settings
from .events import NORMAL, WARNING, Events
from .heartbeats import HeartbeatConsumer
from .kube import ApiError, Kube, core_path, custom_path
from .queue import Queue
from .ratelimit import Throttle
from .store import Key, Resource, Resources, WorkerJobs, key_of
from .writer import StatusWriter, apply, merge, status_fields

logger = logging.getLogger(__name__)

WORKER_STARTING_DELAY = 3.0  # a worker's Started heartbeat (≈ 0.4 s after apply) nearly always makes it unnecessary
WAITING_MIN_GAP = 2.0  # place-in-line updates per resource at most this often
PLACE_FIRST_DELAY = 2.0  # a run that waits less than this for a slot never gets a place-in-line write
RESYNC_JOBS_SECONDS = 30.0
RESYNC_EVERY_PASSES = 10  # every 10th watchdog pass also retries what could not be done at once
JSON_PATCH = "application/json-patch+json"

_URL_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@")


def redact(text: str) -> str:
    """API error texts can echo the manifest (env values): never let a URL password through."""
    return _URL_CREDENTIALS.sub(r"\1***@", text)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _log_extra(key: Key, **more: Any) -> dict[str, Any]:
    # "object" as kopf's own JSON logs name it ("name" itself is a reserved LogRecord attribute).
    return {"object": {"kind": contract.KIND, "namespace": key[0], "name": key[1]}, **more}


class Controller:
    def __init__(self, settings: Settings, kube: Kube, queue: Queue, events: Events,
                 clock: Clock | None = None) -> None:
        self.settings = settings
        # The scheduler's time (ticks, lastScheduleTime, nextScheduleTime); see clock.py.
        self.clock = clock or from_offset_file(settings.test_clock_offset_file)
        self._schedule_memo: dict[Key, tuple[tuple, dt.datetime | None]] = {}
        self._redis_warnings = Throttle(settings.redis_warning_interval)
        self.kube = kube
        self.queue = queue
        self.events = events
        self.resources = Resources()
        self.jobs = WorkerJobs()
        self.writer = StatusWriter(kube, self.resources, on_written=self._update_phase_metrics)
        self.backoff = jobs.Backoff()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._waiting_written: dict[Key, float] = {}
        self._place_shown: dict[Key, tuple[str, int]] = {}  # key -> (job id, place in line last written)
        self._waiting_since: dict[str, float] = {}  # job id -> when the dispatcher first saw it wait
        # Worker slots are taken under this lock (the dispatcher, or _start's immediate Job creation).
        self._slots = asyncio.Lock()
        self._queued_ids: frozenset[str] = frozenset()  # the queue as the last dispatch saw it
        self._waiting_total: int | None = None  # waiting after the last dispatch (None: none yet)
        self._enqueued_since_dispatch = 0  # entries the last dispatch has not seen
        metrics.MAX_WORKERS.set(settings.max_workers)

    # --- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        await self._learn_status_schema()
        await self.resync_jobs()
        consumer = HeartbeatConsumer(self.queue.redis, self.on_heartbeat, scope=self.settings.namespace)
        for name, coro in (("dispatcher", self._dispatch_loop()), ("heartbeats", consumer.run()),
                           ("jobs-resync", self._resync_jobs_loop()), ("watchdog", self._watchdog_loop())):
            self._tasks.append(asyncio.create_task(coro, name=name))

    async def _learn_status_schema(self) -> None:
        name = f"{contract.PLURAL}.{contract.GROUP}"
        try:
            crd = await self.kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        except ApiError as exc:
            logger.warning("cannot read the CRD (%s); writing every status field", exc.status)
            return
        self.writer.allowed_fields = status_fields(crd, contract.VERSION)
        if self.writer.allowed_fields is not None and "observedRunNow" not in self.writer.allowed_fields:
            logger.info("the CRD has no status.observedRunNow; run-now values are kept in status.runs")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.writer.flush_all()
        await self.events.drain()

    def in_scope(self, namespace: str) -> bool:
        return not self.settings.namespace or namespace == self.settings.namespace

    def wake(self) -> None:
        self._wake.set()

    # --- ReceiptSyncs ------------------------------------------------------------------------------------
    async def lookup(self, key: Key) -> Resource | None:
        """The cached resource, else read from the API (heartbeats can come before the watch does)."""
        item = self.resources.get(key)
        if item is not None or self.resources.was_deleted(key):
            return item
        try:
            body = await self.kube.get(custom_path(contract.GROUP, contract.VERSION, contract.PLURAL, *key))
        except ApiError as exc:
            if exc.status == 404:
                self.resources.forget(key)  # remembered as gone: its stray heartbeats cost nothing
                return None
            raise
        return self.resources.observe(body)

    async def observe(self, body: Mapping[str, Any]) -> None:
        """Every watch event: refresh the cache; clean up a deletion; make sure our finalizer is on
        (before anything starts, so kopf's or our own metadata patch never races a status write);
        start a run if one is due."""
        key = key_of(body)
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            if contract.FINALIZER in (meta.get("finalizers") or []):
                self.resources.observe(body)  # so nothing starts for it meanwhile
                await self.finalize(body)
            else:
                self.forget(key)
            return
        if contract.FINALIZER not in (meta.get("finalizers") or []):
            added = await self._add_finalizer(body)
            if added is None:
                self.resources.observe(body)  # known, so the watchdog's resync tries again
                return
            body = added
        item = self.resources.observe(body)
        if runs.next_run(item.meta, self.writer.view(key), item.spec) is not None:
            try:
                await self.start_run(key)
            except (RedisError, OSError) as exc:
                # The watchdog's resync starts it once Redis is back.
                self.redis_unavailable(key, exc)

    # --- our finalizer (added and released here, not by kopf: see handlers.py) -----------------------------
    async def _add_finalizer(self, body: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The object with our finalizer added, or None if it changed meanwhile (or is gone)."""
        meta = body.get("metadata") or {}
        add = ({"op": "add", "path": "/metadata/finalizers/-", "value": contract.FINALIZER} if meta.get("finalizers")
               else {"op": "add", "path": "/metadata/finalizers", "value": [contract.FINALIZER]})
        # Guarded by the resourceVersion: a list someone else just changed is never overwritten.
        ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": meta.get("resourceVersion")}, add]
        try:
            return await self.kube.request("PATCH", self._path(key_of(body)), body=ops, content_type=JSON_PATCH)
        except ApiError as exc:
            if exc.status not in (404, 409, 422):
                logger.warning("could not add the finalizer: %s", exc, extra=_log_extra(key_of(body)))
            return None

    async def _release_finalizer(self, key: Key, body: Mapping[str, Any]) -> None:
        for _ in range(3):
            finalizers = list((body.get("metadata") or {}).get("finalizers") or [])
            if contract.FINALIZER not in finalizers:
                return
            index = finalizers.index(contract.FINALIZER)
            ops = [{"op": "test", "path": f"/metadata/finalizers/{index}", "value": contract.FINALIZER},
                   {"op": "remove", "path": f"/metadata/finalizers/{index}"}]
            try:
                await self.kube.request("PATCH", self._path(key), body=ops, content_type=JSON_PATCH)
                return
            except ApiError as exc:
                if exc.status == 404:
                    return
                if exc.status not in (409, 422):
                    raise
            try:  # the list changed under us: read it again
                body = await self.kube.get(self._path(key))
            except ApiError as exc:
                if exc.status == 404:
                    return
                raise

    async def finalize(self, body: Mapping[str, Any]) -> None:
        """A deletion: clean up, then let our finalizer go. A failure is retried by the watchdog."""
        key = key_of(body)
        try:
            await self.cleanup(body)
            await self._release_finalizer(key, body)
        except Exception as exc:  # noqa: BLE001 - whatever it was, the deletion must not stay stuck
            logger.warning("cleanup before deletion failed, will retry: %s", exc, extra=_log_extra(key))
            self.resources.observe(body)  # keep it known, so the watchdog retries

    @staticmethod
    def _path(key: Key) -> str:
        return custom_path(contract.GROUP, contract.VERSION, contract.PLURAL, *key)

    def redis_unavailable(self, key: Key, exc: BaseException) -> None:
        """One warning per resource per redis_warning_interval, however often it is retried."""
        held = self._redis_warnings.allow(key)
        if held is not None:
            logger.warning("Redis unavailable, will retry: %s%s", exc,
                           f" ({held} similar warnings suppressed)" if held else "", extra=_log_extra(key))

    def forget(self, key: Key) -> None:
        self.resources.forget(key)
        self.writer.drop(key)
        self._waiting_written.pop(key, None)
        self._place_shown.pop(key, None)
        self._schedule_memo.pop(key, None)
        self._redis_warnings.reset(key)
        self._update_phase_metrics()

    async def _read_secret(self, namespace: str, spec: Mapping[str, Any]) -> tuple[bool, dict[str, Any] | None]:
        """(checkable, Secret or None). Without RBAC to read Secrets the check is skipped: the
        worker's own auth error will tell, and that is better than never starting."""
        name, _ = validation.secret_ref(spec)
        if not name:
            return True, None
        try:
            return True, await self.kube.get(core_path("secrets", namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return True, None
            if exc.status == 403:
                logger.warning("not allowed to read Secrets; skipping the credentials check",
                               extra={"object": {"namespace": namespace, "name": name}})
                return False, None
            raise

    async def _read_connection_secret(self, namespace: str) -> str | None:
        """With RECEIPTSYNC_WORKER_CONNECTION_SECRET set: why a worker could not get its connection
        URLs in this namespace (None: fine, or not checkable without RBAC to read Secrets)."""
        name = self.settings.worker_connection_secret
        if not name:
            return None
        try:
            secret = await self.kube.get(core_path("secrets", namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return (f"Secret {name!r} (operator setting {contract.OPERATOR_ENV_WORKER_CONNECTION_SECRET}) "
                        f"does not exist in namespace {namespace!r}; workers get their Redis and database "
                        "URLs from it")
            if exc.status == 403:
                return None
            raise
        data = {**(secret.get("data") or {}), **(secret.get("stringData") or {})}
        missing = [k for k in (contract.CONNECTION_SECRET_REDIS_URL_KEY, contract.CONNECTION_SECRET_DATABASE_URL_KEY)
                   if not data.get(k)]
        if missing:
            return (f"Secret {name!r} (operator setting {contract.OPERATOR_ENV_WORKER_CONNECTION_SECRET}) in "
                    f"namespace {namespace!r} has no {' or '.join(repr(k) for k in missing)}")
        return None

    async def start_run(self, key: Key) -> None:
        """A run for a spec edit or a run-now value, if one is due and no run is going."""
        item = self.resources.get(key)
        if item is None:
            return
        async with item.lock:
            current = self.writer.view(key)
            trigger = runs.next_run(item.meta, current, item.spec)
            if trigger is None:
                return
            await self._start(item, key, current, trigger)
        self.wake()

    async def _start(self, item: Resource, key: Key, current: Mapping[str, Any], trigger: runs.Trigger, *,
                     replace: bool = False, extra: Mapping[str, Any] | None = None) -> bool:
        """Start a run for ``trigger`` (the caller holds the lock); ``extra``: status news to write
        with it. With ``replace``, runs still going are stopped first. True if the status was written."""
        now = _now()
        run_id = runs.next_run_id(current)
        common = dict(now=now, generation=trigger.generation, run_now=trigger.run_now,
                      trigger=trigger.kind, spec=item.spec, schedule_time=trigger.schedule_time)
        reason = contract.REASON_INVALID_SPEC
        try:
            checkable, secret = await self._read_secret(key[0], item.spec)
            validation.validate(item.spec, secret, check_secret=checkable)
            payload = runs.build_payload(item.meta, item.spec, run_id=run_id, attempt=1, now=now)
            problem = await self._read_connection_secret(key[0])
            if problem:
                reason = contract.REASON_CONNECTION_SECRET_MISSING
                raise validation.InvalidSpec(problem)
        except validation.InvalidSpec as exc:
            message = str(exc)
            logger.warning("run cannot start: %s", message, extra=_log_extra(key, run=run_id, reason=reason))
            patch = {**(extra or {}), **st.invalid_spec(current, message=message, run_id=run_id, reason=reason,
                                                         **common)}
            if await self.writer.write(key, patch):
                self.events.post(item.meta, WARNING, reason, message)
                return True
            return False
        if replace:
            # Replace: the runs still going end first (their attempts out of the queue, Jobs deleted).
            stop_patch, stopped = st.replaced(current, new_run_id=run_id, now=now)
            for entry in stopped:
                await self._stop_run(item, key, entry, f"Run {entry.get('runId')} stopped: run {run_id} "
                                                       "replaces it (concurrencyPolicy Replace)")
            current = apply(current, stop_patch)
        # Redis first: a status that says Queued is always backed by a queue entry.
        await self.queue.enqueue(payload, score=now.timestamp())
        patch = {**(extra or {}), **st.queued(current, run_id=run_id, job_id=payload.job_id,
                                               date_range=runs.known_range(payload), **common)}
        # A free slot and nobody ahead: the worker Job now, and Queued + workerJob in one write.
        job_name = await self._start_now(item, key, payload)
        if job_name is not None:
            patch = merge(patch, st.worker_starting(apply(current, patch), job_name=job_name))
        if not await self.writer.write(key, patch):
            return False
        logger.info("run queued", extra=_log_extra(key, run=run_id, job_id=payload.job_id,
                                                     priority=payload.priority, trigger=trigger.kind))
        # No Event for Queued itself: one goes out if the run has to wait for a slot (_show_place_in_line).
        return True

    def _slot_free_now(self, job_id: str) -> bool:
        return (self.jobs.primed and not self._slots.locked() and self._waiting_total == 0
                and self._enqueued_since_dispatch == 0 and self._active_workers() < self.settings.max_workers
                and job_id not in self.backoff.blocked(time.monotonic()))

    async def _start_now(self, item: Resource, key: Key, payload: JobPayload) -> str | None:
        """Create the worker Job for a just-enqueued attempt at once if a slot is free and nothing
        waits ahead of it (the caller holds the resource's lock); its name, else None (the
        dispatcher starts it in order, with backoff and Events should the creation be refused)."""
        if not self._slot_free_now(payload.job_id):
            self._enqueued_since_dispatch += 1
            return None
        job_name = runs.job_name_for(item.meta, payload.run_id, payload.attempt)
        async with self._slots:  # free (checked just above): taken without waiting
            try:
                await self._create_job(item, key, payload, job_name)
            except ApiError as exc:
                if exc.status != 409:
                    self._enqueued_since_dispatch += 1
                    return None
                await self.queue.dequeue(payload.job_id)  # it exists already: never twice
        return job_name

    async def _stop_run(self, item: Resource, key: Key, entry: Mapping[str, Any], message: str) -> None:
        job_id = entry.get("jobId") or ""
        parsed = runs.parse_job_id(job_id)
        await self.queue.dequeue(job_id)
        job_name = entry.get("workerJob") or (runs.job_name_for(item.meta, parsed[2], parsed[3]) if parsed else "")
        if job_name:
            if self.jobs.get(key[0], job_name) is None:
                await self._job_exists(key[0], job_name)
            await self._stop_job(key[0], job_name, only_if_active=True)
        logger.info("run stopped", extra=_log_extra(key, job_id=job_id, run=entry.get("runId")))
        self.events.post(item.meta, WARNING, contract.REASON_REPLACED, message)

    # --- the schedule ---------------------------------------------------------------------------------
    async def schedule(self, key: Key) -> None:
        """Start a run for a due tick, skip it, or just keep nextScheduleTime right. Cheap when
        nothing can have changed: the decision is only recomputed when its inputs change or the
        next tick has come."""
        item = self.resources.get(key)
        if item is None or not runs.is_scheduled(item.spec):
            self._schedule_memo.pop(key, None)
            return
        now = self.clock.now()
        memo = self._schedule_memo.get(key)
        if memo is not None and memo[0] == runs.schedule_inputs(item.meta, item.spec, self.writer.view(key)) \
                and (memo[1] is None or now < memo[1]):
            return
        async with item.lock:
            current = self.writer.view(key)
            step = runs.schedule_step(item.meta, item.spec, current, now)
            if step is None:
                return
            if step.trigger is not None:
                written = await self._start(item, key, current, step.trigger, replace=step.replace, extra=step.patch)
            else:
                written = await self.writer.write(key, step.patch) if step.patch else True
            if not written:
                return  # try again on the next tick
            for event in step.events:
                self.events.post(item.meta, *event)
                logger.info(event[2], extra=_log_extra(key, reason=event[1]))
            self._schedule_memo[key] = (runs.schedule_inputs(item.meta, item.spec, self.writer.view(key)),
                                        step.next_time)
        if step.trigger is not None:
            self.wake()

    # --- dispatch --------------------------------------------------------------------------------------
    async def _dispatch_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            except asyncio.TimeoutError:
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

    def _active_workers(self) -> int:
        return self.jobs.active_count(self.settings.namespace or None)

    async def dispatch_once(self) -> None:
        async with self._slots:
            self._enqueued_since_dispatch = 0
            entries = [e for e in await self.queue.entries() if self._entry_in_scope(e.job_id)]
            self._queued_ids = frozenset(e.job_id for e in entries)
            for priority in contract.PRIORITIES:
                metrics.QUEUE_DEPTH.labels(priority).set(sum(1 for e in entries if e.priority == priority))
            if not self.jobs.primed:
                return  # capacity is unknown until our Jobs have been listed once
            active = self._active_workers()
            metrics.ACTIVE_WORKERS.set(active)
            plan = dispatch.plan(entries, active=active, max_workers=self.settings.max_workers,
                                 blocked=self.backoff.blocked(time.monotonic()))
            for job_id in plan.start:
                await self.start_attempt(job_id)
            self._waiting_total = plan.total_waiting
        now = time.monotonic()
        self._waiting_since = {job_id: self._waiting_since.get(job_id, now) for job_id in plan.waiting}
        for job_id, position in plan.waiting.items():
            if now - self._waiting_since[job_id] >= PLACE_FIRST_DELAY:
                await self._show_place_in_line(job_id, position, plan.total_waiting)

    def _entry_in_scope(self, job_id: str) -> bool:
        parsed = runs.parse_job_id(job_id)
        return parsed is not None and self.in_scope(parsed[0])

    async def start_attempt(self, job_id: str) -> None:
        parsed = runs.parse_job_id(job_id)
        if parsed is None:
            await self.queue.dequeue(job_id)
            return
        namespace, name, run_id, attempt = parsed
        key = (namespace, name)
        item = await self.lookup(key)
        if item is None:
            await self.queue.forget(job_id)  # its resource is gone
            return
        async with item.lock:
            current = self.writer.view(key)
            is_current = st.is_current_job(current, job_id)
            if (not is_current and st.background_run_of(current, job_id) is None) or item.meta.get("deletionTimestamp"):
                logger.info("dropping stale queue entry", extra=_log_extra(key, job_id=job_id))
                await self.queue.forget(job_id)
                return
            job_name = runs.job_name_for(item.meta, run_id, attempt)
            if await self._job_exists(namespace, job_name):
                await self.queue.dequeue(job_id)  # started before a restart: never twice
                return
            payload = await self.queue.payload(job_id) or runs.build_payload(
                item.meta, item.spec, run_id=run_id, attempt=attempt, now=_now())
            try:
                await self._create_job(item, key, payload, job_name)
            except ApiError as exc:
                if exc.status == 409:
                    await self.queue.dequeue(job_id)
                    return
                await self._job_create_failed(item, key, job_id, exc)
                return
            self._place_shown.pop(key, None)
            # Usually the worker's Started heartbeat comes first and carries this news with it (a
            # place-in-line write still pending waits for it too: its deadline is replaced).
            if is_current:
                self.writer.defer(key, st.worker_starting(current, job_name=job_name),
                                  delay=WORKER_STARTING_DELAY, lock=item.lock, reset=True)
            else:
                self.writer.defer(key, {"runs": st.upsert_run(current.get("runs"), {
                    "runId": run_id, "workerJob": job_name})}, delay=WORKER_STARTING_DELAY, lock=item.lock)

    async def _create_job(self, item: Resource, key: Key, payload: JobPayload, job_name: str) -> None:
        """Create an attempt's worker Job and take it out of the queue (ApiError if refused). The
        Job itself is the record (no Event: the worker's Started one names it)."""
        manifest = jobs.build(payload, item.meta, item.spec, self.settings)
        created = await self.kube.create(f"/apis/batch/v1/namespaces/{key[0]}/jobs", manifest)
        self.backoff.succeeded(payload.job_id)
        self.jobs.created(created)
        await self.queue.dequeue(payload.job_id)
        metrics.JOBS_CREATED.inc()
        logger.info("worker Job created", extra=_log_extra(key, job_id=payload.job_id, job=job_name,
                                                           run=payload.run_id, attempt=payload.attempt))

    async def _job_exists(self, namespace: str, name: str) -> bool:
        if self.jobs.get(namespace, name) is not None:
            return True
        try:
            body = await self.kube.get(f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        self.jobs.observe("ADDED", body)
        return True

    async def _job_create_failed(self, item: Resource, key: Key, job_id: str, exc: ApiError) -> None:
        delay = self.backoff.failed(job_id, time.monotonic())
        reason = {403: "Forbidden", 422: "Invalid"}.get(exc.status, exc.reason or str(exc.status))
        metrics.JOB_CREATE_FAILURES.labels(reason).inc()
        detail = redact(exc.message or str(exc))
        message = f"Could not create the worker Job ({reason}: {detail}); retrying with backoff"
        logger.warning("worker Job creation refused", extra=_log_extra(key, job_id=job_id, status=exc.status,
                                                                        retry_in=delay))
        # One Event per doubling of the backoff keeps a long refusal visible without flooding.
        if self.backoff.attempts(job_id) in (1, 2, 4, 8) or self.backoff.attempts(job_id) % 16 == 0:
            self.events.post(item.meta, WARNING, "WorkerJobCreateFailed", message)
        current = self.writer.view(key)
        if current.get("message") != message:
            await self.writer.write(key, {"reason": contract.REASON_WAITING_FOR_WORKER, "message": message})
        self._wake_later(delay)

    def _wake_later(self, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self._wake.set)

    async def _show_place_in_line(self, job_id: str, position: int, total: int) -> None:
        parsed = runs.parse_job_id(job_id)
        if parsed is None:
            return
        key = parsed[:2]
        item = self.resources.get(key)
        shown = self._place_shown.get(key)
        shown_position = shown[1] if shown is not None and shown[0] == job_id else None
        # Decided first: with a long queue nearly every waiting run's answer is "not worth a write".
        if item is None or not dispatch.place_worth_writing(shown_position, position):
            return
        current = self.writer.view(key)
        if current.get("jobId") != job_id or current.get("phase") != contract.PHASE_QUEUED:
            return
        if current.get("message", "").startswith("Could not create the worker Job"):
            return  # the refusal is the more useful news
        self._place_shown[key] = (job_id, position)
        patch = st.waiting(current, position=position, total=total, max_workers=self.settings.max_workers)
        if patch is None:
            return
        if shown_position is None:  # it had to wait: worth a line in `kubectl describe`
            self.events.post(item.meta, NORMAL, contract.PHASE_QUEUED,
                             f"Run {current.get('runId')}, attempt {current.get('attempt') or 1}: {patch['message']}")
        last = self._waiting_written.get(key)
        gap = 0.0 if last is None else max(0.0, WAITING_MIN_GAP - (time.monotonic() - last))
        self._waiting_written[key] = time.monotonic() + gap
        self.writer.defer(key, patch, delay=gap, lock=item.lock)

    # --- our worker Jobs -------------------------------------------------------------------------------
    async def resync_jobs(self) -> None:
        params = {"labelSelector": jobs.worker_selector()}
        path = (f"/apis/batch/v1/namespaces/{self.settings.namespace}/jobs" if self.settings.namespace
                else "/apis/batch/v1/jobs")
        listing = await self.kube.get(path, params=params)
        self.jobs.replace_all(listing.get("items") or [])
        metrics.ACTIVE_WORKERS.set(self._active_workers())

    async def _resync_jobs_loop(self) -> None:
        while True:
            await asyncio.sleep(RESYNC_JOBS_SECONDS)
            try:
                await self.resync_jobs()
            except Exception as exc:
                logger.warning("listing worker Jobs failed: %s", exc)

    def on_job_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        before = self.jobs.get(*key_of(body))
        self.jobs.observe(event_type, body)
        was_active = before is not None and jobs.is_active(before)
        now_active = event_type != "DELETED" and jobs.is_active(body)
        if was_active and not now_active:
            self.wake()  # a slot is free
            owner = next((o for o in (body.get("metadata") or {}).get("ownerReferences") or []
                          if o.get("kind") == contract.KIND), None)
            if owner is not None:
                # Don't wait for the next watchdog tick to notice a worker that died.
                key = ((body.get("metadata") or {}).get("namespace", ""), owner.get("name", ""))
                asyncio.get_running_loop().call_later(self.settings.job_gone_grace + 0.1, self._spawn_check, key)

    def _spawn_check(self, key: Key) -> None:
        task = asyncio.create_task(self.check(key))
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    # --- heartbeats ------------------------------------------------------------------------------------
    async def on_heartbeat(self, hb: dict[str, str]) -> None:
        parsed = runs.parse_job_id(hb.get(contract.HB_JOB_ID, ""))
        if parsed is None or not self.in_scope(parsed[0]):
            return
        key = parsed[:2]
        item = await self.lookup(key)
        if item is None:
            return
        async with item.lock:
            await self._apply_heartbeat(item, key, hb)

    async def _apply_heartbeat(self, item: Resource, key: Key, hb: Mapping[str, str]) -> bool:
        """Apply one heartbeat (the caller holds the lock); True if it changed the phase."""
        current = self.writer.view(key)
        update = st.from_heartbeat(current, item.spec, hb, _now())
        if update is None:
            background = st.background_heartbeat(current, item.spec, hb, _now())
            if background is not None and await self.writer.write(key, background[0]):
                self.events.post(item.meta, *background[1])
            return False
        hb_time = st.parse_time(hb.get(contract.HB_TIME))
        hb_epoch = hb_time.timestamp() if hb_time else None
        if update.failure is not None:
            # The worker said it failed and exits by itself: its Job stays for its logs.
            await self.end_attempt(item, key, *update.failure, extra=update.patch, stop_job=False)
            return True
        if update.transition:
            if await self.writer.write(key, update.patch, heartbeat_time=hb_epoch):
                logger.info("run %s", update.patch.get("phase", "").lower(),
                            extra=_log_extra(key, job_id=current.get("jobId"), phase=update.patch.get("phase"),
                                             reason=update.patch.get("reason"),
                                             messages_scanned=(update.patch.get("progress") or {}).get("messagesScanned"),
                                             saved_receipts=(update.patch.get("progress") or {}).get("savedReceipts")))
                if update.event:
                    self.events.post(item.meta, *update.event)
            return True
        started = st.parse_time(current.get("startedAt"))
        last = self.writer.last_deferred_write(key)
        interval = runs.progress_interval(started, _now(), self.settings.progress_interval,
                                          self.settings.progress_max_interval)
        delay = interval if last is None else max(0.0, interval - (time.monotonic() - last))
        self.writer.defer(key, update.patch, delay=delay, lock=item.lock)
        return False

    # --- the end of an attempt -----------------------------------------------------------------------------
    async def end_attempt(self, item: Resource, key: Key, reason: str, detail: str,
                          extra: Mapping[str, Any] | None = None, stop_job: bool = True) -> None:
        """The current attempt failed or was lost (the caller holds the lock): retry or fail the run."""
        current = self.writer.view(key)
        attempt = int(current.get("attempt") or 1)
        old_job_id = current.get("jobId") or ""
        old_job_name = current.get("workerJob") or runs.job_name_for(item.meta, int(current.get("runId") or 1), attempt)
        decision = runs.after_failure(attempt, item.spec, reason, detail)
        now = _now()
        extra = dict(extra or {})
        if isinstance(decision, runs.Retry):
            previous = await self.queue.payload(old_job_id) if old_job_id else None
            if previous is None:
                previous = runs.build_payload(item.meta, item.spec, run_id=int(current.get("runId") or 1),
                                              attempt=attempt, now=now)
            payload = runs.next_attempt_payload(previous, item.meta, now)
            await self.queue.enqueue(payload, score=now.timestamp())
            self._enqueued_since_dispatch += 1
            patch = {**extra, **st.retrying(current, reason=reason, detail=detail,
                                            next_attempt=decision.next_attempt,
                                            max_attempts=decision.max_attempts, job_id=payload.job_id,
                                            now=now, spec=item.spec)}
            if await self.writer.write(key, patch):
                logger.warning("attempt ended, retrying", extra=_log_extra(
                    key, job_id=old_job_id, reason=reason, error=detail, next_attempt=decision.next_attempt))
                self.events.post(item.meta, WARNING, reason, patch["message"])
            self.wake()
        else:
            patch = st.failed(current, reason=decision.reason, message=decision.message, now=now,
                              spec=item.spec, extra=extra)
            if await self.writer.write(key, patch):
                logger.warning("run failed", extra=_log_extra(key, job_id=old_job_id, reason=decision.reason,
                                                              error=detail))
                self.events.post(item.meta, WARNING, decision.reason, decision.message)
        # The old attempt must not go on beside the new one (a hung worker still holds its slot).
        await self.queue.dequeue(old_job_id)
        if stop_job:
            await self._stop_job(key[0], old_job_name, only_if_active=True)

    async def _stop_job(self, namespace: str, name: str, *, only_if_active: bool) -> None:
        job = self.jobs.get(namespace, name)
        if job is None or (only_if_active and not jobs.is_active(job)):
            return
        try:
            await self.kube.delete(f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}", propagation="Background")
        except ApiError as exc:
            if exc.status != 404:
                logger.warning("could not delete worker Job %s: %s", name, exc)

    # --- watchdog: one loop for all resources -----------------------------------------------------------------
    async def _watchdog_loop(self) -> None:
        passes = 0
        while True:
            await asyncio.sleep(self.settings.check_interval)
            passes += 1
            try:
                await self.watchdog_pass(resync=passes % RESYNC_EVERY_PASSES == 0)
            except Exception:  # the next pass tries again; the loop must not die of a hiccup
                logger.exception("watchdog pass failed")

    async def watchdog_pass(self, *, resync: bool) -> None:
        """Schedules, and lost/late attempts (heartbeat timeout, spec.timeout, failed or vanished
        Job); with ``resync`` also what could not be done at once (a run that could not start while
        Redis was away, a failed status patch, our finalizer, a deletion's cleanup). Only attempts
        that hold a worker Job are checked against Redis, all in one round trip: a run waiting in
        the queue, as the dispatcher last saw it, has nothing to check."""
        to_check: list[Key] = []
        for key in self.resources.keys():
            item = self.resources.get(key)
            if item is None:
                continue
            try:
                if not await self._housekeeping(item, key, resync=resync):
                    continue
            except (RedisError, OSError) as exc:
                self.redis_unavailable(key, exc)
                continue
            if self._needs_check(item, key):
                to_check.append(key)
            else:
                self._redis_warnings.reset(key)
        if not to_check:
            return
        job_ids = [j for key in to_check for j in self._attempts(self.writer.view(key))]
        try:
            heartbeats = await self.queue.heartbeats(job_ids)
        except (RedisError, OSError) as exc:
            for key in to_check:
                self.redis_unavailable(key, exc)
            return
        for key in to_check:
            try:
                await self.check(key, heartbeats=heartbeats)
            except (RedisError, OSError) as exc:
                self.redis_unavailable(key, exc)
                continue
            self._redis_warnings.reset(key)

    async def _housekeeping(self, item: Resource, key: Key, *, resync: bool) -> bool:
        """The per-resource part of a watchdog pass; False when there is nothing more to check."""
        finalizers = item.meta.get("finalizers") or []
        if item.meta.get("deletionTimestamp"):
            if resync and contract.FINALIZER in finalizers:
                await self.finalize({"metadata": item.meta, "spec": item.spec, "status": item.status})
            return False
        if contract.FINALIZER not in finalizers:
            if resync:  # adding it failed before: try again (with the version our own writes left)
                meta = {**item.meta, "resourceVersion": item.resource_version or item.meta.get("resourceVersion")}
                await self.observe({"metadata": meta, "spec": item.spec, "status": item.status})
            return False
        await self.schedule(key)
        if resync and runs.next_run(item.meta, self.writer.view(key), item.spec) is not None:
            await self.start_run(key)  # e.g. a run that could not start while Redis was away
        if resync and self.writer.pending(key) and not self.writer.scheduled(key):
            async with item.lock:
                await self.writer.write(key, {})  # news left over from a failed status patch
        return True

    @staticmethod
    def _attempts(view: Mapping[str, Any]) -> list[str]:
        """Job ids of the attempts going: the current one and any overlapping older runs'."""
        current = [view["jobId"]] if view.get("jobId") and st.is_active(view) else []
        return current + [entry["jobId"] for entry in st.background_runs(view)]

    def _needs_check(self, item: Resource, key: Key) -> bool:
        view = self.writer.view(key)
        if st.background_runs(view):
            return True
        job_id = view.get("jobId")
        if not job_id or view.get("phase") not in (contract.PHASE_QUEUED, contract.PHASE_STARTED):
            return False
        if view.get("phase") == contract.PHASE_STARTED or view.get("workerJob"):
            return True
        parsed = runs.parse_job_id(job_id)
        if parsed is not None and self.jobs.get(key[0], runs.job_name_for(item.meta, parsed[2], parsed[3])):
            return True  # its Job exists, the status does not say so yet
        # Waiting in the queue as the dispatcher last saw it: nothing to check. Otherwise check()
        # asks Redis (just enqueued, or lost from the queue: then it is enqueued again).
        return job_id not in self._queued_ids

    async def check(self, key: Key, heartbeats: Mapping[str, Mapping[str, str]] | None = None) -> None:
        """Is the current attempt still alive? Catches what the stream can miss: a final heartbeat
        that came while we were down, a worker that died silently, a Job that failed or vanished."""
        item = self.resources.get(key)
        if item is None or item.meta.get("deletionTimestamp"):
            return
        if st.background_runs(self.writer.view(key)):
            async with item.lock:
                await self._check_background(item, key, heartbeats)
        async with item.lock:
            current = self.writer.view(key)
            job_id = current.get("jobId")
            if current.get("phase") not in (contract.PHASE_QUEUED, contract.PHASE_STARTED) or not job_id:
                return
            hb = await self._heartbeat(job_id, heartbeats)
            if hb and await self._apply_heartbeat(item, key, hb):
                return
            current = self.writer.view(key)
            parsed = runs.parse_job_id(job_id)
            if parsed is None:
                return
            job_name = runs.job_name_for(item.meta, parsed[2], parsed[3])
            state = await self._attempt_state(key, job_name, job_id)
            if state is None:
                return  # still waiting for a slot
            if state == runs.JOB_GONE and current.get("phase") == contract.PHASE_QUEUED and not current.get("workerJob"):
                await self._requeue(item, key, current)  # the queue lost it (e.g. Redis restarted)
                return
            verdict = self._verdict(item, key, job_name, current, state, hb)
            if verdict is not None:
                await self.end_attempt(item, key, *verdict)

    async def _heartbeat(self, job_id: str, prefetched: Mapping[str, Mapping[str, str]] | None) -> Mapping[str, str]:
        if prefetched is not None and job_id in prefetched:
            return prefetched[job_id]
        return await self.queue.heartbeat(job_id)

    async def _attempt_state(self, key: Key, job_name: str, job_id: str) -> str | None:
        """runs.JOB_* of an attempt's worker Job; None while the attempt still waits in the queue."""
        job = self.jobs.get(key[0], job_name)
        if job is None and await self.queue.contains(job_id):
            return None
        if job is None and not await self._job_exists(key[0], job_name):
            return runs.JOB_GONE
        return jobs.state(self.jobs.get(key[0], job_name))

    def _verdict(self, item: Resource, key: Key, job_name: str, view: Mapping[str, Any], state: str,
                 hb: Mapping[str, str]) -> tuple[str, str] | None:
        """runs.check_attempt for one attempt ((reason, detail) when it is lost or late)."""
        verdict = runs.check_attempt(
            view, item.spec, now=_now(), last_heartbeat=st.parse_time(hb.get(contract.HB_TIME)),
            job_state=state, job_bad_for=self.jobs.bad_for(key[0], job_name, state, time.monotonic()),
            heartbeat_timeout=self.settings.heartbeat_timeout, job_gone_grace=self.settings.job_gone_grace,
        )
        if verdict is not None:
            self.jobs.forget_bad(key[0], job_name)
        return verdict

    async def _check_background(self, item: Resource, key: Key,
                                heartbeats: Mapping[str, Mapping[str, str]] | None = None) -> None:
        """The overlapping older runs (concurrencyPolicy Allow): a final heartbeat the stream missed,
        or a worker Job that failed, ran past its deadline or vanished, ends the run (no retry)."""
        for entry in st.background_runs(self.writer.view(key)):
            job_id = entry["jobId"]
            hb = await self._heartbeat(job_id, heartbeats)
            if hb:
                await self._apply_heartbeat(item, key, hb)
            current = self.writer.view(key)
            entry = st.background_run_of(current, job_id)
            parsed = runs.parse_job_id(job_id)
            if entry is None or parsed is None:
                continue
            job_name = runs.job_name_for(item.meta, parsed[2], parsed[3])
            state = await self._attempt_state(key, job_name, job_id)
            if state is None:
                continue  # still waiting for a slot
            view = {"phase": entry.get("phase"), "workerJob": job_name,
                    "startedAt": entry.get("startedAt") or entry.get("startTime")}
            verdict = self._verdict(item, key, job_name, view, state, hb)
            if verdict is None:
                continue
            reason, detail = verdict
            message = (f"Run {entry.get('runId')}, overlapping a newer run, failed with {reason}: {detail}; "
                       "overlapping runs are not retried")
            patch = st.end_background_run(current, entry, phase=contract.PHASE_FAILED, reason=reason,
                                          message=message, now=_now(), spec=item.spec)
            if await self.writer.write(key, patch):
                self.events.post(item.meta, WARNING, reason, message)
            await self.queue.dequeue(job_id)
            await self._stop_job(key[0], job_name, only_if_active=True)

    async def _requeue(self, item: Resource, key: Key, current: Mapping[str, Any]) -> None:
        job_id = current["jobId"]
        parsed = runs.parse_job_id(job_id)
        payload: JobPayload | None = await self.queue.payload(job_id)
        if payload is None and parsed is not None:
            payload = runs.build_payload(item.meta, item.spec, run_id=parsed[2], attempt=parsed[3], now=_now())
        if payload is None:
            return
        enqueued = st.parse_time(current.get("enqueuedAt")) or _now()
        await self.queue.enqueue(payload, score=enqueued.timestamp())
        self._enqueued_since_dispatch += 1
        logger.warning("re-enqueued a queued attempt missing from the queue", extra=_log_extra(key, job_id=job_id))
        self.wake()

    # --- deletion ----------------------------------------------------------------------------------------------
    async def cleanup(self, body: Mapping[str, Any]) -> None:
        """Cancel queued work, stop running attempts, then let the finalizer go. Redis being away
        delays this by at most delete_redis_timeout, then it goes on with a Warning Event."""
        key = key_of(body)
        meta = dict(body.get("metadata") or {})
        item = self.resources.get(key)
        lock = item.lock if item is not None else asyncio.Lock()
        async with lock:
            current = self.writer.view(key) if item is not None else dict(body.get("status") or {})
            prefix = f"{meta.get('namespace')}.{meta.get('name')}.{str(meta.get('uid', ''))[:8]}."
            redis_ok = True
            try:
                async with asyncio.timeout(self.settings.delete_redis_timeout):
                    await self._cancel_queued(prefix, current.get("jobId"))
            except (TimeoutError, RedisError, OSError) as exc:
                redis_ok = False
                logger.warning("Redis unavailable during cleanup: %s", exc, extra=_log_extra(key))
            stopped = await self._delete_jobs_of(meta)
            if stopped:
                self.events.post(meta, NORMAL, contract.REASON_CANCELLED,
                                 f"Deleted worker Job(s) {', '.join(stopped)}")
            if not redis_ok:
                self.events.post(meta, WARNING, "CleanupIncomplete",
                                 "Redis was unreachable: queued work may linger until it expires; "
                                 "releasing the resource anyway")
            self.forget(key)
        self.wake()

    async def _cancel_queued(self, prefix: str, job_id: str | None) -> None:
        ids = {e.job_id for e in await self.queue.entries() if e.job_id.startswith(prefix)}
        if job_id:
            ids.add(job_id)
        await self.queue.forget(*ids)

    async def _delete_jobs_of(self, meta: Mapping[str, Any]) -> list[str]:
        namespace = meta.get("namespace", "")
        listing = await self.kube.get(f"/apis/batch/v1/namespaces/{namespace}/jobs",
                                      params={"labelSelector": jobs.worker_selector()})
        deleted = []
        for job in listing.get("items") or []:
            owners = (job.get("metadata") or {}).get("ownerReferences") or []
            if not any(o.get("uid") == meta.get("uid") for o in owners):
                continue
            name = job["metadata"]["name"]
            try:
                await self.kube.delete(f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}", propagation="Background")
                deleted.append(name)
            except ApiError as exc:
                if exc.status != 404:
                    raise
        return deleted

    def _update_phase_metrics(self) -> None:
        counts = self.resources.phases()
        for phase in (*contract.PHASES, "None"):
            metrics.RUNS_BY_PHASE.labels(phase).set(counts.get(phase, 0))
