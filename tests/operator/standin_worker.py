"""A minimal stand-in worker for operator tests. Its heartbeats are the real worker's: built and
sent by ``receiptsync_worker.heartbeat.Heartbeats`` (the same fields, the same MULTI to the hash and
the stream, signed with the attempt's key when there is one, nothing after the terminal one), so
the operator is tested against what workers really send. Only the work in between is pretend; it
comes from the payload's query, e.g.
``standin:duration=2,scanned=40,saved=4,fail=GmailApiError,fail_attempts=1,hang_attempts=1``.

``gate=1`` holds the terminal heartbeat until the test sets the Redis key ``standin:go:<job id>``
(so a test can break something first, then let the run end). ``lose_final=1`` finishes without the
terminal heartbeat, leaving only the worker's durable outcome in its termination message.

It never reads the credentials beyond checking they arrived (and never prints them).
"""
from __future__ import annotations

import os
import socket
import sys
import time

import redis

from receiptsync_common import contract
from receiptsync_common.jobspec import JobPayload
from receiptsync_worker.heartbeat import Heartbeats, Progress
from receiptsync_worker.outcome import Counters, Outcome, termination_message, write_termination_message


def options(query: str | None) -> dict[str, str]:
    if not query or not query.startswith("standin:"):
        return {}
    return dict(part.split("=", 1) for part in query[len("standin:"):].split(",") if "=" in part)


def gate_key(job_id: str) -> str:
    return f"standin:go:{job_id}"


def main() -> int:
    job_id = os.environ[contract.ENV_JOB_ID]
    client = redis.Redis.from_url(os.environ[contract.ENV_REDIS_URL], decode_responses=True)
    raw = client.get(contract.job_key(job_id))
    if raw is None:
        print(f"no payload for {job_id}", file=sys.stderr)
        return 2
    payload = JobPayload.from_json(raw)
    opts = options(payload.query)
    client.set(f"standin:pid:{job_id}", os.getpid(), ex=600)
    client.set(f"standin:creds:{job_id}", "yes" if os.environ.get(contract.ENV_GMAIL_CREDENTIALS) else "no", ex=600)

    progress = Progress()
    progress.date_from = payload.date_from if not (payload.mode == "incremental" and not payload.explicit_from) \
        else payload.date_to
    progress.date_to = payload.date_to
    # Signed with the attempt's heartbeat key when the operator gave it one, as the worker does.
    heartbeats = Heartbeats(client, job_id, progress, redact=lambda text: text, worker=socket.gethostname(),
                            key=os.environ.get(contract.ENV_HEARTBEAT_KEY, ""))
    heartbeats.beat(contract.PHASE_STARTED, contract.REASON_SYNCING, "Worker started.")
    if payload.attempt <= int(opts.get("hang_attempts", 0)):
        time.sleep(3600)  # a hung worker: the test kills it or the operator gives up on it
    duration = float(opts.get("duration", 1))
    scanned, saved = int(opts.get("scanned", 40)), int(opts.get("saved", 4))
    steps = max(1, int(duration / 0.5))
    for step in range(1, steps + 1):
        time.sleep(duration / steps)
        progress.set(scanned * step // steps, saved * step // steps, 0)
        heartbeats.beat()
    if opts.get("gate"):
        while not client.get(gate_key(job_id)):
            time.sleep(0.1)
    if payload.attempt <= int(opts.get("fail_attempts", 0)) or opts.get("fail_always"):
        reason = opts.get("fail", contract.REASON_GMAIL_API_ERROR)
        heartbeats.beat(contract.PHASE_FAILED, reason, f"stand-in failure ({reason})")
        return 1
    message = f"Synced {scanned} messages, {saved} receipts."
    if opts.get("lose_final"):  # the final heartbeat is lost: only the termination message tells
        outcome = Outcome(contract.PHASE_FINISHED, contract.REASON_SUCCEEDED, message)
        text = termination_message(outcome, Counters(scanned, saved), job_id)
        write_termination_message("/dev/termination-log", text)
        return 0
    heartbeats.beat(contract.PHASE_FINISHED, contract.REASON_SUCCEEDED, message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
