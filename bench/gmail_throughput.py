"""Gmail sync throughput: the worker against the quota ceiling, and against a naive serial loop.

    python -m bench.gmail_throughput [--messages 5000] [--latency-ms 100] [--naive-sample 150]

1. generates a sample mailbox (~20 % receipts, some with PDF/PNG attachments);
2. counts what a full sync of it requires, from the mailbox itself (the emulator's own search for the
   worker's receipt query, and the attachments of the matching messages): getProfile, messages.list
   pages, one messages.get per match, one attachments.get per attachment, in Gmail's quota units;
3. runs the Gmail emulator with quota enforcement on (250 units/s per mailbox, a 250-unit bucket) and
   the given latency added to every HTTP request;
4. runs one real worker attempt (full mode, whole mailbox range) into a throwaway Redis and
   PostgreSQL, and compares its elapsed time with the quota-bound minimum: (required units − the
   emulator's burst) ÷ 250 units/s, which no client can beat (goal: ratio ≤ 1.10);
5. runs a naive serial loop (messages.list, then messages.get and attachments.get one at a time, the
   same client library) on a random sample of the listed messages and extrapolates per message to
   the whole mailbox. The speed-up depends on the latency: the worker is bound by the quota, the naive
   loop by round trips (goal: ≥ 4.5× at 100 ms per request).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import google_auth_httplib2
import httplib2
from googleapiclient import discovery, discovery_cache

from receiptsync_common import contract
from receiptsync_common.jobspec import JobPayload
from receiptsync_sandbox import services
from receiptsync_sandbox.gmail.auth import authorized_user
from receiptsync_sandbox.gmail.mailbox import MailboxDirectory
from receiptsync_sandbox.gmail.query import compile_query
from receiptsync_sandbox.gmail.quota import METHOD_COSTS
from receiptsync_sandbox.gmail.samples import generate_mailbox
from receiptsync_worker import credentials as creds
from receiptsync_worker import joblog
from receiptsync_worker.config import Guards, Settings, Tuning
from receiptsync_worker.extract import read_message
from receiptsync_worker.plan import date_window, search_query
from receiptsync_worker.store import Store
from receiptsync_worker.sync import Attempt

ADDRESS = "bench@example.com"
UNITS_PER_SECOND = 250.0
EMULATOR_BURST = 250.0  # the emulator's default bucket: one second of units
RATIO_GOAL = 1.10
SPEEDUP_GOAL = 4.5
LIST_PAGE = 500  # the worker's messages.list page size


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
        from receiptsync_sandbox.testing import emulator_admin

        return emulator_admin(self.url, path, body)

    def mailbox_stats(self, address: str = ADDRESS) -> dict:
        return self.admin("/_emulator/stats")["mailboxes"].get(address, {})

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def bench_payload(end: dt.date, months: int, business_id: str = "bench") -> JobPayload:
    uid = str(uuid.uuid4())
    first = end - dt.timedelta(days=31 * months + 1)
    return JobPayload(job_id=contract.make_job_id("bench", business_id, uid, 1, 1), namespace="bench",
                      name=business_id, uid=uid, business_id=business_id, run_id=1, attempt=1,
                      mode=contract.MODE_FULL, priority=contract.PRIORITY_DEFAULT, max_messages=100_000,
                      timeout_seconds=3600, date_from=first.isoformat(), date_to=end.isoformat(),
                      explicit_from=True, explicit_to=True)


def receipt_query(payload: JobPayload) -> str:
    return search_query(payload, date_window(payload, dt.datetime.now(dt.timezone.utc), None))


def required_units(mailbox_dir: Path, address: str, query: str) -> dict:
    """What a full sync of ``query`` needs, counted from the mailbox (the emulator's own search and
    message store), not from what any client spent: units and the calls they pay for."""
    mailbox = MailboxDirectory(mailbox_dir, None, lambda: 3600.0).get(address)
    assert mailbox is not None, address
    node = compile_query(query, me=address)
    found = [m for m in mailbox.ordered if node.matches(m.search)]
    max_bytes = Guards().max_attachment_bytes
    attachments = sum(1 for m in found for data in m.attachments.values() if len(data) <= max_bytes)
    pages = max(1, math.ceil(len(found) / LIST_PAGE))
    units = (METHOD_COSTS["users.getProfile"] + pages * METHOD_COSTS["users.messages.list"]
             + len(found) * METHOD_COSTS["users.messages.get"]
             + attachments * METHOD_COSTS["users.messages.attachments.get"])
    return {"messages": len(found), "attachments": attachments, "list_pages": pages, "units": units}


def quota_minimum(required: dict, burst: float = EMULATOR_BURST) -> float:
    """Seconds no client can beat: the first ``burst`` units are free, the rest come at the rate."""
    return max(0.0, required["units"] - burst) / UNITS_PER_SECOND


def credentials_json(token_uri: str, address: str = ADDRESS) -> str:
    return json.dumps(authorized_user(address, token_uri, client_id="bench", client_secret="bench-secret"))


def run_worker(emulator: EmulatorProcess, redis_url: str, database_url: str, payload: JobPayload,
               tuning: Tuning | None = None, address: str = ADDRESS) -> dict:
    """One real attempt in this process; returns its JOB_DONE fields plus timings."""
    import redis

    redis.Redis.from_url(redis_url).set(contract.job_key(payload.job_id), payload.to_json())
    settings = Settings(job_id=payload.job_id, redis_url=redis_url, database_url=database_url,
                        gmail_endpoint=emulator.url, worker_name="bench",
                        credentials_json=credentials_json(emulator.url + "/token", address))
    attempt = Attempt(settings, tuning=tuning)
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
    """Serial list-then-get with the same client library (googleapiclient from the same static
    discovery document), no batching, no pipelining, no quota bucket."""
    credentials = creds.build_credentials(creds.parse_authorized_user(credentials_json(emulator.url + "/token")))
    creds.refresh(credentials)
    http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(timeout=60))
    service = discovery.build_from_document(json.loads(discovery_cache.get_static_doc("gmail", "v1")), http=http,
                                            client_options={"api_endpoint": emulator.url + "/"})
    messages = service.users().messages()
    attachments_api = messages.attachments()
    query = receipt_query(payload)
    started = time.monotonic()
    ids: list[str] = []
    token = None
    while True:
        page = messages.list(userId="me", q=query, maxResults=LIST_PAGE, pageToken=token).execute()
        ids += [m["id"] for m in page.get("messages") or []]
        token = page.get("nextPageToken")
        if not token:
            break
    list_seconds = time.monotonic() - started
    chosen = ids if sample <= 0 or sample >= len(ids) else random.Random(seed).sample(ids, sample)
    started = time.monotonic()
    attachments = 0
    for message_id in chosen:
        message = messages.get(userId="me", id=message_id, format="full").execute()
        for part in read_message(message).attachments:
            if part.attachment_id:
                attachments_api.get(userId="me", messageId=message_id, id=part.attachment_id).execute()
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
        generate_mailbox(work / "mail", ADDRESS, args.messages, 0.2, months=months, seed=args.seed, end_date=end)
        redis_server = services.start_redis(work / "redis")
        postgres = services.start_postgres(work / "postgres")
        Store(postgres.url).migrate()
        emulator = EmulatorProcess(work / "mail", args.latency_ms)
        payload = bench_payload(end, months)
        required = required_units(work / "mail", ADDRESS, receipt_query(payload))
        minimum = quota_minimum(required)
        print("running the worker ...", flush=True)
        emulator.admin("/_emulator/stats/reset", {})
        worker = run_worker(emulator, redis_server.url, postgres.url, payload)
        spent = emulator.mailbox_stats()["units"]
        ratio = worker["elapsed"] / minimum
        print("running the naive serial loop ...", flush=True)
        naive = run_naive(emulator, payload, args.naive_sample, args.seed)
        speedup = naive["estimated_total"] / worker["elapsed"]
        print(f"\nmailbox: {args.messages} messages; a full sync requires {required['units']} units "
              f"({required['messages']} messages, {required['attachments']} attachments, {required['list_pages']} "
              f"list pages); emulator latency {args.latency_ms:.0f} ms/request, quota {UNITS_PER_SECOND:.0f} units/s")
        print(f"worker: {worker['elapsed']:.2f}s, {spent} units spent; quota-bound minimum {minimum:.2f}s "
              f"(({required['units']} - {EMULATOR_BURST:.0f}) / {UNITS_PER_SECOND:.0f})")
        print(f"naive loop: {naive['estimated_total']:.2f}s" + (" (extrapolated)" if naive["extrapolated"] else ""))
        print(f"elapsed / quota-bound minimum = {ratio:.3f} (goal <= {RATIO_GOAL:.2f})")
        print(f"speed-up over the naive loop  = {speedup:.2f}x (goal >= {SPEEDUP_GOAL}x at 100 ms; it grows "
              f"with the latency)")
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


if __name__ == "__main__":
    sys.exit(main())
