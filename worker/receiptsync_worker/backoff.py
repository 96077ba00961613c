"""When to retry a Gmail call, as pure functions: which failures are transient, how long to wait."""
from __future__ import annotations

import json
import random
from typing import Any, Callable, Mapping

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# Gmail signals quota with 403 too.
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "backendError"})
BASE_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 32.0
MAX_TRIES = 10


def error_reason(content: bytes | str | None) -> str | None:
    """The ``errors[0].reason`` of Google's JSON error body, if any."""
    if not content:
        return None
    try:
        body = json.loads(content)
        return body["error"]["errors"][0]["reason"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def is_retryable(status: int, content: bytes | str | None = None) -> bool:
    if status in RETRYABLE_STATUSES:
        return True
    return status == 403 and error_reason(content) in RATE_LIMIT_REASONS


def retry_after_seconds(headers: Mapping[str, Any] | None) -> float | None:
    """``Retry-After`` in seconds (only the delta-seconds form; Gmail sends that)."""
    if not headers:
        return None
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def delay(try_number: int, retry_after: float | None = None, rng: Callable[[], float] = random.random) -> float:
    """Seconds before try ``try_number + 1`` (``try_number`` counts from 1).

    Exponential with jitter ("equal jitter": half fixed, half random) so workers do not retry in
    lockstep; never shorter than the server's Retry-After, with up to 20 % jitter on top of it."""
    exponential = min(MAX_DELAY_SECONDS, BASE_DELAY_SECONDS * 2 ** (try_number - 1))
    jittered = exponential / 2 + rng() * exponential / 2
    if retry_after is not None:
        return max(retry_after * (1 + 0.2 * rng()), jittered if try_number > 3 else 0.0)
    return jittered
