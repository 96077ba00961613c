"""In-memory object storage with one global resourceVersion counter and a bounded event history.

Everything runs on one asyncio loop and no method awaits, so each call is atomic: a watcher that
reads the history and subscribes in the same call can never miss or double an event.
"""
from __future__ import annotations

import asyncio
import collections
import copy
import dataclasses
from typing import Any, Iterator

from .errors import gone

Key = tuple[str, str]  # (group, plural): storage identity of a resource type
ObjId = tuple[str, str]  # (namespace or "", name)


@dataclasses.dataclass(frozen=True)
class StoredEvent:
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    key: Key
    obj: dict[str, Any]
    old: dict[str, Any] | None  # the previous state, so selector watchers can tell "left the selection"


class Subscription:
    """One watcher's private, unbounded queue: a slow reader never holds up writers or other readers."""

    def __init__(self, store: "Store", key: Key):
        self.store = store
        self.key = key
        self.queue: asyncio.Queue[StoredEvent] = asyncio.Queue()

    def close(self) -> None:
        self.store._subscriptions[self.key].discard(self)


def ident(obj: dict[str, Any]) -> ObjId:
    meta = obj["metadata"]
    return (meta.get("namespace") or "", meta["name"])


class Store:
    def __init__(self, history_limit: int = 10000):
        self._objects: dict[Key, dict[ObjId, dict[str, Any]]] = collections.defaultdict(dict)
        self._uids: dict[str, tuple[Key, ObjId]] = {}
        self._history: collections.deque[StoredEvent] = collections.deque()
        self._history_limit = history_limit
        self._subscriptions: dict[Key, set[Subscription]] = collections.defaultdict(set)
        self._rv = 1000
        self.compacted_rv = 0  # watches from before this version get 410 Gone

    # --- reading ---------------------------------------------------------------------------
    @property
    def resource_version(self) -> int:
        return self._rv

    def get(self, key: Key, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self._objects[key].get((namespace or "", name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(self, key: Key, namespace: str | None = None) -> list[dict[str, Any]]:
        items = [
            obj for (ns, _), obj in sorted(self._objects[key].items())
            if namespace is None or ns == namespace
        ]
        return copy.deepcopy(items)

    def iter_all(self) -> Iterator[tuple[Key, dict[str, Any]]]:
        """Every stored object (not copied: callers must not mutate)."""
        for key, objs in list(self._objects.items()):
            for obj in list(objs.values()):
                yield key, obj

    # --- writing ---------------------------------------------------------------------------
    def put(self, key: Key, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a new or changed object under a fresh resourceVersion; returns a copy as stored."""
        oid = ident(obj)
        old = self._objects[key].get(oid)
        self._rv += 1
        stored = copy.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = str(self._rv)
        self._objects[key][oid] = stored
        self._uids[stored["metadata"]["uid"]] = (key, oid)
        self._record(StoredEvent(self._rv, "ADDED" if old is None else "MODIFIED", key, stored, old))
        return copy.deepcopy(stored)

    def remove(self, key: Key, namespace: str, name: str) -> dict[str, Any] | None:
        oid = (namespace or "", name)
        old = self._objects[key].pop(oid, None)
        if old is None:
            return None
        self._uids.pop(old["metadata"]["uid"], None)
        self._rv += 1
        final = copy.deepcopy(old)
        final["metadata"]["resourceVersion"] = str(self._rv)
        self._record(StoredEvent(self._rv, "DELETED", key, final, old))
        return copy.deepcopy(final)

    def drop_key(self, key: Key) -> None:
        """Forget a resource type's storage entirely (its CRD is gone and its objects already deleted)."""
        self._objects.pop(key, None)

    def _record(self, event: StoredEvent) -> None:
        self._history.append(event)
        while len(self._history) > self._history_limit:
            self.compacted_rv = self._history.popleft().rv
        for sub in self._subscriptions[event.key]:
            sub.queue.put_nowait(event)

    def compact(self) -> int:
        """Forget all history, like an etcd compaction at the current revision."""
        self._history.clear()
        self.compacted_rv = self._rv
        return self._rv

    # --- watching --------------------------------------------------------------------------
    def subscribe(self, key: Key, since_rv: int | None) -> tuple[list[StoredEvent], Subscription]:
        """Past events after `since_rv` (None: none) plus a live subscription, with no gap between."""
        backlog: list[StoredEvent] = []
        if since_rv is not None:
            if since_rv < self.compacted_rv:
                raise gone(f"too old resource version: {since_rv} ({self.compacted_rv})")
            backlog = [e for e in self._history if e.key == key and e.rv > since_rv]
        sub = Subscription(self, key)
        self._subscriptions[key].add(sub)
        return backlog, sub
