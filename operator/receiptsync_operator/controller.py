"""The active replica's controller: it builds the collaborators, starts and stops their tasks, and
routes what kopf and Redis tell it to them. It decides nothing itself.

* :mod:`cleanup` - a deletion's work, at once and best effort (no finalizer holds the deletion up);
  :mod:`finalizers` - the finalizer older operators added, released when such a resource is deleted;
* :mod:`run_starter` - runs for spec edits, run-now values and schedule ticks;
* :mod:`dispatcher` - the queue into worker Jobs, within maxWorkers (beside the pure :mod:`dispatch`);
* :mod:`attempts` - heartbeats, Job and Pod state, retries and failures;
* :mod:`watchdog` - the one loop that looks at every resource;
* :mod:`kube_watch` into :mod:`job_cache` - our worker Jobs and Pods, list+watch.

Everything that decides about one resource holds that resource's lock, so a heartbeat, a watchdog
tick, a dispatch and a watch event never interleave their read-decide-write on the same status.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from redis.exceptions import RedisError

from receiptsync_common import contract

from . import job_state, metrics, runs, tenancy, worker_job
from .attempts import Attempts
from .cleanup import Cleanup
from .clock import Clock, from_offset_file
from .config import Settings
from .context import Context
from .dispatcher import Dispatcher
from .events import Events
from .finalizers import Finalizers, has_ours, resource_path
from .heartbeats import HeartbeatConsumer
from .job_cache import JobCache
from .kube import ApiError, Kube
from .kube_watch import Informer
from .log_throttle import Throttle
from .resource_cache import Key, Resource, Resources, key_of
from .run_queue import Queue
from .run_starter import RunStarter
from .status import StatusWriter, status_fields
from .watchdog import Watchdog

logger = logging.getLogger(__name__)
STOP_SECONDS = 5.0  # how long stop() waits for its tasks to end once cancelled


class Controller:
    def __init__(self, settings: Settings, kube: Kube, queue: Queue, events: Events, clock: Clock | None = None,
                 may_write: Callable[[], bool] = lambda: True) -> None:
        resources = Resources()
        jobs = JobCache()
        writer = StatusWriter(kube, resources, on_written=self._update_phase_metrics, may_write=may_write)
        base = "/apis/batch/v1" if not settings.namespace else f"/apis/batch/v1/namespaces/{settings.namespace}"
        pods = "/api/v1/pods" if not settings.namespace else f"/api/v1/namespaces/{settings.namespace}/pods"
        self.job_informer = Informer(kube, f"{base}/jobs", worker_job.worker_selector(), jobs.jobs, what="worker Jobs",
                                     on_change=self._on_job_change)
        self.pod_informer = Informer(kube, pods, worker_job.worker_selector(), jobs.pods, what="worker Pods",
                                     on_change=self._on_pod_change)
        self.ctx = Context(settings=settings, kube=kube, queue=queue, events=events, resources=resources,
                           writer=writer, jobs=jobs, clock=clock or from_offset_file(settings.test_clock_offset_file),
                           wake=self.wake, redis_warnings=Throttle(settings.redis_warning_interval),
                           jobs_synced=self.job_informer.synced.is_set)
        self.dispatcher = Dispatcher(self.ctx, self.lookup)
        self.attempts = Attempts(self.ctx, self.dispatcher, self.lookup)
        self.dispatcher.end_attempt = self.attempts.end_attempt
        self.starter = RunStarter(self.ctx, self.dispatcher, self.attempts)
        self.cleanup = Cleanup(self.ctx, self.forget)
        self.finalizers = Finalizers(self.ctx, self.cleanup)
        self.watchdog = Watchdog(self.ctx, self.starter, self.attempts, self.finalizers, self.dispatcher.is_waiting)
        self.ctx.credentials = tenancy.worker_credentials(self.ctx)
        self._tasks: list[asyncio.Task] = []
        metrics.MAX_WORKERS.set(settings.max_workers)

    # the collaborators' shared state, for tests and main
    @property
    def resources(self) -> Resources:
        return self.ctx.resources

    @property
    def writer(self) -> StatusWriter:
        return self.ctx.writer

    @property
    def queue(self) -> Queue:
        return self.ctx.queue

    # --- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        await self._learn_status_schema()
        consumer = HeartbeatConsumer(self.ctx.queue.redis,
                                     tenancy.heartbeat_handler(self.ctx, self.attempts.on_heartbeat),
                                     scope=self.ctx.settings.namespace)
        for name, coro in (("jobs", self.job_informer.run()), ("pods", self.pod_informer.run()),
                           ("dispatcher", self.dispatcher.run()), ("heartbeats", consumer.run()),
                           ("watchdog", self.watchdog.run()), *tenancy.tasks(self.ctx)):
            self._tasks.append(asyncio.create_task(coro, name=name))

    async def _learn_status_schema(self) -> None:
        name = f"{contract.PLURAL}.{contract.GROUP}"
        try:
            crd = await self.ctx.kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        except ApiError as exc:
            logger.warning("cannot read the CRD (%s); writing every status field", exc.status)
            return
        self.ctx.writer.allowed_fields = status_fields(crd, contract.VERSION)

    async def stop(self, *, leading: bool = True) -> None:
        """Stop every task; with ``leading`` (the lease is still ours) write what is pending first."""
        for task in self._tasks:
            task.cancel()
        tasks = list(self._tasks)
        _, stuck = await asyncio.wait(tasks, timeout=STOP_SECONDS) if tasks else (set(), set())
        if stuck:  # a loop that swallowed its cancel must not hold the replica's exit up
            logger.error("tasks did not stop within %.0fs: %s", STOP_SECONDS, sorted(t.get_name() for t in stuck))
        if leading:
            await self.ctx.writer.flush_all()
            await self.ctx.events.drain()
        else:
            self.ctx.writer.cancel_all()

    def wake(self) -> None:
        self.dispatcher.wake()

    # --- ReceiptSyncs ------------------------------------------------------------------------------------
    async def lookup(self, key: Key) -> Resource | None:
        """The cached resource, else read from the API (heartbeats can come before the watch does)."""
        item = self.ctx.resources.get(key)
        if item is not None or self.ctx.resources.was_deleted(key):
            return item
        try:
            body = await self.ctx.kube.get(resource_path(key))
        except ApiError as exc:
            if exc.status == 404:
                self.ctx.resources.forget(key)  # remembered as gone: its stray heartbeats cost nothing
                return None
            raise
        return self.ctx.resources.observe(body)

    async def observe(self, body: Mapping[str, Any]) -> None:
        """Every watch event but DELETED: refresh the cache; clean up a deletion; start a run if one
        is due. No metadata is written: the operator adds no finalizer (finalizers.py)."""
        key = key_of(body)
        if (body.get("metadata") or {}).get("deletionTimestamp"):
            await self.deleted(body, gone=False)
            return
        item = self.ctx.resources.observe(body)
        view = self.ctx.writer.view(key)
        if runs.next_run(item.meta, view, item.spec) or runs.observed_generation_news(item.meta, view, item.spec):
            try:
                await self.starter.start_run(key)
            except (RedisError, OSError) as exc:
                self.ctx.redis_unavailable(key, exc)  # the watchdog's resync starts it once Redis is back

    async def deleted(self, body: Mapping[str, Any], *, gone: bool = True) -> None:
        """A deletion the watch saw (DELETED, or, not ``gone`` yet, a deletionTimestamp while
        finalizers hold the object): its work is cleaned up at once, best effort (cleanup.py), and it
        is forgotten; a resource an older operator created gets our finalizer released. Handled once
        per deletion: a later event of the same deletion costs nothing."""
        key = key_of(body)
        # (A DELETED event may still list the finalizer whose removal deleted the object.)
        if not gone and has_ours(body.get("metadata") or {}):
            self.ctx.resources.observe(body)  # so nothing starts for it meanwhile
            await self.finalizers.finalize(body)
        elif self.ctx.resources.get(key) is not None or not self.ctx.resources.was_deleted(key):
            await self.cleanup(body)

    def forget(self, key: Key) -> None:
        self.ctx.resources.forget(key)
        self.ctx.writer.drop(key)
        self.dispatcher.forget(key)
        self.starter.forget(key)
        self.ctx.redis_warnings.reset(key)
        self._update_phase_metrics()

    # --- our worker Jobs and Pods ----------------------------------------------------------------------
    def _on_job_change(self, event_type: str, body: Mapping[str, Any]) -> None:
        metrics.ACTIVE_WORKERS.set(self.dispatcher.active())
        if event_type == "DELETED" or not job_state.is_active(body):
            self.wake()  # a slot may be free
            self._check_owner_soon(body)

    def _on_pod_change(self, event_type: str, body: Mapping[str, Any]) -> None:
        """Pod news (a terminated pod, a waiting reason) reach status without waiting for a pass."""
        if event_type == "DELETED":
            self.wake()
        self._check_owner_soon(body, delay=0.1)

    def _check_owner_soon(self, body: Mapping[str, Any], delay: float | None = None) -> None:
        meta = body.get("metadata") or {}
        namespace = meta.get("namespace", "")
        if body.get("kind") == "Pod" or "containers" in (body.get("spec") or {}):
            job = self.ctx.jobs.get(namespace, job_state.job_name_of_pod(body) or "")
            meta = (job or {}).get("metadata") or {}
        owner = next((o for o in meta.get("ownerReferences") or [] if o.get("kind") == contract.KIND), None)
        name = owner.get("name") if owner else None
        if not name or self.ctx.resources.get((namespace, name)) is None:
            return
        wait = self.ctx.settings.job_gone_grace + 0.1 if delay is None else delay
        asyncio.get_running_loop().call_later(wait, self._spawn_check, (namespace, name))

    def _spawn_check(self, key: Key) -> None:
        task = asyncio.create_task(self._check(key))
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _check(self, key: Key) -> None:
        try:
            await self.attempts.check(key)
        except Exception as exc:  # noqa: BLE001 - the watchdog looks again
            logger.debug("check after a Job/Pod event failed: %r", exc)

    def _update_phase_metrics(self) -> None:
        counts = self.ctx.resources.phases()
        for phase in (*contract.PHASES, "None"):
            metrics.RUNS_BY_PHASE.labels(phase).set(counts.get(phase, 0))
