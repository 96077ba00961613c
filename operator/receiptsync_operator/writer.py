"""Status writes with coalescing: transitions go out at once; counters and other small news wait in a
per-resource pending patch that is flushed at most every few seconds, or earlier together with the
next transition. This is what keeps a run to a handful of API writes and status fresh at once.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from receiptsync_common import contract

from . import metrics
from .kube import ApiError, Kube, custom_path
from .store import Key, Resources

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


def status_fields(crd: Mapping[str, Any], version: str) -> frozenset[str] | None:
    """Top-level status fields the CRD's schema keeps (None: any). Writing a field the schema lacks
    is pruned by a real API server and refused by strict ones; the writer leaves such fields out."""
    for ver in (crd.get("spec") or {}).get("versions") or []:
        if ver.get("name") != version:
            continue
        schema = ((ver.get("schema") or {}).get("openAPIV3Schema") or {}).get("properties", {}).get("status")
        if not schema or schema.get("x-kubernetes-preserve-unknown-fields"):
            return None
        return frozenset((schema.get("properties") or {}).keys())
    return None


class StatusWriter:
    def __init__(self, kube: Kube, resources: Resources, on_written: Callable[[], None] | None = None) -> None:
        self._kube = kube
        self._resources = resources
        self._pending: dict[Key, dict[str, Any]] = {}
        self._due: dict[Key, float] = {}
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task] = set()
        self._last_deferred_write: dict[Key, float] = {}
        self._on_written = on_written
        self.allowed_fields: frozenset[str] | None = None

    def pending(self, key: Key) -> dict[str, Any]:
        return self._pending.get(key, {})

    def view(self, key: Key) -> dict[str, Any]:
        """The resource's status as it will be once pending news are written."""
        item = self._resources.get(key)
        return apply(item.status if item else {}, self.pending(key))

    def scheduled(self, key: Key) -> bool:
        return key in self._timers

    def last_deferred_write(self, key: Key) -> float | None:
        return self._last_deferred_write.get(key)

    async def write(self, key: Key, patch: Mapping[str, Any], *, heartbeat_time: float | None = None) -> bool:
        """Write now, with whatever was pending. The caller holds the resource's lock."""
        combined = merge(self._pending.pop(key, {}), patch)
        if self.allowed_fields is not None:
            combined = {k: v for k, v in combined.items() if k in self.allowed_fields}
        self._cancel_timer(key)
        if not combined:
            return True
        item = self._resources.get(key)
        if item is None:
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
            # Keep the news for the next attempt unless the API will never take them.
            if exc.status not in (400, 422):
                self._pending[key] = merge(combined, self._pending.get(key, {}))
            logger.warning("status patch failed: %s", exc, extra={"object": {"kind": contract.KIND, "namespace": namespace, "name": name}})
            return False
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
        deadline already set is kept, unless ``reset``: the news pending so far are outdated by this)."""
        self._pending[key] = merge(self._pending.get(key, {}), patch)
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
            if self._pending.get(key):
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
        self._last_deferred_write.pop(key, None)

    async def flush_all(self) -> None:
        for key in list(self._pending):
            item = self._resources.get(key)
            if item is not None:
                async with item.lock:
                    await self.write(key, {})
