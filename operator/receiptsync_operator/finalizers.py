"""Our finalizer (contract.FINALIZER), kept only for the upgrade path.

The operator no longer puts a finalizer on ReceiptSyncs: it cost a metadata patch per resource, and it
made a deletion hang while no operator ran (after `helm uninstall`, say). A deletion is cleaned up
best-effort when the watch sees it (:mod:`cleanup`), and what that misses goes anyway: worker Jobs
carry an ownerReference, so the garbage collector deletes them (and their pods) with their
ReceiptSync; the dispatcher drops a queue entry whose resource is gone or shows another jobId.

ReceiptSyncs an older operator created still carry it. While such a resource lives it is left alone
(no write: it does no harm); once the resource is being deleted, the operator cleans up as for any
deletion and then releases it, with a guarded JSON patch (a list someone else just changed is never
overwritten). A release that fails is tried again at the watchdog's next resync. This is why the
operator keeps `patch` on receiptsyncs in its RBAC.
"""
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


def has_ours(meta: Mapping[str, Any]) -> bool:
    """Does the object still carry our (legacy) finalizer?"""
    return contract.FINALIZER in (meta.get("finalizers") or [])


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
        """A legacy resource being deleted: clean up, then let our finalizer go. A failed release
        keeps the resource known, so the watchdog's next resync tries again."""
        key = key_of(body)
        try:
            await self._cleanup(body)
            await self.release(key, body)
        except Exception as exc:  # noqa: BLE001 - whatever it was, the deletion must not stay stuck
            logger.warning("releasing our finalizer failed, will retry: %s", exc, extra=log_extra(key))
            self.ctx.resources.observe(body)  # keep it known, so the watchdog retries
