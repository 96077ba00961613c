"""Redis side with a real server: heartbeat hash + stream, and the shared quota bucket."""
from __future__ import annotations

import threading
import time
import uuid

import redis

from receiptsync_common import contract
from receiptsync_worker.heartbeat import Heartbeats, Progress, Ticker
from receiptsync_worker.ratelimit import QuotaBucket, batch_size_for


def test_heartbeat_hash_stream_and_ttl(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    job_id = "hb-" + uuid.uuid4().hex
    progress = Progress(date_from="2025-01-01", date_to="2025-01-31")
    beats = Heartbeats(client, job_id, progress, redact=lambda text: text.replace("s3cret", "[REDACTED]"),
                       worker="pod-1")
    beats.beat(contract.PHASE_STARTED, contract.REASON_SYNCING, "Started.")
    progress.add(50, 7)
    beats.beat()
    beats.beat(contract.PHASE_FAILED, contract.REASON_GMAIL_API_ERROR, "Gmail said s3cret.")
    beats.beat(contract.PHASE_STARTED)  # ignored: the attempt already ended
    fields = client.hgetall(contract.heartbeat_key(job_id))
    assert fields[contract.HB_PHASE] == contract.PHASE_FAILED
    assert fields[contract.HB_REASON] == contract.REASON_GMAIL_API_ERROR
    assert fields[contract.HB_MESSAGE] == "Gmail said [REDACTED]."
    assert (fields[contract.HB_SCANNED], fields[contract.HB_SAVED]) == ("50", "7")
    assert (fields[contract.HB_DATE_FROM], fields[contract.HB_DATE_TO]) == ("2025-01-01", "2025-01-31")
    assert fields[contract.HB_WORKER] == "pod-1" and fields[contract.HB_TIME].endswith("Z")
    assert 0 < client.ttl(contract.heartbeat_key(job_id)) <= contract.HEARTBEAT_KEY_TTL_SECONDS
    entries = [e for _, e in client.xrange(contract.EVENTS_STREAM) if e[contract.HB_JOB_ID] == job_id]
    assert [e[contract.HB_PHASE] for e in entries] == [contract.PHASE_STARTED, contract.PHASE_STARTED,
                                                       contract.PHASE_FAILED]


def test_ticker_repeats_the_latest_progress(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    job_id = "tick-" + uuid.uuid4().hex
    beats = Heartbeats(client, job_id, Progress(), redact=str)
    ticker = Ticker(beats, interval=0.05).start()
    time.sleep(0.4)
    ticker.stop()
    entries = [e for _, e in client.xrange(contract.EVENTS_STREAM) if e[contract.HB_JOB_ID] == job_id]
    assert len(entries) >= 4


def test_bucket_shared_by_workers_keeps_the_rate(redis_url):
    """Three "workers" (threads, own clients) reserving from one mailbox stay at the rate."""
    mailbox = f"{uuid.uuid4().hex}@example.com"
    rate, burst = 1000.0, 50.0
    reserved: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        bucket = QuotaBucket(redis.Redis.from_url(redis_url), mailbox, rate=rate, capacity=burst)
        for _ in range(20):
            bucket.acquire(25)
            with lock:
                reserved.append(time.monotonic())

    start = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    total = 3 * 20 * 25
    minimum = (total - burst) / rate  # the first burst is free
    assert elapsed >= minimum * 0.95
    assert elapsed < minimum * 1.5 + 0.5


def test_bucket_reservation_waits(redis_url):
    bucket = QuotaBucket(redis.Redis.from_url(redis_url), f"{uuid.uuid4().hex}@x", rate=250, capacity=125)
    assert bucket.reserve(125) == 0
    wait = bucket.reserve(125)
    assert 0.45 < wait <= 0.5  # 125 units at 250/s
    assert batch_size_for(125, 5) == 25 and batch_size_for(10_000, 5) == 100 and batch_size_for(3, 5) == 1
