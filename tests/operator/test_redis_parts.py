"""The Redis side against a real redis-server: idempotent enqueue, priority snapshot, forget, and
the heartbeat stream consumer resuming from its saved cursor."""
from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from receiptsync_common import contract as c
from receiptsync_common.jobspec import JobPayload
from receiptsync_operator.heartbeats import HeartbeatConsumer
from receiptsync_operator.run_queue import Queue


def payload(job_id: str, priority: str = "default") -> JobPayload:
    return JobPayload(job_id=job_id, namespace="ns", name="n", uid="u", business_id="b", run_id=1, attempt=1,
                      mode="full", priority=priority, max_messages=10, timeout_seconds=60)


@pytest.fixture
async def client(redis_url):
    conn = aioredis.from_url(redis_url.rsplit("/", 1)[0] + "/15", decode_responses=True)
    await conn.flushdb()
    yield conn
    await conn.flushdb()
    await conn.aclose()


async def test_enqueue_is_idempotent_and_keeps_first_place(client):
    q = Queue(client)
    await q.enqueue(payload("ns.a.u.r1.a1"), score=10)
    await q.enqueue(payload("ns.a.u.r1.a1"), score=99)  # a restarted operator enqueueing again
    await q.enqueue(payload("ns.b.u.r1.a1", "high"), score=20)
    entries = await q.entries()
    assert [(e.job_id, e.priority, e.score) for e in entries] == [
        ("ns.b.u.r1.a1", "high", 20.0), ("ns.a.u.r1.a1", "default", 10.0)]
    assert (await q.payload("ns.a.u.r1.a1")).business_id == "b"
    assert await client.ttl(c.job_key("ns.a.u.r1.a1")) > 0
    assert await q.contains("ns.b.u.r1.a1")
    await q.dequeue("ns.b.u.r1.a1")
    assert not await q.contains("ns.b.u.r1.a1") and await q.payload("ns.b.u.r1.a1") is not None
    await q.forget("ns.a.u.r1.a1")
    assert await q.entries() == [] and await q.payload("ns.a.u.r1.a1") is None


async def test_consumer_applies_in_order_and_resumes_from_cursor(client):
    seen: list[tuple[str, str]] = []

    async def handler(fields):
        seen.append((fields[c.HB_JOB_ID], fields[c.HB_PHASE]))

    for job, phase in (("j1", "Started"), ("j2", "Started"), ("j1", "Finished")):
        await client.xadd(c.EVENTS_STREAM, {c.HB_JOB_ID: job, c.HB_PHASE: phase})
    consumer = HeartbeatConsumer(client, handler, scope="ns", block_ms=100)
    task = asyncio.create_task(consumer.run())
    for _ in range(50):
        if len(seen) == 3:
            break
        await asyncio.sleep(0.05)
    task.cancel()
    assert [p for j, p in seen if j == "j1"] == ["Started", "Finished"] and ("j2", "Started") in seen
    assert await client.get(f"{c.OPERATOR_STREAM_CURSOR_KEY}:ns") == consumer.last_id

    # A new consumer (a restarted operator) continues after what was applied, not from the start.
    await client.xadd(c.EVENTS_STREAM, {c.HB_JOB_ID: "j3", c.HB_PHASE: "Started"})
    seen.clear()
    task = asyncio.create_task(HeartbeatConsumer(client, handler, scope="ns", block_ms=100).run())
    for _ in range(50):
        if seen:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    task.cancel()
    assert seen == [("j3", "Started")]


async def test_many_concurrent_callers_wait_for_a_connection_instead_of_failing(redis_url):
    queue = Queue.from_url(redis_url.rsplit("/", 1)[0] + "/15")
    try:
        # Four times the pool's connections at once: each waits its turn ("Too many connections" before).
        results = await asyncio.gather(*(queue.redis.blpop([f"none-{i}"], timeout=0.05) for i in range(128)))
        assert results == [None] * 128
        assert queue.redis.connection_pool.max_connections == 32
    finally:
        await queue.close()


async def test_heartbeats_of_many_attempts_in_one_round_trip(client):
    queue = Queue(client)
    await client.hset(c.heartbeat_key("a"), mapping={c.HB_PHASE: c.PHASE_STARTED})
    assert await queue.heartbeats([]) == {}
    assert await queue.heartbeats(["a", "b"]) == {"a": {c.HB_PHASE: c.PHASE_STARTED}, "b": {}}


async def test_an_entry_that_is_not_utf8_is_set_aside_and_the_rest_still_read(client):
    """Garbage bytes in a queue must not make every read of the queue fail (no dispatch for anyone)."""
    q = Queue(client)
    await q.enqueue(payload("ns.a.u.r1.a1"), score=10)
    await client.zadd(c.queue_key("high"), {b"\xff\xfe\x00poison": 1})
    await client.zadd(c.queue_key("low"), {"not-a-job-id": 2})  # decodable garbage: the dispatcher's to set aside
    entries = await q.entries()
    assert [(e.job_id, e.priority, e.score) for e in entries] == [("ns.a.u.r1.a1", "default", 10.0),
                                                                  ("not-a-job-id", "low", 2.0)]
    assert await client.zcard(c.queue_key("high")) == 0  # out of line...
    assert await client.zcard(c.DEAD_LETTER_KEY) == 1  # ...and kept for a human
    assert [e.job_id for e in await q.entries()] == ["ns.a.u.r1.a1", "not-a-job-id"]


def test_score_pairs_reads_both_protocols():
    from receiptsync_operator.run_queue import score_pairs

    assert score_pairs([b"a", b"1", b"b", b"2.5"]) == [(b"a", 1.0), (b"b", 2.5)]
    assert score_pairs([[b"a", 1.0], [b"b", 2.5]]) == [(b"a", 1.0), (b"b", 2.5)]
    assert score_pairs([]) == []
