"""The emulator's knobs: latency, quota, injected faults, revoked mailboxes, history expiry.

One mutable dataclass shared by the running app; POST /_emulator/config updates it in place with
the same names as the JSON keys (and the CLI flags, with dashes).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Gmail's per-user limit: 15,000 units a minute, a 250 units/s moving average.
GMAIL_UNITS_PER_SECOND = 250.0


@dataclass
class EmulatorConfig:
    latency_ms: float = 0.0  # added to every HTTP request (a batch is one request)
    quota_enabled: bool = True
    quota_rate: float = GMAIL_UNITS_PER_SECOND  # units a second refilled per mailbox
    quota_burst: float = GMAIL_UNITS_PER_SECOND  # bucket capacity: one second of units
    quota_status: int = 429  # 429 rateLimitExceeded, or 403 userRateLimitExceeded
    error_rate_5xx: float = 0.0  # chance per API call of an injected 500/503 backendError
    error_rate_429: float = 0.0  # chance per API call of an injected rateLimitExceeded
    slow_rate: float = 0.0  # chance per API call of an extra ``slow_ms`` delay
    slow_ms: float = 0.0
    revoked: set[str] = field(default_factory=set)  # mailboxes whose grants are revoked
    history_expired: bool = False  # every history.list answers 404
    history_retention: int | None = None  # history records kept per mailbox (None: all)
    token_ttl_s: int = 3600  # access token lifetime
    seed: int | None = None  # seeds the fault dice
    rescan_interval_s: float = 1.0  # a mailbox folder is re-listed at least this often when used
    # Gmail's search index trails delivery: a message that arrived less than this many seconds ago is
    # already in history.list (and messages.get) but not yet in messages.list results.
    search_lag_s: float = 0.0

    def update(self, changes: dict[str, Any]) -> list[str]:
        """Apply known keys from ``changes``; return the unknown ones (the caller reports them)."""
        names = {item.name: item for item in dataclasses.fields(self)}
        unknown = [key for key in changes if key not in names]
        for key, value in changes.items():
            if key in names:
                setattr(self, key, _coerce(key, value))
        return unknown

    def as_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["revoked"] = sorted(self.revoked)
        return data


def _coerce(key: str, value: Any) -> Any:
    if key == "revoked":
        addresses = [value] if isinstance(value, str) else (value or [])
        return {str(address).lower() for address in addresses}
    if key in ("quota_enabled", "history_expired"):
        return bool(value)
    if key in ("quota_status", "token_ttl_s"):
        return int(value)
    if key in ("history_retention", "seed"):
        return None if value is None else int(value)
    return float(value)
