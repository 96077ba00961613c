"""Operator settings: environment first, command-line flags override (both optional)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
from collections.abc import Mapping, Sequence

from receiptsync_common import attempt_auth, contract


@dataclasses.dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    namespace: str = ""  # empty: every namespace
    max_workers: int = 4
    heartbeat_timeout: float = 30.0
    worker_image: str = f"{contract.WORKER_IMAGE}:{contract.IMAGE_TAG}"
    worker_command: tuple[str, ...] = ()  # empty: the image's entrypoint
    worker_redis_url: str = ""  # empty: redis_url
    worker_database_url: str = ""
    worker_gmail_api_endpoint: str = ""
    worker_job_ttl: int = 3600
    # The Job's activeDeadlineSeconds is spec.timeout plus this, so the operator's own Timeout
    # (which can retry) fires first and Kubernetes only cleans up what the operator could not.
    worker_deadline_grace: int = 60
    metrics_port: int = 8080
    lease_name: str = "receiptsync-operator"
    lease_namespace: str = "default"
    lease_duration: float = 15.0
    identity: str = ""
    log_level: str = "INFO"
    # Counters go to status at most this often per resource (phase changes go at once); the gap
    # grows with the attempt's age, up to progress_max_interval, to keep API writes per run low.
    progress_interval: float = 2.0
    progress_max_interval: float = 30.0
    # How long a worker Job may be failed or gone before its attempt is declared lost, so that a
    # final heartbeat still in flight wins over the Job's status.
    job_gone_grace: float = 2.0
    # Deleting a resource waits at most this long for Redis before releasing it anyway.
    delete_redis_timeout: float = 10.0
    check_interval: float = 1.0
    # Worker Jobs take REDIS_URL/DATABASE_URL from this Secret (in the ReceiptSync's namespace) by
    # secretKeyRef instead of plain values; empty: plain values (sandbox, trials).
    worker_connection_secret: str = ""
    # Testing knob: scheduled time = system time + the seconds in this file (see clock.py).
    test_clock_offset_file: str = ""
    # Per-resource "Redis unavailable" warnings at most this often.
    redis_warning_interval: float = 60.0
    # Worker tuning, passed through unchanged to every worker Job (the worker validates it);
    # empty: the worker's defaults.
    worker_quota_rate: str = ""
    worker_quota_burst: str = ""
    worker_fetch_threads: str = ""
    # The chart's partial pod template merged into every worker Job (worker_job.merge_template).
    worker_template: dict | None = None
    # Retries wait retry_base * 2^(n-1) seconds (jittered), at most retry_cap.
    retry_base: float = 10.0
    retry_cap: float = 360.0
    # An attempt's pod may stay unscheduled this long, and fail to pull its image this long, before
    # the attempt fails and frees its slot.
    worker_start_timeout: float = 300.0
    image_pull_timeout: float = 60.0
    # A queue entry whose dispatch failed this many times in a row is set aside (dead-letter).
    dead_letter_after: int = 5
    # Issue 14. The administrative database URL: the operator migrates the schema with it at start and,
    # with per-attempt credentials, makes each attempt's database role. Workers never see it.
    database_url: str = dataclasses.field(default="", repr=False)
    # "per-attempt": each attempt gets its own database role, Redis ACL user and heartbeat key (in a
    # Secret the operator creates); "shared": workers get the URLs above (trials, stand-in workers);
    # "auto": per-attempt when database_url is set.
    worker_credentials: str = "auto"
    # What per-attempt secrets are derived from; empty: a random key for this process.
    credential_key: str = dataclasses.field(default="", repr=False)

    @property
    def effective_worker_redis_url(self) -> str:
        return self.worker_redis_url or self.redis_url

    @property
    def effective_worker_database_url(self) -> str:
        """Where workers reach the database (with per-attempt credentials, its user and password are
        replaced by the attempt's own)."""
        return self.worker_database_url or self.database_url

    @property
    def migration_url(self) -> str:
        """The URL the operator migrates the schema with (shared credentials: the workers' URL)."""
        return self.database_url or self.worker_database_url

    @property
    def per_attempt_credentials(self) -> bool:
        return self.worker_credentials == contract.WORKER_CREDENTIALS_PER_ATTEMPT or (
            self.worker_credentials == "auto" and bool(self.database_url))


def _env_names() -> dict[str, str]:
    """Settings field -> environment variable."""
    return {
        "redis_url": contract.OPERATOR_ENV_REDIS_URL,
        "namespace": contract.OPERATOR_ENV_NAMESPACE,
        "max_workers": contract.OPERATOR_ENV_MAX_WORKERS,
        "heartbeat_timeout": contract.OPERATOR_ENV_HEARTBEAT_TIMEOUT,
        "worker_image": contract.OPERATOR_ENV_WORKER_IMAGE,
        "worker_command": contract.OPERATOR_ENV_WORKER_COMMAND,
        "worker_redis_url": contract.OPERATOR_ENV_WORKER_REDIS_URL,
        "worker_database_url": contract.OPERATOR_ENV_WORKER_DATABASE_URL,
        "worker_gmail_api_endpoint": contract.OPERATOR_ENV_WORKER_GMAIL_API_ENDPOINT,
        "worker_job_ttl": contract.OPERATOR_ENV_WORKER_JOB_TTL,
        "metrics_port": contract.OPERATOR_ENV_METRICS_PORT,
        "lease_name": contract.OPERATOR_ENV_LEASE_NAME,
        "lease_namespace": contract.OPERATOR_ENV_LEASE_NAMESPACE,
        "lease_duration": contract.OPERATOR_ENV_LEASE_DURATION,
        "identity": contract.OPERATOR_ENV_POD_NAME,
        "log_level": contract.OPERATOR_ENV_LOG_LEVEL,
        "delete_redis_timeout": contract.OPERATOR_ENV_DELETE_REDIS_TIMEOUT,
        "worker_connection_secret": contract.OPERATOR_ENV_WORKER_CONNECTION_SECRET,
        "test_clock_offset_file": contract.OPERATOR_ENV_TEST_CLOCK_OFFSET_FILE,
        "redis_warning_interval": contract.OPERATOR_ENV_REDIS_WARNING_INTERVAL,
        "worker_quota_rate": contract.WORKER_ENV_QUOTA_RATE,
        "worker_quota_burst": contract.WORKER_ENV_QUOTA_BURST,
        "worker_fetch_threads": contract.WORKER_ENV_FETCH_THREADS,
        "worker_template": contract.OPERATOR_ENV_WORKER_TEMPLATE_JSON,
        "retry_base": contract.OPERATOR_ENV_RETRY_BASE,
        "retry_cap": contract.OPERATOR_ENV_RETRY_CAP,
        "worker_start_timeout": contract.OPERATOR_ENV_WORKER_START_TIMEOUT,
        "image_pull_timeout": contract.OPERATOR_ENV_IMAGE_PULL_TIMEOUT,
        "dead_letter_after": contract.OPERATOR_ENV_DEAD_LETTER_AFTER,
        "database_url": contract.OPERATOR_ENV_DATABASE_URL,
        "worker_credentials": contract.OPERATOR_ENV_WORKER_CREDENTIALS,
        "credential_key": contract.OPERATOR_ENV_CREDENTIAL_KEY,
    }


def worker_tuning(settings: Settings) -> list[tuple[str, str]]:
    """(env name, value) of the worker tuning the operator was given, for each worker Job."""
    pairs = (
        (contract.WORKER_ENV_QUOTA_RATE, settings.worker_quota_rate),
        (contract.WORKER_ENV_QUOTA_BURST, settings.worker_quota_burst),
        (contract.WORKER_ENV_FETCH_THREADS, settings.worker_fetch_threads),
    )
    return [(name, value) for name, value in pairs if value]


class ConfigError(ValueError):
    """A setting the operator cannot start with; the message names the variable."""


def parse_worker_template(raw: str) -> dict | None:
    """RECEIPTSYNC_WORKER_TEMPLATE_JSON, checked (ConfigError names what is wrong)."""
    from .worker_job import check_template  # worker_job imports this module

    env = contract.OPERATOR_ENV_WORKER_TEMPLATE_JSON
    if not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{env} is not valid JSON ({exc}); fix the chart's worker.* values") from None
    problem = check_template(value)
    if problem:
        raise ConfigError(f"{env} {problem}")
    return value


def _convert(field: dataclasses.Field, raw: str):
    if field.name == "worker_template":
        return parse_worker_template(raw)
    default = field.default
    if isinstance(default, bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, tuple):
        value = json.loads(raw) if raw.strip() else []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{field.name} must be a JSON list of strings")
        return tuple(value)
    return raw


def load(environ: Mapping[str, str] | None = None, argv: Sequence[str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    values: dict[str, object] = {}
    for name, env in _env_names().items():
        if environ.get(env, "") != "":
            try:
                values[name] = _convert(fields[name], environ[env])
            except ConfigError:
                raise
            except ValueError as exc:
                raise ConfigError(f"{env}: {exc}") from None
    if "lease_namespace" not in values and environ.get(contract.OPERATOR_ENV_POD_NAMESPACE):
        values["lease_namespace"] = environ[contract.OPERATOR_ENV_POD_NAMESPACE]

    parser = argparse.ArgumentParser(prog="receiptsync-operator", description="ReceiptSync operator")
    for name, env in _env_names().items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, default=None, help=f"(env {env})")
    for name, raw in vars(parser.parse_args(list(argv or []))).items():
        if raw is not None:
            values[name] = _convert(fields[name], raw)

    try:
        settings = Settings(**values)  # type: ignore[arg-type]
    except TypeError as exc:
        raise ConfigError(str(exc)) from None
    if not settings.identity:
        settings = dataclasses.replace(settings, identity=f"{socket.gethostname()}-{os.getpid()}")
    if settings.max_workers < 1:
        raise ConfigError(f"{contract.OPERATOR_ENV_MAX_WORKERS} must be at least 1")
    problem = credentials_problem(settings)
    if problem:
        raise ConfigError(problem)
    if settings.retry_base <= 0 or settings.retry_cap < settings.retry_base:
        raise ConfigError(f"{contract.OPERATOR_ENV_RETRY_BASE} must be positive and at most "
                          f"{contract.OPERATOR_ENV_RETRY_CAP}")
    return settings


def credentials_problem(settings: Settings) -> str | None:
    """Why the worker-credentials settings cannot work (None: they can)."""
    modes = ("auto", contract.WORKER_CREDENTIALS_PER_ATTEMPT, contract.WORKER_CREDENTIALS_SHARED)
    if settings.worker_credentials not in modes:
        return f"{contract.OPERATOR_ENV_WORKER_CREDENTIALS} must be one of {', '.join(modes)}"
    if settings.worker_credentials == contract.WORKER_CREDENTIALS_PER_ATTEMPT and not settings.database_url:
        return (f"{contract.OPERATOR_ENV_WORKER_CREDENTIALS}=per-attempt needs {contract.OPERATOR_ENV_DATABASE_URL}"
                " (the administrative database URL the operator makes each attempt's role with)")
    if settings.credential_key and len(settings.credential_key) < attempt_auth.MIN_KEY_LENGTH:
        return f"{contract.OPERATOR_ENV_CREDENTIAL_KEY} must be at least {attempt_auth.MIN_KEY_LENGTH} characters long"
    return None


def redact_url(url: str) -> str:
    """A URL fit for logs: any password is replaced."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"
