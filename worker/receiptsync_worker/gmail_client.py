"""The Gmail API as the worker uses it: google-api-python-client with quota reservation and retries.

* Every call first reserves its quota units in the mailbox's shared bucket (:mod:`.ratelimit`).
* 429 / 5xx / 403 rate-limit answers and transport errors are retried with jittered exponential
  backoff, never sooner than Retry-After; in a batch only the failed sub-requests are sent again.
* Retries stop at the attempt's deadline: a call whose next try would come after it fails with
  :class:`GmailTimeout`; one that used up its tries fails with :class:`GmailApiError`. Either way
  the message says what Gmail answered (statuses, reason, how often, the last error's message).
* httplib2 is not thread-safe, so each thread gets its own HTTP connection and service object.
* The batch URI is built from our endpoint: the client's ``new_batch_http_request()`` would use the
  discovery document's rootUrl and ignore the endpoint override.
"""
from __future__ import annotations

import collections
import json
import socket
import threading
import time
from typing import Any, Callable, Iterator

import google.auth.exceptions
import google_auth_httplib2
import httplib2
from google.oauth2.credentials import Credentials
from googleapiclient import discovery, discovery_cache
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest, HttpRequest

from . import backoff, ratelimit
from .credentials import RECONNECT_MESSAGE, GmailAuthError, is_invalid_grant

GOOGLE_ENDPOINT = "https://gmail.googleapis.com/"
HTTP_TIMEOUT_SECONDS = 60
# Partial responses: what extraction reads, nothing else (no snippet, labels, sizeEstimate, raw).
MESSAGE_FIELDS = "id,threadId,historyId,internalDate,payload(partId,mimeType,filename,headers,body,parts)"
LIST_FIELDS = "messages/id,nextPageToken"
HISTORY_FIELDS = "history/messagesAdded/message/id,nextPageToken,historyId"
ATTACHMENT_FIELDS = "data,size"

RequestFactory = Callable[[Any], HttpRequest]
TRANSPORT_ERRORS = (httplib2.HttpLib2Error, socket.timeout, ConnectionError, TimeoutError)


class GmailApiError(RuntimeError):
    """Gmail kept failing, or answered with an error no retry can fix."""


class GmailTimeout(GmailApiError):
    """Gmail kept failing until the attempt's deadline left no time for another try."""


class HistoryExpired(Exception):
    """history.list answered 404: the stored start id is too old; sync the date range instead."""


class Stopped(Exception):
    """The attempt is stopping (deadline or SIGTERM) while a call waited to be retried."""


