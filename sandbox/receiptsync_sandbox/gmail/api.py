"""The Gmail API calls themselves, independent of HTTP framing.

A call is (verb, path, query, headers); the answer is (status, JSON, headers). Plain HTTP requests
and each part of a batch go through :meth:`GmailApi.call`, so auth, injected faults, quota and
statistics apply to both the same way. Order per call: route, auth, user id, injected faults,
quota, then the method (errors after the quota check still cost units, as with Google).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from multidict import CIMultiDict, MultiDict

from . import errors
from .auth import TokenStore, bearer_token
from .config import EmulatorConfig
from .errors import ApiError
from .faults import Faults
from .fields import Selection, apply_fields, parse_fields
from .mailbox import Mailbox, MailboxDirectory
from .message import StoredMessage
from .paging import decode_token, encode_token, search_fingerprint
from .query import QueryError, compile_query
from .quota import METHOD_COSTS, QuotaLimiter, retry_after_header
from .resource import FORMATS, attachment, message_reference, render
from .stats import Stats

DEFAULT_PAGE = 100
MAX_PAGE = 500
SEARCH_CACHE_SIZE = 64
# Refusals with their own counters in the stats (quota, injected faults); other errors go by status.
COUNTED_ELSEWHERE = {"rateLimitExceeded", "userRateLimitExceeded", "backendError"}


@dataclass
class ApiCall:
    verb: str
    path: str
    query: MultiDict = field(default_factory=MultiDict)
    headers: CIMultiDict = field(default_factory=CIMultiDict)


@dataclass
class ApiAnswer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Route:
    verb: str
    pattern: re.Pattern
    method: str  # Gmail's method name, e.g. users.messages.get
    handler: str  # GmailApi attribute


def _route(verb: str, template: str, method: str, handler: str) -> Route:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
    return Route(verb, re.compile(f"^{regex}$"), method, handler)


ROUTES = [
    _route("GET", "/gmail/v1/users/{userId}/profile", "users.getProfile", "get_profile"),
    _route("GET", "/gmail/v1/users/{userId}/messages", "users.messages.list", "list_messages"),
    _route("GET", "/gmail/v1/users/{userId}/messages/{id}", "users.messages.get", "get_message"),
    _route("GET", "/gmail/v1/users/{userId}/messages/{messageId}/attachments/{id}",
           "users.messages.attachments.get", "get_attachment"),
    _route("GET", "/gmail/v1/users/{userId}/history", "users.history.list", "list_history"),
]


class GmailApi:
    def __init__(self, mailboxes: MailboxDirectory, config: EmulatorConfig, tokens: TokenStore,
                 quota: QuotaLimiter, stats: Stats, faults: Faults):
        self.mailboxes = mailboxes
        self.config = config
        self.tokens = tokens
        self.quota = quota
        self.stats = stats
        self.faults = faults
        self._searches: OrderedDict[tuple, list[StoredMessage]] = OrderedDict()

    async def call(self, call: ApiCall) -> ApiAnswer:
        address: str | None = None
        try:
            route, params = _match(call.verb, call.path)
            address = self._authenticate(call)
            _check_user(params["userId"], address)
            self.stats.of(address).requests[route.method] += 1
            await self._maybe_fail(address)
            self._charge(address, route.method)
            mailbox = self.mailboxes.get(address)
            if mailbox is None:  # its folder vanished after the token was issued
                raise errors.unauthenticated()
            selection = _field_selection(call.query.get("fields", ""))
            handler: Callable[..., Any] = getattr(self, route.handler)
            body = handler(mailbox, params, call.query)
            return ApiAnswer(200, body if selection is None else apply_fields(body, selection))
        except ApiError as error:
            if address is not None and error.reason not in COUNTED_ELSEWHERE:
                self.stats.of(address).errors[error.code] += 1
            return ApiAnswer(error.code, error.body(), error.headers)

    # ------------------------------------------------------------ the checks every call passes

    def _authenticate(self, call: ApiCall) -> str:
        token = bearer_token(call.headers, call.query)
        address = self.tokens.mailbox_of(token) if token else None
        if address is None or address in self.config.revoked:
            raise errors.unauthenticated()
        return address

    async def _maybe_fail(self, address: str) -> None:
        delay = self.faults.extra_delay_s(self.config)
        if delay:
            await asyncio.sleep(delay)
        status = self.faults.injected_status(self.config)
        if status == 429:
            self.stats.of(address).injected_429 += 1
            raise errors.rate_limited(self.config.quota_status, 1, _rfc3339(time.time() + 1))
        if status is not None:
            self.stats.of(address).injected_5xx += 1
            raise errors.backend_error(status)

    def _charge(self, address: str, method: str) -> None:
        units = METHOD_COSTS[method]
        if self.config.quota_enabled:
            wait = self.quota.try_consume(address, units, self.config.quota_rate, self.config.quota_burst)
            if wait is not None:
                self.stats.of(address).rate_limited += 1
                raise errors.rate_limited(self.config.quota_status, retry_after_header(wait),
                                          _rfc3339(time.time() + wait))
        self.stats.charged(address, units)

    # ------------------------------------------------------------ users.getProfile

    def get_profile(self, mailbox: Mailbox, params: dict, query: MultiDict) -> dict:
        threads = {mailbox.thread_id(message) for message in mailbox.ordered}
        return {"emailAddress": mailbox.address, "messagesTotal": len(mailbox.messages),
                "threadsTotal": len(threads), "historyId": str(mailbox.history_id)}

    # ------------------------------------------------------------ users.messages.list

    def list_messages(self, mailbox: Mailbox, params: dict, query: MultiDict) -> dict:
        page_size = _page_size(query.get("maxResults"))
        q = query.get("q", "")
        label_ids = tuple(query.getall("labelIds", []))
        found = self._search(mailbox, q, label_ids)
        if self.config.search_lag_s > 0:  # not indexed yet: history has them, search does not
            indexed_before = time.monotonic() - self.config.search_lag_s
            found = [message for message in found if message.arrived_at <= indexed_before]
        fingerprint = search_fingerprint(mailbox.address, q, label_ids)
        start = 0
        if query.get("pageToken"):
            after_key = tuple(decode_token(query["pageToken"], fingerprint))
            start = _first_older_than(found, after_key)
        page = found[start:start + page_size]
        answer: dict[str, Any] = {}
        if page:
            answer["messages"] = [message_reference(mailbox, message) for message in page]
        if start + page_size < len(found):
            last = page[-1]
            answer["nextPageToken"] = encode_token([last.internal_ms, last.history_id], fingerprint)
        answer["resultSizeEstimate"] = len(found)
        return answer

    def _search(self, mailbox: Mailbox, q: str, label_ids: tuple[str, ...]) -> list[StoredMessage]:
        """Matching messages newest first; cached per mailbox version (pages reuse one search)."""
        minute = int(time.time() // 60)  # newer_than:/older_than: move with the clock
        key = (mailbox.address, mailbox.version, q, label_ids, minute)
        cached = self._searches.get(key)
        if cached is not None:
            self._searches.move_to_end(key)
            return cached
        try:
            node = compile_query(q, me=mailbox.address)
        except QueryError as error:
            raise errors.invalid_argument(str(error)) from None
        wanted = {label.upper() for label in label_ids}
        found = [message for message in reversed(mailbox.ordered)
                 if wanted <= set(message.labels) and node.matches(message.search)]
        self._searches[key] = found
        if len(self._searches) > SEARCH_CACHE_SIZE:
            self._searches.popitem(last=False)
        return found

    # ------------------------------------------------------------ users.messages.get / attachments.get

    def get_message(self, mailbox: Mailbox, params: dict, query: MultiDict) -> dict:
        fmt = query.get("format", "full").lower()
        if fmt not in FORMATS:
            raise errors.invalid_argument(f"Invalid value at 'format' ({fmt!r})")
        message = _find_message(mailbox, params["id"])
        return render(mailbox, message, fmt, query.getall("metadataHeaders", []))

    def get_attachment(self, mailbox: Mailbox, params: dict, query: MultiDict) -> dict:
        message = _find_message(mailbox, params["messageId"])
        data = message.attachments.get(params["id"])
        if data is None:
            raise errors.invalid_argument("Invalid attachment token")
        return attachment(data)

    # ------------------------------------------------------------ users.history.list

    def list_history(self, mailbox: Mailbox, params: dict, query: MultiDict) -> dict:
        start = _history_start(query.get("startHistoryId"))
        if self.config.history_expired or start < mailbox.history_floor(self.config.history_retention):
            raise errors.not_found()
        page_size = _page_size(query.get("maxResults"))
        fingerprint = search_fingerprint(mailbox.address, start, query.getall("historyTypes", []),
                                         query.get("labelId", ""))
        if query.get("pageToken"):
            start = max(start, int(decode_token(query["pageToken"], fingerprint)))
        added = [message for message in mailbox.added_after(start) if _history_wanted(message, query)]
        page = added[:page_size]
        answer: dict[str, Any] = {}
        if page:
            answer["history"] = [_history_record(mailbox, message) for message in page]
        if len(added) > page_size:
            answer["nextPageToken"] = encode_token(page[-1].history_id, fingerprint)
        answer["historyId"] = str(mailbox.history_id)
        return answer


# ---------------------------------------------------------------- helpers


def _match(verb: str, path: str) -> tuple[Route, dict[str, str]]:
    found_path = False
    for route in ROUTES:
        match = route.pattern.match(path)
        if match:
            found_path = True
            if route.verb == verb:
                return route, match.groupdict()
    if found_path:
        raise ApiError(403, "Request had insufficient authentication scopes.", "insufficientPermissions")
    raise errors.not_found(f"Method not found: {verb} {path}")


def _check_user(user_id: str, address: str) -> None:
    if user_id != "me" and user_id.lower() != address:
        raise errors.delegation_denied(user_id)


def _field_selection(fields: str) -> Selection | None:
    return parse_fields(fields) if fields.strip() else None


def _page_size(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_PAGE
    try:
        size = int(value)
    except ValueError:
        raise errors.invalid_argument(f"Invalid value for maxResults: {value}") from None
    return DEFAULT_PAGE if size <= 0 else min(size, MAX_PAGE)


def _first_older_than(found: list[StoredMessage], after_key: tuple) -> int:
    """Index of the first message (newest-first list) strictly older than ``after_key``."""
    for index, message in enumerate(found):
        if (message.internal_ms, message.history_id) < after_key:
            return index
    return len(found)


def _find_message(mailbox: Mailbox, message_id: str) -> StoredMessage:
    if not re.fullmatch(r"[0-9a-fA-F]{1,40}", message_id):
        raise errors.invalid_argument("Invalid id value")
    message = mailbox.messages.get(message_id.lower())
    if message is None:
        mailbox.refresh(force=True)  # it may have arrived since the last look at the folder
        message = mailbox.messages.get(message_id.lower())
    if message is None:
        raise errors.not_found()
    return message


def _history_start(value: str | None) -> int:
    if not value:
        raise errors.invalid_argument("Missing required parameter: startHistoryId")
    try:
        start = int(value)
    except ValueError:
        raise errors.invalid_argument(f"Invalid startHistoryId: {value}") from None
    if start < 0:
        raise errors.invalid_argument(f"Invalid startHistoryId: {value}")
    return start


def _history_wanted(message: StoredMessage, query: MultiDict) -> bool:
    types = query.getall("historyTypes", [])
    if types and "messageAdded" not in types:
        return False  # only additions happen in an emulated mailbox
    label = query.get("labelId")
    return not label or label.upper() in message.labels


def _history_record(mailbox: Mailbox, message: StoredMessage) -> dict:
    reference = message_reference(mailbox, message)
    return {"id": str(message.history_id), "messages": [reference],
            "messagesAdded": [{"message": {**reference, "labelIds": list(message.labels)}}]}


def _rfc3339(epoch_s: float) -> str:
    moment = dt.datetime.fromtimestamp(epoch_s, dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

