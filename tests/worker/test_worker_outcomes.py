"""Which reason an exception ends an attempt with (pure)."""
from __future__ import annotations

import psycopg
import pytest

from receiptsync_common import contract, daterange
from receiptsync_worker import credentials
from receiptsync_worker.gmail_client import GmailApiError
from receiptsync_worker.store import DatabaseUnavailable
from receiptsync_worker.sync import classify


@pytest.mark.parametrize("exc, reason", [
    (credentials.GmailAuthError("x"), contract.REASON_GMAIL_AUTH_ERROR),
    (credentials.CredentialsFormatError("the Gmail credentials are not valid JSON"), contract.REASON_GMAIL_AUTH_ERROR),
    (GmailApiError("Gmail messages.get failed with HTTP 400."), contract.REASON_GMAIL_API_ERROR),
    (DatabaseUnavailable("gone"), contract.REASON_DATABASE_ERROR),
    (psycopg.OperationalError("connection refused"), contract.REASON_DATABASE_ERROR),
    (daterange.DateRangeError("spec.fromDate ..."), contract.REASON_INVALID_SPEC),
    (KeyError("boom"), contract.REASON_WORKER_ERROR),
])
def test_classify(exc, reason):
    got, message = classify(exc)
    assert got == reason
    assert message and "\n" not in message


def test_auth_message_tells_the_user_to_reconnect():
    assert "reconnect Gmail" in classify(credentials.GmailAuthError("x"))[1]


def test_credentials_json_validation():
    with pytest.raises(credentials.CredentialsFormatError):
        credentials.parse_authorized_user("not json")
    with pytest.raises(credentials.CredentialsFormatError):
        credentials.parse_authorized_user('{"client_id": "a"}')
    info = credentials.parse_authorized_user(
        '{"client_id": "a", "client_secret": "sssssss", "refresh_token": "rrrrrrr", "token_uri": "http://127.0.0.1:1/token"}')
    assert credentials.build_credentials(info).token_uri == "http://127.0.0.1:1/token"
    assert credentials.secret_values(info) == ["sssssss", "rrrrrrr"]
