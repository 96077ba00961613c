"""docs/argocd-health.lua, the Argo CD health check for ReceiptSync, run in a real Lua 5.1 (what
Argo CD's gopher-lua speaks) through lupa, against statuses made by the operator's own pure status
functions — so the check and the operator cannot drift apart. docs/gitops.md must embed the same
script."""
from __future__ import annotations

import copy
import datetime as dt
import re
from pathlib import Path

import pytest
import yaml
# Lua 5.1, what Argo CD speaks (lupa >= 2.0 ships it; pinned in requirements-dev.lock). A plain import: a
# missing Lua fails these tests instead of skipping them.
from lupa import lua51 as lupa_runtime

from receiptsync_common import contract

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "argocd-health.lua"
GITOPS = ROOT / "docs" / "gitops.md"
ARGOCD_KEY = "resource.customizations.health.receipts.prosaas.pro_ReceiptSync"

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
ONE_OFF = {"businessId": "demo-business", "mode": "full", "gmail": {"secretRef": {"name": "gmail-demo"}}}
HOURLY = {**ONE_OFF, "mode": "incremental", "schedule": "0 * * * *"}


# --- running the script ---------------------------------------------------------------------------
def health(obj: dict) -> tuple[str, str]:
    lua = lupa_runtime.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    hs = lua.execute(SCRIPT.read_text())
    return hs["status"], hs["message"]


def resource(spec: dict, status: dict | None = None, generation: int = 1) -> dict:
    obj = {
        "apiVersion": contract.API_VERSION, "kind": contract.KIND,
        "metadata": {"name": "demo", "namespace": "tenant", "generation": generation},
        "spec": copy.deepcopy(spec),
    }
    if status is not None:
        obj["status"] = status
    return obj


# --- statuses, from the operator's own functions ------------------------------------------------------
# Plain imports: a broken operator module must fail this test, never skip it.
import receiptsync_operator.status as st  # noqa: E402
from receiptsync_operator.status import apply as merge  # noqa: E402  the operator's own merge-patch view


def queued(spec=ONE_OFF, generation=1) -> dict:
    return merge({}, st.queued({}, run_id=1, job_id="tenant.demo.abcdef12.r1.a1", now=NOW, generation=generation,
                               date_range=("2025-03-01", "2026-03-01"), run_now=None, trigger="spec", spec=spec))


def heartbeat(status: dict, phase: str, spec=ONE_OFF, **fields) -> dict:
    hb = {contract.HB_JOB_ID: status["jobId"], contract.HB_PHASE: phase, contract.HB_TIME: "2026-03-01T12:00:05Z",
          contract.HB_SCANNED: "150", contract.HB_SAVED: "30", **fields}
    update = st.from_heartbeat(status, spec, hb, NOW)
    return merge(status, update.patch)


def started(spec=ONE_OFF) -> dict:
    return heartbeat(queued(spec), contract.PHASE_STARTED, spec)


def finished(spec=ONE_OFF) -> dict:
    return heartbeat(started(spec), contract.PHASE_FINISHED, spec)


def failed(reason=contract.REASON_GMAIL_AUTH_ERROR, spec=ONE_OFF) -> dict:
    status = started(spec)
    return merge(status, st.failed(status, reason=reason, message="Gmail access was revoked", now=NOW, spec=spec))


# --- the cases -----------------------------------------------------------------------------------------
def test_the_runtime_is_lua_5_1():
    version = lupa_runtime.LuaRuntime().eval("_VERSION")
    assert version == "Lua 5.1", version


def test_no_status_yet_is_progressing():
    status, message = health(resource(ONE_OFF))
    assert status == "Progressing" and "operator" in message


def test_queued_is_progressing_with_the_reason():
    status, message = health(resource(ONE_OFF, queued()))
    assert status == "Progressing"
    assert message.startswith(f"{contract.REASON_WAITING_FOR_WORKER}: Run 1 is queued")


def test_pending_is_progressing():
    status, _ = health(resource(ONE_OFF, {"phase": contract.PHASE_PENDING}))
    assert status == "Progressing"


