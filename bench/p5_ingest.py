"""P5 ingest: receipts upserted per second by one worker's store (receiptsync_worker.store.Store.save_batch:
COPY into a temp table + one INSERT … ON CONFLICT per batch, the run's checkpoint rows and counters in
the same transaction), beside a naive row-by-row baseline: one autocommitted
``INSERT … ON CONFLICT DO UPDATE`` per receipt, no checkpoints.

On a PostgreSQL of its own with durable settings (fsync, synchronous_commit and full_page_writes on,
PostgreSQL's defaults; the sandbox's runs with fsync off), so every commit waits for the WAL to reach
the disk. Store and baseline alternate (A B B A …) over several rounds, each writing its own new
receipts (own business ids) into the same table, and the comparison is the median of the per-round
ratios with their range: one slow moment of the disk or the machine does not decide it.
"""
from __future__ import annotations

import datetime as dt
import os
import pwd
import random
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from receiptsync_sandbox import services
from receiptsync_worker.store import ReceiptRow, RunRecord, SavedBatch, Store
from receiptsync_worker.sync import Tuning

from .common import Figure, say

GOAL = 2000.0
DURABLE = ("fsync", "synchronous_commit", "full_page_writes")


def make_rows(count: int, seed: int) -> list[ReceiptRow]:
    rng = random.Random(seed)
    base = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    rows = []
    for i in range(count):
        amount = Decimal(rng.randint(100, 999_999)) / 100 if rng.random() < 0.8 else None
        rows.append(ReceiptRow(
            gmail_message_id=f"{seed:02d}{uuid.UUID(int=rng.getrandbits(128)).hex[:14]}{i:06d}",
            gmail_thread_id=f"t{i:08x}", subject=f"Your receipt #{i} from Shop {i % 97}",
            sender=f"Shop {i % 97} <billing@shop{i % 97}.example>", sender_email=f"billing@shop{i % 97}.example",
            received_at=base + dt.timedelta(minutes=i), amount=amount, currency="USD" if amount is not None else None,
            amount_source="subject" if amount is not None else None, attachment_count=0))
    return rows


def store_rate(url: str, rows: list[ReceiptRow], batch: int, business_id: str) -> float:
    """New receipts/s through Store.save_batch, ``batch`` receipts per transaction."""
    store = Store(url)
    job_id, run_key = f"bench.p5.{business_id}.r1.a1", f"bench/p5-{business_id}/1"
    store.run_started(RunRecord(job_id=job_id, run_key=run_key, business_id=business_id, namespace="bench",
                                name=f"p5-{business_id}", run_id=1, attempt=1, mode="full", date_from=None,
                                date_to=None, started_at=dt.datetime.now(dt.timezone.utc)))
    began = time.perf_counter()
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        store.save_batch(SavedBatch(business_id=business_id, job_id=job_id, run_key=run_key, receipts=chunk,
                                    attachments=[], done_message_ids=[r.gmail_message_id for r in chunk]))
    rate = len(rows) / (time.perf_counter() - began)
    store.close()
    return rate


def row_by_row_rate(url: str, rows: list[ReceiptRow], business_id: str) -> float:
    sql = ("INSERT INTO receipts (business_id, gmail_message_id, gmail_thread_id, subject, sender, sender_email,"
           " received_at, amount, currency, amount_source, attachment_count, first_job_id)"
           " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
           " ON CONFLICT (business_id, gmail_message_id) DO UPDATE SET subject = EXCLUDED.subject,"
           " sender = EXCLUDED.sender, sender_email = EXCLUDED.sender_email, received_at = EXCLUDED.received_at,"
           " amount = EXCLUDED.amount, currency = EXCLUDED.currency, amount_source = EXCLUDED.amount_source,"
           " attachment_count = EXCLUDED.attachment_count")
    with psycopg.connect(url, autocommit=True) as conn:
        began = time.perf_counter()
        for r in rows:
            conn.execute(sql, (business_id, r.gmail_message_id, r.gmail_thread_id, r.subject, r.sender, r.sender_email,
                               r.received_at, r.amount, r.currency, r.amount_source, r.attachment_count, "baseline"))
        return len(rows) / (time.perf_counter() - began)


