"""P5 ingest: receipts upserted per second by one worker's store (receiptsync_worker.store.Store.save_batch:
COPY into a temp table + one INSERT … ON CONFLICT per batch, the run's checkpoint rows and counters in
the same transaction), beside a naive row-by-row baseline in the same run and database: one
autocommitted ``INSERT … ON CONFLICT DO UPDATE`` per receipt, no checkpoints.

Both write the same number of new receipts (different business ids) into a fresh database on the
sandbox's PostgreSQL. Batches are the worker's own size (its Tuning().batch_size messages per fetch
chunk, all receipts here, so this is the receipts-heavy worst case); a 500-row batch is shown too.
"""
from __future__ import annotations

import datetime as dt
import random
import time
import uuid
from decimal import Decimal
from typing import Any

import psycopg

from receiptsync_worker.store import ReceiptRow, RunRecord, SavedBatch, Store
from receiptsync_worker.sync import Tuning

from .common import Figure, say

GOAL = 2000.0


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


def _run_record(store: Store, business_id: str) -> tuple[str, str]:
    job_id = f"bench.p5.{business_id}.r1.a1"
    run_key = f"bench/p5-{business_id}/1"
    store.run_started(RunRecord(job_id=job_id, run_key=run_key, business_id=business_id, namespace="bench",
                                name=f"p5-{business_id}", run_id=1, attempt=1, mode="full", date_from=None,
                                date_to=None, started_at=dt.datetime.now(dt.timezone.utc)))
    return job_id, run_key


def upsert_rate(url: str, rows: list[ReceiptRow], batch: int, business_id: str) -> tuple[float, float]:
    """(new receipts/s through Store.save_batch, re-run receipts/s: the same rows again, all conflicts)."""
    store = Store(url)
    store.migrate()
    job_id, run_key = _run_record(store, business_id)
    rates = []
    for _ in range(2):
        began = time.perf_counter()
        new = 0
        for start in range(0, len(rows), batch):
            chunk = rows[start:start + batch]
            new += store.save_batch(SavedBatch(business_id=business_id, job_id=job_id, run_key=run_key, receipts=chunk,
                                               attachments=[], done_message_ids=[r.gmail_message_id for r in chunk]))
        rates.append(len(rows) / (time.perf_counter() - began))
    store.close()
    return rates[0], rates[1]


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


def fresh_database(admin_url: str) -> str:
    name = "bench_p5_" + uuid.uuid4().hex[:6]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


def run(admin_url: str, count: int) -> tuple[list[Figure], dict[str, Any]]:
    url = fresh_database(admin_url)
    batch = Tuning().batch_size
    say(f"P5: {count} receipts through Store.save_batch (batch {batch}) vs row-by-row INSERT")
    store_rate, rerun_rate = upsert_rate(url, make_rows(count, 1), batch, "p5-store")
    big_rate, _ = upsert_rate(url, make_rows(count, 2), 500, "p5-store-500")
    baseline = row_by_row_rate(url, make_rows(count, 3), "p5-baseline")
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT business_id, count(*) FROM receipts GROUP BY 1 ORDER BY 1").fetchall()
    result = {"rows": count, "batch": batch, "store_rows_per_second": store_rate,
              "store_rerun_rows_per_second": rerun_rate, "store_batch500_rows_per_second": big_rate,
              "row_by_row_rows_per_second": baseline, "speedup": store_rate / baseline,
              "rows_in_db": {b: n for b, n in stored}}
    say(f"P5: store {store_rate:.0f}/s, re-run {rerun_rate:.0f}/s, batch 500 {big_rate:.0f}/s, "
        f"row-by-row {baseline:.0f}/s")
    figures = [
        Figure("P5", f"store upserts/s (batch {batch})", store_rate, "rows/s", f">= {GOAL:.0f}", f"{count} new receipts"),
        Figure("P5", "row-by-row INSERT baseline", baseline, "rows/s", "", f"{count} rows, autocommit each"),
        Figure("P5", "store speed-up over row-by-row", store_rate / baseline, "x", ""),
        Figure("P5", f"store re-run upserts/s (batch {batch}, all conflicts)", rerun_rate, "rows/s", ""),
        Figure("P5", "store upserts/s (batch 500)", big_rate, "rows/s", ""),
    ]
    return figures, result
