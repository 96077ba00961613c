"""In-memory views the active replica keeps: ReceiptSyncs (with a lock each, since heartbeats,
timers, dispatch and watch events all decide about the same resource) and our worker Jobs.

Status is authoritative here: the active replica is the only writer of status, so after the first
sighting of a resource its status is whatever our last successful patch returned. Watch events only
refresh it when they are newer (a restart or failover can bring a newer one).
"""
from __future__ import annotations

import asyncio
import copy
import dataclasses
import time
from collections.abc import Mapping
from typing import Any

from . import jobs

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


class WorkerJobs:
    """Our worker Jobs by (namespace, name), fed by the label-selected watch and a startup list."""

    def __init__(self) -> None:
        self._jobs: dict[Key, dict[str, Any]] = {}
        self._bad_since: dict[Key, float] = {}
        self._created_at: dict[Key, float] = {}  # Jobs we created, until the watch has caught up
        self.primed = False

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        key = key_of(body)
        self._created_at.pop(key, None)
        if event_type == "DELETED":
            self._jobs.pop(key, None)
        else:
            self._jobs[key] = copy.deepcopy(dict(body))

    def replace_all(self, bodies: list[Mapping[str, Any]]) -> None:
        """A full list: the truth for Jobs that existed then; later watch events still win."""
        listed = {key_of(b): copy.deepcopy(dict(b)) for b in bodies}
        for key, body in listed.items():
            self._jobs.setdefault(key, body)
        for key in list(self._jobs):
            if key not in listed and not self._recent(key):
                self._jobs.pop(key, None)
        self.primed = True

    def _recent(self, key: Key) -> bool:
        created = self._created_at.get(key)
        return created is not None and time.monotonic() - created < 30

    def created(self, body: Mapping[str, Any]) -> None:
        """A Job we just created counts at once, before its watch event arrives."""
        key = key_of(body)
        if key not in self._jobs:
            self._jobs[key] = copy.deepcopy(dict(body))
            self._created_at[key] = time.monotonic()

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._jobs.get((namespace, name))

    def active_count(self, namespace: str | None = None) -> int:
        return sum(
            1 for (ns, _), job in self._jobs.items()
            if (namespace is None or ns == namespace) and jobs.is_active(job)
        )

    def bad_for(self, namespace: str, name: str, state: str, now: float) -> float:
        """How long the Job has been in a not-active state (0 while active)."""
        key = (namespace, name)
        if state == "active":
            self._bad_since.pop(key, None)
            return 0.0
        since = self._bad_since.setdefault(key, now)
        return now - since

    def forget_bad(self, namespace: str, name: str) -> None:
        self._bad_since.pop((namespace, name), None)
