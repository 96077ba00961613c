"""The job payload the operator writes to Redis for one attempt and the worker reads back.

It carries what to sync, never how to authenticate: credentials reach the worker only through its
own Job's Secret reference.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any


@dataclasses.dataclass(frozen=True)
class JobPayload:
    job_id: str
    namespace: str
    name: str
    uid: str
    business_id: str
    run_id: int
    attempt: int
    mode: str  # contract.MODE_FULL | contract.MODE_INCREMENTAL
    priority: str
    max_messages: int
    timeout_seconds: int
    time_zone: str = "UTC"
    # Resolved range (YYYY-MM-DD, inclusive). For incremental mode without explicit dates these are the
    # "full" fallback range; the worker narrows it from the business's last successful sync.
    date_from: str | None = None
    date_to: str | None = None
    # Which of the dates the user gave explicitly (incremental only falls back when neither is set).
    explicit_from: bool = False
    explicit_to: bool = False
    months_back: int = 12
    query: str | None = None
    enqueued_at: str | None = None  # RFC 3339 UTC

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> "JobPayload":
        data: dict[str, Any] = json.loads(raw)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
