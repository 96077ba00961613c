"""OAuth against the emulator with real google-auth: refresh grants, invalid_grant, 401s, revocation."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

import google.auth.exceptions
import google.auth.transport.requests
import pytest

from gmail_helpers import ALICE


def post_form(url: str, form: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get(url: str, token: str | None) -> tuple[int, dict, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)


def test_google_auth_refreshes_against_the_emulator(emulator):
    credentials = emulator.credentials()
    credentials.refresh(google.auth.transport.requests.Request())
    assert credentials.token.startswith("ya29.") and credentials.valid
    assert credentials.expiry is not None
    status, profile, _ = get(emulator.url + "gmail/v1/users/me/profile", credentials.token)
    assert status == 200 and profile["emailAddress"] == ALICE


def test_token_endpoint_answer_shape(emulator):
    status, body = post_form(emulator.url + "token", {"grant_type": "refresh_token", "client_id": "c",
                                                       "client_secret": "s",
                                                       "refresh_token": f"refresh-token-for:{ALICE}"})
    assert status == 200
    assert set(body) == {"access_token", "expires_in", "token_type", "scope"}
    assert body["expires_in"] == 3600 and body["token_type"] == "Bearer"
    assert body["scope"] == "https://www.googleapis.com/auth/gmail.readonly"


@pytest.mark.parametrize("refresh_token", ["refresh-token-for:nobody@example.com", "some-real-looking-token", ""])
def test_other_refresh_tokens_are_invalid_grant(emulator, refresh_token):
    status, body = post_form(emulator.url + "token", {"grant_type": "refresh_token", "refresh_token": refresh_token,
                                                       "client_id": "c", "client_secret": "s"})
    assert status == 400
    assert body == {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
    credentials = emulator.credentials(refresh_token=refresh_token or "x")
    with pytest.raises(google.auth.exceptions.RefreshError, match="invalid_grant"):
        credentials.refresh(google.auth.transport.requests.Request())


@pytest.mark.parametrize("token", [None, "ya29.unknown"])
def test_api_calls_without_a_valid_token_are_401(emulator, token):
    status, body, headers = get(emulator.url + "gmail/v1/users/me/messages", token)
    assert status == 401
    assert body["error"]["status"] == "UNAUTHENTICATED" and body["error"]["errors"][0]["reason"] == "authError"
    assert "WWW-Authenticate" in headers


def test_revoking_kills_grants_and_live_tokens(emulator):
    credentials = emulator.credentials()
    credentials.refresh(google.auth.transport.requests.Request())
    live_token = credentials.token
    emulator.configure(revoked=[ALICE])
    assert get(emulator.url + "gmail/v1/users/me/profile", live_token)[0] == 401
    with pytest.raises(google.auth.exceptions.RefreshError, match="invalid_grant"):
        emulator.service().users().getProfile(userId="me").execute()
    emulator.configure(revoked=[])
    assert emulator.service().users().getProfile(userId="me").execute()["emailAddress"] == ALICE


def test_expired_access_tokens_are_refreshed_by_the_client(emulator):
    emulator.configure(token_ttl_s=1)
    credentials = emulator.credentials()
    credentials.refresh(google.auth.transport.requests.Request())
    stale = credentials.token
    time.sleep(1.1)
    assert get(emulator.url + "gmail/v1/users/me/profile", stale)[0] == 401
    gmail = emulator.service(credentials=credentials)
    assert gmail.users().getProfile(userId="me").execute()["emailAddress"] == ALICE
    assert credentials.token != stale
    assert emulator.stats()["token_grants"] >= 2
