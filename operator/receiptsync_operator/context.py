"""What every collaborator of the controller shares: settings, clients, caches, the status writer,
and a few helpers (log fields, redaction, the per-resource "Redis unavailable" throttle)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
from collections.abc import Callable
from typing import Any

from receiptsync_common import contract

from .clock import Clock
from .config import Settings
from .events import Events
from .job_cache import JobCache
from .kube import ApiError, Kube
from .log_throttle import Throttle
from .resource_cache import Key, Resources
from .run_queue import Queue
from .status import StatusWriter

logger = logging.getLogger("receiptsync_operator.controller")

_URL_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@")


def redact(text: str) -> str:
    """API error texts can echo the manifest (env values): never let a URL password through."""
    return _URL_CREDENTIALS.sub(r"\1***@", text)


def log_extra(key: Key, **more: Any) -> dict[str, Any]:
    # "object" as kopf's own JSON logs name it ("name" itself is a reserved LogRecord attribute).
    return {"object": {"kind": contract.KIND, "namespace": key[0], "name": key[1]}, **more}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclasses.dataclass
class Context:
    settings: Settings
    kube: Kube
    queue: Queue
    events: Events
    resources: Resources
    writer: StatusWriter
    jobs: JobCache
    clock: Clock  # the scheduler's time (see clock.py); liveness uses the monotonic clock
    wake: Callable[[], None]  # the dispatcher should look at the queue
    redis_warnings: Throttle
    jobs_synced: Callable[[], bool]  # our Jobs have been listed once (slots are known)
    # Per-attempt worker credentials (worker_credentials.WorkerCredentials), or None when workers
    # share the operator's URLs.
    credentials: Any = None

    def in_scope(self, namespace: str) -> bool:
        return not self.settings.namespace or namespace == self.settings.namespace

    def redis_unavailable(self, key: Key, exc: BaseException) -> None:
        """One warning per resource per redis_warning_interval, however often it is retried."""
        held = self.redis_warnings.allow(key)
        if held is not None:
            logger.warning("Redis unavailable, will retry: %s%s", exc,
                           f" ({held} similar warnings suppressed)" if held else "", extra=log_extra(key))

    async def job_exists(self, namespace: str, name: str) -> bool:
        """In the cache; once our Jobs are listed and watched, a Job the cache does not know does not
        exist (a create that meets one anyway gets a 409, which the caller treats as "exists"), so
        the API is asked only before that (a Job created before a restart, not listed yet)."""
        if self.jobs.get(namespace, name) is not None:
            return True
        if self.jobs_synced():
            return False
        try:
            body = await self.kube.get(f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        self.jobs.created(body)
        return True
