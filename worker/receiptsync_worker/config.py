"""The worker's settings, read from its environment (names in receiptsync_common.contract)."""
from __future__ import annotations

import dataclasses
import math
import os
import socket
from typing import Any, Mapping

from receiptsync_common import attempt_identity, contract

from . import ratelimit


class ConfigError(ValueError):
    """A required environment variable is missing or a setting is not usable."""


@dataclasses.dataclass(frozen=True)
class Tuning:
    """How fast the worker may go: the mailbox's shared quota bucket and the fetch threads."""

    quota_rate: float = ratelimit.GMAIL_UNITS_PER_SECOND  # units per second
    quota_burst: float = ratelimit.DEFAULT_BURST_UNITS  # bucket capacity in units
    fetchers: int = 4  # threads fetching messages at once

    @property
    def batch_size(self) -> int:
        return ratelimit.batch_size_for(self.quota_burst, ratelimit.UNITS_MESSAGES_GET)


# Worker-only settings (the operator may pass them through extraEnv; none is required).
ENV_CURSOR_OVERLAP = "RECEIPTSYNC_CURSOR_OVERLAP_SECONDS"  # how far Gmail's search index may trail history
ENV_STALL_SECONDS = "RECEIPTSYNC_STALL_SECONDS"  # no progress this long: the attempt fails as Stalled
ENV_FINAL_HEARTBEAT_SECONDS = "RECEIPTSYNC_FINAL_HEARTBEAT_SECONDS"  # how long the last heartbeat is retried
ENV_TERMINATION_MESSAGE_PATH = "RECEIPTSYNC_TERMINATION_MESSAGE_PATH"
ENV_MAX_ATTACHMENT_BYTES = "RECEIPTSYNC_MAX_ATTACHMENT_BYTES"
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"


@dataclasses.dataclass(frozen=True)
class Guards:
    """How the attempt protects what it saves and reports (defaults are production values)."""

    cursor_overlap_seconds: float = 600.0
    stall_seconds: float = 600.0
    final_heartbeat_seconds: float = 30.0
    termination_message_path: str = DEFAULT_TERMINATION_MESSAGE_PATH
    max_attachment_bytes: int = 10 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Settings:
    job_id: str
    redis_url: str = dataclasses.field(repr=False)  # may carry the attempt's Redis password
    database_url: str = dataclasses.field(repr=False)  # and its database password
    gmail_endpoint: str  # '' means Google's own endpoint
    credentials_json: str = dataclasses.field(repr=False)
    worker_name: str = ""
    tuning: Tuning = Tuning()
    guards: Guards = Guards()
    # What the operator started this Job for (RECEIPTSYNC_ATTEMPT): the Redis payload must agree.
    # Always set by from_env; None only for in-process callers (benchmarks, tests) that build Settings.
    identity: Mapping[str, Any] | None = None
    # The attempt's heartbeat signing key (hex, RECEIPTSYNC_HEARTBEAT_KEY); '' sends unsigned heartbeats,
    # which an operator handing out per-attempt credentials ignores.
    heartbeat_key: str = dataclasses.field(default="", repr=False)


class EmptyCredentials(ConfigError):
    """The Secret's key exists but holds nothing: the user's spec points at an empty value."""


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    if contract.ENV_GMAIL_CREDENTIALS in env and not env[contract.ENV_GMAIL_CREDENTIALS].strip():
        raise EmptyCredentials("the Gmail credentials are empty: the Secret's key named by spec.gmail.secretRef.key "
                               "holds no value")
    missing = [name for name in (contract.ENV_JOB_ID, contract.ENV_REDIS_URL, contract.ENV_DATABASE_URL,
                                 contract.ENV_GMAIL_CREDENTIALS, contract.ENV_ATTEMPT_IDENTITY) if not env.get(name)]
    if missing:
        raise ConfigError(f"missing environment variable(s): {', '.join(missing)}")
    try:
        identity = attempt_identity.parse_identity(env[contract.ENV_ATTEMPT_IDENTITY])
    except ValueError as exc:
        raise ConfigError(f"{contract.ENV_ATTEMPT_IDENTITY} is not an attempt identity ({exc})") from None
    if identity.get("job_id") != env[contract.ENV_JOB_ID]:
        raise ConfigError(f"{contract.ENV_ATTEMPT_IDENTITY} names another job than {contract.ENV_JOB_ID}")
    key = (env.get(contract.ENV_HEARTBEAT_KEY) or "").strip()
    try:
        bytes.fromhex(key)
    except ValueError:
        raise ConfigError(f"{contract.ENV_HEARTBEAT_KEY} must be hex") from None
    return Settings(
        job_id=env[contract.ENV_JOB_ID],
        redis_url=env[contract.ENV_REDIS_URL],
        database_url=env[contract.ENV_DATABASE_URL],
        gmail_endpoint=env.get(contract.ENV_GMAIL_API_ENDPOINT, "").strip(),
        credentials_json=env[contract.ENV_GMAIL_CREDENTIALS],
        worker_name=env.get("HOSTNAME") or socket.gethostname(),
        tuning=tuning_from_env(env),
        guards=guards_from_env(env),
        identity=identity,
        heartbeat_key=key,
    )


def guards_from_env(env: Mapping[str, str]) -> Guards:
    default = Guards()
    return Guards(
        cursor_overlap_seconds=_positive(env, ENV_CURSOR_OVERLAP, float, default.cursor_overlap_seconds, zero=True),
        stall_seconds=_positive(env, ENV_STALL_SECONDS, float, default.stall_seconds),
        final_heartbeat_seconds=_positive(env, ENV_FINAL_HEARTBEAT_SECONDS, float, default.final_heartbeat_seconds,
                                          zero=True),
        termination_message_path=(env.get(ENV_TERMINATION_MESSAGE_PATH) or "").strip()
        or DEFAULT_TERMINATION_MESSAGE_PATH,
        max_attachment_bytes=_positive(env, ENV_MAX_ATTACHMENT_BYTES, int, default.max_attachment_bytes),
    )


def tuning_from_env(env: Mapping[str, str]) -> Tuning:
    """RECEIPTSYNC_QUOTA_UNITS_PER_SECOND, RECEIPTSYNC_QUOTA_BURST_UNITS, RECEIPTSYNC_FETCH_THREADS;
    unset or blank ones keep their defaults."""
    default = Tuning()
    return Tuning(
        quota_rate=_positive(env, contract.WORKER_ENV_QUOTA_RATE, float, default.quota_rate),
        quota_burst=_positive(env, contract.WORKER_ENV_QUOTA_BURST, float, default.quota_burst),
        fetchers=_positive(env, contract.WORKER_ENV_FETCH_THREADS, int, default.fetchers, ceiling=64),
    )


def _positive(env: Mapping[str, str], name: str, kind: type, default: float, ceiling: float = math.inf,
              zero: bool = False):
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not ((0 <= value if zero else 0 < value) and value <= ceiling) or not math.isfinite(value):
        whole = "whole " if kind is int else ""
        limit = f" up to {ceiling:g}" if math.isfinite(ceiling) else ""
        raise ConfigError(f"{name} must be a positive {whole}number{limit}, not {raw!r}")
    return value
