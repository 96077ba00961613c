"""``receiptsync-worker``: run the one attempt named by RECEIPTSYNC_JOB_ID, then exit.

Exit code 0 when the attempt Finished, 1 when it Failed, 2 when the environment is unusable.
SIGTERM (Kubernetes stopping the pod) makes the attempt stop after the batch being saved commits.
"""
from __future__ import annotations

import os
import signal
import sys
import threading

from receiptsync_common import contract

from . import joblog
from .config import (DEFAULT_TERMINATION_MESSAGE_PATH, ENV_TERMINATION_MESSAGE_PATH, ConfigError, EmptyCredentials,
                     from_env)
from .outcome import Counters, Outcome, termination_message, write_termination_message
from .sync import Attempt

EXIT_BAD_ENVIRONMENT = 2


def main(argv: list[str] | None = None) -> int:
    try:
        settings = from_env()
    except ConfigError as exc:
        # A spec the user can fix fails for good (InvalidSpec); anything else is the platform's.
        reason = contract.REASON_INVALID_SPEC if isinstance(exc, EmptyCredentials) else contract.REASON_WORKER_ERROR
        job_id = os.environ.get(contract.ENV_JOB_ID)
        joblog.event(contract.LOG_JOB_START, job_id=job_id)
        joblog.event(contract.LOG_JOB_FAIL, job_id=job_id, reason=reason, error=str(exc))
        # The durable outcome: there is no heartbeat channel yet to say why.
        path = os.environ.get(ENV_TERMINATION_MESSAGE_PATH) or DEFAULT_TERMINATION_MESSAGE_PATH
        write_termination_message(path, termination_message(Outcome(contract.PHASE_FAILED, reason, str(exc)),
                                                             Counters(), job_id))
        return EXIT_BAD_ENVIRONMENT
    stop = threading.Event()
    attempt = Attempt(settings, stop=stop)
    joblog.configure(attempt.redactor)
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    return attempt.run()


if __name__ == "__main__":
    sys.exit(main())
