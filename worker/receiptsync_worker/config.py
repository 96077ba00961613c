"""The worker's settings, read from its environment (names in receiptsync_common.contract)."""
from __future__ import annotations

import dataclasses
import os
import socket
from typing import Mapping

from receiptsync_common import contract


class ConfigError(ValueError):
    """A required environment variable is missing."""


@dataclasses.dataclass(frozen=True)
class Settings:
    job_id: str
    redis_url: str
    database_url: str
    gmail_endpoint: str  # '' means Google's own endpoint
    credentials_json: str = dataclasses.field(repr=False)
    worker_name: str = ""


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    missing = [name for name in (contract.ENV_JOB_ID, contract.ENV_REDIS_URL, contract.ENV_DATABASE_URL,
                                 contract.ENV_GMAIL_CREDENTIALS) if not env.get(name)]
    if missing:
        raise ConfigError(f"missing environment variable(s): {', '.join(missing)}")
    return Settings(
        job_id=env[contract.ENV_JOB_ID],
        redis_url=env[contract.ENV_REDIS_URL],
        database_url=env[contract.ENV_DATABASE_URL],
        gmail_endpoint=env.get(contract.ENV_GMAIL_API_ENDPOINT, "").strip(),
        credentials_json=env[contract.ENV_GMAIL_CREDENTIALS],
        worker_name=env.get("HOSTNAME") or socket.gethostname(),
    )
