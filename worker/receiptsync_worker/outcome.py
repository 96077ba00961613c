"""How an attempt ends, as pure functions: the reason for an exception, the one-sentence outcome
messages, and the short JSON written as the container's termination message (so the operator can
tell Finished from lost even when the final heartbeat never reached Redis). Plus the one I/O shell
that writes that file."""
from __future__ import annotations

import dataclasses
import json
import logging

import redis

from receiptsync_common import contract, daterange

from . import credentials as creds
from .gmail_client import GmailApiError, GmailTimeout
from .store import TRANSIENT_ERRORS, DatabaseUnavailable

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
# The attempt made no progress for too long (a hung connection, a wedged call): it gives up itself.
REASON_STALLED = "Stalled"
TERMINATION_MESSAGE_LIMIT = 4096  # Kubernetes keeps at most this many bytes


@dataclasses.dataclass
class Outcome:
    phase: str
    reason: str
    message: str
    error: str | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.phase == contract.PHASE_FINISHED else EXIT_FAILED


@dataclasses.dataclass(frozen=True)
class Counters:
    scanned: int = 0
    saved: int = 0
    skipped: int = 0
    quarantined: int = 0
    capped: bool = False

    def as_json(self) -> dict[str, object]:
        return {"messages_scanned": self.scanned, "saved_receipts": self.saved, "skipped_messages": self.skipped,
                "quarantined_messages": self.quarantined, "capped": self.capped}


class PayloadMissing(RuntimeError):
    pass


class PayloadRejected(RuntimeError):
    """The Redis payload disagrees with the identity the operator put into this worker's Job."""


def classify(exc: BaseException) -> tuple[str, str]:
    """(reason, one-sentence message) for an exception that ended the attempt."""
    if isinstance(exc, PayloadRejected):
        return contract.REASON_PAYLOAD_REJECTED, str(exc)
    if isinstance(exc, creds.GmailAuthError):
        return contract.REASON_GMAIL_AUTH_ERROR, creds.RECONNECT_MESSAGE
    if isinstance(exc, creds.CredentialsFormatError):
        return contract.REASON_GMAIL_AUTH_ERROR, f"{exc}; reconnect Gmail for this business."
    if isinstance(exc, GmailTimeout):  # before GmailApiError: it is one
        return contract.REASON_TIMEOUT, str(exc)
    if isinstance(exc, GmailApiError):
        return contract.REASON_GMAIL_API_ERROR, str(exc)
    if isinstance(exc, (DatabaseUnavailable, *TRANSIENT_ERRORS)):
        return contract.REASON_DATABASE_ERROR, f"The receipts database failed: {first_line(exc)}."
    if isinstance(exc, daterange.DateRangeError):
        return contract.REASON_INVALID_SPEC, str(exc)
    if isinstance(exc, redis.RedisError):
        return contract.REASON_WORKER_ERROR, f"Redis failed: {first_line(exc)}."
    return contract.REASON_WORKER_ERROR, f"The worker failed unexpectedly: {type(exc).__name__}: {first_line(exc)}."


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__).rstrip(".")


def finished_message(counters: Counters, first: str, last: str, max_messages: int) -> str:
    text = (f"Scanned {counters.scanned} messages and saved {counters.saved} new receipts from {first} to {last}")
    notes = []
    if counters.skipped:
        notes.append(f"{_count(counters.skipped, 'message')} skipped or incomplete (ids in sync_runs.skipped)")
    if counters.quarantined:
        notes.append(f"{_count(counters.quarantined, 'message')} quarantined after repeated extraction failures")
    if counters.capped:
        notes.append(f"stopped at maxMessages={max_messages}; the next run continues where this one stopped")
    return text + "".join(f"; {note}" for note in notes) + "."


def stalled_message(idle_seconds: float, counters: Counters) -> str:
    return (f"The worker made no progress for {idle_seconds:.0f}s after scanning {counters.scanned} messages"
            f" and gave up; a retry resumes where it stopped.")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def termination_message(outcome: Outcome, counters: Counters, job_id: str | None) -> str:
    """``{"outcome", "reason", "message", "job_id", "counters"}``, within Kubernetes' 4 KiB (the
    message is shortened first). The message went through the redactor already; nothing else here
    can hold a secret."""
    body = {"outcome": outcome.phase, "reason": outcome.reason, "job_id": job_id, "counters": counters.as_json(),
            "message": outcome.message}
    text = json.dumps(body, ensure_ascii=False, sort_keys=True)
    while len(text.encode()) > TERMINATION_MESSAGE_LIMIT and body["message"]:
        body["message"] = str(body["message"])[: max(0, len(str(body["message"])) - 256)]
        text = json.dumps(body, ensure_ascii=False, sort_keys=True)
    return text


def write_termination_message(path: str, text: str) -> bool:
    """Best-effort: a missing or read-only path (outside Kubernetes) is not an error."""
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return True
    except OSError as exc:
        log.info("termination message not written to %s: %s", path, type(exc).__name__)
        return False
