"""How issue 14 plugs into the controller: which worker credentials this operator hands out, the gate
every heartbeat from the stream passes, and the background tasks (schema migrations; issuing and
revoking per-attempt credentials)."""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from receiptsync_common import attempt_auth

from .tenant_db import TenantDatabase
from .worker_credentials import WorkerCredentials, migrate_until_done

logger = logging.getLogger("receiptsync_operator.tenancy")

Handler = Callable[[dict[str, str]], Awaitable[None]]


def worker_credentials(ctx) -> WorkerCredentials | None:
    """Per-attempt credentials (and signed payloads, verified heartbeats), or None for shared ones."""
    settings = ctx.settings
    if not settings.per_attempt_credentials:
        logger.warning("workers share the operator's database and Redis URLs (worker credentials: shared);"
                       " for tenant isolation give the operator RECEIPTSYNC_DATABASE_URL")
        return None
    key = settings.credential_key
    if not key:
        key = attempt_auth.new_master_key()
        logger.warning("no credential key configured (RECEIPTSYNC_CREDENTIAL_KEY): using one made now; attempts"
                       " running when this operator restarts lose their credentials and are retried")
    master = attempt_auth.master_key(key)
    credentials = WorkerCredentials(ctx, master, TenantDatabase(settings.database_url))
    ctx.queue.payload_key = master
    ctx.queue.heartbeat_verifies = credentials.verifies
    logger.info("workers get per-attempt credentials")
    return credentials


def heartbeat_handler(ctx, apply: Handler) -> Handler:
    """Heartbeats from the stream reach ``apply`` only when signed by the attempt they name."""
    credentials: WorkerCredentials | None = ctx.credentials
    if credentials is None:
        return apply

    async def admitted(hb: dict[str, str]) -> None:
        if await credentials.admit(hb):
            await apply(hb)

    return admitted


def tasks(ctx) -> list[tuple[str, Coroutine[Any, Any, None]]]:
    if ctx.credentials is not None:
        return [("credentials", ctx.credentials.run())]
    if ctx.settings.migration_url:
        return [("migrations", migrate_until_done(TenantDatabase(ctx.settings.migration_url)))]
    return []
