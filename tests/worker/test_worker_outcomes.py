"""Which reason an exception ends an attempt with (pure)."""
from __future__ import annotations

import psycopg
import pytest

from receiptsync_common import attempt_identity, contract, daterange
from receiptsync_common.jobspec import JobPayload
from receiptsync_worker import config, credentials
from receiptsync_worker.gmail_client import GmailApiError, GmailTimeout
from receiptsync_worker.store import DatabaseUnavailable
from receiptsync_worker.sync import Attempt, classify


@pytest.mark.parametrize("exc, reason", [
    (credentials.GmailAuthError("x"), contract.REASON_GMAIL_AUTH_ERROR),
    (credentials.CredentialsFormatError("the Gmail credentials are not valid JSON"), contract.REASON_GMAIL_AUTH_ERROR),
    (GmailApiError("Gmail messages.get failed with HTTP 400."), contract.REASON_GMAIL_API_ERROR),
    (GmailTimeout("Gmail users.getProfile answered 503 backendError 5 times; last: ..."), contract.REASON_TIMEOUT),
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


BASE_ENV = {contract.ENV_JOB_ID: "j", contract.ENV_REDIS_URL: "redis://127.0.0.1:1/0",
            contract.ENV_DATABASE_URL: "postgresql://127.0.0.1:1/x", contract.ENV_GMAIL_CREDENTIALS: "{}",
            contract.ENV_ATTEMPT_IDENTITY: attempt_identity.identity_json(JobPayload(
                job_id="j", namespace="ns", name="n", uid="u", business_id="b", run_id=1, attempt=1, mode="full",
                priority="default", max_messages=10, timeout_seconds=60))}


def test_tuning_defaults_are_unchanged_without_the_environment():
    tuning = config.from_env(BASE_ENV).tuning
    assert (tuning.quota_rate, tuning.quota_burst, tuning.fetchers) == (250.0, 125.0, 4)
    assert tuning.batch_size == 25
    blank = {contract.WORKER_ENV_QUOTA_RATE: "", contract.WORKER_ENV_QUOTA_BURST: " ",
             contract.WORKER_ENV_FETCH_THREADS: ""}
    assert config.from_env({**BASE_ENV, **blank}).tuning == tuning


def test_tuning_from_the_environment_reaches_the_attempt():
    env = {**BASE_ENV, contract.WORKER_ENV_QUOTA_RATE: "62.5", contract.WORKER_ENV_QUOTA_BURST: "50",
           contract.WORKER_ENV_FETCH_THREADS: "2"}
    settings = config.from_env(env)
    assert settings.tuning == config.Tuning(quota_rate=62.5, quota_burst=50.0, fetchers=2)
    assert settings.tuning.batch_size == 10  # a batch fits the smaller burst
    attempt = Attempt(settings)
    assert attempt.tuning == settings.tuning
    attempt.redis.close()


@pytest.mark.parametrize("name, raw", [
    (contract.WORKER_ENV_QUOTA_RATE, "0"), (contract.WORKER_ENV_QUOTA_RATE, "-5"),
    (contract.WORKER_ENV_QUOTA_RATE, "nan"), (contract.WORKER_ENV_QUOTA_RATE, "inf"),
    (contract.WORKER_ENV_QUOTA_BURST, "lots"),
    (contract.WORKER_ENV_FETCH_THREADS, "2.5"), (contract.WORKER_ENV_FETCH_THREADS, "0"),
    (contract.WORKER_ENV_FETCH_THREADS, "1000"),
])
def test_bad_tuning_values_are_config_errors_naming_the_variable(name, raw):
    with pytest.raises(config.ConfigError, match=name):
        config.from_env({**BASE_ENV, name: raw})
