"""OpenAPI string formats the apiserver checks in custom resources (the ones that matter here)."""
from __future__ import annotations

import datetime
import re
import uuid

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATE_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)
_DURATION = re.compile(r"^[-+]?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$|^0$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$")


def _is_date(value: str) -> bool:
    if not _DATE.match(value):
        return False
    try:
        datetime.date.fromisoformat(value)  # calendar check: 2025-02-30 is not a date
    except ValueError:
        return False
    return True


def _is_date_time(value: str) -> bool:
    found = _DATE_TIME.match(value)
    if not found or not _is_date(found.group(1)):
        return False
    hour, minute, second = (int(found.group(i)) for i in (2, 3, 4))
    return hour < 24 and minute < 60 and second < 61


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


_CHECKS = {
    "date": _is_date,
    "date-time": _is_date_time,
    "datetime": _is_date_time,
    "duration": lambda v: bool(_DURATION.match(v)),
    "uuid": _is_uuid,
    "hostname": lambda v: bool(_HOSTNAME.match(v)),
}


def format_ok(fmt: str | None, value: str) -> bool:
    """True when ``value`` has the format (unknown formats are not checked, as in the apiserver)."""
    check = _CHECKS.get(fmt or "")
    return check(value) if check else True
