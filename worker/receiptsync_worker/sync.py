"""One attempt, start to end: payload → Gmail → PostgreSQL, with heartbeats and the log markers.

The order matters: the business's new history id is read from Gmail *before* listing and stored
only together with the attempt's successful end, after every receipt it covers is committed.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from typing import Any, Callable

import redis

from receiptsync_common import contract, daterange
from receiptsync_common.jobspec import JobPayload

from . import credentials as creds
from . import joblog, plan, ratelimit
from .config import Settings, Tuning
from .fetch import FetchedChunk
from .gmail_client import GmailApiError, GmailClient, GmailTimeout, HistoryExpired
from .heartbeat import Heartbeats, Progress, Ticker
from .pipeline import IdFilter, Pipeline, PipelineResult
from .redact import Redactor
from .store import TRANSIENT_ERRORS, BusinessState, DatabaseUnavailable, RunRecord, SavedBatch, Store

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1


@dataclasses.dataclass
class Outcome:
    phase: str
    reason: str
    message: str
    error: str | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.phase == contract.PHASE_FINISHED else EXIT_FAILED


class PayloadMissing(RuntimeError):
    pass


def classify(exc: BaseException) -> tuple[str, str]:
    """(reason, one-sentence message) for an exception that ended the attempt."""
    if isinstance(exc, creds.GmailAuthError):
        return contract.REASON_GMAIL_AUTH_ERROR, creds.RECONNECT_MESSAGE
    if isinstance(exc, creds.CredentialsFormatError):
        return contract.REASON_GMAIL_AUTH_ERROR, f"{exc}; reconnect Gmail for this business."
    if isinstance(exc, GmailTimeout):  # before GmailApiError: it is one
        return contract.REASON_TIMEOUT, str(exc)
    if isinstance(exc, GmailApiError):
        return contract.REASON_GMAIL_API_ERROR, str(exc)
    if isinstance(exc, (DatabaseUnavailable, *TRANSIENT_ERRORS)):
        return contract.REASON_DATABASE_ERROR, f"The receipts database failed: {_first_line(exc)}."
    if isinstance(exc, daterange.DateRangeError):
        return contract.REASON_INVALID_SPEC, str(exc)
    if isinstance(exc, redis.RedisError):
        return contract.REASON_WORKER_ERROR, f"Redis failed: {_first_line(exc)}."
    return contract.REASON_WORKER_ERROR, f"The worker failed unexpectedly: {type(exc).__name__}: {_first_line(exc)}."


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__).rstrip(".")


class Attempt:
    def __init__(
        self,
        settings: Settings,
        stop: threading.Event | None = None,
        tuning: Tuning | None = None,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
    ) -> None:
        self.settings = settings
        self.stop = stop or threading.Event()
        self.tuning = tuning if tuning is not None else settings.tuning  # default: from the environment
        self._now = now
        self.redactor = Redactor()
        self.progress = Progress()
        self.redis = redis.Redis.from_url(settings.redis_url, decode_responses=True, socket_timeout=10)
        self.heartbeats = Heartbeats(self.redis, settings.job_id, self.progress, self.redactor, settings.worker_name)
        self.payload: JobPayload | None = None
        self.store: Store | None = None
        self.client: GmailClient | None = None
        self.used_history = False
        self._lister_stores: list[Store] = []
        self._success_state: tuple[str, str, int, dt.datetime] | None = None
        self.ticker: Ticker | None = None
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
        if p is None:
            return {"job_id": self.settings.job_id}
        return {"job_id": p.job_id, "business_id": p.business_id, "namespace": p.namespace, "name": p.name}

    def _load_payload(self) -> JobPayload:
        raw = self.redis.get(contract.job_key(self.settings.job_id))
        if raw is None:
            raise PayloadMissing(f"no job payload in Redis for job {self.settings.job_id}")
        return JobPayload.from_json(raw)

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
        state, window, attempt_started, done = self._begin(payload)
        mailbox, new_history_id = self._connect_gmail(info, deadline)
        id_filter = self._id_filter(payload, state, mailbox, done)
        pages = iter(()) if id_filter.only == set() else self.client.message_id_pages(plan.search_query(payload, window))
        run_key = plan.run_key(payload)
        try:
            result = Pipeline(
                client=self.client, save=lambda chunk: self._save(chunk, run_key), stop=self.stop,
                deadline=deadline, batch_size=self.tuning.batch_size, fetchers=self.tuning.fetchers,
                id_filter=id_filter,
            ).run(pages)
        finally:
            for store in self._lister_stores:
                store.close()
        if result.error is not None:
            raise result.error
        return self._outcome(payload, window, result, (payload.business_id, mailbox, new_history_id, attempt_started))

    def _begin(self, payload: JobPayload) -> tuple[BusinessState | None, plan.DateWindow, dt.datetime, set[str]]:
        """Schema, range, first heartbeat, the attempt's sync_runs row and the run's resume point."""
        self.store = Store(self.settings.database_url)
        self.store.migrate()
        state = self.store.business_state(payload.business_id)
        attempt_started = self._now()
        window = plan.date_window(payload, attempt_started, state.last_success_at if state else None)
        self.progress.date_from, self.progress.date_to = window.first.isoformat(), window.last.isoformat()
        # The first heartbeat goes out as soon as the range is known (milliseconds after start).
        self.heartbeats.beat(contract.PHASE_STARTED, contract.REASON_SYNCING,
                             f"Syncing receipts from {window.first} to {window.last}.")
        self.ticker = Ticker(self.heartbeats).start()
        run_key = plan.run_key(payload)
        self.store.run_started(RunRecord(
            job_id=payload.job_id, run_key=run_key, business_id=payload.business_id, namespace=payload.namespace,
            name=payload.name, run_id=payload.run_id, attempt=payload.attempt, mode=payload.mode,
            date_from=window.first, date_to=window.last, started_at=attempt_started))
        done, earlier_scanned, earlier_saved = self.store.resume_point(run_key, payload.job_id)
        self.progress.add(earlier_scanned, earlier_saved)
        return state, window, attempt_started, done

    def _connect_gmail(self, info: dict[str, Any], deadline: float) -> tuple[str, int]:
        """Refresh the token (a revoked grant fails here), read the mailbox and its current
        history id, and meter every later call through the mailbox's shared quota bucket. No
        Gmail call is retried past ``deadline`` (monotonic)."""
        credentials = creds.build_credentials(info)
        creds.refresh(credentials)
        self.redactor.add(credentials.token)
        self.client = GmailClient(credentials, self.settings.gmail_endpoint, stop=self.stop, deadline=deadline)
        profile = self.client.profile()
        mailbox = profile["emailAddress"]
        self.client.bucket = ratelimit.QuotaBucket(self.redis, mailbox, self.tuning.quota_rate, self.tuning.quota_burst)
        return mailbox, int(profile["historyId"])

    def _id_filter(self, payload: JobPayload, state: BusinessState | None, mailbox: str, done: set[str]) -> IdFilter:
        id_filter = IdFilter(done=done, max_messages=payload.max_messages)
        start_id = plan.history_start(payload, state.mailbox if state else None,
                                      state.history_id if state else None, mailbox)
        if start_id is not None:
            try:
                id_filter.only = self.client.added_since(start_id)
                self.used_history = True
            except HistoryExpired:
                log.info("Gmail history %s expired; syncing the date range instead", start_id)
        if plan.uses_stored_state(payload):
            # Incremental: receipts already stored are not fetched again (the lister's own connection).
            lister_store = Store(self.settings.database_url)
            self._lister_stores.append(lister_store)
            id_filter.already_saved = lambda ids: lister_store.existing_message_ids(payload.business_id, ids)
        return id_filter

    def _outcome(self, payload: JobPayload, window: plan.DateWindow, result: PipelineResult,
                 success_state: tuple[str, str, int, dt.datetime]) -> Outcome:
        scanned, saved = self.progress.snapshot()
        if result.timed_out:
            return Outcome(contract.PHASE_FAILED, contract.REASON_TIMEOUT,
                           f"The attempt reached its {payload.timeout_seconds}s timeout after scanning {scanned} "
                           f"messages; a retry resumes where it stopped.")
        if self.stop.is_set():
            return Outcome(contract.PHASE_FAILED, contract.REASON_CANCELLED,
                           f"The worker was asked to stop (SIGTERM) after saving {saved} receipts; "
                           f"a retry resumes where it stopped.")
        # Only a complete sync may move the business forward; a capped one is redone next time.
        self._success_state = None if result.truncated else success_state
        note = f" (stopped at maxMessages={payload.max_messages})" if result.truncated else ""
        return Outcome(contract.PHASE_FINISHED, contract.REASON_SUCCEEDED,
                       f"Scanned {scanned} messages and saved {saved} new receipts from {window.first} "
                       f"to {window.last}{note}.")

    def _save(self, chunk: FetchedChunk, run_key: str) -> None:
        payload = self.payload
        assert payload is not None and self.store is not None
        new = self.store.save_batch(SavedBatch(
            business_id=payload.business_id, job_id=payload.job_id, run_key=run_key,
            receipts=chunk.receipts, attachments=chunk.attachments, done_message_ids=chunk.message_ids))
        self.progress.add(len(chunk.message_ids), new)
        self.heartbeats.beat()

    # ------------------------------------------------------------------ the end
    def _finish(self, outcome: Outcome, elapsed: float) -> None:
        outcome = self._record_run(outcome)
        scanned, saved = self.progress.snapshot()
        try:
            self.heartbeats.beat(outcome.phase, outcome.reason, outcome.message)
        except redis.RedisError as exc:
            log.error("final heartbeat failed: %s", exc)
        fields: dict[str, Any] = {**self._identity(), "phase": outcome.phase, "reason": outcome.reason,
                                  "messages_scanned": scanned, "saved_receipts": saved,
                                  "date_from": self.progress.date_from, "date_to": self.progress.date_to,
                                  "elapsed_seconds": round(elapsed, 3), "used_history": self.used_history}
        if self.client is not None:
            fields["gmail_retries"] = self.client.retries
        if outcome.phase == contract.PHASE_FINISHED:
            joblog.event(contract.LOG_JOB_DONE, **fields, message=outcome.message)
        else:
            joblog.event(contract.LOG_JOB_FAIL, **fields, error=outcome.message)
        if self.store is not None:
            self.store.close()

    def _record_run(self, outcome: Outcome) -> Outcome:
        """Close the sync_runs row (and on success advance the business state). If that write
        fails, the attempt did not succeed after all."""
        if self.store is None or self.payload is None:
            return outcome
        success = outcome.phase == contract.PHASE_FINISHED
        try:
            self.store.run_finished(
                job_id=self.payload.job_id, status=outcome.phase, reason=outcome.reason,
                error=outcome.error or (None if success else outcome.message), used_history=self.used_history,
                success_state=self._success_state if success else None,
                run_key=plan.run_key(self.payload) if success else None,
            )
        except Exception as exc:  # noqa: BLE001 - any failure here decides the outcome
            if success:
                return self._failure(exc)
            log.error("could not record the failed attempt: %s", self.redactor(str(exc)))
        return outcome
