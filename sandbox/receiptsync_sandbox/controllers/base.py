"""A deduplicating, delayable work queue and the reconcile loop every sandbox controller runs."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Hashable

log = logging.getLogger(__name__)


class WorkQueue:
    """Each key is queued at most once; `add(key, after=s)` looks again later (backoff, deadlines)."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue = asyncio.Queue()
        self._queued: set[Hashable] = set()

    def add(self, key: Hashable, after: float = 0.0) -> None:
        if after > 0:
            asyncio.get_running_loop().call_later(after, self.add, key)
            return
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    async def get(self) -> Hashable:
        key = await self._queue.get()
        self._queued.discard(key)
        return key


class Controller:
    """Subclasses implement `reconcile(key)`, returning seconds until the next look (or None)."""

    name = "controller"
    retry_after_error = 2.0

    def __init__(self) -> None:
        self.queue = WorkQueue()

    async def reconcile(self, key: Hashable) -> float | None:  # pragma: no cover - abstract
        raise NotImplementedError

    async def run(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                after = await self.reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a failing object is retried, the loop goes on
                log.exception("%s: reconciling %s failed; retrying", self.name, key)
                after = self.retry_after_error
            if after is not None:
                self.queue.add(key, max(after, 0.05))


def controller_owner_uid(obj: dict, kind: str) -> str | None:
    for reference in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if reference.get("controller") and reference.get("kind") == kind:
            return reference.get("uid")
    return None


def controller_owner_name(obj: dict, kind: str) -> str | None:
    for reference in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if reference.get("controller") and reference.get("kind") == kind:
            return reference.get("name")
    return None


def owner_reference(owner: dict) -> dict:
    meta = owner["metadata"]
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


def status_patch(old: dict, new: dict) -> dict:
    """Top-level merge patch from old to new status; fields that went away are nulled."""
    patch = {key: value for key, value in new.items() if old.get(key) != value}
    patch.update({key: None for key in old if key not in new})
    return patch


def is_terminating(obj: dict) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


class Expectations:
    """Pods a controller created that its cache hasn't shown yet, so it doesn't create them twice."""

    def __init__(self, timeout: float = 30.0) -> None:
        self._timeout = timeout
        self._pending: dict[str, dict[str, float]] = {}  # owner uid -> name -> when created

    def created(self, owner_uid: str, name: str) -> None:
        self._pending.setdefault(owner_uid, {})[name] = time.monotonic()

    def unobserved(self, owner_uid: str, seen_names: set[str]) -> int:
        pending = self._pending.get(owner_uid, {})
        now = time.monotonic()
        for name in list(pending):
            if name in seen_names or now - pending[name] > self._timeout:
                del pending[name]
        return len(pending)

    def forget(self, owner_uid: str) -> None:
        self._pending.pop(owner_uid, None)
