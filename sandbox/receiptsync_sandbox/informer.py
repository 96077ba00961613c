"""List+watch one resource into an in-memory cache and report every change, like client-go's informer.

A watch resumes from the last resourceVersion seen; when the server answers 410 Gone the informer
relists and reports the differences, so handlers never miss a deletion.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

import aiohttp

from .kubeclient import ApiError, KubeClient, Resource, WatchExpired

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects
Handler = Callable[[str, dict], None]  # (event type, object) - called synchronously, must not block


def key_of(obj: dict) -> Key:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


class Informer:
    def __init__(self, client: KubeClient, resource: Resource, namespace: str | None = None,
                 field_selector: str | None = None):
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.selector = {"fieldSelector": field_selector} if field_selector else {}
        self.cache: dict[Key, dict] = {}
        self.synced = asyncio.Event()
        self._handlers: list[Handler] = []
        self._resource_version = ""

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def get(self, key: Key) -> dict | None:
        return self.cache.get(key)

    def items(self) -> list[dict]:
        return list(self.cache.values())

    def remember(self, obj: dict) -> None:
        """Put our own write's result in the cache before its watch event arrives, unless the
        cache already holds something newer (or no longer holds the object at all)."""
        key = key_of(obj)
        cached = self.cache.get(key)
        if cached is not None and _version(obj) > _version(cached):
            self.cache[key] = _with_kind(obj, self.resource)

    async def run(self) -> None:
        while True:
            try:
                await self._relist()
                while True:
                    await self._watch_once()
            except WatchExpired:
                log.info("%s watch expired; relisting", self.resource.plural)
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, asyncio.TimeoutError, ApiError, OSError, ValueError) as exc:
                log.warning("%s list/watch failed (%s); retrying", self.resource.plural, exc)
                await asyncio.sleep(1.0)

    async def _relist(self) -> None:
        listing = await self.client.list(self.resource, self.namespace, **self.selector)
        fresh = {key_of(obj): _with_kind(obj, self.resource) for obj in listing.get("items") or []}
        for key in list(self.cache):
            if key not in fresh:
                self._emit("DELETED", self.cache.pop(key))
        for key, obj in fresh.items():
            existed = key in self.cache
            self.cache[key] = obj
            self._emit("MODIFIED" if existed else "ADDED", obj)
        self._resource_version = (listing.get("metadata") or {}).get("resourceVersion") or ""
        self.synced.set()

    async def _watch_once(self) -> None:
        async for event in self.client.watch(self.resource, self._resource_version, self.namespace,
                                                 **self.selector):
            kind, obj = event.get("type"), event.get("object") or {}
            version = (obj.get("metadata") or {}).get("resourceVersion")
            if version:
                self._resource_version = version
            if kind == "BOOKMARK":
                continue
            obj = _with_kind(obj, self.resource)
            if kind == "DELETED":
                self.cache.pop(key_of(obj), None)
            else:
                self.cache[key_of(obj)] = obj
            self._emit(kind, obj)

    def _emit(self, kind: str, obj: dict) -> None:
        for handler in self._handlers:
            try:
                handler(kind, obj)
            except Exception:  # a handler bug must not stop the watch for everyone else
                log.exception("handler failed for %s %s", kind, key_of(obj))


def _version(obj: dict) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def _with_kind(obj: dict, resource: Resource) -> dict:
    # Items of a list carry no kind/apiVersion; ownerReference checks and events want them.
    obj.setdefault("kind", resource.kind)
    obj.setdefault("apiVersion", resource.api_version)
    return obj