def test_started_is_progressing():
    status, message = health(resource(ONE_OFF, started()))
    assert status == "Progressing" and message.startswith(contract.REASON_SYNCING)


def test_finished_is_healthy_with_the_operator_message():
    sync = finished()
    assert st.condition_status(sync, contract.CONDITION_COMPLETE) == "True"
    status, message = health(resource(ONE_OFF, sync))
    assert status == "Healthy"
    assert message == f"{sync['reason']}: {sync['message']}"


@pytest.mark.parametrize("reason", [contract.REASON_GMAIL_AUTH_ERROR, contract.REASON_BACKOFF_LIMIT_EXCEEDED,
                                    contract.REASON_TIMEOUT])
def test_failed_is_degraded(reason):
    sync = failed(reason)
    assert st.condition_status(sync, contract.CONDITION_FAILED) == "True"
    status, message = health(resource(ONE_OFF, sync))
    assert status == "Degraded" and message == f"{reason}: Gmail access was revoked"


def test_invalid_spec_is_degraded():
    sync = merge({}, st.invalid_spec({}, message="fromDate is after toDate", run_id=1, now=NOW, generation=1,
                                     run_now=None, trigger="spec", spec=ONE_OFF))
    status, message = health(resource(ONE_OFF, sync))
    assert status == "Degraded" and message == f"{contract.REASON_INVALID_SPEC}: fromDate is after toDate"


def test_a_retry_is_progressing_not_degraded():
    status0 = started()
    sync = merge(status0, st.retrying(status0, reason=contract.REASON_WORKER_LOST, detail="no heartbeat for 45s",
                                      next_attempt=2, max_attempts=4, job_id="tenant.demo.abcdef12.r1.a2",
                                      now=NOW, spec=ONE_OFF))
    status, message = health(resource(ONE_OFF, sync))
    assert status == "Progressing" and message.startswith(contract.REASON_WORKER_LOST)
    assert "attempt 2 of 4" in message


def test_an_edited_one_off_is_progressing_until_its_new_run():
    status, message = health(resource(ONE_OFF, finished(), generation=2))
    assert status == "Progressing" and "generation 2" in message


def test_scheduled_waiting_for_its_first_tick_is_healthy():
    status, message = health(resource(HOURLY, {"nextScheduleTime": "2026-03-01T13:00:00Z"}))
    assert status == "Healthy" and "2026-03-01T13:00:00Z" in message


def test_scheduled_finished_is_healthy_and_tells_the_next_run():
    sync = {**finished(HOURLY), "nextScheduleTime": "2026-03-01T13:00:00Z"}
    # A schedule's generation may be ahead of its last run's: that is not "progressing".
    status, message = health(resource(HOURLY, sync, generation=5))
    assert status == "Healthy" and message.endswith("; next run at 2026-03-01T13:00:00Z")


def test_scheduled_running_is_progressing():
    status, _ = health(resource(HOURLY, started(HOURLY)))
    assert status == "Progressing"


def test_suspended_schedule():
    suspended = {**HOURLY, "suspend": True}
    assert health(resource(suspended))[0] == "Suspended"
    status, message = health(resource(suspended, finished(suspended)))
    assert status == "Suspended" and "suspended" in message
    # A failure still shows, suspended or not; so does a run still going.
    assert health(resource(suspended, failed(spec=suspended)))[0] == "Degraded"
    assert health(resource(suspended, started(suspended)))[0] == "Progressing"


# --- the docs carry the same script ---------------------------------------------------------------------
def test_gitops_doc_embeds_the_script():
    text = GITOPS.read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    configmaps = [doc for block in blocks for doc in yaml.safe_load_all(block)
                  if isinstance(doc, dict) and ARGOCD_KEY in (doc.get("data") or {})]
    assert configmaps, f"docs/gitops.md has no argocd-cm snippet with {ARGOCD_KEY}"
    assert configmaps[0]["data"][ARGOCD_KEY].strip() == SCRIPT.read_text().strip()