class GmailClient:
    def __init__(
        self,
        credentials: Credentials,
        endpoint: str = "",
        bucket: ratelimit.QuotaBucket | None = None,
        stop: threading.Event | None = None,
        user_id: str = "me",
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``deadline``: a ``clock()`` value (monotonic seconds) after which no retry is started."""
        self._credentials = credentials
        self._endpoint = (endpoint or GOOGLE_ENDPOINT).rstrip("/") + "/"
        self.bucket = bucket
        self._stop = stop or threading.Event()
        self._user_id = user_id
        self.deadline = deadline
        self._clock = clock
        self._document = json.loads(discovery_cache.get_static_doc("gmail", "v1"))
        self._local = threading.local()
        self.batch_uri = self._endpoint + "batch/gmail/v1"
        self.retries = 0  # sub-requests and calls sent again (for tests and the benchmark)
        self._count_lock = threading.Lock()

    # ------------------------------------------------------------------ plumbing
    def _service(self) -> tuple[Any, google_auth_httplib2.AuthorizedHttp]:
        local = self._local
        if getattr(local, "service", None) is None:
            local.http = google_auth_httplib2.AuthorizedHttp(
                self._credentials, http=httplib2.Http(timeout=self._http_timeout())
            )
            local.service = GmailResources(discovery.build_from_document(
                self._document, http=local.http, client_options={"api_endpoint": self._endpoint}
            ))
        return local.service, local.http

    def _http_timeout(self) -> float:
        """No socket wait outlives the attempt (the thread's connection is made at its first call)."""
        if self.deadline is None:
            return HTTP_TIMEOUT_SECONDS
        return max(1.0, min(HTTP_TIMEOUT_SECONDS, self.deadline - self._clock()))

    def _acquire(self, units: int) -> None:
        if self.bucket is not None and units > 0:
            wait = self.bucket.reserve(units)
            if wait > 0 and self._stop.wait(wait):
                raise Stopped()

    def _pause_before_retry(self, seconds: float, failures: "Failures") -> None:
        """Wait before the next try, unless that try would start after the attempt's deadline."""
        if self.deadline is not None and self._clock() + seconds >= self.deadline:
            raise GmailTimeout(failures.describe("; the attempt's timeout came before Gmail recovered"))
        if self._stop.wait(seconds):
            raise Stopped()

    def _count_retries(self, n: int) -> None:
        with self._count_lock:
            self.retries += n

    def call(self, build: RequestFactory, units: int, what: str) -> dict[str, Any]:
        """One API call with quota reservation and retries; 404 raises HttpError for the caller."""
        failures = Failures(what)
        for try_number in range(1, backoff.MAX_TRIES + 1):
            if self._stop.is_set():
                raise Stopped()
            self._acquire(units)
            service, http = self._service()
            retry_after = None
            try:
                return build(service).execute(http=http, num_retries=0)
            except HttpError as exc:
                if not backoff.is_retryable(exc.resp.status, exc.content):
                    if exc.resp.status == 404:
                        raise
                    raise GmailApiError(_describe(what, exc)) from None
                failures.answered(exc)
                retry_after = backoff.retry_after_seconds(exc.resp)
            except google.auth.exceptions.RefreshError as exc:
                _raise_if_revoked(exc)  # any other refresh failure is the token endpoint's hiccup
                failures.unreachable("token refresh failed")
            except TRANSPORT_ERRORS as exc:
                failures.unreachable(type(exc).__name__)
            if try_number == backoff.MAX_TRIES:
                break
            self._count_retries(1)
            self._pause_before_retry(backoff.delay(try_number, retry_after), failures)
        raise GmailApiError(failures.describe())

    def batch(self, builds: list[RequestFactory], units_each: int, what: str) -> tuple[dict[int, Any], set[int]]:
        """Send ``builds`` as batch requests (one HTTP request for all); retry only the failed
        sub-requests. Returns (response by index, indexes Gmail answered 404 for)."""
        pending = set(range(len(builds)))
        results: dict[int, Any] = {}
        missing: set[int] = set()
        failures = Failures(what)
        for try_number in range(1, backoff.MAX_TRIES + 1):
            if self._stop.is_set():
                raise Stopped()
            self._acquire(units_each * len(pending))
            waits = self._send_batch(builds, sorted(pending), results, missing, failures)
            pending -= set(results) | missing
            if not pending:
                return results, missing
            if try_number == backoff.MAX_TRIES:
                break
            self._count_retries(len(pending))
            failures.still_pending = len(pending)
            self._pause_before_retry(backoff.delay(try_number, max(waits) if waits else None), failures)
        failures.still_pending = len(pending)
        raise GmailApiError(failures.describe())

    def _send_batch(self, builds: list[RequestFactory], indexes: list[int], results: dict[int, Any],
                    missing: set[int], failures: "Failures") -> list[float]:
        """One batch HTTP request; fills results/missing and records retryable failures in
        ``failures``; returns Retry-After hints of retryable failures."""
        service, http = self._service()
        waits: list[float] = []
        fatal: list[str] = []

        def on_answer(request_id: str, response: Any, exception: HttpError | None) -> None:
            index = int(request_id)
            if exception is None:
                results[index] = response
            elif exception.resp.status == 404:
                missing.add(index)
            elif backoff.is_retryable(exception.resp.status, exception.content):
                failures.answered(exception)
                waits.append(backoff.retry_after_seconds(exception.resp) or 0.0)
            else:
                fatal.append(_describe(f"{failures.what} (batch item)", exception))

        request = BatchHttpRequest(callback=on_answer, batch_uri=self.batch_uri)
        for index in indexes:
            request.add(builds[index](service), request_id=str(index))
        try:
            request.execute(http=http)
        except HttpError as exc:
            if not backoff.is_retryable(exc.resp.status, exc.content):
                raise GmailApiError(_describe(f"{failures.what} (batch)", exc)) from None
            failures.answered(exc)
            return [backoff.retry_after_seconds(exc.resp) or 0.0]
        except google.auth.exceptions.RefreshError as exc:
            _raise_if_revoked(exc)
            failures.unreachable("token refresh failed")
            return [0.0]
        except TRANSPORT_ERRORS as exc:
            failures.unreachable(type(exc).__name__)
            return [0.0]
        if fatal:
            raise GmailApiError(fatal[0])
        return waits

    # ------------------------------------------------------------------ the calls the sync makes
    def profile(self) -> dict[str, Any]:
        return self.call(lambda r: r.users.getProfile(userId=self._user_id), ratelimit.UNITS_GET_PROFILE,
                         "users.getProfile")

    def message_id_pages(self, query: str, page_size: int = 500) -> Iterator[list[str]]:
        """Ids of messages matching ``query``, newest first, one page at a time."""
        token: str | None = None
        while True:
            page = self.call(
                lambda r, token=token: r.messages.list(
                    userId=self._user_id, q=query, maxResults=page_size, pageToken=token, fields=LIST_FIELDS),
                ratelimit.UNITS_MESSAGES_LIST, "messages.list")
            yield [m["id"] for m in page.get("messages") or []]
            token = page.get("nextPageToken")
            if not token:
                return

    def added_since(self, start_history_id: int) -> set[str]:
        """Ids of messages added since ``start_history_id`` (HistoryExpired if Gmail no longer has it)."""
        added: set[str] = set()
        token: str | None = None
        while True:
            try:
                page = self.call(
                    lambda r, token=token: r.history.list(
                        userId=self._user_id, startHistoryId=str(start_history_id), historyTypes="messageAdded",
                        maxResults=500, pageToken=token, fields=HISTORY_FIELDS),
                    ratelimit.UNITS_HISTORY_LIST, "history.list")
            except HttpError as exc:
                raise HistoryExpired(str(start_history_id)) from exc
            for record in page.get("history") or []:
                for item in record.get("messagesAdded") or []:
                    added.add(item["message"]["id"])
            token = page.get("nextPageToken")
            if not token:
                return added

    def messages(self, message_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Full messages (partial response) by id; ids Gmail no longer has are left out."""
        builds = [
            (lambda r, mid=mid: r.messages.get(userId=self._user_id, id=mid, format="full",
                                                          fields=MESSAGE_FIELDS))
            for mid in message_ids
        ]
        results, _ = self.batch(builds, ratelimit.UNITS_MESSAGES_GET, "messages.get")
        return {message_ids[i]: body for i, body in results.items()}

    def attachments(self, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """base64url data of (message id, attachment id) pairs; vanished ones are left out."""
        builds = [
            (lambda r, mid=mid, aid=aid: r.attachments.get(
                userId=self._user_id, messageId=mid, id=aid, fields=ATTACHMENT_FIELDS))
            for mid, aid in wanted
        ]
        results, _ = self.batch(builds, ratelimit.UNITS_ATTACHMENTS_GET, "attachments.get")
        return {wanted[i]: body.get("data", "") for i, body in results.items()}


class GmailResources:
    """The collections one thread's requests are built from, made once: googleapiclient rebuilds a
    resource object (parsing the discovery document) on every ``users().messages()`` call, which was
    43 % of the worker's CPU in the throughput benchmark."""

    def __init__(self, service: Any) -> None:
        self.users = service.users()
        self.messages = self.users.messages()
        self.attachments = self.messages.attachments()
        self.history = self.users.history()


def _raise_if_revoked(exc: google.auth.exceptions.RefreshError) -> None:
    if is_invalid_grant(exc):
        raise GmailAuthError(RECONNECT_MESSAGE) from None


def _error_message(content: bytes | str | None) -> str:
    """``error.message`` of Google's JSON error body ('' if there is none), on one short line."""
    try:
        message = json.loads(content or b"")["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return ""
    return " ".join(str(message).split())[:MAX_DETAIL_CHARS]


def _describe(what: str, exc: HttpError) -> str:
    reason = backoff.error_reason(exc.content) or ""
    detail = _error_message(exc.content)
    return f"Gmail {what} failed with HTTP {exc.resp.status} {reason}: {detail}".strip().rstrip(":") + "."


MAX_DETAIL_CHARS = 200


class Failures:
    """What Gmail did to one call (or one batch) across its tries, for the failure message.

    Only Gmail's statuses, error reasons and error messages and the names of transport errors are
    kept: nothing of the request (its URL or headers carry the access token)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.statuses: collections.Counter[int] = collections.Counter()
        self.reasons: list[str] = []
        self.unreachable_count = 0
        self.last = ""
        self.still_pending: int | None = None  # batches: sub-requests that never succeeded
        self._lock = threading.Lock()

    def answered(self, exc: HttpError) -> None:
        status = exc.resp.status
        reason = backoff.error_reason(exc.content) or ""
        with self._lock:
            self.statuses[status] += 1
            if reason and reason not in self.reasons:
                self.reasons.append(reason)
            self.last = " ".join(x for x in (str(status), reason, _error_message(exc.content)) if x)

    def unreachable(self, why: str) -> None:
        with self._lock:
            self.unreachable_count += 1
            self.last = why

    def describe(self, ending: str = "") -> str:
        """E.g. "Gmail users.getProfile answered 503 backendError 6 times; last: 503 backendError The
        service is currently unavailable." """
        with self._lock:
            parts = []
            if self.statuses:
                statuses = "/".join(str(s) for s in sorted(self.statuses))
                kinds = " ".join(x for x in (statuses, "/".join(self.reasons)) if x)
                parts.append(f"answered {kinds} {_times(sum(self.statuses.values()))}")
            if self.unreachable_count:
                parts.append(f"could not be reached {_times(self.unreachable_count)}")
            text = f"Gmail {self.what} " + (" and ".join(parts) or "kept failing")
            if self.still_pending is not None:
                text += f" ({self.still_pending} item(s) of the batch unanswered)"
            if self.last:
                text += f"; last: {self.last}"
            return text.rstrip(".") + ending + "."


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"
