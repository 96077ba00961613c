"""Everything about a ReceiptSync's status, in one package:

* :mod:`.messages` - every sentence a user reads (status messages, Event messages);
* :mod:`.history`, :mod:`.patches`, :mod:`.overlap` - pure patches (conditions, runs[], transitions);
* :mod:`.policy` - what is written at once and what waits, and for how long;
* :mod:`.writer` - the one writer (coalescing, lossless on any error, fenced by the lease, and loud
  about fields the CRD's schema lacks).

The names below are the package's API; callers write ``from . import status as st`` and ``st.queued``.
"""
from .history import (ACTIVE_PHASES, REASON_RUNNING, condition_status, conditions, history_limits, is_active,
                      parse_time, progress_of, rfc3339, trim_runs, upsert_run)
from .messages import as_clause, ordinal
from .overlap import (background_heartbeat, background_run_of, background_runs, end_background_run,
                      has_active_run, is_current_job, replaced)
from .patches import (HeartbeatUpdate, failed, from_heartbeat, invalid_spec, job_create_failed, pod_news, queued,
                      retrying, waiting, worker_starting)
from .writer import StatusWriter, apply, merge, status_fields, status_keys

__all__ = [
    "ACTIVE_PHASES", "REASON_RUNNING", "condition_status", "conditions", "history_limits", "is_active", "parse_time",
    "progress_of", "rfc3339", "trim_runs", "upsert_run", "as_clause", "ordinal", "background_heartbeat",
    "background_run_of", "background_runs", "end_background_run", "has_active_run", "is_current_job", "replaced",
    "HeartbeatUpdate", "failed", "from_heartbeat", "invalid_spec", "job_create_failed", "pod_news", "queued",
    "retrying", "waiting", "worker_starting", "StatusWriter", "apply", "merge", "status_fields", "status_keys",
]
