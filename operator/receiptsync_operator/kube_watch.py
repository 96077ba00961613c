"""List+watch of one kind of object into a cache, as client-go's reflector does it: a paginated,
label-selected LIST, then a WATCH from the list's resourceVersion, a new LIST only when the watch
cannot resume (410 Gone, or an error). One stream feeds the cache, so no re-list races the watch.

Why our own and not kopf's: the dispatcher must know when the first LIST is complete before it
counts free worker slots, and kopf's event handlers do not say that; this is about 80 lines.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from .kube import ApiError, Kube

logger = logging.getLogger(__name__)
PAGE_SIZE = 500
WATCH_SECONDS = 300


class Sink(Protocol):
    def replace(self, items: list[Mapping[str, Any]], resource_version: str) -> None: ...
    def apply(self, event_type: str, obj: Mapping[str, Any]) -> None: ...


class Informer:
    def __init__(self, kube: Kube, path: str, selector: str, sink: Sink, *, what: str,
                 on_change: Callable[[str, Mapping[str, Any]], None] | None = None) -> None:
        self._kube, self._path, self._selector, self._sink = kube, path, selector, sink
        self._what = what
        self._on_change = on_change
        self.synced = asyncio.Event()
        self.forbidden = False

    async def list(self) -> str:
        items: list[Mapping[str, Any]] = []
        params = {"labelSelector": self._selector, "limit": str(PAGE_SIZE)}
        while True:
            page = await self._kube.get(self._path, params=params)
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                break
            params = {**params, "continue": meta["continue"]}
        version = str(meta.get("resourceVersion") or "")
        self._sink.replace(items, version)
        self.synced.set()
        return version

    async def run(self) -> None:
        version: str | None = None
        while True:
            try:
                if version is None:
                    version = await self.list()
                    self.forbidden = False
                version = await self._watch(version)
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                if exc.status == 403 and not self.forbidden:
                    logger.error("not allowed to list/watch %s (RBAC): %s", self._what, exc)
                    self.forbidden = True
                elif exc.status != 410:
                    logger.warning("watching %s failed: %s", self._what, exc)
                version = None
                await asyncio.sleep(0 if exc.status == 410 else 2.0)
            except Exception as exc:  # noqa: BLE001 - a dropped stream: list again and go on
                logger.warning("watching %s failed: %r", self._what, exc)
                version = None
                await asyncio.sleep(1.0)

    async def _watch(self, version: str) -> str | None:
        """Events until the server ends the watch; the version to resume from (None: list again)."""
        params = {"labelSelector": self._selector, "resourceVersion": version, "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(WATCH_SECONDS)}
        async for event in self._kube.watch(self._path, params):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                return None  # 410 Gone (too old) or another error: a fresh list
            version = (obj.get("metadata") or {}).get("resourceVersion") or version
            if kind == "BOOKMARK":
                continue
            self._sink.apply(kind, obj)
            if self._on_change is not None:
                self._on_change(kind, obj)
        return version
