"""The one status writer. Transitions go out at once; counters and other small news wait in a
per-resource pending patch that is flushed within a delay (see :mod:`.policy`), or earlier together
with the next transition.

* Lossless: whatever goes wrong with a PATCH (an API error, a dropped connection, a timeout, a
  cancellation) the news it carried go back to the pending patch, unless the API said they can never
  be written (400/422).
* Fenced: nothing is written unless ``may_write()`` says so (the replica still holds the lease).
* Honest about the schema: a field the CRD's status schema lacks is left out (a real API server would
  prune it), and logged as a WARNING once per field, so a missing CRD update never goes unnoticed.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from receiptsync_common import contract

from .. import metrics
from ..kube import ApiError, Kube, custom_path
from ..resource_cache import Key, Resources

logger = logging.getLogger(__name__)


def merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Compose two JSON merge patches (``patch`` applied after ``base``)."""
    result = dict(base)
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result


def apply(status: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch applied to a status (None deletes)."""
    result = dict(status)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = apply(result[key], value)
        else:
            result[key] = value
    return result


def _schema_keys(schema: Mapping[str, Any], prefix: str) -> set[str]:
    """Dotted paths a schema keeps below ``prefix`` ("runs[]." for list items); a subtree that keeps
    unknown fields is ``prefix + "*"``."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return {prefix + "*"}
    if schema.get("type") == "array":
        return _schema_keys(schema.get("items") or {}, prefix[:-1] + "[].")
    keys: set[str] = set()
    for name, sub in (schema.get("properties") or {}).items():
        keys.add(prefix + name)
        keys |= _schema_keys(sub, prefix + name + ".")
    return keys


def status_keys(crd: Mapping[str, Any], version: str) -> frozenset[str] | None:
    """Every status path the CRD's schema keeps ("progress.messagesScanned", "runs[].runId",
    "runs[].*" below a subtree that keeps anything); None: any."""
    for ver in (crd.get("spec") or {}).get("versions") or []:
        if ver.get("name") == version:
            schema = ((ver.get("schema") or {}).get("openAPIV3Schema") or {}).get("properties", {}).get("status")
            if not schema or schema.get("x-kubernetes-preserve-unknown-fields"):
                return None
            return frozenset(_schema_keys(schema, ""))
    return None


def kept(path: str, keys: frozenset[str]) -> bool:
    """Does the schema keep ``path`` (a :func:`patch_keys` path)?"""
    if path in keys:
        return True
    parts = path.replace("[].", "[]. ").replace(".", ". ").split(" ")
    return any("".join(parts[:i]) + "*" in keys for i in range(1, len(parts)))


def status_fields(crd: Mapping[str, Any], version: str) -> frozenset[str] | None:
    """Top-level status fields the CRD's schema keeps (None: any)."""
    keys = status_keys(crd, version)
    return None if keys is None else frozenset(k for k in keys if "." not in k and "[]" not in k and k != "*")


def patch_keys(patch: Mapping[str, Any], prefix: str = "") -> set[str]:
    """The dotted paths a patch writes, in :func:`status_keys`' spelling."""
    keys: set[str] = set()
    for name, value in patch.items():
        path = prefix + name
        keys.add(path)
        if isinstance(value, Mapping):
            keys |= patch_keys(value, path + ".")
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, Mapping):
                    keys |= patch_keys(item, path + "[].")
    return keys


