"""A deleted ReceiptSync's work, done when the watch sees the deletion (a DELETED event, or the object
with a deletionTimestamp while other finalizers hold it): its queued attempts are cancelled and its
running worker Jobs deleted at once (a worker then stops within its pod's grace period, and a Cancelled
Event names them), then the operator forgets the resource.

Best effort, and nothing waits for it: the operator puts no finalizer on ReceiptSyncs, so a deletion
never hangs on it. Whatever it misses (Redis away, an API error, the operator not running at the
time) goes anyway:

* a worker Job carries an ownerReference to its ReceiptSync, so the garbage collector deletes it and
  its pod with it (finished Jobs are left to it: deleting them here would only cost writes);
* the dispatcher drops a queue entry whose resource is gone or whose jobId the resource no longer
  shows (dispatcher.start_attempt);
* the credentials pass revokes an attempt's credentials once its Job is gone.

Redis being away delays this by at most delete_redis_timeout.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from redis.exceptions import RedisError

from receiptsync_common import contract

from . import job_state
from .context import Context, log_extra
from .events import NORMAL
from .kube import ApiError
from .resource_cache import Key, key_of
from .status import messages as say

logger = logging.getLogger("receiptsync_operator.cleanup")


def queue_prefix(meta: Mapping[str, Any]) -> str:
    """Every job id of this resource instance starts with this (contract.make_job_id)."""
    return f"{meta.get('namespace')}.{meta.get('name')}.{str(meta.get('uid', ''))[:8]}."


def running_jobs(jobs: Iterable[Mapping[str, Any]], namespace: str, uid: str,
                 status: Mapping[str, Any]) -> dict[str, bool]:
    """The worker Jobs of the resource ``uid`` that still run, each with whether it is going already:
    the garbage collector may have got there before the operator saw the deletion (the Job is being
    deleted, or gone from the cache while the status still shows its run Started)."""
    found, known = {}, set()
    for job in jobs:
        meta = job.get("metadata") or {}
        if meta.get("namespace") == namespace and any(o.get("uid") == uid for o in meta.get("ownerReferences") or []):
            known.add(meta["name"])
            if job_state.is_active(job):
                found[meta["name"]] = bool(meta.get("deletionTimestamp"))
    shown = status.get("workerJob")
    if uid and shown and status.get("phase") == contract.PHASE_STARTED and shown not in known:
        found[shown] = True
    return dict(sorted(found.items()))


class Cleanup:
    def __init__(self, ctx: Context, forget: Callable[[Key], None]) -> None:
        self.ctx = ctx
        self._forget = forget

    async def __call__(self, body: Mapping[str, Any]) -> None:
        """Never raises: each part logs what it could not do (see the module's docstring for who
        does it instead)."""
        key = key_of(body)
        meta = dict(body.get("metadata") or {})
        item = self.ctx.resources.get(key)
        lock = item.lock if item is not None else asyncio.Lock()
        async with lock:
            current = self.ctx.writer.view(key) if item is not None else dict(body.get("status") or {})
            await self._cancel_queued(key, meta, current.get("jobId"))
            stopped = await self._stop_workers(key, meta, current)
            if stopped:
                self.ctx.events.post(meta, NORMAL, contract.REASON_CANCELLED, say.jobs_deleted(stopped))
            self._forget(key)
        self.ctx.wake()  # slots may be free

    async def _cancel_queued(self, key: Key, meta: Mapping[str, Any], job_id: str | None) -> None:
        prefix = queue_prefix(meta)
        try:
            async with asyncio.timeout(self.ctx.settings.delete_redis_timeout):
                ids = {e.job_id for e in await self.ctx.queue.entries() if e.job_id.startswith(prefix)}
                if job_id:
                    ids.add(job_id)
                await self.ctx.queue.forget(*ids)
        except (TimeoutError, RedisError, OSError) as exc:
            logger.warning("queued work not cancelled, Redis unavailable (the dispatcher drops it once Redis "
                           "is back): %s", exc, extra=log_extra(key))

    async def _stop_workers(self, key: Key, meta: Mapping[str, Any], status: Mapping[str, Any]) -> list[str]:
        """Delete the resource's running worker Jobs (from the Job cache: no list call) and name those
        that are going, whoever deletes them. A Job the cache does not know yet, or one whose deletion
        fails, goes by garbage collection."""
        namespace = meta.get("namespace", "")
        stopped = []
        for name, going in running_jobs(self.ctx.jobs.jobs.holding.values(), namespace, meta.get("uid", ""),
                                        status).items():
            try:
                if not going:
                    await self.ctx.kube.delete(f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
                                               propagation="Background")
                stopped.append(name)
            except Exception as exc:  # noqa: BLE001 - best effort: the garbage collector deletes it anyway
                if isinstance(exc, ApiError) and exc.status == 404:
                    stopped.append(name)  # the garbage collector was first
                else:
                    logger.warning("worker Job not deleted (the garbage collector will): %r", exc,
                                   extra=log_extra(key, job=name))
        return stopped
