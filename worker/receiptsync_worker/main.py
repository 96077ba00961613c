"""``receiptsync-worker``: run the one attempt named by RECEIPTSYNC_JOB_ID, then exit.

Exit code 0 when the attempt Finished, 1 when it Failed, 2 when the environment is unusable.
SIGTERM (Kubernetes stopping the pod) makes the attempt stop after the batch being saved commits.
"""
from __future__ import annotations

import signal
import sys
import threading

from receiptsync_common import contract

from . import joblog
from .config import ConfigError, from_env
from .sync import Attempt

EXIT_BAD_ENVIRONMENT = 2


def main(argv: list[str] | None = None) -> int:
    try:
        settings = from_env()
    except ConfigError as exc:
        joblog.event(contract.LOG_JOB_START, job_id=None)
        joblog.event(contract.LOG_JOB_FAIL, job_id=None, reason=contract.REASON_WORKER_ERROR, error=str(exc))
        return EXIT_BAD_ENVIRONMENT
    stop = threading.Event()
    attempt = Attempt(settings, stop=stop)
    joblog.configure(attempt.redactor)
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    return attempt.run()


if __name__ == "__main__":
    sys.exit(main())
