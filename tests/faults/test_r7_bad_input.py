"""R7 (end to end): a table of malformed and hostile ReceiptSyncs. Each one is either rejected by
`kubectl apply` with a message naming the field, or accepted and then Failed in status (InvalidSpec, or
GmailAuthError for unusable credentials) with a message naming the field — never run, never retried,
never a crash. Hostile `query` strings that are valid input run, but can only narrow the search: the
saved receipts stay within the resource's date range (checked against the ground truth).

One operator serves the whole table (module scope) so 40+ cases stay within seconds."""
from __future__ import annotations

import json
import time

import pytest

from faultkit import FAULT_MAILBOX, World, add
from receiptsync_common import contract as c

pytestmark = [pytest.mark.slow]

LONG = "x" * 513
HUGE = "receipt " * 20_000  # 160 kB


def spec(**changes):
    """The base spec with ``changes``; a value of ``...`` deletes the field."""
    body = {"businessId": "acme", "mode": "full", "fromDate": "2025-01-01", "toDate": "2025-06-30",
            "gmail": {"secretRef": {"name": "gmail"}}, "backoffLimit": 2, "timeout": "60s"}
    for key, value in changes.items():
        if value is ...:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def secret_ref(**ref):
    return {"secretRef": ref}


# (case id, spec, the field the error must name, where: "apply" | "status" | "either")
CASES = [
    # --- businessId: required, 1-64 of [A-Za-z0-9_-]; hostile values never reach SQL/labels/Redis keys
    ("business-missing", spec(businessId=...), "businessId", "apply"),
    ("business-empty", spec(businessId=""), "businessId", "apply"),
    ("business-too-long", spec(businessId="b" * 65), "businessId", "apply"),
    ("business-wrong-type", spec(businessId=42), "businessId", "apply"),
    ("business-sql-injection", spec(businessId="acme'; DROP TABLE receipts;--"), "businessId", "apply"),
    ("business-path-traversal", spec(businessId="../other-tenant"), "businessId", "apply"),
    ("business-redis-key", spec(businessId="acme:*"), "businessId", "apply"),
    ("business-newline", spec(businessId="acme\nphase: Finished"), "businessId", "apply"),
    ("business-unicode", spec(businessId="acmé"), "businessId", "apply"),
    # --- mode, dates
    ("mode-unknown", spec(mode="partial"), "mode", "apply"),
    ("from-slashes", spec(fromDate="2025/01/01"), "fromDate", "apply"),
    ("from-month-13", spec(fromDate="2025-13-01"), "fromDate", "apply"),
    ("to-word", spec(toDate="yesterday"), "toDate", "apply"),
    ("to-wrong-type", spec(toDate=20250101), "toDate", "apply"),
    ("range-reversed", spec(fromDate="2025-05-01", toDate="2025-04-01"), "fromDate", "apply"),
    ("from-feb-30", spec(fromDate="2025-02-30"), "fromDate", "either"),
    ("to-feb-29-non-leap", spec(fromDate="2023-01-01", toDate="2023-02-29"), "toDate", "either"),
    ("from-april-31", spec(fromDate="2025-04-31"), "fromDate", "either"),
    # --- numbers out of range / wrong type
    ("months-zero", spec(monthsBack=0), "monthsBack", "apply"),
    ("months-121", spec(monthsBack=121), "monthsBack", "apply"),
    ("months-string", spec(monthsBack="twelve"), "monthsBack", "apply"),
    ("max-zero", spec(maxMessages=0), "maxMessages", "apply"),
    ("max-negative", spec(maxMessages=-5), "maxMessages", "apply"),
    ("max-too-big", spec(maxMessages=100_001), "maxMessages", "apply"),
    ("max-float", spec(maxMessages=1.5), "maxMessages", "apply"),
    ("backoff-negative", spec(backoffLimit=-1), "backoffLimit", "apply"),
    ("backoff-11", spec(backoffLimit=11), "backoffLimit", "apply"),
    ("deadline-negative", spec(startingDeadlineSeconds=-1), "startingDeadlineSeconds", "apply"),
    ("history-limit-101", spec(successfulRunsHistoryLimit=101), "successfulRunsHistoryLimit", "apply"),
    ("suspend-string", spec(suspend="yes"), "suspend", "apply"),
    # --- strings
    ("query-513", spec(query=LONG), "query", "apply"),
    ("query-huge", spec(query=HUGE), "query", "apply"),
    ("query-wrong-type", spec(query=["from:a"]), "query", "apply"),
    ("priority-unknown", spec(priority="urgent"), "priority", "apply"),
    ("timeout-zero", spec(timeout="0s"), "timeout", "apply"),
    ("timeout-word", spec(timeout="forever"), "timeout", "apply"),
    ("timeout-days", spec(timeout="2d"), "timeout", "apply"),
    ("concurrency-unknown", spec(concurrencyPolicy="Sometimes"), "concurrencyPolicy", "apply"),
    # --- schedule and time zone
    ("cron-minute-61", spec(schedule="61 * * * *"), "schedule", "apply"),
    ("cron-three-fields", spec(schedule="* * *"), "schedule", "apply"),
    ("cron-every", spec(schedule="@every 5m"), "schedule", "apply"),
    ("cron-shell", spec(schedule="$(rm -rf /) * * * *"), "schedule", "apply"),
    ("tz-unknown", spec(timeZone="Mars/Olympus"), "timeZone", "either"),
    ("tz-traversal", spec(timeZone="../../etc/passwd"), "timeZone", "either"),
    ("tz-wrong-type", spec(timeZone=2), "timeZone", "apply"),
    # --- unknown fields
    ("unknown-spec-field", spec(workerImage="evil:latest"), "workerImage", "apply"),
    ("unknown-nested-field", spec(gmail={"secretRef": {"name": "gmail"}, "token": "abc"}), "token", "apply"),
    # --- credentials Secret
    ("gmail-missing", spec(gmail=...), "gmail", "either"),
    ("secret-name-empty", spec(gmail=secret_ref(name="")), "secretRef.name", "apply"),
    ("secret-name-invalid", spec(gmail=secret_ref(name="Bad_Name!")), "secretRef.name", "apply"),
    ("secret-name-with-namespace", spec(gmail=secret_ref(name="other-ns/gmail")), "secretRef.name", "apply"),
    ("secret-namespace-field", spec(gmail=secret_ref(name="gmail", namespace="kube-system")), "namespace", "apply"),
    ("secret-missing", spec(gmail=secret_ref(name="nope")), "spec.gmail.secretRef.name", "status"),
    ("secret-in-other-namespace", spec(gmail=secret_ref(name="gmail-elsewhere")), "spec.gmail.secretRef.name",
     "status"),
    ("secret-key-missing", spec(gmail=secret_ref(name="gmail", key="token.json")), "spec.gmail.secretRef.key",
     "status"),
    ("secret-key-empty", spec(gmail=secret_ref(name="gmail-empty")), "spec.gmail.secretRef.key", "status"),
    ("secret-not-json", spec(gmail=secret_ref(name="gmail-notjson")), "credentials", "status"),
    ("secret-no-refresh-token", spec(gmail=secret_ref(name="gmail-partial")), "refresh_token", "status"),
]

