"""Names the operator and the worker share. Neither side spells these strings again.

Redis layout (all keys under the ``receiptsync:`` prefix):

* ``receiptsync:queue:<priority>`` - sorted set of job ids waiting for a worker Job, scored by
  enqueue time (FIFO within one priority). Dispatch drains high, then default, then low.
* ``receiptsync:job:<job_id>`` - the job payload (JSON of :class:`receiptsync_common.jobspec.JobPayload`).
  Written by the operator before the worker Job exists; read by the worker. Never holds credentials.
* ``receiptsync:hb:<job_id>`` - hash with the worker's latest heartbeat; expires after
  ``HEARTBEAT_KEY_TTL_SECONDS`` so a dead worker's key disappears by itself.
* ``receiptsync:events`` - stream every heartbeat is also appended to, so the operator can
  block on XREAD and turn a heartbeat into a status patch within a second.
* ``receiptsync:quota:<mailbox>`` - the per-mailbox Gmail quota token bucket shared by all workers.
"""
from __future__ import annotations

# --- the custom resource -------------------------------------------------------------------
GROUP = "receipts.prosaas.pro"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ReceiptSync"
PLURAL = "receiptsyncs"
SINGULAR = "receiptsync"
SHORT_NAME = "rsync"

RUN_NOW_ANNOTATION = f"{GROUP}/run-now"
FINALIZER = f"{GROUP}/cleanup"

# Labels on every worker Job and Pod the operator creates; the operator watches only these.
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "receiptsync-operator"
LABEL_COMPONENT = "app.kubernetes.io/component"
COMPONENT_WORKER = "worker"
LABEL_SYNC_NAME = f"{GROUP}/sync"
LABEL_RUN_ID = f"{GROUP}/run"
LABEL_ATTEMPT = f"{GROUP}/attempt"
LABEL_JOB_ID = f"{GROUP}/job-id"

# --- phases (status.phase) -------------------------------------------------------------------
PHASE_PENDING = "Pending"
PHASE_QUEUED = "Queued"
PHASE_STARTED = "Started"
PHASE_FINISHED = "Finished"
PHASE_FAILED = "Failed"
PHASES = (PHASE_PENDING, PHASE_QUEUED, PHASE_STARTED, PHASE_FINISHED, PHASE_FAILED)
TERMINAL_PHASES = (PHASE_FINISHED, PHASE_FAILED)

# --- reasons (status.reason) -----------------------------------------------------------------
REASON_WAITING_FOR_WORKER = "WaitingForWorker"
REASON_WORKER_STARTING = "WorkerStarting"
REASON_SYNCING = "Syncing"
REASON_SUCCEEDED = "Succeeded"
REASON_INVALID_SPEC = "InvalidSpec"
REASON_GMAIL_AUTH_ERROR = "GmailAuthError"
REASON_GMAIL_API_ERROR = "GmailApiError"
REASON_DATABASE_ERROR = "DatabaseError"
REASON_WORKER_ERROR = "WorkerError"
REASON_WORKER_LOST = "WorkerLost"
REASON_TIMEOUT = "Timeout"
REASON_BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
REASON_CANCELLED = "Cancelled"
# Failures a retry cannot fix: the run fails at once, whatever backoffLimit says.
# Trouble with a worker's pod (issue 13), named with Kubernetes' own word in status.message.
REASON_WORKER_POD_PENDING = "WorkerPodPending"  # waiting on something that may still resolve itself
REASON_IMAGE_PULL_FAILED = "ImagePullFailed"  # ErrImagePull/ImagePullBackOff that persisted
REASON_WORKER_CONFIG_ERROR = "WorkerConfigError"  # CreateContainerConfigError (a Secret or key missing)
REASON_UNSCHEDULABLE = "Unschedulable"  # no node took the pod within the start timeout
REASON_OOM_KILLED = "OOMKilled"
REASON_FAILED_CREATE = "FailedCreate"  # the Job controller could not create the pod (quota, admission)
REASON_WORKER_JOB_REJECTED = "WorkerJobRejected"  # the API refused the Job itself for good (4xx)
REASON_DEAD_LETTER = "DeadLetter"  # a queue entry that kept failing to dispatch
REASON_FINISHED_WITHOUT_HEARTBEAT = "FinishedWithoutHeartbeat"  # outcome read from the termination message
NON_RETRYABLE_REASONS = frozenset({REASON_GMAIL_AUTH_ERROR, REASON_INVALID_SPEC, REASON_WORKER_CONFIG_ERROR,
                                   REASON_WORKER_JOB_REJECTED, REASON_DEAD_LETTER})

