"""Every sentence the operator shows a user: status.message, status.runs[].message, Event messages.

One place, so wording stays consistent and a reviewer reads them together. Decisions never look at
these strings (they look at reasons); tests may.
"""
from __future__ import annotations

import datetime as dt


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def as_clause(detail: str) -> str:
    """A worker's message (a sentence) made fit to continue after "…: " and before "; …"."""
    return detail.rstrip(" .")


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# --- a run's life ------------------------------------------------------------------------------------
def queued(run_id: int) -> str:
    return f"Run {run_id} is queued, waiting for a worker"


def waiting(position: int, total: int, max_workers: int) -> str:
    return f"Waiting for a worker: {ordinal(position)} in line of {total} (all {max_workers} worker slots are busy)"


def waiting_event(run_id, attempt, waiting_message: str) -> str:
    return f"Run {run_id}, attempt {attempt or 1}: {waiting_message}"


def worker_starting(job_name: str, attempt) -> str:
    return f"Worker Job {job_name} created for attempt {attempt or 1}, waiting for it to start"


def syncing(attempt, worker: str | None) -> str:
    return f"Attempt {attempt or 1} is syncing" + (f" on {worker}" if worker else "")


def finished(run_id, scanned: int, saved: int) -> str:
    return f"Run {run_id} finished: scanned {scanned} messages, saved {saved} receipts"


WORKER_REPORTED_FAILURE = "the worker reported a failure"


def retrying(failed_attempt: int, reason: str, detail: str, next_attempt: int, max_attempts: int,
             retry_at: dt.datetime | None = None) -> str:
    when = f", retrying at {rfc3339(retry_at)}" if retry_at is not None else ""
    return (f"Attempt {failed_attempt} ended with {reason}: {as_clause(detail)}; "
            f"attempt {next_attempt} of {max_attempts} is queued{when}")


def not_retried(attempt: int, reason: str, detail: str) -> str:
    return f"Attempt {attempt} failed with {reason}: {as_clause(detail)}; not retried"


def backoff_limit_reached(attempt: int, reason: str, detail: str, limit: int) -> str:
    return f"Attempt {attempt} ended with {reason}: {as_clause(detail)}; backoffLimit {limit} reached"


# --- why an attempt is over (the detail after "ended with <reason>: ") ----------------------------------
def job_deadline(job: str | None) -> str:
    return f"worker Job {job} ran past its deadline"


def job_without_heartbeat(job: str | None, what: str) -> str:
    return f"worker Job {job} {what} without a final heartbeat"


def attempt_timeout(timeout: str) -> str:
    return f"attempt ran longer than spec.timeout ({timeout})"


def no_heartbeat(age: str, heartbeat_timeout: float) -> str:
    return f"no heartbeat for {age} (heartbeat timeout {heartbeat_timeout:g}s)"


def exit_code(code: int) -> str:
    return f"exit code {code}"


# --- the worker's pod, in Kubernetes' own words --------------------------------------------------------
def pod_trouble(word: str, pod: str, detail: str) -> str:
    text = f"{word}: worker pod {pod}: {as_clause(detail)}" if detail else f"{word}: worker pod {pod}"
    hint = config_error_field(detail) if word == "CreateContainerConfigError" else ""
    return f"{text} (see {hint})" if hint else text


def config_error_field(detail: str) -> str:
    """The spec field a user fixes for the kubelet's CreateContainerConfigError: the pod's only
    user-named Secret is the Gmail one (the operator owns every other reference)."""
    if "couldn't find key" in detail:
        return "spec.gmail.secretRef.key"
    if detail.startswith('secret "') and "not found" in detail:
        return "spec.gmail.secretRef.name"
    return ""


def pod_waiting(job_name: str, word: str, pod: str, detail: str) -> str:
    return f"Worker Job {job_name} is not running yet: {pod_trouble(word, pod, detail)}"


def no_pod(job_name: str, word: str, detail: str) -> str:
    return f"{word}: worker Job {job_name} could not create its pod: {as_clause(detail)}"


def unschedulable_too_long(trouble: str, timeout: float) -> str:
    return f"{as_clause(trouble)}; not scheduled within the start timeout ({timeout:g}s)"


def not_started(job_name: str, timeout: float) -> str:
    return f"worker Job {job_name} did not start within the start timeout ({timeout:g}s)"


def image_pull_too_long(trouble: str, timeout: float) -> str:
    return f"{as_clause(trouble)}; the image could not be pulled for {timeout:g}s"


# --- Job creation -------------------------------------------------------------------------------------
def job_create_failed(reason: str, detail: str) -> str:
    return f"Could not create the worker Job ({reason}: {detail}); retrying with backoff"


def job_rejected(status: int, detail: str) -> str:
    return f"the API server refused the worker Job (HTTP {status}): {as_clause(detail)}"


def dead_letter(failures: int, detail: str) -> str:
    return f"dispatching this attempt failed {failures} times in a row (last: {as_clause(detail)}); set aside"


# --- overlapping and replaced runs ----------------------------------------------------------------------
def background_failed(run_id, reason: str, detail: str) -> str:
    return (f"Run {run_id}, overlapping a newer run, failed with {reason}: {detail}; "
            "overlapping runs are not retried")


def background_syncing(run_id) -> str:
    return f"Run {run_id} is syncing beside a newer run (concurrencyPolicy Allow)"


def replaced(run_id, new_run_id) -> str:
    return f"Run {run_id} was stopped: run {new_run_id} replaced it (concurrencyPolicy Replace)"


def replace_event(run_id, new_run_id) -> str:
    return f"Run {run_id} stopped: run {new_run_id} replaces it (concurrencyPolicy Replace)"


# --- the schedule ------------------------------------------------------------------------------------
def schedule_skipped_forbid(when: str, run_id) -> str:
    return f"Skipped the run scheduled for {when}: run {run_id} is still going (concurrencyPolicy Forbid)"


def schedule_missed(about: str, count: int, when: str) -> str:
    return (f"{about}{count} earlier scheduled run(s) were missed (operator down, or suspended); "
            f"only the most recent, {when}, is handled")


def schedule_too_late(when: str, deadline) -> str:
    return f"Skipped the run scheduled for {when}: it is more than startingDeadlineSeconds ({deadline}s) late"


# --- the operator's own settings ----------------------------------------------------------------------
def connection_secret_missing(name: str, env: str, namespace: str) -> str:
    return (f"Secret {name!r} (operator setting {env}) does not exist in namespace {namespace!r}; workers get "
            "their Redis and database URLs from it")


def connection_secret_incomplete(name: str, env: str, namespace: str, missing: list[str]) -> str:
    return (f"Secret {name!r} (operator setting {env}) in namespace {namespace!r} has no "
            f"{' or '.join(repr(k) for k in missing)}")


# --- deletion ---------------------------------------------------------------------------------------
def jobs_deleted(names: list[str]) -> str:
    return f"Deleted worker Job(s) {', '.join(names)}"

