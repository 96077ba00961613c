"""Gmail OAuth credentials from the "authorized user" JSON in the resource's Secret.

A refresh answered with ``invalid_grant`` means the user revoked access or the grant expired: no
retry can fix that, so it becomes :class:`GmailAuthError` at once.
"""
from __future__ import annotations

import json
from typing import Any

import google.auth.exceptions
import google_auth_httplib2
import httplib2
from google.oauth2.credentials import Credentials

GMAIL_READONLY_SCOPE = "https://www.googleapis.com/auth/gmail.readonly"
REQUIRED_KEYS = ("client_id", "client_secret", "refresh_token")
RECONNECT_MESSAGE = "Gmail access was revoked or has expired; reconnect Gmail for this business and run the sync again."


class GmailAuthError(RuntimeError):
    """Gmail refused the grant; the user must reconnect Gmail."""


class CredentialsFormatError(ValueError):
    """The Secret does not hold an authorized-user JSON."""


def parse_authorized_user(raw: str) -> dict[str, Any]:
    try:
        info = json.loads(raw)
    except json.JSONDecodeError:
        raise CredentialsFormatError("the Gmail credentials are not valid JSON") from None
    if not isinstance(info, dict):
        raise CredentialsFormatError("the Gmail credentials JSON is not an object")
    missing = [key for key in REQUIRED_KEYS if not info.get(key)]
    if missing:
        raise CredentialsFormatError(f"the Gmail credentials JSON lacks {', '.join(missing)}")
    return info


def secret_values(info: dict[str, Any]) -> list[str]:
    """Values that must never be written anywhere."""
    return [str(info[key]) for key in ("client_secret", "refresh_token") if info.get(key)]


def build_credentials(info: dict[str, Any]) -> Credentials:
    credentials = Credentials.from_authorized_user_info(info, scopes=[GMAIL_READONLY_SCOPE])
    # This google-auth pins Google's token endpoint in from_authorized_user_info; the JSON's own
    # token_uri (another OAuth server, or the sandbox's) must win.
    if info.get("token_uri"):
        credentials = credentials.with_token_uri(str(info["token_uri"]))
    return credentials


def is_invalid_grant(error: google.auth.exceptions.RefreshError) -> bool:
    for arg in error.args:
        if isinstance(arg, dict) and arg.get("error") == "invalid_grant":
            return True
        if isinstance(arg, str) and "invalid_grant" in arg:
            return True
    return False


TOKEN_TIMEOUT_SECONDS = 60


class _TokenRequest(google_auth_httplib2.Request):
    """google-auth's transport over httplib2, which the Gmail client loads anyway (the `requests`
    transport would import requests and urllib3 only for this one call); a connection that fails
    is a TransportError, as with the requests transport."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except OSError as exc:
            raise google.auth.exceptions.TransportError(exc) from exc


def refresh(credentials: Credentials) -> None:
    """Get an access token now, so a revoked grant fails the attempt before any work."""
    try:
        credentials.refresh(_TokenRequest(httplib2.Http(timeout=TOKEN_TIMEOUT_SECONDS)))
    except google.auth.exceptions.RefreshError as exc:
        if is_invalid_grant(exc):
            raise GmailAuthError(RECONNECT_MESSAGE) from None
        raise