# --- conditions --------------------------------------------------------------------------------
CONDITION_COMPLETE = "Complete"
CONDITION_FAILED = "Failed"

# --- priorities ----------------------------------------------------------------------------------
PRIORITY_HIGH = "high"
PRIORITY_DEFAULT = "default"
PRIORITY_LOW = "low"
PRIORITIES = (PRIORITY_HIGH, PRIORITY_DEFAULT, PRIORITY_LOW)  # dispatch order

MODE_INCREMENTAL = "incremental"
MODE_FULL = "full"

# --- Redis keys ------------------------------------------------------------------------------------
KEY_PREFIX = "receiptsync:"
EVENTS_STREAM = KEY_PREFIX + "events"
EVENTS_STREAM_MAXLEN = 100_000
HEARTBEAT_INTERVAL_SECONDS = 2.0
HEARTBEAT_KEY_TTL_SECONDS = 120
JOB_PAYLOAD_TTL_SECONDS = 7 * 24 * 3600


def queue_key(priority: str) -> str:
    return f"{KEY_PREFIX}queue:{priority}"


def job_key(job_id: str) -> str:
    return f"{KEY_PREFIX}job:{job_id}"


def heartbeat_key(job_id: str) -> str:
    return f"{KEY_PREFIX}hb:{job_id}"


def quota_key(mailbox: str) -> str:
    return f"{KEY_PREFIX}quota:{mailbox}"


def make_job_id(namespace: str, name: str, uid: str, run_id: int, attempt: int) -> str:
    """Deterministic per (resource instance, run, attempt): a restarted operator computes the same id,
    so it can never enqueue or start the same attempt twice. The uid part keeps a deleted and
    re-created resource of the same name from colliding with its predecessor's jobs."""
    return f"{namespace}.{name}.{uid[:8]}.r{run_id}.a{attempt}"


def worker_job_name(name: str, uid: str, run_id: int, attempt: int) -> str:
    """Kubernetes Job name (<= 63 chars, so it also fits the pod label the Job controller sets) for
    one attempt. Valid for every valid ReceiptSync name (a DNS subdomain): the cut never leaves a
    ``.`` or ``-`` before the suffix's own dash (``.-`` is refused with a 422)."""
    suffix = f"-{uid[:5]}-r{run_id}-a{attempt}"
    return f"rs-{name}"[: 63 - len(suffix)].rstrip("-.") + suffix


# --- heartbeat fields (hash fields and stream entry fields) ------------------------------------------
HB_JOB_ID = "job_id"
HB_PHASE = "phase"  # one of PHASES
HB_REASON = "reason"
HB_MESSAGE = "message"
HB_SCANNED = "messages_scanned"
HB_SAVED = "saved_receipts"
HB_TIME = "time"  # RFC 3339 UTC, when the worker wrote it
HB_DATE_FROM = "date_from"  # the range actually synced (YYYY-MM-DD), sent with the first heartbeat
HB_DATE_TO = "date_to"
HB_WORKER = "worker"  # pod name / hostname

# --- worker environment (set by the operator on each worker Job) ------------------------------------
ENV_JOB_ID = "RECEIPTSYNC_JOB_ID"
ENV_REDIS_URL = "REDIS_URL"
ENV_DATABASE_URL = "DATABASE_URL"
ENV_GMAIL_API_ENDPOINT = "GMAIL_API_ENDPOINT"
ENV_GMAIL_CREDENTIALS = "GMAIL_CREDENTIALS_JSON"  # from the resource's own Secret via secretKeyRef

DEFAULT_CREDENTIALS_KEY = "credentials.json"

# --- logs (CONTRACT section 5) ------------------------------------------------------------------------
LOG_JOB_START = "JOB_START"
LOG_JOB_DONE = "JOB_DONE"
LOG_JOB_FAIL = "JOB_FAIL"

# --- operator configuration (environment of the operator Deployment; flags may override) ----------------
OPERATOR_ENV_REDIS_URL = "REDIS_URL"
OPERATOR_ENV_NAMESPACE = "RECEIPTSYNC_NAMESPACE"  # empty: watch all namespaces
OPERATOR_ENV_MAX_WORKERS = "RECEIPTSYNC_MAX_WORKERS"  # default 4
OPERATOR_ENV_HEARTBEAT_TIMEOUT = "RECEIPTSYNC_HEARTBEAT_TIMEOUT_SECONDS"  # default 30
OPERATOR_ENV_WORKER_IMAGE = "RECEIPTSYNC_WORKER_IMAGE"  # default "receiptsync-worker:0.1.0"
OPERATOR_ENV_WORKER_REDIS_URL = "RECEIPTSYNC_WORKER_REDIS_URL"  # default: REDIS_URL
OPERATOR_ENV_WORKER_DATABASE_URL = "RECEIPTSYNC_WORKER_DATABASE_URL"
OPERATOR_ENV_WORKER_GMAIL_API_ENDPOINT = "RECEIPTSYNC_GMAIL_API_ENDPOINT"  # empty: Google's own endpoint
OPERATOR_ENV_METRICS_PORT = "RECEIPTSYNC_METRICS_PORT"  # default 8080 (/metrics, /healthz)

