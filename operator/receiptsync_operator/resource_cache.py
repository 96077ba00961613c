"""The ReceiptSyncs the active replica knows, each with a lock (heartbeats, timers, dispatch and
watch events all decide about the same resource).

Status is authoritative here: the active replica is the only writer of status, so after the first
sighting of a resource its status is whatever our last successful patch returned. Watch events only
refresh it when they are newer (a restart or failover can bring a newer one).
"""
from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

Key = tuple[str, str]  # (namespace, name)


def key_of(body: Mapping[str, Any]) -> Key:
    meta = body.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


def _rv(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclasses.dataclass
class Resource:
    meta: dict[str, Any]
    spec: dict[str, Any]
    status: dict[str, Any]
    resource_version: str | None
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)

    @property
    def uid(self) -> str:
        return self.meta.get("uid", "")


def _phase(status: Mapping[str, Any]) -> str:
    return status.get("phase") or "None"


class Resources:
    def __init__(self) -> None:
        self._items: dict[Key, Resource] = {}
        self._gone: dict[Key, str] = {}  # key -> uid of a deleted resource, so stale heartbeats are cheap
        self._counts: dict[str, int] = {}  # phase -> resources, kept as statuses change (no recount)

    def _count(self, status: Mapping[str, Any] | None, step: int) -> None:
        if status is not None:
            phase = _phase(status)
            self._counts[phase] = self._counts.get(phase, 0) + step

    def _set_status(self, item: Resource, status: dict[str, Any]) -> None:
        self._count(item.status, -1)
        item.status = status
        self._count(status, +1)

    def observe(self, body: Mapping[str, Any]) -> Resource:
        key = key_of(body)
        meta = copy.deepcopy(dict(body.get("metadata") or {}))
        spec = copy.deepcopy(dict(body.get("spec") or {}))
        status = copy.deepcopy(dict(body.get("status") or {}))
        rv = meta.get("resourceVersion")
        item = self._items.get(key)
        if item is None or item.uid != meta.get("uid"):
            if item is not None:
                self._count(item.status, -1)
            item = Resource(meta=meta, spec=spec, status=status, resource_version=rv)
            self._count(status, +1)
            self._items[key] = item
            self._gone.pop(key, None)
            return item
        newer = _rv(rv) is not None and _rv(item.resource_version) is not None and _rv(rv) > _rv(item.resource_version)
        if newer or item.resource_version is None:
            item.meta, item.spec, item.resource_version = meta, spec, rv
            self._set_status(item, status)
        else:
            # An event older than our own last patch: keep our status, take metadata and spec.
            item.meta, item.spec = meta, spec
        return item

    def patched(self, key: Key, body: Mapping[str, Any]) -> None:
        """Record the object a successful status patch returned."""
        item = self._items.get(key)
        if item is None:
            return
        self._set_status(item, copy.deepcopy(dict(body.get("status") or {})))
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv is not None:
            item.resource_version = rv

    def get(self, key: Key) -> Resource | None:
        return self._items.get(key)

    def forget(self, key: Key) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._count(item.status, -1)
        self._gone[key] = item.uid if item is not None else ""
        if len(self._gone) > 10_000:  # a bound, not a history: the oldest half goes
            for old in list(self._gone)[:5_000]:
                self._gone.pop(old, None)

    def was_deleted(self, key: Key) -> bool:
        return key in self._gone

    def keys(self) -> list[Key]:
        return list(self._items)

    def phases(self) -> dict[str, int]:
        """Resources by phase ("None" before the first status), without a pass over them."""
        return {phase: n for phase, n in self._counts.items() if n}
