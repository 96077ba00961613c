"""A deleted ReceiptSync's work: queued attempts cancelled, worker Jobs deleted (their pods with
them). Redis being away delays this by at most delete_redis_timeout, then it goes on with a Warning."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from redis.exceptions import RedisError

from receiptsync_common import contract

from . import worker_job
from .context import Context, log_extra
from .events import NORMAL, WARNING
from .kube import ApiError
from .resource_cache import Key, key_of
from .status import messages as say

logger = logging.getLogger("receiptsync_operator.cleanup")


def queue_prefix(meta: Mapping[str, Any]) -> str:
    """Every job id of this resource instance starts with this (contract.make_job_id)."""
    return f"{meta.get('namespace')}.{meta.get('name')}.{str(meta.get('uid', ''))[:8]}."


def owned_job_names(listing: Mapping[str, Any], uid: str) -> list[str]:
    return [job["metadata"]["name"] for job in listing.get("items") or []
            if any(o.get("uid") == uid for o in (job.get("metadata") or {}).get("ownerReferences") or [])]


class Cleanup:
    def __init__(self, ctx: Context, forget: Callable[[Key], None]) -> None:
        self.ctx = ctx
        self._forget = forget

    async def __call__(self, body: Mapping[str, Any]) -> None:
        key = key_of(body)
        meta = dict(body.get("metadata") or {})
        item = self.ctx.resources.get(key)
        lock = item.lock if item is not None else asyncio.Lock()
        async with lock:
            current = self.ctx.writer.view(key) if item is not None else dict(body.get("status") or {})
            redis_ok = True
            try:
                async with asyncio.timeout(self.ctx.settings.delete_redis_timeout):
                    await self._cancel_queued(queue_prefix(meta), current.get("jobId"))
            except (TimeoutError, RedisError, OSError) as exc:
                redis_ok = False
                logger.warning("Redis unavailable during cleanup: %s", exc, extra=log_extra(key))
            stopped = await self._delete_jobs_of(meta)
            if stopped:
                self.ctx.events.post(meta, NORMAL, contract.REASON_CANCELLED, say.jobs_deleted(stopped))
            if not redis_ok:
                self.ctx.events.post(meta, WARNING, "CleanupIncomplete", say.CLEANUP_INCOMPLETE)
            self._forget(key)
        self.ctx.wake()

    async def _cancel_queued(self, prefix: str, job_id: str | None) -> None:
        ids = {e.job_id for e in await self.ctx.queue.entries() if e.job_id.startswith(prefix)}
        if job_id:
            ids.add(job_id)
        await self.ctx.queue.forget(*ids)

    async def _delete_jobs_of(self, meta: Mapping[str, Any]) -> list[str]:
        namespace = meta.get("namespace", "")
        listing = await self.ctx.kube.get(f"/apis/batch/v1/namespaces/{namespace}/jobs",
                                          params={"labelSelector": worker_job.worker_selector()})
        deleted = []
        for name in owned_job_names(listing, meta.get("uid")):
            try:
                await self.ctx.kube.delete(f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
                                           propagation="Background")
                deleted.append(name)
            except ApiError as exc:
                if exc.status != 404:
                    raise
        return deleted
