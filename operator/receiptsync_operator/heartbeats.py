"""The heartbeat stream consumer: XREAD BLOCK on the events stream, hand each entry to the controller,
remember the last applied entry id in Redis so a restarted operator continues where it stopped
(replays are harmless anyway: applying a heartbeat twice gives the same status)."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from receiptsync_common import contract

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, str]], Awaitable[None]]


class HeartbeatConsumer:
    def __init__(self, client: aioredis.Redis, handler: Handler, *, scope: str = "",
                 block_ms: int = 1000, batch: int = 500) -> None:
        self._redis = client
        self._cursor_key = f"{contract.OPERATOR_STREAM_CURSOR_KEY}:{scope or '*'}"
        self._handler = handler
        self._block_ms = block_ms
        self._batch = batch
        self.last_id: str | None = None

    async def _start_id(self) -> str:
        # No cursor yet (first start): read the whole (capped) stream; stale entries are ignored.
        return await self._redis.get(self._cursor_key) or "0-0"

    async def run(self) -> None:
        while True:
            try:
                if self.last_id is None:
                    self.last_id = await self._start_id()
                response = await self._redis.xread(
                    {contract.EVENTS_STREAM: self.last_id}, block=self._block_ms, count=self._batch
                )
            except (RedisError, OSError) as exc:
                logger.warning("heartbeat stream unavailable: %s", exc)
                await asyncio.sleep(1.0)
                continue
            if not response:
                continue
            entries = [entry for _stream, batch in response for entry in batch]
            # Attempts are independent: apply each one's heartbeats in order, different ones at once.
            groups: dict[str, list[dict[str, str]]] = {}
            for _entry_id, fields in entries:
                groups.setdefault(fields.get(contract.HB_JOB_ID, ""), []).append(fields)
            await asyncio.gather(*(self._apply(group) for group in groups.values()))
            self.last_id = entries[-1][0]
            try:
                await self._redis.set(self._cursor_key, self.last_id)
            except (RedisError, OSError) as exc:
                logger.warning("could not save the stream cursor: %s", exc)

    async def _apply(self, group: list[dict[str, str]]) -> None:
        for fields in group:
            try:
                await self._handler(fields)
            except Exception:
                logger.exception("heartbeat not applied", extra={"job_id": fields.get(contract.HB_JOB_ID)})
