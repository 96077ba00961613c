"""JSON-lines logging on stdout (CONTRACT section 5): one object per line, secrets redacted.

``event(contract.LOG_JOB_START, ...)`` writes the attempt's marker lines; ordinary ``logging``
records go through the same formatter, so every line the worker prints is parseable JSON.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import threading
from typing import Any, Callable, TextIO

from .redact import Redactor

_lock = threading.Lock()
_state: dict[str, Any] = {"stream": sys.stdout, "redact": lambda text: text}


def configure(redactor: Redactor | Callable[[str], str], stream: TextIO | None = None,
              level: int = logging.INFO) -> None:
    _state["redact"] = redactor
    _state["stream"] = stream or sys.stdout
    handler = logging.StreamHandler(_state["stream"])
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Client libraries are chatty at INFO and may print URLs with tokens; keep their warnings only.
    for name in ("googleapiclient", "google", "urllib3", "httplib2"):
        logging.getLogger(name).setLevel(logging.WARNING)


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def render(fields: dict[str, Any]) -> str:
    """One redacted JSON line."""
    return _state["redact"](json.dumps(fields, ensure_ascii=False, default=str))


def event(marker: str, **fields: Any) -> None:
    """A marker line: ``{"time": ..., "level": "info", "event": marker, "msg": marker, ...fields}``."""
    line = render({"time": now_rfc3339(), "level": "info", "event": marker, "msg": marker, **fields})
    _write(line)


def _write(line: str) -> None:
    with _lock:
        stream = _state["stream"]
        stream.write(line + "\n")
        stream.flush()


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "time": now_rfc3339(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            fields["exc"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
        return render(fields)
