"""core/v1 Events about an object, so `kubectl describe` tells what the sandbox did and why."""
from __future__ import annotations

import datetime as dt
import logging
import os

from .kubeclient import EVENTS, KubeClient

log = logging.getLogger(__name__)


def event_body(obj: dict, event_type: str, reason: str, message: str, component: str, now: dt.datetime) -> dict:
    meta = obj.get("metadata") or {}
    stamp = now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta.get('name')}.{os.urandom(8).hex()}",
                     "namespace": meta.get("namespace") or "default"},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion", ""),
            "kind": obj.get("kind", ""),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": event_type,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": component, "host": "sandbox"},
        "reportingComponent": component,
        "reportingInstance": "sandbox",
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


async def record(client: KubeClient, obj: dict, event_type: str, reason: str, message: str, component: str) -> None:
    """Best effort: an Event that can't be written is logged, never fatal."""
    body = event_body(obj, event_type, reason, message, component, dt.datetime.now(dt.timezone.utc))
    try:
        await client.create(EVENTS, body["metadata"]["namespace"], body)
    except Exception as exc:  # noqa: BLE001 - events are advisory; never fail the caller
        log.warning("could not record event %s %s: %s", reason, message, exc)