# Project images (no registry host: the chart/values add one where a cluster needs it).
OPERATOR_IMAGE = "receiptsync-operator"
WORKER_IMAGE = "receiptsync-worker"
IMAGE_TAG = "0.1.0"

# --- operator configuration, added by the operator (H6) ------------------------------------------------
OPERATOR_ENV_WORKER_COMMAND = "RECEIPTSYNC_WORKER_COMMAND"  # JSON list; empty: the image's entrypoint
OPERATOR_ENV_LEASE_NAME = "RECEIPTSYNC_LEASE_NAME"  # default "receiptsync-operator"
OPERATOR_ENV_LEASE_NAMESPACE = "RECEIPTSYNC_LEASE_NAMESPACE"  # default: POD_NAMESPACE, else "default"
OPERATOR_ENV_LEASE_DURATION = "RECEIPTSYNC_LEASE_DURATION_SECONDS"  # default 15
OPERATOR_ENV_POD_NAME = "POD_NAME"  # leader identity (downward API); default hostname-pid
OPERATOR_ENV_POD_NAMESPACE = "POD_NAMESPACE"
OPERATOR_ENV_WORKER_JOB_TTL = "RECEIPTSYNC_WORKER_JOB_TTL_SECONDS"  # ttlSecondsAfterFinished, default 3600
OPERATOR_ENV_LOG_LEVEL = "RECEIPTSYNC_LOG_LEVEL"  # DEBUG | INFO (default) | WARNING
OPERATOR_ENV_DELETE_REDIS_TIMEOUT = "RECEIPTSYNC_DELETE_REDIS_TIMEOUT_SECONDS"  # default 10
# Annotation on each worker Job: the full queue job id (label values are capped at 63 characters).
JOB_ID_ANNOTATION = f"{GROUP}/job-id"
# Where the operator remembers the last heartbeat-stream entry it has applied (survives restarts);
# suffixed with ":<namespace>" (or ":*" for all) so operators scoped to different namespaces keep apart.
OPERATOR_STREAM_CURSOR_KEY = KEY_PREFIX + "operator:events-cursor"

# --- scheduling and worker connections, added by the scheduling work (issue 5) ------------------------
# A run stopped because concurrencyPolicy Replace started a newer one.
REASON_REPLACED = "Replaced"
# The operator's connection Secret (below) is missing from the ReceiptSync's namespace, or lacks a key.
REASON_CONNECTION_SECRET_MISSING = "ConnectionSecretMissing"
# Names a Secret that must exist in each ReceiptSync's namespace, holding the worker's connection URLs
# (they may carry passwords) under the keys below; worker Jobs then get them by secretKeyRef instead
# of as plain env values. Empty (default): plain values from REDIS_URL / RECEIPTSYNC_WORKER_* settings.
OPERATOR_ENV_WORKER_CONNECTION_SECRET = "RECEIPTSYNC_WORKER_CONNECTION_SECRET"
CONNECTION_SECRET_REDIS_URL_KEY = "redis-url"
CONNECTION_SECRET_DATABASE_URL_KEY = "database-url"
# Testing knob, never set in production: a file holding a number of seconds added to the clock the
# scheduler reads (re-read whenever the file changes), so tests can move scheduled time without waiting.
OPERATOR_ENV_TEST_CLOCK_OFFSET_FILE = "RECEIPTSYNC_TEST_CLOCK_OFFSET_FILE"
# Per-resource "Redis unavailable" warnings are logged at most once per this many seconds (default 60).
OPERATOR_ENV_REDIS_WARNING_INTERVAL = "RECEIPTSYNC_REDIS_WARNING_INTERVAL_SECONDS"

# --- worker tuning (environment of the worker Job), added by the worker work (issue 4) -----------------
# The mailbox's shared Gmail quota bucket (units refilled a second, bucket size in units) and how many
# threads fetch messages at once. Unset or empty: the defaults (250 units/s, Gmail's per-mailbox limit;
# a 125-unit burst; 4 threads). Lowering the rate lets several businesses share a mailbox's quota.
WORKER_ENV_QUOTA_RATE = "RECEIPTSYNC_QUOTA_UNITS_PER_SECOND"
WORKER_ENV_QUOTA_BURST = "RECEIPTSYNC_QUOTA_BURST_UNITS"
WORKER_ENV_FETCH_THREADS = "RECEIPTSYNC_FETCH_THREADS"

