"""One attempt, start to end: payload → Gmail → PostgreSQL, with heartbeats and the log markers.

The order matters: the worker asks Gmail which mailbox it talks to (and its current history id)
*before* it reads that mailbox's cursor; the cursor moves only together with the attempt's
successful end, after every receipt it covers is committed, and only for a run that covered
everything since it (see :mod:`.cursor`). The outcome is recorded durably (the ``sync_runs`` row and
the termination message) before the final heartbeat, which is retried for a while.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Callable
from zoneinfo import ZoneInfo

from receiptsync_common import attempt_identity, contract
from receiptsync_common.jobspec import JobPayload

from . import credentials as creds
from . import cursor as cursors
from . import joblog, plan, ratelimit, redisguard
from .config import Settings, Tuning
from .gmail_client import GmailClient, HistoryExpired
from .heartbeat import Heartbeats, Progress, Ticker
from .outcome import (EXIT_FAILED, EXIT_OK, REASON_STALLED, Counters, Outcome, PayloadMissing, PayloadRejected,
                      classify, finished_message, stalled_message, termination_message, write_termination_message)
from .pipeline import ByteBudget, IdFilter, Pipeline, PipelineResult
from .redact import Redactor, url_passwords
from .store import RunEnd, RunRecord, SavedBatch, Store

if TYPE_CHECKING:
    from .fetch import FetchedChunk

__all__ = ["Attempt", "Outcome", "PayloadMissing", "PayloadRejected", "classify", "Tuning", "EXIT_OK", "EXIT_FAILED"]
log = logging.getLogger(__name__)
# Attachment bytes held between download and commit, across fetcher threads.
ATTACHMENT_BYTES_IN_FLIGHT = 64 * 1024 * 1024


class Attempt:
    def __init__(
        self,
        settings: Settings,
        stop: threading.Event | None = None,
        tuning: Tuning | None = None,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
    ) -> None:
        self.settings = settings
        self.guards = settings.guards
        self.stop = stop or threading.Event()
        self.tuning = tuning if tuning is not None else settings.tuning  # default: from the environment
        self._now = now
        self.redactor = Redactor()
        self.progress = Progress()
        self.redis = redisguard.make_client(settings.redis_url)
        self.redactor.add(*url_passwords(settings.redis_url, settings.database_url), settings.heartbeat_key)
        self.heartbeats = Heartbeats(self.redis, settings.job_id, self.progress, self.redactor, settings.worker_name,
                                     key=settings.heartbeat_key)
        self.payload: JobPayload | None = None
        self.store: Store | None = None
        self.client: GmailClient | None = None
        self.used_history = False
        self.ticker: Ticker | None = None
        self.stalled_for: float | None = None
        self._lister_stores: list[Store] = []
        self._end: dict[str, Any] = {}  # what a successful end records (window, cursor)
        self._base = (0, 0)  # counters of the run's earlier attempts
        self._quarantined = 0
        self._capped = False
        self._window_key = ""
        self._ended = threading.Event()
        try:  # know the secrets before anything can be logged
            self.redactor.add(*creds.secret_values(creds.parse_authorized_user(settings.credentials_json)))
        except creds.CredentialsFormatError:
            pass  # reported as the attempt's failure in _sync

    # ------------------------------------------------------------------ entry
    def run(self) -> int:
        started = time.monotonic()
        try:
            self.payload = self._load_payload()
            joblog.event(contract.LOG_JOB_START, **self._identity(), mode=self.payload.mode,
                         run_id=self.payload.run_id, attempt=self.payload.attempt)
            outcome = self._sync(deadline=started + plan.attempt_deadline_seconds(self.payload.timeout_seconds))
        except BaseException as exc:  # every failure still ends with a heartbeat and a JOB_FAIL
            if not isinstance(exc, Exception):
                raise
            if self.payload is None:
                joblog.event(contract.LOG_JOB_START, job_id=self.settings.job_id)
            outcome = self._failure(exc)
        finally:
            if self.ticker:
                self.ticker.stop()
        self._finish(outcome, time.monotonic() - started)
        return outcome.exit_code

    def _identity(self) -> dict[str, Any]:
        p = self.payload
        if p is None:  # what the Job says it is for (the payload may have been refused)
            job = self.settings.identity or {}
            return {"job_id": self.settings.job_id,
                    **{k: job[k] for k in ("business_id", "namespace", "name") if k in job}}
        return {"job_id": p.job_id, "business_id": p.business_id, "namespace": p.namespace, "name": p.name}

    def _load_payload(self) -> JobPayload:
        raw = redisguard.keep_trying(lambda: self.redis.get(contract.job_key(self.settings.job_id)),
                                     self.guards.final_heartbeat_seconds, "reading the job payload")
        if raw is None:
            raise PayloadMissing(f"no job payload in Redis for job {self.settings.job_id}")
        payload = JobPayload.from_json(raw)
        if self.settings.identity is not None:
            # The Job spec (written only by the operator) is the truth; Redis may have been written by
            # someone else (issue 14): a payload that disagrees is never run.
            differ = attempt_identity.mismatches(payload, self.settings.identity)
            if differ:
                raise PayloadRejected(attempt_identity.refusal(payload, self.settings.identity, differ))
        return payload

    def _failure(self, exc: BaseException) -> Outcome:
        reason, message = classify(exc)
        if reason == contract.REASON_WORKER_ERROR:
            log.error("attempt failed", exc_info=exc)
        return Outcome(contract.PHASE_FAILED, reason, self.redactor(message), error=self.redactor(message))

    # ------------------------------------------------------------------ the sync itself
    def _sync(self, deadline: float) -> Outcome:
        payload = self.payload
        assert payload is not None
        info = creds.parse_authorized_user(self.settings.credentials_json)
        self.redactor.add(*creds.secret_values(info))
        # The schema is the operator's (it migrates at its start); this role may only read and write
        # its business's rows.
        self.store = Store(self.settings.database_url)
        self.heartbeats.try_beat(contract.PHASE_STARTED, contract.REASON_SYNCING, "Connecting to Gmail.")
        self.ticker = Ticker(self.heartbeats, stall_seconds=self.guards.stall_seconds, on_stall=self._on_stall).start()
        run_key = plan.run_key(payload)
        record = RunRecord(
            job_id=payload.job_id, run_key=run_key, business_id=payload.business_id, namespace=payload.namespace,
            name=payload.name, run_id=payload.run_id, attempt=payload.attempt, mode=payload.mode,
            date_from=None, date_to=None, started_at=self._now())
        self.store.run_started(record)  # the row exists even when Gmail refuses us
        mailbox, read_id, read_at = self._connect_gmail(info, deadline)
        cursor = self.store.cursor(payload.business_id, mailbox)
        window = plan.date_window(payload, read_at, cursors.window_since(cursor))
        self.progress.date_from, self.progress.date_to = window.first.isoformat(), window.last.isoformat()
        self.heartbeats.try_beat(None, None, f"Syncing receipts from {window.first} to {window.last}.")
        self._window_key = cursors.window_key(payload, mailbox)
        self.store.run_started(dataclasses.replace(record, date_from=window.first, date_to=window.last,
                                                   mailbox=mailbox, window_key=self._window_key))
        resume = self.store.resume_point(self._window_key, run_key, payload.job_id)
        self._base = (resume.scanned, resume.saved)
        self.progress.set(resume.scanned, resume.saved, 0)
        id_filter = self._id_filter(payload, cursor, resume.done, resume.done_by_run)
        pages = (iter(()) if id_filter.only == set()
                 else self.client.message_id_pages(plan.search_query(payload, window)))
        budget = ByteBudget(ATTACHMENT_BYTES_IN_FLIGHT)
        try:
            result = Pipeline(
                client=self.client, save=self._save, stop=self.stop, deadline=deadline,
                batch_size=self.tuning.batch_size, fetchers=self.tuning.fetchers, id_filter=id_filter,
                fetch=lambda client, ids, size: self._fetch(client, ids, size, budget),
                on_progress=self.progress.touch, release_bytes=budget.release,
            ).run(pages)
        finally:
            for store in self._lister_stores:
                store.close()
        if result.error is not None:
            raise result.error
        return self._outcome(payload, window, result, cursor, (mailbox, read_id, read_at))

    def _fetch(self, client: GmailClient, ids: list[str], size: int, budget: ByteBudget) -> FetchedChunk:
        # Messages, attachments, extraction: loaded only when there is mail to read (most scheduled
        # runs find none, and a run's cost is then mostly its imports).
        from .fetch import FetchLimits, fetch_chunk

        limits = FetchLimits(max_attachment_bytes=self.guards.max_attachment_bytes)
        return fetch_chunk(client, ids, size, limits, reserve_bytes=lambda n: budget.acquire(n, self.stop))

    def _connect_gmail(self, info: dict[str, Any], deadline: float) -> tuple[str, int, dt.datetime]:
        """Refresh the token (a revoked grant fails here), read the mailbox and its current
        history id (and when it was read), and meter every later call through the mailbox's quota
        bucket: the shared one in Redis, a local one while Redis is away."""
        credentials = creds.build_credentials(info)
        creds.refresh(credentials)
        self.redactor.add(credentials.token)
        self.client = GmailClient(credentials, self.settings.gmail_endpoint, stop=self.stop, deadline=deadline)
        profile = self.client.profile()
        read_at = self._now()
        self.progress.touch()
        mailbox = profile["emailAddress"].lower()
        # Told at once (signed): the operator then lets this attempt's Redis user use the mailbox's
        # quota bucket; until it has, reservations are served by the local bucket.
        self.progress.mailbox = mailbox
        if self.ticker is not None:
            self.ticker.nudge()
        rate, burst = self.tuning.quota_rate, self.tuning.quota_burst
        self.client.bucket = redisguard.FallbackBucket(ratelimit.QuotaBucket(self.redis, mailbox, rate, burst),
                                                       redisguard.LocalBucket(rate, burst))
        return mailbox, int(profile["historyId"]), read_at

    def _id_filter(self, payload: JobPayload, cursor: cursors.Cursor | None, done: set[str],
                   done_by_run: int) -> IdFilter:
        assert self.store is not None and self.client is not None
        id_filter = IdFilter(done=done, max_messages=max(0, payload.max_messages - done_by_run),
                             quarantined=self.store.quarantined_ids(payload.business_id))
        start_id = cursors.history_start(payload, cursor)
        if start_id is not None:
            try:
                id_filter.only = self.client.added_since(start_id)
                self.used_history = True
            except HistoryExpired:
                log.info("Gmail history %s expired; syncing the date range instead", start_id)
        if cursors.uses_cursor(payload):
            # Incremental: receipts already stored are not fetched again (the lister's own connection).
            lister_store = Store(self.settings.database_url)
            self._lister_stores.append(lister_store)
            id_filter.already_saved = lambda ids: lister_store.existing_message_ids(payload.business_id, ids)
        return id_filter

    def _on_stall(self, idle: float) -> None:
        """No progress for ``stall_seconds``: stop the attempt so it reports Stalled; if it cannot even
        get there (a call hung for good), report from here and leave."""
        log.error("no progress for %.0fs; stopping the attempt", idle)
        self.stalled_for = idle
        self.stop.set()
        timer = threading.Timer(min(60.0, self.guards.stall_seconds), self._abandon)
        timer.daemon = True
        timer.start()

    def _abandon(self) -> None:
        if self._ended.is_set():
            return
        outcome = Outcome(contract.PHASE_FAILED, REASON_STALLED,
                          stalled_message(self.stalled_for or 0, self._counters()))
        outcome.error = outcome.message
        write_termination_message(self.guards.termination_message_path,
                                  termination_message(outcome, self._counters(), self.settings.job_id))
        self.heartbeats.final(outcome.phase, outcome.reason, outcome.message, within=5.0)
        joblog.event(contract.LOG_JOB_FAIL, **self._identity(), reason=outcome.reason, error=outcome.message)
        os._exit(EXIT_FAILED)

    def _outcome(self, payload: JobPayload, window: plan.DateWindow, result: PipelineResult,
                 cursor: cursors.Cursor | None, read: tuple[str, int, dt.datetime]) -> Outcome:
        self._quarantined, self._capped = len(result.quarantined), result.truncated
        counters = self._counters()
        if self.stalled_for is not None:
            message = stalled_message(self.stalled_for, counters)
            return Outcome(contract.PHASE_FAILED, REASON_STALLED, message, error=message)
        if result.timed_out:
            return Outcome(contract.PHASE_FAILED, contract.REASON_TIMEOUT,
                           f"The attempt reached its {payload.timeout_seconds}s timeout after scanning "
                           f"{counters.scanned} messages; a retry resumes where it stopped.")
        if self.stop.is_set():
            return Outcome(contract.PHASE_FAILED, contract.REASON_CANCELLED,
                           f"The worker was asked to stop (SIGTERM) after saving {counters.saved} receipts; "
                           f"a retry resumes where it stopped.")
        mailbox, read_id, read_at = read
        zone = ZoneInfo(payload.time_zone or "UTC")
        if not result.truncated:  # the window is done: its continuation point goes
            self._end["window_done"] = self._window_key
            if cursors.covers_since_cursor(payload, window.first, cursor, lambda t: t.astimezone(zone).date()):
                overlap = dt.timedelta(seconds=self.guards.cursor_overlap_seconds)
                self._end["cursor_key"] = (payload.business_id, mailbox)
                self._end["advance"] = lambda stored: cursors.advance(stored, read_id, read_at, overlap)
        return Outcome(contract.PHASE_FINISHED, contract.REASON_SUCCEEDED,
                       finished_message(counters, window.first.isoformat(), window.last.isoformat(),
                                        payload.max_messages))

    def _save(self, chunk: FetchedChunk) -> None:
        payload = self.payload
        assert payload is not None and self.store is not None
        totals = self.store.save(SavedBatch(
            business_id=payload.business_id, job_id=payload.job_id, run_key=plan.run_key(payload),
            window_key=self._window_key, receipts=chunk.receipts, attachments=chunk.attachments,
            done_message_ids=chunk.message_ids, skipped=chunk.skipped, failed=chunk.failed))
        self.progress.set(self._base[0] + totals.scanned, self._base[1] + totals.saved, totals.skipped)
        if self.ticker is not None:
            self.ticker.nudge()  # the heartbeat goes out from the ticker: a Redis blip never holds up saving

    def _counters(self) -> Counters:
        scanned, saved = self.progress.snapshot()
        return Counters(scanned, saved, self.progress.skipped, self._quarantined, self._capped)

    # ------------------------------------------------------------------ the end
    def _finish(self, outcome: Outcome, elapsed: float) -> None:
        outcome = self._record_run(outcome)
        self._ended.set()
        counters = self._counters()
        write_termination_message(self.guards.termination_message_path,
                                  termination_message(outcome, counters, self._identity()["job_id"]))
        sent = self.heartbeats.final(outcome.phase, outcome.reason, outcome.message,
                                     within=self.guards.final_heartbeat_seconds)
        fields: dict[str, Any] = {**self._identity(), "phase": outcome.phase, "reason": outcome.reason,
                                  **counters.as_json(), "date_from": self.progress.date_from,
                                  "date_to": self.progress.date_to, "elapsed_seconds": round(elapsed, 3),
                                  "used_history": self.used_history, "final_heartbeat_sent": sent}
        if self.client is not None:
            fields["gmail_retries"] = self.client.retries
            bucket = self.client.bucket
            fields["local_quota_reservations"] = getattr(bucket, "fallbacks", 0)
        if outcome.phase == contract.PHASE_FINISHED:
            joblog.event(contract.LOG_JOB_DONE, **fields, message=outcome.message)
        else:
            joblog.event(contract.LOG_JOB_FAIL, **fields, error=outcome.message)
        if self.store is not None:
            self.store.close()

    def _record_run(self, outcome: Outcome) -> Outcome:
        """Close the sync_runs row (on success also drop a finished window's checkpoints and move the
        cursor). If that write fails, the attempt did not succeed after all."""
        if self.store is None or self.payload is None:
            return outcome
        success = outcome.phase == contract.PHASE_FINISHED
        end = self._end if success else {}
        try:
            self.store.run_finished(RunEnd(
                job_id=self.payload.job_id, status=outcome.phase, reason=outcome.reason,
                error=outcome.error or (None if success else outcome.message), used_history=self.used_history,
                message=outcome.message, capped=self._capped, quarantined=self._quarantined, **end))
        except Exception as exc:  # noqa: BLE001 - any failure here decides the outcome
            if success:
                return self._failure(exc)
            log.error("could not record the failed attempt: %s", self.redactor(str(exc)))
        return outcome