class StatusWriter:
    def __init__(self, kube: Kube, resources: Resources, on_written: Callable[[], None] | None = None,
                 may_write: Callable[[], bool] = lambda: True) -> None:
        self._kube = kube
        self._resources = resources
        self._pending: dict[Key, dict[str, Any]] = {}
        self._pending_uid: dict[Key, str] = {}
        self._due: dict[Key, float] = {}
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task] = set()
        self._last_deferred_write: dict[Key, float] = {}
        self._on_written = on_written
        self._may_write = may_write
        self._dropped_logged: set[str] = set()
        self.allowed_fields: frozenset[str] | None = None

    def pending(self, key: Key) -> dict[str, Any]:
        item = self._resources.get(key)
        if item is not None and self._pending_uid.get(key, item.uid) != item.uid:
            self.drop(key)  # news for a deleted object must not land on its re-created namesake
        return self._pending.get(key, {})

    def view(self, key: Key) -> dict[str, Any]:
        """The resource's status as it will be once pending news are written."""
        item = self._resources.get(key)
        return apply(item.status if item else {}, self.pending(key))

    def scheduled(self, key: Key) -> bool:
        return key in self._timers

    def last_deferred_write(self, key: Key) -> float | None:
        return self._last_deferred_write.get(key)

    def _keep(self, key: Key, news: Mapping[str, Any]) -> None:
        """Put news back in front of whatever was added meanwhile."""
        self._pending[key] = merge(news, self._pending.get(key, {}))
        item = self._resources.get(key)
        if item is not None:
            self._pending_uid[key] = item.uid

    def _allowed(self, key: Key, combined: dict[str, Any]) -> dict[str, Any]:
        if self.allowed_fields is None:
            return combined
        dropped = sorted(k for k in combined if k not in self.allowed_fields)
        for field in dropped:
            if field not in self._dropped_logged:
                self._dropped_logged.add(field)
                logger.warning("the CRD's status schema has no %r: the operator leaves it out of every status "
                               "write (update the CRD)", field, extra={"object": _obj(key), "field": field})
        return {k: v for k, v in combined.items() if k in self.allowed_fields}

    async def write(self, key: Key, patch: Mapping[str, Any], *, heartbeat_time: float | None = None) -> bool:
        """Write now, with whatever was pending. The caller holds the resource's lock."""
        combined = merge(self.pending(key), patch)
        self._pending.pop(key, None)
        self._cancel_timer(key)
        combined = self._allowed(key, combined)
        if not combined:
            return True
        item = self._resources.get(key)
        if item is None:
            return False
        if apply(item.status, combined) == apply(item.status, {}):
            return True  # the status already says all of it (we are its only writer): no API call
        if not self._may_write():
            self._keep(key, combined)  # a new leader reads the truth from the API; nothing is lost there
            return False
        namespace, name = key
        path = custom_path(contract.GROUP, contract.VERSION, contract.PLURAL, namespace, name) + "/status"
        started = time.perf_counter()
        try:
            body = await self._kube.merge_patch(path, {"status": combined})
        except ApiError as exc:
            if exc.status == 404:
                self._resources.forget(key)
                return False
            if exc.status not in (400, 422):  # the API will never take those
                self._keep(key, combined)
            logger.warning("status patch failed: %s", exc, extra={"object": _obj(key)})
            return False
        except BaseException as exc:  # a dropped connection, a timeout, a cancellation: keep the news
            self._keep(key, combined)
            if isinstance(exc, Exception):
                logger.warning("status patch failed, will retry: %r", exc, extra={"object": _obj(key)})
                return False
            raise
        finally:
            metrics.STATUS_PATCH_SECONDS.observe(time.perf_counter() - started)
        self._resources.patched(key, body)
        if heartbeat_time is not None:
            metrics.HEARTBEAT_TO_STATUS_SECONDS.observe(max(0.0, time.time() - heartbeat_time))
        if "phase" in combined or "reason" in combined:
            metrics.TRANSITIONS.labels(combined.get("phase") or item.status.get("phase") or "",
                                       combined.get("reason") or "").inc()
        if self._on_written:
            self._on_written()
        return True

    def defer(self, key: Key, patch: Mapping[str, Any], *, delay: float, lock: asyncio.Lock,
              reset: bool = False) -> None:
        """Add to the pending patch and make sure it is written within ``delay`` seconds (an earlier
        deadline already set is kept, unless ``reset``: the news pending so far are outdated by this).
        The caller holds ``lock``, the resource's."""
        self._pending[key] = merge(self.pending(key), patch)
        item = self._resources.get(key)
        if item is not None:
            self._pending_uid[key] = item.uid
        due = time.monotonic() + max(0.0, delay)
        if key in self._due and self._due[key] <= due and not reset:
            return
        self._cancel_timer(key)
        self._due[key] = due
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(max(0.0, delay), self._spawn_flush, key, lock)

    def _spawn_flush(self, key: Key, lock: asyncio.Lock) -> None:
        self._timers.pop(key, None)
        self._due.pop(key, None)
        task = asyncio.create_task(self._flush(key, lock))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self, key: Key, lock: asyncio.Lock) -> None:
        async with lock:
            if self.pending(key):
                self._last_deferred_write[key] = time.monotonic()
                await self.write(key, {})

    def _cancel_timer(self, key: Key) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._due.pop(key, None)

    def drop(self, key: Key) -> None:
        self._cancel_timer(key)
        self._pending.pop(key, None)
        self._pending_uid.pop(key, None)
        self._last_deferred_write.pop(key, None)

    def cancel_all(self) -> None:
        """Stop every deferred write (the lease is gone: nothing may be written any more)."""
        for key in list(self._timers):
            self._cancel_timer(key)
        for task in list(self._tasks):
            task.cancel()

    async def flush_all(self) -> None:
        for key in list(self._pending):
            item = self._resources.get(key)
            if item is not None:
                async with item.lock:
                    await self.write(key, {})


def _obj(key: Key) -> dict[str, str]:
    return {"kind": contract.KIND, "namespace": key[0], "name": key[1]}
