"""Watch streams: newline-delimited JSON events over a chunked response, like kube-apiserver.

Each watcher has its own queue (see store.Subscription), so a slow client never delays another.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any, Callable

from aiohttp import web

from . import tables
from .errors import ApiError
from .operations import Api
from .resources import ResourceType
from .store import StoredEvent

INITIAL_EVENTS_END = "k8s.io/initial-events-end"


@dataclasses.dataclass
class WatchRequest:
    rt: ResourceType
    namespace: str | None
    matcher: Callable[[dict[str, Any]], bool]
    resource_version: str | None
    timeout_seconds: float | None
    bookmarks: bool
    send_initial_events: bool
    as_table: bool
    include_object: str


def visible_type(event: StoredEvent, in_scope: Callable[[dict[str, Any]], bool]) -> str | None:
    """The event type this watcher sees, given its selection (None: not for this watcher).

    An object modified into the selection is ADDED for it, one modified out of it is DELETED."""
    now_in = event.type != "DELETED" and in_scope(event.obj)
    was_in = event.old is not None and in_scope(event.old)
    if event.type == "DELETED":
        return "DELETED" if was_in else None
    if now_in and was_in:
        return "MODIFIED"
    if now_in:
        return "ADDED"
    if was_in:
        return "DELETED"
    return None


class WatchStream:
    def __init__(self, api: Api, request: web.Request, spec: WatchRequest, bookmark_interval: float):
        self.api = api
        self.request = request
        self.spec = spec
        self.bookmark_interval = bookmark_interval
        self.response = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                                "Cache-Control": "no-cache, private"})
        self.response.enable_chunked_encoding()

    def _in_scope(self, obj: dict[str, Any]) -> bool:
        if self.spec.namespace is not None and (obj["metadata"].get("namespace") or "") != self.spec.namespace:
            return False
        return self.spec.matcher(self.api.present(self.spec.rt, dict(obj)))  # present() only sets top-level keys

    async def run(self) -> web.StreamResponse:
        spec = self.spec
        try:
            initial, backlog, sub = self._start()
        except ApiError as exc:  # 410 Gone travels as an ERROR event on a 200 stream, as client-go expects
            await self.response.prepare(self.request)
            await self._send({"type": "ERROR", "object": exc.status()})
            return self.response
        await self.response.prepare(self.request)
        try:
            for obj in initial:
                await self._send_object("ADDED", obj)
            if spec.send_initial_events and spec.bookmarks:
                await self._bookmark(initial_end=True)
            for event in backlog:
                await self._send_event(event)
            await self._follow(sub)
        except ConnectionResetError:
            pass  # the client went away
        finally:
            sub.close()
        return self.response

    def _start(self):
        spec, store = self.spec, self.api.store
        rv = spec.resource_version
        since = None if rv in (None, "", "0") or spec.send_initial_events else _parse_rv(rv)
        initial = []
        if since is None:
            initial = [o for _, o in ((None, o) for o in store.list(spec.rt.key, spec.namespace)) if self._in_scope(o)]
        backlog, sub = store.subscribe(spec.rt.key, since)  # same loop step as the list: no gap
        return initial, backlog, sub

    async def _follow(self, sub) -> None:
        deadline = time.monotonic() + self.spec.timeout_seconds if self.spec.timeout_seconds else None
        next_bookmark = time.monotonic() + self.bookmark_interval
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return
            if self._client_gone():
                return
            wait = min(1.0, (deadline - now) if deadline else 1.0, max(0.0, next_bookmark - now))
            try:
                event = await asyncio.wait_for(sub.queue.get(), timeout=max(wait, 0.01))
            except asyncio.TimeoutError:
                if self.spec.bookmarks and time.monotonic() >= next_bookmark:
                    await self._bookmark()
                    next_bookmark = time.monotonic() + self.bookmark_interval
                continue
            await self._send_event(event)

    def _client_gone(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()

    async def _send_event(self, event: StoredEvent) -> None:
        kind = visible_type(event, self._in_scope)
        if kind is not None:
            await self._send_object(kind, event.obj)

    async def _send_object(self, kind: str, obj: dict[str, Any]) -> None:
        shown = self.api.present(self.spec.rt, dict(obj))
        if self.spec.as_table:
            shown = tables.render(self.spec.rt, [shown], shown["metadata"]["resourceVersion"],
                                  self.spec.include_object)
        await self._send({"type": kind, "object": shown})

    async def _bookmark(self, initial_end: bool = False) -> None:
        meta: dict[str, Any] = {"resourceVersion": str(self.api.store.resource_version)}
        if initial_end:
            meta["annotations"] = {INITIAL_EVENTS_END: "true"}
        await self._send({"type": "BOOKMARK", "object": {"kind": self.spec.rt.kind,
                                                         "apiVersion": self.spec.rt.group_version,
                                                         "metadata": meta}})

    async def _send(self, event: dict[str, Any]) -> None:
        await self.response.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")


def _parse_rv(rv: str) -> int:
    try:
        return int(rv)
    except ValueError:
        raise ApiError(400, f"invalid resource version: {rv!r}") from None