class DurablePostgres:
    """initdb + pg_ctl start with PostgreSQL's own (durable) settings, in ``folder`` (as user postgres
    when we are root, like the sandbox's)."""

    def __init__(self, folder: Path) -> None:
        self.bindir = services.find_pg_bindir()
        self.port = services.free_port()
        self.run_as = "postgres" if os.geteuid() == 0 else None
        if self.run_as:
            self.data = Path(tempfile.mkdtemp(prefix="receiptsync-bench-pg-"))
            owner = pwd.getpwnam(self.run_as)
            os.chown(self.data, owner.pw_uid, owner.pw_gid)
        else:
            self.data = folder / "pgdata"
            self.data.mkdir(parents=True)
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} -c max_connections=20"
        self._pg("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.data / "server.log"), "-w", "-t", "60",
                 "start")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, program: str, *args: str) -> None:
        argv = [os.path.join(self.bindir, program), *args]
        if self.run_as:
            argv = ["runuser", "-u", self.run_as, "--", *argv]
        subprocess.run(argv, check=True, capture_output=True, text=True, cwd="/")

    def settings(self) -> dict[str, str]:
        with psycopg.connect(self.url) as conn:
            return {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in DURABLE}

    def stop(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.data, ignore_errors=True)


def run(work: Path, rows: int, rounds: int) -> tuple[list[Figure], dict[str, Any]]:
    server = DurablePostgres(work / "p5-postgres")
    try:
        settings = server.settings()
        if any(settings[name] != "on" for name in DURABLE):
            raise RuntimeError(f"PostgreSQL is not durable: {settings}")
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench_p5")
        url = server.url.rsplit("/", 1)[0] + "/bench_p5"
        Store(url).migrate()
        batch = Tuning().batch_size
        say(f"P5: {rounds} rounds of {rows} receipts, Store.save_batch (batch {batch}) and row-by-row INSERT "
            f"alternating, on PostgreSQL with {settings}")
        store_rates, baseline_rates = [], []
        for index in range(rounds):
            order = ("store", "baseline") if index % 2 == 0 else ("baseline", "store")
            for kind in order:
                data = make_rows(rows, 2 * index + (kind == "store"))
                if kind == "store":
                    store_rates.append(store_rate(url, data, batch, f"p5-store-{index}"))
                else:
                    baseline_rates.append(row_by_row_rate(url, data, f"p5-baseline-{index}"))
        big_rate = store_rate(url, make_rows(rows, 99), 500, "p5-store-500")
        with psycopg.connect(url) as conn:
            stored = dict(conn.execute("SELECT business_id, count(*) FROM receipts GROUP BY 1 ORDER BY 1").fetchall())
    finally:
        server.stop()
    ratios = [s / b for s, b in zip(store_rates, baseline_rates)]
    store_median, baseline_median = statistics.median(store_rates), statistics.median(baseline_rates)
    result = {"rows": rows, "rounds": rounds, "batch": batch, "postgres_settings": settings,
              "store_rows_per_second": store_median, "store_rates": store_rates,
              "row_by_row_rows_per_second": baseline_median, "row_by_row_rates": baseline_rates,
              "speedup": statistics.median(ratios), "speedups": ratios,
              "store_batch500_rows_per_second": big_rate, "rows_in_db": stored}
    say(f"P5: store {store_median:.0f}/s, row-by-row {baseline_median:.0f}/s, ratio {result['speedup']:.2f} "
        f"(range {min(ratios):.2f}–{max(ratios):.2f}), batch 500 {big_rate:.0f}/s")
    scope = f"median of {rounds} rounds of {rows} rows, fsync + synchronous_commit on"
    return [
        Figure("P5", f"store upserts/s (batch {batch})", store_median, "rows/s", f">= {GOAL:.0f}", scope),
        Figure("P5", "row-by-row INSERT baseline", baseline_median, "rows/s", "", f"{scope}, autocommit each"),
        Figure("P5", "store speed-up over row-by-row", result["speedup"], "x", "",
               f"median of per-round ratios, range {min(ratios):.2f}–{max(ratios):.2f}"),
        Figure("P5", "store upserts/s (batch 500)", big_rate, "rows/s", "", f"{rows} rows"),
    ], result
