"""Scrubs secret values (refresh token, client secret, access tokens) out of text we write anywhere.

Logs, heartbeats, the sync_runs error column and Redis only ever receive text that went through a
:class:`Redactor`; error messages from HTTP libraries can echo request bodies, so we never trust them.
"""
from __future__ import annotations

import threading

REPLACEMENT = "[REDACTED]"
# Shorter strings would redact ordinary words; real tokens and secrets are much longer.
MIN_SECRET_LENGTH = 6


class Redactor:
    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, *values: str | None) -> None:
        with self._lock:
            self._secrets.update(v for v in values if v and len(v) >= MIN_SECRET_LENGTH)

    def __call__(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, REPLACEMENT)
        return text


def url_passwords(*urls: str) -> list[str]:
    """The passwords in connection URLs (``scheme://user:password@host``), so a driver's error that
    echoes its URL never carries them into a log line, a heartbeat or status."""
    from urllib.parse import unquote, urlsplit

    found = []
    for url in urls:
        try:
            password = urlsplit(url or "").password
        except ValueError:
            continue
        if password:
            found += [password, unquote(password)]
    return found