# Valid input that tries to escape its group in the Gmail query: it runs, and only narrows. What each
# must save, read from Gmail's rules on the sanitized group: "all" in-range receipts where the stray
# brackets are dropped and an OR with an always-true date term remains (after:2000/01/01, after:1);
# "none" where the unclosed quote makes the rest one phrase no message contains.
HOSTILE_QUERIES = [
    ("query-or-escape", ") OR (after:2000/01/01", "all"),
    ("query-unbalanced", '"receipt OR before:2030/01/01 (((', "none"),
    ("query-control-chars", "receipt\u0000\n) OR {after:1", "all"),
]


@pytest.fixture(scope="module")
def table_world(fault_sandbox, mailboxes, tmp_path_factory):
    w = World(fault_sandbox, tmp_path_factory.mktemp("r7"), mailboxes)
    w.start_operator()
    creds = w.credentials(FAULT_MAILBOX)
    w.apply(w.secret("gmail", FAULT_MAILBOX),
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gmail-empty"},
             "stringData": {c.DEFAULT_CREDENTIALS_KEY: ""}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gmail-notjson"},
             "stringData": {c.DEFAULT_CREDENTIALS_KEY: "client_secret=" + creds["client_secret"]}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gmail-partial"},
             "stringData": {c.DEFAULT_CREDENTIALS_KEY: json.dumps({**creds, "refresh_token": ""})}})
    # The "other namespace" Secret exists, but not where the ReceiptSync is.
    other = f"{w.ns}-other"
    fault_sandbox.kubectl("create", "namespace", other)
    fault_sandbox.apply({**w.secret("gmail-elsewhere", FAULT_MAILBOX)}, namespace=other)
    try:
        yield w
    finally:
        w.close()
        fault_sandbox.kubectl("delete", "namespace", other, "--wait=false", check=False)


