"""Our finalizer: added before anything starts for a resource (so no metadata patch ever races a
status write), released once a deletion is cleaned up. Both guarded JSON patches: a list someone
else just changed is never overwritten."""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from receiptsync_common import contract

from .context import Context, log_extra
from .kube import ApiError, custom_path
from .resource_cache import Key, key_of

logger = logging.getLogger("receiptsync_operator.finalizers")
JSON_PATCH = "application/json-patch+json"


def resource_path(key: Key) -> str:
    return custom_path(contract.GROUP, contract.VERSION, contract.PLURAL, *key)


def add_ops(meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """JSON patch adding our finalizer, valid only if the object did not change since ``meta``."""
    add = ({"op": "add", "path": "/metadata/finalizers/-", "value": contract.FINALIZER} if meta.get("finalizers")
           else {"op": "add", "path": "/metadata/finalizers", "value": [contract.FINALIZER]})
    return [{"op": "test", "path": "/metadata/resourceVersion", "value": meta.get("resourceVersion")}, add]


def remove_ops(meta: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """JSON patch removing our finalizer where it is now (None: it is not there)."""
    finalizers = list(meta.get("finalizers") or [])
    if contract.FINALIZER not in finalizers:
        return None
    index = finalizers.index(contract.FINALIZER)
    return [{"op": "test", "path": f"/metadata/finalizers/{index}", "value": contract.FINALIZER},
            {"op": "remove", "path": f"/metadata/finalizers/{index}"}]


class Finalizers:
    def __init__(self, ctx: Context, cleanup: Callable[[Mapping[str, Any]], Awaitable[None]]) -> None:
        self.ctx = ctx
        self._cleanup = cleanup

    async def add(self, body: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The object with our finalizer added, or None if it changed meanwhile (or is gone)."""
        try:
            return await self.ctx.kube.request("PATCH", resource_path(key_of(body)),
                                               body=add_ops(body.get("metadata") or {}), content_type=JSON_PATCH)
        except ApiError as exc:
            if exc.status not in (404, 409, 422):
                logger.warning("could not add the finalizer: %s", exc, extra=log_extra(key_of(body)))
            return None

    async def release(self, key: Key, body: Mapping[str, Any]) -> None:
        for _ in range(3):
            ops = remove_ops(body.get("metadata") or {})
            if ops is None:
                return
            try:
                await self.ctx.kube.request("PATCH", resource_path(key), body=ops, content_type=JSON_PATCH)
                return
            except ApiError as exc:
                if exc.status == 404:
                    return
                if exc.status not in (409, 422):
                    raise
            try:  # the list changed under us: read it again
                body = await self.ctx.kube.get(resource_path(key))
            except ApiError as exc:
                if exc.status == 404:
                    return
                raise

    async def finalize(self, body: Mapping[str, Any]) -> None:
        """A deletion: clean up, then let our finalizer go. A failure is retried by the watchdog."""
        key = key_of(body)
        try:
            await self._cleanup(body)
            await self.release(key, body)
        except Exception as exc:  # noqa: BLE001 - whatever it was, the deletion must not stay stuck
            logger.warning("cleanup before deletion failed, will retry: %s", exc, extra=log_extra(key))
            self.ctx.resources.observe(body)  # keep it known, so the watchdog retries
