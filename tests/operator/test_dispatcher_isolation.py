"""The dispatcher's pass in-process, against a real Redis queue: an entry that cannot start never
spends the pass's free slot (found by test_e2e_cluster's poisoned-queue test, where each bad entry
at the head of the line held every tenant up for a pass per failure until it was set aside)."""
from __future__ import annotations

import asyncio
import types

import pytest
import redis.asyncio as aioredis

from receiptsync_common import contract as c
from receiptsync_common.jobspec import JobPayload
from receiptsync_operator.config import Settings
from receiptsync_operator.dispatcher import Dispatcher
from receiptsync_operator.job_cache import JobCache
from receiptsync_operator.run_queue import Queue


@pytest.fixture
async def queue(redis_url):
    client = aioredis.from_url(redis_url.rsplit("/", 1)[0] + "/14", decode_responses=True)
    await client.flushdb()
    yield Queue(client)
    await client.flushdb()
    await client.aclose()


def payload(name: str) -> JobPayload:
    return JobPayload(job_id=f"ns.{name}.uid.r1.a1", namespace="ns", name=name, uid="uid", business_id="b", run_id=1,
                      attempt=1, mode="full", priority="default", max_messages=10, timeout_seconds=60)


async def test_entries_that_cannot_start_leave_the_slot_to_the_next_in_line(queue):
    ctx = types.SimpleNamespace(settings=Settings(namespace="ns", max_workers=1, dead_letter_after=5), queue=queue,
                                jobs=JobCache(), jobs_synced=lambda: True, resources={},
                                in_scope=lambda namespace: namespace == "ns")
    ctx.resources = types.SimpleNamespace(get=lambda key: None)
    dispatcher = Dispatcher(ctx, lookup=None)
    started: list[str] = []

    async def start_attempt(job_id: str) -> None:
        if "bad" in job_id or job_id == "garbage":
            raise ValueError("poisoned")
        started.append(job_id)
        ctx.jobs.created({"metadata": {"name": job_id, "namespace": "ns", "resourceVersion": "1"}, "status": {}})
        await queue.dequeue(job_id)

    dispatcher.start_attempt = start_attempt
    for score, name in enumerate(("bad-1", "bad-2", "good", "later")):
        await queue.enqueue(payload(name), score=score)
    await queue.redis.zadd(c.queue_key(c.PRIORITY_HIGH), {"garbage": 0})

    await dispatcher.dispatch_once()
    assert started == ["ns.good.uid.r1.a1"]  # in this pass, past three entries that failed
    assert dispatcher.failures.count("garbage") == 1 and dispatcher.failures.count("ns.bad-1.uid.r1.a1") == 1
    assert [e.job_id for e in await queue.entries()] == ["garbage", "ns.bad-1.uid.r1.a1", "ns.bad-2.uid.r1.a1",
                                                         "ns.later.uid.r1.a1"]  # they keep their place


@pytest.mark.parametrize("yields", [0, 1, 2, 3])
async def test_the_dispatch_loop_stops_when_cancelled_even_as_it_is_woken(yields):
    """A wake-up and the cancel of shutdown in the same moment (a replica resumed after SIGSTOP): the
    loop must end. asyncio.wait_for on Python 3.11 swallowed such a cancel, and the operator hung for
    its 30 s stop timeout (found by test_e2e_cluster's SIGSTOP test)."""
    ctx = types.SimpleNamespace(settings=Settings(), jobs=JobCache())
    dispatcher = Dispatcher(ctx, lookup=None)

    async def dispatch_once() -> None:
        return None

    dispatcher.dispatch_once = dispatch_once
    task = asyncio.create_task(dispatcher.run())
    await asyncio.sleep(0.05)
    dispatcher.wake()
    for _ in range(yields):
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert task in done and task.cancelled()