# --- the operator on a real cluster (issue 13) -----------------------------------------------------------
# A Job creation the API refused for a while (RBAC, quota, 5xx): retried with backoff, named in status.
REASON_WORKER_JOB_CREATE_FAILED = "WorkerJobCreateFailed"
# The chart's partial pod template (JSON) merged into every worker Job; invalid JSON stops the operator.
OPERATOR_ENV_WORKER_TEMPLATE_JSON = "RECEIPTSYNC_WORKER_TEMPLATE_JSON"
# Retries wait base·2^(n-1) seconds (with jitter), at most the cap: Kubernetes' Job back-off by default.
OPERATOR_ENV_RETRY_BASE = "RECEIPTSYNC_RETRY_BASE_SECONDS"  # default 10
OPERATOR_ENV_RETRY_CAP = "RECEIPTSYNC_RETRY_MAX_SECONDS"  # default 360
# How long an attempt's pod may stay unscheduled before the attempt fails (Unschedulable), and how long
# an image may fail to pull (ErrImagePull/ImagePullBackOff) before it does.
OPERATOR_ENV_WORKER_START_TIMEOUT = "RECEIPTSYNC_WORKER_START_TIMEOUT_SECONDS"  # default 300
OPERATOR_ENV_IMAGE_PULL_TIMEOUT = "RECEIPTSYNC_IMAGE_PULL_TIMEOUT_SECONDS"  # default 60
# A queue entry whose dispatch failed this many times in a row is moved to the dead-letter set.
OPERATOR_ENV_DEAD_LETTER_AFTER = "RECEIPTSYNC_DEAD_LETTER_AFTER"  # default 5
DEAD_LETTER_KEY = KEY_PREFIX + "deadletter"  # sorted set: job id -> when it was set aside

# --- tenant isolation (issue 14) -----------------------------------------------------------------------
# Namespace annotation: the business ids a namespace may sync ("id,id..." or "*"); enforced at apply
# by the chart's ValidatingAdmissionPolicy.
BUSINESS_IDS_ANNOTATION = f"{GROUP}/business-ids"
# The worker refused a job payload in Redis that disagrees with its own Job (someone other than the
# operator wrote it): never retried.
REASON_PAYLOAD_REJECTED = "PayloadRejected"
NON_RETRYABLE_REASONS = NON_RETRYABLE_REASONS | {REASON_PAYLOAD_REJECTED}
# Worker env set by the operator: what the attempt is (JSON of attempt_identity.identity_of) - the
# Job spec only the operator writes is the truth the Redis payload is checked against; and the
# attempt's heartbeat signing key (hex), by secretKeyRef from the attempt's credentials Secret.
ENV_ATTEMPT_IDENTITY = "RECEIPTSYNC_ATTEMPT"
ENV_HEARTBEAT_KEY = "RECEIPTSYNC_HEARTBEAT_KEY"
HB_MAILBOX = "mailbox"  # the mailbox the worker syncs, once it knows it (its quota bucket is granted then)
HB_MAC = "mac"  # HMAC-SHA256 of the other fields under the attempt's heartbeat key
# Operator settings: the administrative database URL (migrations, per-attempt roles); how workers get
# credentials ("per-attempt", "shared", or "auto": per-attempt when the database URL is set); the key
# per-attempt passwords and heartbeat keys are derived from (hex or any string of 32+ characters).
OPERATOR_ENV_DATABASE_URL = "RECEIPTSYNC_DATABASE_URL"
OPERATOR_ENV_WORKER_CREDENTIALS = "RECEIPTSYNC_WORKER_CREDENTIALS"
OPERATOR_ENV_CREDENTIAL_KEY = "RECEIPTSYNC_CREDENTIAL_KEY"
WORKER_CREDENTIALS_PER_ATTEMPT = "per-attempt"
WORKER_CREDENTIALS_SHARED = "shared"
# The worker-credentials Secret (one per ReceiptSync, in its namespace) and the key suffixes each
# attempt's entries carry (``<job name>.<key>``).
COMPONENT_WORKER_CREDENTIALS = "worker-credentials"
CREDENTIALS_DATABASE_URL_KEY = "database-url"
CREDENTIALS_REDIS_URL_KEY = "redis-url"
CREDENTIALS_HEARTBEAT_KEY_KEY = "heartbeat-key"
