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


def running_job_names(jobs: Iterable[Mapping[str, Any]], namespace: str, uid: str) -> list[str]:
    """The worker Jobs of the resource ``uid`` that still run and are not being deleted already."""
    names = []
    for job in jobs:
        meta = job.get("metadata") or {}
        if (meta.get("namespace") == namespace and not meta.get("deletionTimestamp") and job_state.is_active(job)
                and any(o.get("uid") == uid for o in meta.get("ownerReferences") or [])):
            names.append(meta["name"])
    return sorted(names)


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
            stopped = await self._stop_workers(key, meta)
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

    async def _stop_workers(self, key: Key, meta: Mapping[str, Any]) -> list[str]:
        """Delete the resource's running worker Jobs (from the Job cache: no list call). A Job the
        cache does not know yet, or one whose deletion fails, goes by garbage collection."""
        namespace = meta.get("namespace", "")
        deleted = []
        for name in running_job_names(self.ctx.jobs.jobs.holding.values(), namespace, meta.get("uid", "")):
            try:
                await self.ctx.kube.delete(f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
                                           propagation="Background")
                deleted.append(name)
            except Exception as exc:  # noqa: BLE001 - best effort: the garbage collector deletes it anyway
                if not (isinstance(exc, ApiError) and exc.status == 404):
                    logger.warning("worker Job not deleted (the garbage collector will): %r", exc,
                                   extra=log_extra(key, job=name))
        return deleted
