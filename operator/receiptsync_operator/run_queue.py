"""The Redis side of the queue: job payloads, the per-priority sorted sets, heartbeat hashes.

Enqueueing is idempotent: ``ZADD NX`` with the deterministic job id keeps the first score, so a
restarted operator re-enqueueing the same attempt neither duplicates it nor loses its place.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.client import NEVER_DECODE

from receiptsync_common import attempt_auth, contract
from receiptsync_common.jobspec import JobPayload

from .dispatch import Entry

logger = logging.getLogger("receiptsync_operator.queue")


# Callers wait for a free connection rather than fail with "Too many connections" (redis-py's
# default pool raises); a bounded wait still surfaces a Redis that does not answer.
MAX_CONNECTIONS = 32
CONNECTION_WAIT_SECONDS = 10.0


def score_pairs(reply: Any) -> list[tuple[bytes, float]]:
    """(member, score) from an undecoded ZRANGE ... WITHSCORES reply: flat in RESP2, pairs in RESP3."""
    if reply and isinstance(reply[0], (list, tuple)):
        return [(member, float(score)) for member, score in reply]
    items = list(reply or [])
    return [(items[i], float(items[i + 1])) for i in range(0, len(items) - 1, 2)]


class Queue:
    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client
        # Issue 14, set by the controller with per-attempt credentials: payloads are written signed
        # with a key only the operator can derive, and read back only when the signature holds (else
        # as missing: the caller rebuilds the attempt from its spec); heartbeat hashes count only when
        # signed by their attempt.
        self.payload_key: bytes | None = None
        self.heartbeat_verifies: Callable[[Mapping[str, Any]], bool] | None = None

    @classmethod
    def from_url(cls, url: str) -> "Queue":
        pool = aioredis.BlockingConnectionPool.from_url(
            url, decode_responses=True, health_check_interval=30, max_connections=MAX_CONNECTIONS,
            timeout=CONNECTION_WAIT_SECONDS)
        return cls(aioredis.Redis(connection_pool=pool))

    async def close(self) -> None:
        await self.redis.aclose()

    async def enqueue(self, payload: JobPayload, score: float) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(contract.job_key(payload.job_id), self._payload_text(payload), ex=contract.JOB_PAYLOAD_TTL_SECONDS)
            pipe.zadd(contract.queue_key(payload.priority), {payload.job_id: score}, nx=True)
            await pipe.execute()

    async def entries(self) -> list[Entry]:
        """Every queued attempt. Members are read as bytes: one that is not even UTF-8 cannot be a job
        id anybody enqueued, and decoding it would fail the whole read (no dispatch for anyone), so
        it is set aside at once instead (dead-letter, logged)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for priority in contract.PRIORITIES:
                pipe.execute_command("ZRANGE", contract.queue_key(priority), 0, -1, "WITHSCORES",
                                     **{NEVER_DECODE: True})
            results = await pipe.execute()
        entries, undecodable = [], []
        for priority, reply in zip(contract.PRIORITIES, results):
            for member, score in score_pairs(reply):
                try:
                    entries.append(Entry(job_id=member.decode(), priority=priority, score=score))
                except UnicodeDecodeError:
                    undecodable.append((priority, member))
        if undecodable:
            async with self.redis.pipeline(transaction=False) as pipe:
                for priority, member in undecodable:
                    pipe.zrem(contract.queue_key(priority), member)
                    pipe.zadd(contract.DEAD_LETTER_KEY, {member: time.time()})
                await pipe.execute()
            for priority, member in undecodable:
                logging.getLogger("receiptsync_operator.queue").error(
                    "queue entry that is not a job id (not UTF-8) set aside (dead-letter)",
                    extra={"priority": priority, "entry": repr(member[:60])})
        return entries

    async def contains(self, job_id: str) -> bool:
        async with self.redis.pipeline(transaction=False) as pipe:
            for priority in contract.PRIORITIES:
                pipe.zscore(contract.queue_key(priority), job_id)
            return any(score is not None for score in await pipe.execute())

    async def dequeue(self, *job_ids: str) -> None:
        if not job_ids:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for priority in contract.PRIORITIES:
                pipe.zrem(contract.queue_key(priority), *job_ids)
            await pipe.execute()

    async def forget(self, *job_ids: str) -> None:
        """Dequeue and drop the payloads (cancelled or stale attempts)."""
        if not job_ids:
            return
        await self.dequeue(*job_ids)
        await self.redis.delete(*[contract.job_key(j) for j in job_ids])

    def _payload_text(self, payload: JobPayload) -> str:
        if self.payload_key is None:
            return payload.to_json()
        signed = attempt_auth.sign_payload(self.payload_key, payload.job_id, json.loads(payload.to_json()))
        return json.dumps(signed, sort_keys=True)

    async def payload(self, job_id: str) -> JobPayload | None:
        raw = await self.redis.get(contract.job_key(job_id))
        if not raw:
            return None
        if self.payload_key is not None:
            data = json.loads(raw)
            if not isinstance(data, dict) or not attempt_auth.payload_verifies(self.payload_key, job_id, data):
                logger.warning("job payload in Redis is not the one the operator wrote (rewritten, or signed under"
                               " another credential key): the attempt is rebuilt from its spec",
                               extra={"job_id": job_id})
                return None
        return JobPayload.from_json(raw)

    def _verified(self, hb: dict[str, Any]) -> dict[str, Any]:
        if hb and self.heartbeat_verifies is not None and not self.heartbeat_verifies(hb):
            return {}
        return hb

    async def heartbeat(self, job_id: str) -> dict[str, Any]:
        return self._verified(await self.redis.hgetall(contract.heartbeat_key(job_id)))

    async def heartbeats(self, job_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The heartbeat hashes of many attempts in one round trip."""
        if not job_ids:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(contract.heartbeat_key(job_id))
            return {job_id: self._verified(hb) for job_id, hb in zip(job_ids, await pipe.execute())}

    async def set_aside(self, job_id: str, when: float) -> None:
        """Dead-letter: out of the queue, remembered (with its payload) in the dead-letter set."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for priority in contract.PRIORITIES:
                pipe.zrem(contract.queue_key(priority), job_id)
            pipe.zadd(contract.DEAD_LETTER_KEY, {job_id: when})
            await pipe.execute()

    async def dead_letters(self) -> list[str]:
        return list(await self.redis.zrange(contract.DEAD_LETTER_KEY, 0, -1))

    async def ping(self) -> bool:
        return bool(await self.redis.ping())
