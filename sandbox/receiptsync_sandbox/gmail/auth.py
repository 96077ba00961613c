"""The OAuth side: refresh-token grants at POST /token and bearer access tokens on API calls.

In the sandbox a refresh token ``refresh-token-for:<address>`` is valid when that mailbox exists and
is not revoked; anything else is ``invalid_grant``. Access tokens are opaque random strings that
remember their mailbox and expiry; revoking a mailbox also kills its live access tokens.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Callable, Mapping

GMAIL_READONLY_SCOPE = "https://www.googleapis.com/auth/gmail.readonly"
REFRESH_TOKEN_PREFIX = "refresh-token-for:"

INVALID_GRANT = {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}


def refresh_token_for(address: str) -> str:
    return REFRESH_TOKEN_PREFIX + address


def authorized_user(address: str, token_uri: str, *, client_id: str = "sandbox-client.apps.example.com",
                    client_secret: str = "sandbox-client-secret", refresh_token: str | None = None) -> dict[str, str]:
    """The "authorized user" credentials JSON a tenant stores in its Secret, valid against this
    emulator for ``address`` (pass ``refresh_token`` to use another, e.g. a bad one)."""
    return {
        "type": "authorized_user",
        "client_id": client_id,
        "client_secret": client_secret,
        "refresh_token": refresh_token or refresh_token_for(address),
        "token_uri": token_uri,
    }


@dataclass(frozen=True)
class AccessToken:
    mailbox: str
    expires_at: float


class TokenStore:
    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self.tokens: dict[str, AccessToken] = {}

    def issue(self, mailbox: str, ttl_s: int) -> str:
        token = "ya29.emu-" + secrets.token_urlsafe(32)
        self.tokens[token] = AccessToken(mailbox, self.clock() + ttl_s)
        return token

    def mailbox_of(self, token: str) -> str | None:
        """The mailbox a live token was issued for, or None (unknown or expired)."""
        entry = self.tokens.get(token)
        if entry is None:
            return None
        if entry.expires_at <= self.clock():
            del self.tokens[token]
            return None
        return entry.mailbox


def grant(form: Mapping[str, str], mailbox_exists: Callable[[str], bool], revoked: set[str]) -> str | None:
    """The mailbox a refresh-token grant is for, or None when it must be refused."""
    if form.get("grant_type") != "refresh_token":
        return None
    token = form.get("refresh_token", "")
    if not token.startswith(REFRESH_TOKEN_PREFIX):
        return None
    address = token[len(REFRESH_TOKEN_PREFIX):].strip().lower()
    if not address or address in revoked or not mailbox_exists(address):
        return None
    return address


def bearer_token(headers: Mapping[str, str], query: Mapping[str, str]) -> str:
    """The access token from ``Authorization: Bearer …`` (or Google's ``access_token`` parameter)."""
    header = headers.get("Authorization", "") or headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return query.get("access_token", "")
