"""Gmail sync throughput: the worker against the quota ceiling, and against a naive serial loop.

    python -m bench.gmail_throughput [--messages 5000] [--latency-ms 100] [--naive-sample 150]

1. generates a sample mailbox (~20 % receipts, some with PDF/PNG attachments);
2. runs the Gmail emulator with quota enforcement on (250 units/s per mailbox) and the given latency
   added to every HTTP request;
3. runs one real worker attempt (full mode, whole mailbox range) into a throwaway Redis and
   PostgreSQL, and compares its elapsed time with the quota-bound minimum: the units the emulator
   charged for it ÷ 250 units/s (goal: ratio ≤ 1.10);
4. runs a naive serial loop (messages.list, then messages.get and attachments.get one at a time) on
   a random sample of the same listed messages and extrapolates per message to the whole mailbox
   (goal: the worker is ≥ 4.5× faster).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from receiptsync_common import contract
from receiptsync_common.jobspec import JobPayload
from receiptsync_sandbox import services
from receiptsync_sandbox.gmail.auth import authorized_user
from receiptsync_sandbox.gmail.samples import generate_mailbox
from receiptsync_worker import credentials as creds
from receiptsync_worker import joblog
from receiptsync_worker.config import Settings
from receiptsync_worker.extract import read_message
from receiptsync_worker.gmail_client import GmailClient
from receiptsync_worker.plan import date_window, search_query
from receiptsync_worker.sync import Attempt

ADDRESS = "bench@example.com"
UNITS_PER_SECOND = 250.0
RATIO_GOAL = 1.10
SPEEDUP_GOAL = 4.5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gmail_throughput", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000, help="mailbox size (default 5000)")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="emulator latency per HTTP request")
    parser.add_argument("--naive-sample", type=int, default=150,
                        help="messages the naive loop fetches before extrapolating (0: all of them)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return parser.parse_args(argv)


class EmulatorProcess:
    def __init__(self, mailbox_dir: Path, latency_ms: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "receiptsync_sandbox.gmail", "--port", "0", "--mailbox-dir", str(mailbox_dir),
             "--latency-ms", str(latency_ms), "--quota", "--quota-rate", str(UNITS_PER_SECOND)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline()
        if not line.startswith("READY "):
            raise RuntimeError(f"emulator did not start: {line!r}")
        self.url = line.split()[1].rstrip("/")

    def admin(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"},
                                         method="POST" if data is not None else "GET")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def mailbox_stats(self) -> dict:
        return self.admin("/_emulator/stats")["mailboxes"].get(ADDRESS, {})

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def bench_payload(end: dt.date, months: int) -> JobPayload:
    uid = str(uuid.uuid4())
    first = end - dt.timedelta(days=31 * months + 1)
    return JobPayload(job_id=contract.make_job_id("bench", "throughput", uid, 1, 1), namespace="bench",
                      name="throughput", uid=uid, business_id="bench", run_id=1, attempt=1, mode=contract.MODE_FULL,
                      priority=contract.PRIORITY_DEFAULT, max_messages=100_000, timeout_seconds=3600,
                      date_from=first.isoformat(), date_to=end.isoformat(), explicit_from=True, explicit_to=True)


def credentials_json(token_uri: str) -> str:
    return json.dumps(authorized_user(ADDRESS, token_uri, client_id="bench", client_secret="bench-secret"))


def run_worker(emulator: EmulatorProcess, redis_url: str, database_url: str, payload: JobPayload) -> dict:
    """One real attempt in this process; returns its JOB_DONE fields plus timings."""
    import redis

    redis.Redis.from_url(redis_url).set(contract.job_key(payload.job_id), payload.to_json())
    settings = Settings(job_id=payload.job_id, redis_url=redis_url, database_url=database_url,
                        gmail_endpoint=emulator.url, credentials_json=credentials_json(emulator.url + "/token"),
                        worker_name="bench")
    attempt = Attempt(settings)
    lines: list[str] = []
    joblog.configure(attempt.redactor, stream=_Lines(lines))
    started = time.monotonic()
    code = attempt.run()
    elapsed = time.monotonic() - started
    events = [json.loads(line) for line in lines if line.strip()]
    done = [e for e in events if e.get("event") in (contract.LOG_JOB_DONE, contract.LOG_JOB_FAIL)][-1]
    if code != 0:
        raise RuntimeError(f"the worker attempt failed: {done}")
    return {**done, "elapsed": elapsed}


class _Lines:
    def __init__(self, sink: list[str]) -> None:
        self.sink = sink

    def write(self, text: str) -> None:
        self.sink.extend(text.splitlines())

    def flush(self) -> None:
        pass


def run_naive(emulator: EmulatorProcess, payload: JobPayload, sample: int, seed: int) -> dict:
    """Serial list-then-get with the same client library, no batching, no pipelining."""
    info = creds.parse_authorized_user(credentials_json(emulator.url + "/token"))
    credentials = creds.build_credentials(info)
    creds.refresh(credentials)
    client = GmailClient(credentials, emulator.url, bucket=None, stop=threading.Event())
    query = search_query(payload, date_window(payload, dt.datetime.now(dt.timezone.utc), None))
    started = time.monotonic()
    ids = [mid for page in client.message_id_pages(query) for mid in page]
    list_seconds = time.monotonic() - started
    chosen = ids if sample <= 0 or sample >= len(ids) else random.Random(seed).sample(ids, sample)
    resources = client._service()[0]  # the plain client: one request at a time
    started = time.monotonic()
    attachments = 0
    for message_id in chosen:
        message = resources.messages.get(userId="me", id=message_id, format="full").execute()
        for part in read_message(message).attachments:
            if part.attachment_id:
                resources.attachments.get(userId="me", messageId=message_id,
                                                            id=part.attachment_id).execute()
                attachments += 1
    fetch_seconds = time.monotonic() - started
    per_message = fetch_seconds / max(1, len(chosen))
    return {"listed": len(ids), "sampled": len(chosen), "attachments": attachments, "list_seconds": list_seconds,
            "fetch_seconds": fetch_seconds, "per_message": per_message,
            "estimated_total": list_seconds + per_message * len(ids), "extrapolated": len(chosen) < len(ids)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="receiptsync-bench-"))
    emulator = redis_server = postgres = None
    try:
        end = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
        months = 18
        print(f"generating a {args.messages}-message mailbox ...", flush=True)
        truth = generate_mailbox(work / "mail", ADDRESS, args.messages, 0.2, months=months, seed=args.seed, end_date=end)
        receipts = [m for m in truth if m.is_receipt]
        redis_server = services.start_redis(work / "redis")
        postgres = services.start_postgres(work / "postgres")
        emulator = EmulatorProcess(work / "mail", args.latency_ms)
        payload = bench_payload(end, months)

        print("running the worker ...", flush=True)
        emulator.admin("/_emulator/stats/reset", {})
        worker = run_worker(emulator, redis_server.url, postgres.url, payload)
        stats = emulator.mailbox_stats()
        units = stats["units"]
        minimum = units / UNITS_PER_SECOND
        ratio = worker["elapsed"] / minimum

        print("running the naive serial loop ...", flush=True)
        emulator.admin("/_emulator/stats/reset", {})
        naive = run_naive(emulator, payload, args.naive_sample, args.seed)
        speedup = naive["estimated_total"] / worker["elapsed"]

        _print_report(args, receipts, worker, stats, minimum, ratio, naive, speedup)
        return 0 if ratio <= RATIO_GOAL and speedup >= SPEEDUP_GOAL else 1
    finally:
        if emulator:
            emulator.stop()
        if redis_server:
            redis_server.stop()
        if postgres:
            postgres.stop()
            services.remove_postgres_data(work / "postgres")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _print_report(args, receipts, worker, stats, minimum, ratio, naive, speedup) -> None:
    attachments = sum(len(m.attachments) for m in receipts)
    print()
    print(f"mailbox: {args.messages} messages, {len(receipts)} receipts, {attachments} receipt attachments; "
          f"emulator latency {args.latency_ms:.0f} ms/request, quota {UNITS_PER_SECOND:.0f} units/s")
    print()
    rows = [
        ("worker (batched, pipelined)", f"{worker['elapsed']:.2f}", str(worker["messages_scanned"]),
         str(worker["saved_receipts"]), str(stats["units"]), str(stats.get("responses_429", 0))),
        ("quota-bound minimum", f"{minimum:.2f}", "", "", f"{stats['units']} / {UNITS_PER_SECOND:.0f}/s", ""),
        ("naive serial loop" + (" (extrapolated)" if naive["extrapolated"] else ""), f"{naive['estimated_total']:.2f}",
         str(naive["listed"]), "", "", ""),
    ]
    header = ("run", "seconds", "scanned", "saved", "quota units", "429s")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))
    print()
    if naive["extrapolated"]:
        print(f"naive loop: listed {naive['listed']} ids in {naive['list_seconds']:.2f}s, fetched a random sample of "
              f"{naive['sampled']} messages (+{naive['attachments']} attachments) in {naive['fetch_seconds']:.2f}s = "
              f"{naive['per_message'] * 1000:.0f} ms/message, extrapolated to all {naive['listed']} messages")
    print(f"elapsed / quota-bound minimum = {ratio:.3f}  (goal <= {RATIO_GOAL:.2f})  "
          f"{'OK' if ratio <= RATIO_GOAL else 'MISSED'}")
    print(f"speed-up over the naive loop  = {speedup:.2f}x  (goal >= {SPEEDUP_GOAL}x)  "
          f"{'OK' if speedup >= SPEEDUP_GOAL else 'MISSED'}")


if __name__ == "__main__":
    sys.exit(main())
