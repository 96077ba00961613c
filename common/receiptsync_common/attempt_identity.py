"""What an attempt is, as the operator put it into the worker's Job spec (env RECEIPTSYNC_ATTEMPT),
and the worker's check of the Redis payload against it, as pure functions.

The Job spec is written only by the operator (tenants cannot edit a Job's pod template in a way that
survives: the Job controller owns the pod, and the operator builds the spec); Redis can be written by
more parties. So the worker runs only a payload that agrees with its Job on everything that decides
whose data it touches and which part: business, resource, run and attempt, mode, range and query.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from .jobspec import JobPayload

IDENTITY_FIELDS = ("job_id", "business_id", "namespace", "name", "uid", "run_id", "attempt", "mode",
                   "date_from", "date_to", "explicit_from", "explicit_to", "months_back", "query", "time_zone",
                   "max_messages", "timeout_seconds")
# Named with both values in the refusal (none of them is a secret; the query could be long).
SHOWN_FIELDS = ("business_id", "namespace", "name", "run_id", "attempt")


def identity_of(payload: JobPayload) -> dict[str, Any]:
    data = dataclasses.asdict(payload)
    return {name: data[name] for name in IDENTITY_FIELDS}


def identity_json(payload: JobPayload) -> str:
    return json.dumps(identity_of(payload), sort_keys=True, separators=(",", ":"))


def parse_identity(text: str) -> dict[str, Any]:
    """RECEIPTSYNC_ATTEMPT; ValueError if it is not a JSON object with every identity field."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    missing = [name for name in IDENTITY_FIELDS if name not in value]
    if missing:
        raise ValueError(f"lacks {', '.join(missing)}")
    return value


def mismatches(payload: JobPayload, identity: Mapping[str, Any]) -> list[str]:
    """The identity fields on which the payload disagrees with the Job ([] when it agrees)."""
    ours = identity_of(payload)
    return [name for name in IDENTITY_FIELDS if ours[name] != identity.get(name)]


def refusal(payload: JobPayload, identity: Mapping[str, Any], fields: list[str]) -> str:
    """One sentence saying why the worker refuses the payload."""
    ours = identity_of(payload)
    shown = [f"{name} is {ours[name]!r} in Redis but {identity.get(name)!r} in the Job" for name in fields
             if name in SHOWN_FIELDS]
    others = [name for name in fields if name not in SHOWN_FIELDS]
    if others:
        shown.append(f"{', '.join(others)} differ{'s' if len(others) == 1 else ''}")
    return ("The job payload in Redis does not match this worker's Job (" + "; ".join(shown)
            + "): it was not written by the operator for this attempt, so the worker refused to run it.")
