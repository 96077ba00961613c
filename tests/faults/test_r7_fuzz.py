"""R7 (property-based): hypothesis fuzzes the operator's validation and payload building and the
worker's Gmail query builder, from the spec all the way to the Gmail search the emulator evaluates.

* validate(spec, secret) and build_payload(...) never let anything but InvalidSpec escape, and an
  InvalidSpec always names a field (``spec.<field>``), for any schema-typed hostile value and any
  Secret shape;
* whatever `spec.query` holds, the query the worker sends keeps the receipt group and the date bounds
  at top level with the user's terms in one balanced group, and Gmail's own search rules (the
  emulator's parser) never match a message outside the range or without a receipt term.
"""
from __future__ import annotations

import base64
import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faultkit import add
from receiptsync_common.jobspec import JobPayload
from receiptsync_operator import runs, validation
from receiptsync_sandbox.gmail import query as gmail_search
from receiptsync_sandbox.testing import bracket_depths
from receiptsync_worker import plan
from receiptsync_worker import query as worker_query

pytestmark = [pytest.mark.timeout(120)]

NOW = dt.datetime(2025, 6, 15, 12, 0, tzinfo=dt.timezone.utc)
META = {"namespace": "tenant", "name": "fuzz", "uid": "0f0e0d0c-0000-4000-8000-000000000000"}

# Hostile strings: control characters, quotes, brackets, Gmail operators, SQL, path traversal, Hebrew, huge.
HOSTILE = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["", " ", "2025-02-30", "2024-02-29", "2023-02-29", "0000-00-00", "9999-12-31", "2025-1-1",
                     "../../etc/passwd", "UTC", "Asia/Jerusalem", "Etc/GMT+14", "Mars/Olympus", "posix/../UTC",
                     "'; DROP TABLE receipts;--", "${jndi:ldap://x}", "$(id)", "\x00", "קבלה", "1h", "0s", "90s",
                     "1.5h", "1e9h", "99999999999999999999h", "-1s", "0.0001s", "h", "full", "incremental",
                     "high", "low", "default", ") OR (", '"', "{", "}", "x" * 600]),
    st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}\Z"),
    st.from_regex(r"\A([0-9]{1,4}(\.[0-9]{1,3})?[hms]){1,3}\Z"),
)
SECRETS = st.one_of(
    st.none(),
    st.fixed_dictionaries({}, optional={
        "data": st.dictionaries(st.sampled_from(["credentials.json", "token.json", "x"]),
                                st.one_of(st.text(max_size=20), st.binary(max_size=20).map(
                                    lambda b: base64.b64encode(b).decode())), max_size=3),
        "stringData": st.dictionaries(st.sampled_from(["credentials.json", "y"]), st.text(max_size=20), max_size=2),
    }),
)


def gmail_values():
    ref = st.fixed_dictionaries({}, optional={"name": HOSTILE, "key": HOSTILE})
    return st.one_of(st.none(), st.fixed_dictionaries({}, optional={"secretRef": st.one_of(st.none(), ref)}))


# What the schema lets through: right types, any content a user can type.
TYPED_SPECS = st.fixed_dictionaries({"businessId": HOSTILE}, optional={
    "mode": HOSTILE, "fromDate": HOSTILE, "toDate": HOSTILE, "monthsBack": st.integers(-5, 200),
    "maxMessages": st.integers(-5, 200_000), "query": HOSTILE, "gmail": gmail_values(), "priority": HOSTILE,
    "timeout": HOSTILE, "backoffLimit": st.integers(-1, 12), "timeZone": HOSTILE, "schedule": HOSTILE,
})

def _check(spec, secret) -> str:
    """'ok' or 'invalid'; anything but InvalidSpec escaping fails the property."""
    try:
        validation.validate(spec, secret)
        payload = runs.build_payload(META, spec, run_id=1, attempt=1, now=NOW)
    except validation.InvalidSpec as exc:
        text = str(exc)
        assert text.startswith("spec."), f"InvalidSpec without a field name: {text!r}"
        assert "\n" not in text.rstrip()
        return "invalid"
    # A payload that validated must survive Redis (JSON) and give the worker a usable window.
    again = JobPayload.from_json(payload.to_json())
    assert again == payload
    window = plan.date_window(again, NOW, None)
    assert window.first <= window.last and window.after_epoch < window.before_epoch
    return "ok"


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TYPED_SPECS, SECRETS)
def test_validation_never_lets_an_exception_escape(report, spec, secret):
    add(report, "R7", fuzz_cases=1)  # counted as run, so the report says what hypothesis really tried
    _check(spec, secret)


# --- the Gmail query, spec to search -----------------------------------------------------------------
PIECES = st.sampled_from(["(", ")", "{", "}", '"', "-", "|", "OR", "AND", "receipt", "קבלה", "after:1", "before:1",
                          "after:2000/01/01", "before:2100/01/01", "older_than:1d", "newer_than:99y", "in:anywhere",
                          "is:unread", "-after:", "\\", "\x00", "\n", "\u202e", " ", "*", ":", "'"])
USER_QUERIES = st.one_of(st.text(max_size=120), st.lists(PIECES, max_size=30).map("".join),
                         st.lists(PIECES, max_size=30).map(" ".join))


def _balanced_group(text: str) -> bool:
    """``text`` is one bracketed group whose brackets balance outside quotes, with an even number of quotes."""
    if not (text.startswith("(") and text.endswith(")")) or text.count('"') % 2:
        return False
    depths = bracket_depths(text)
    # Open from the first character to the last, which closes it: nothing escapes the group early.
    return min(depths[:-1]) > 0 and depths[-1] == 0


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(USER_QUERIES, st.sampled_from(["UTC", "Asia/Jerusalem", "America/Los_Angeles", "Pacific/Kiritimati"]))
def test_spec_query_reaches_gmail_only_inside_its_group(report, user_query, zone):
    add(report, "R7", fuzz_cases=1)
    spec = {"businessId": "acme", "mode": "full", "fromDate": "2025-03-01", "toDate": "2025-03-31",
            "timeZone": zone, "query": user_query, "gmail": {"secretRef": {"name": "g"}}}
    payload = JobPayload.from_json(runs.build_payload(META, spec, run_id=1, attempt=1, now=NOW).to_json())
    window = plan.date_window(payload, NOW, None)
    q = plan.search_query(payload, window)

    head = f"{worker_query.RECEIPT_GROUP} after:{window.after_epoch} before:{window.before_epoch}"
    assert q == head or q.startswith(head + " ("), q
    user_part = q[len(head):].strip()
    if user_part:
        assert _balanced_group(user_part), f"user terms escape their group: {user_part!r}"
    assert not any(ord(ch) < 32 or ch in "\u202e\u2028\u2029" for ch in q), repr(q)

    # Gmail's rules (the emulator's parser): never a parse error, never a match outside the range or
    # without a receipt term, whatever the user typed.
    node = gmail_search.compile_query(q)
    words = "receipt invoice קבלה " + user_query
    for outside in (window.after_epoch - 1, window.before_epoch, window.before_epoch + 86400 * 400, 0):
        doc = gmail_search.SearchDoc.build(internal_ms=outside * 1000, subject=words, body=words)
        assert not node.matches(doc), (q, outside)
    inside = (window.after_epoch + 3600) * 1000
    assert not node.matches(gmail_search.SearchDoc.build(internal_ms=inside, subject="lunch", body="see you"))