def _object(name: str, body: dict) -> dict:
    return {"apiVersion": c.API_VERSION, "kind": c.KIND, "metadata": {"name": name}, "spec": body}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case,body,field,where", CASES, ids=[case[0] for case in CASES])
def test_bad_receiptsync_is_rejected_naming_the_field(table_world, report, case, body, field, where):
    w = table_world
    result = w.apply(_object(case, body), check=False)
    add(report, "R7", faults_injected=1)
    if result.returncode != 0:
        assert where in ("apply", "either"), f"{case}: rejected at apply, expected in status: {result.stderr}"
        assert field in result.stderr, f"{case}: the apply error does not name {field}: {result.stderr[:600]}"
        assert w.get(c.PLURAL, case) is None
        add(report, "R7", rejected_at_apply=1)
        return
    assert where in ("status", "either"), f"{case}: accepted by kubectl apply, expected a rejection naming {field}"
    failed = w.wait_phase(case, c.PHASE_FAILED, timeout=40)
    # Also Kubernetes' own refusals: a Secret or key the pod cannot mount (the operator reads no
    # Secret), a Job the API server refuses.
    assert failed["reason"] in (c.REASON_INVALID_SPEC, c.REASON_GMAIL_AUTH_ERROR, c.REASON_WORKER_CONFIG_ERROR,
                                c.REASON_WORKER_JOB_REJECTED), failed
    assert field in failed["message"], f"{case}: status message does not name {field}: {failed['message']}"
    assert failed.get("attempt", 0) <= 1, failed  # never retried
    # No retry loop: nothing changes any more.
    version = w.get(c.PLURAL, case)["metadata"]["resourceVersion"]
    time.sleep(1.2)
    assert w.get(c.PLURAL, case)["metadata"]["resourceVersion"] == version
    assert w.rows("SELECT count(*) FROM receipts WHERE business_id = %s", body["businessId"])[0][0] == 0 \
        or case.startswith("business")
    add(report, "R7", failed_in_status=1, runs=1)


@pytest.mark.timeout(90)
def test_hostile_queries_only_narrow_the_search(table_world, report, mailboxes):
    w = table_world
    first, last = "2025-03-01", "2025-04-30"
    names = []
    for index, (case, query, _) in enumerate(HOSTILE_QUERIES):
        business = f"{w.ns}-q{index}"
        names.append((case, business))
        body = spec(businessId=business, query=query, fromDate=first, toDate=last)
        result = w.apply(_object(case, body), check=False)
        assert result.returncode == 0, f"{case}: a valid query string was refused: {result.stderr}"
    in_range = {m.message_id for m in mailboxes[FAULT_MAILBOX].receipts_between(first, last)}
    assert in_range, "no receipt in the range: the checks below would prove nothing"
    for (case, business), (_, _, want) in zip(names, HOSTILE_QUERIES):
        done = w.wait_terminal(case, timeout=60)
        assert done["phase"] == c.PHASE_FINISHED, (case, done)
        saved = {r[0] for r in w.rows("SELECT gmail_message_id FROM receipts WHERE business_id = %s", business)}
        assert saved <= in_range, f"{case}: {len(saved - in_range)} receipts outside {first}..{last} were saved"
        expected = in_range if want == "all" else set()
        assert saved == expected, f"{case}: saved {len(saved)} receipts, expected {len(expected)} ({want})"
        add(report, "R7", faults_injected=1, runs=1, receipts_checked=len(saved))
    # Every worker logged the query it sent? Not required; the range check above is the proof.
