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

logger = logging.getLogger(__name__)
COMPONENT = contract.MANAGED_BY_VALUE
NORMAL = "Normal"
WARNING = "Warning"


def build(meta: Mapping[str, Any], type_: str, reason: str, message: str, now: dt.datetime, instance: str) -> dict[str, Any]:
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
        "message": message[:1000],
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
    def __init__(self, kube: Kube, instance: str) -> None:
        self._kube = kube
        self._instance = instance
        self._tasks: set[asyncio.Task] = set()

    def post(self, meta: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        body = build(meta, type_, reason, message, dt.datetime.now(dt.timezone.utc), self._instance)
        task = asyncio.create_task(self._send(body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, body: dict[str, Any]) -> None:
        try:
            await self._kube.create(core_path("events", body["metadata"]["namespace"]), body)
        except Exception as exc:  # an Event is best effort; the status already tells the truth
            logger.debug("could not post event %s: %s", body["reason"], exc)

    async def drain(self, timeout: float = 5.0) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
