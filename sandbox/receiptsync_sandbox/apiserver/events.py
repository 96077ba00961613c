"""events.k8s.io/v1 Events are stored as core v1 Events (one storage, two shapes), like the real server."""
from __future__ import annotations

from typing import Any

# (events.k8s.io/v1 field, core v1 field)
_RENAMES = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("reportingController", "reportingComponent"),
]


def to_core(event: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in event.items() if k not in dict(_RENAMES)}
    for new, old in _RENAMES:
        if new in event:
            out[old] = event[new]
    out["apiVersion"], out["kind"] = "v1", "Event"
    return out


def from_core(event: dict[str, Any]) -> dict[str, Any]:
    olds = {old: new for new, old in _RENAMES}
    out = {k: v for k, v in event.items() if k not in olds}
    for old, new in olds.items():
        if old in event:
            out[new] = event[old]
    out["apiVersion"], out["kind"] = "events.k8s.io/v1", "Event"
    return out
