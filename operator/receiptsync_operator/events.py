"""Kubernetes Events on ReceiptSyncs (what ``kubectl describe rsync`` lists), posted in the background
so a slow Events API never delays a status transition. Messages never carry secret values."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from receiptsync_common import contract

from .kube import Kube, core_path
from .log_throttle import Throttle

logger = logging.getLogger(__name__)
COMPONENT = contract.MANAGED_BY_VALUE
NORMAL = "Normal"
WARNING = "Warning"


MESSAGE_BYTES = 1024  # the API's limit on an Event's message, in bytes


def truncate_utf8(text: str, limit: int = MESSAGE_BYTES) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, never inside a character ("…" marks a cut)."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - len("…".encode())].decode("utf-8", errors="ignore") + "…"


def build(meta: Mapping[str, Any], type_: str, reason: str, message: str, now: dt.datetime,
          instance: str) -> dict[str, Any]:
    stamp = now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    micro = now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": contract.API_VERSION,
            "kind": contract.KIND,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "type": type_,
        "reason": reason,
        "message": truncate_utf8(message),
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "eventTime": micro,
        "action": reason,
        "count": 1,
    }


class Events:
    def __init__(self, kube: Kube, instance: str, may_write=lambda: True) -> None:
        self._kube = kube
        self._instance = instance
        self._may_write = may_write
        self._tasks: set[asyncio.Task] = set()
        self._failures = Throttle(60.0)

    def post(self, meta: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        if not self._may_write():
            return
        body = build(meta, type_, reason, message, dt.datetime.now(dt.timezone.utc), self._instance)
        task = asyncio.create_task(self._send(body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, body: dict[str, Any]) -> None:
        try:
            await self._kube.create(core_path("events", body["metadata"]["namespace"]), body)
        except Exception as exc:  # an Event is best effort; the status already tells the truth
            held = self._failures.allow("events")
            if held is not None:
                logger.warning("could not post Event %s: %s%s", body["reason"], exc,
                               f" ({held} similar failures not logged)" if held else "")

    async def drain(self, timeout: float = 5.0) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
