"""A minimal stand-in worker for operator tests: speaks the real heartbeat protocol (HSET the
heartbeat hash + XADD the events stream), nothing else. Behaviour comes from the payload's query,
e.g. ``standin:duration=2,scanned=40,saved=4,fail=GmailApiError,fail_attempts=1,hang_attempts=1``.

It never reads the credentials beyond checking they arrived (and never prints them).
"""
from __future__ import annotations

import datetime as dt
import os
import socket
import sys
import time

import redis

from receiptsync_common import contract
from receiptsync_common.jobspec import JobPayload


def options(query: str | None) -> dict[str, str]:
    if not query or not query.startswith("standin:"):
        return {}
    return dict(part.split("=", 1) for part in query[len("standin:"):].split(",") if "=" in part)


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

    def beat(phase: str, **fields: object) -> None:
        data = {contract.HB_JOB_ID: job_id, contract.HB_PHASE: phase, contract.HB_WORKER: socket.gethostname(),
                contract.HB_TIME: dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")}
        data.update({k: str(v) for k, v in fields.items() if v is not None})
        pipe = client.pipeline()
        pipe.hset(contract.heartbeat_key(job_id), mapping=data)
        pipe.expire(contract.heartbeat_key(job_id), contract.HEARTBEAT_KEY_TTL_SECONDS)
        pipe.xadd(contract.EVENTS_STREAM, data, maxlen=contract.EVENTS_STREAM_MAXLEN, approximate=True)
        pipe.execute()

    date_from = payload.date_from if not (payload.mode == "incremental" and not payload.explicit_from) else payload.date_to
    beat(contract.PHASE_STARTED, date_from=date_from, date_to=payload.date_to, messages_scanned=0, saved_receipts=0)
    if payload.attempt <= int(opts.get("hang_attempts", 0)):
        time.sleep(3600)  # a hung worker: the test kills it or the operator gives up on it
    duration = float(opts.get("duration", 1))
    scanned, saved = int(opts.get("scanned", 40)), int(opts.get("saved", 4))
    steps = max(1, int(duration / 0.5))
    for step in range(1, steps + 1):
        time.sleep(duration / steps)
        beat(contract.PHASE_STARTED, messages_scanned=scanned * step // steps, saved_receipts=saved * step // steps)
    if payload.attempt <= int(opts.get("fail_attempts", 0)) or opts.get("fail_always"):
        reason = opts.get("fail", contract.REASON_GMAIL_API_ERROR)
        beat(contract.PHASE_FAILED, reason=reason, message=f"stand-in failure ({reason})",
             messages_scanned=scanned, saved_receipts=saved)
        return 1
    beat(contract.PHASE_FINISHED, reason=contract.REASON_SUCCEEDED, messages_scanned=scanned, saved_receipts=saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
