"""What the CRD schema cannot check, as pure functions: calendar-valid dates (2025-02-30), IANA time
zones, durations, and whether the referenced Secret exists and holds the key.

Each problem names the field, so ``status.message`` tells the user exactly what to fix.
"""
from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

from receiptsync_common import contract, daterange

from . import schedule

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(h|m|s))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|m|s)")
_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1}
DEFAULT_TIMEOUT_SECONDS = 3600


class InvalidSpec(ValueError):
    """The spec cannot run; ``str(exc)`` is one sentence naming the field."""


def parse_duration(value: str, field: str = "timeout") -> int:
    """``90s``, ``30m``, ``1h30m``, ``1.5h`` -> whole seconds (at least 1)."""
    text = str(value).strip()
    if not _DURATION.match(text):
        raise InvalidSpec(f"spec.{field}: {value!r} is not a duration such as 90s, 30m or 1h30m")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    if seconds < 1:
        raise InvalidSpec(f"spec.{field}: {value!r} must be at least one second")
    return int(round(seconds))


def check_time_zone(name: str | None) -> str:
    if not name:
        return "UTC"
    try:
        schedule.parse_time_zone(name)
    except schedule.ScheduleError as exc:
        raise InvalidSpec(str(exc)) from None
    return name


def check_schedule(spec: Mapping[str, Any]) -> None:
    """spec.schedule (when set) and spec.timeZone; the message names the field."""
    if spec.get("schedule"):
        problem = schedule.validate_schedule(spec["schedule"], spec.get("timeZone"))
        if problem:
            raise InvalidSpec(problem)


def secret_ref(spec: Mapping[str, Any]) -> tuple[str, str]:
    ref = ((spec.get("gmail") or {}).get("secretRef") or {})
    return str(ref.get("name") or ""), str(ref.get("key") or contract.DEFAULT_CREDENTIALS_KEY)


def _check_secret(spec: Mapping[str, Any], secret: Mapping[str, Any] | None) -> None:
    """``secret`` is the Secret object as read from the API (None if it does not exist).

    Only key presence and non-emptiness are checked; the value is never decoded beyond that, never
    logged, and never copied anywhere.
    """
    name, key = secret_ref(spec)
    if not name:
        raise InvalidSpec("spec.gmail.secretRef.name: no Secret named; it must name a Secret holding the credentials")
    if secret is None:
        raise InvalidSpec(f"spec.gmail.secretRef.name: Secret {name!r} does not exist in this namespace")
    data = dict(secret.get("data") or {})
    string_data = dict(secret.get("stringData") or {})
    if key not in data and key not in string_data:
        raise InvalidSpec(f"spec.gmail.secretRef.key: Secret {name!r} has no key {key!r}")
    raw = data.get(key)
    if raw is not None:
        try:
            empty = len(base64.b64decode(raw, validate=False)) == 0
        except (ValueError, TypeError):
            empty = False
        if empty:
            raise InvalidSpec(f"spec.gmail.secretRef.key: key {key!r} of Secret {name!r} is empty")


def check_dates(spec: Mapping[str, Any]) -> None:
    for field in ("fromDate", "toDate"):
        if spec.get(field):
            try:
                daterange.parse_date(str(spec[field]), field)
            except daterange.DateRangeError as exc:
                raise InvalidSpec(str(exc)) from None


def validate(spec: Mapping[str, Any], secret: Mapping[str, Any] | None, *, check_secret: bool = True) -> None:
    """Raise :class:`InvalidSpec` for the first problem found, in the order a user reads the spec."""
    if not spec.get("businessId"):
        raise InvalidSpec("spec.businessId: required")
    check_dates(spec)
    check_schedule(spec)
    check_time_zone(spec.get("timeZone"))
    parse_duration(spec.get("timeout") or "1h")
    mode = spec.get("mode") or contract.MODE_INCREMENTAL
    if mode not in (contract.MODE_INCREMENTAL, contract.MODE_FULL):
        raise InvalidSpec(f"spec.mode: {mode!r} must be incremental or full")
    priority = spec.get("priority") or contract.PRIORITY_DEFAULT
    if priority not in contract.PRIORITIES:
        raise InvalidSpec(f"spec.priority: {priority!r} must be one of high, default, low")
    if check_secret:
        _check_secret(spec, secret)
