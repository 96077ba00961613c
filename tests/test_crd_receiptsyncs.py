"""The ReceiptSync CRD file itself: names, columns, defaults and documentation per CONTRACT section 1."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from receiptsync_common import contract

CRD_PATH = Path(__file__).resolve().parent.parent / "manifests" / "crds" / "receiptsyncs.yaml"


@pytest.fixture(scope="module")
def crd() -> dict:
    return yaml.safe_load(CRD_PATH.read_text())


@pytest.fixture(scope="module")
def version(crd) -> dict:
    (only,) = crd["spec"]["versions"]
    return only


def test_names_match_the_contract(crd):
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{contract.PLURAL}.{contract.GROUP}"
    assert spec["group"] == contract.GROUP
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == contract.KIND
    assert spec["names"]["plural"] == contract.PLURAL
    assert spec["names"]["singular"] == contract.SINGULAR
    assert spec["names"]["shortNames"] == [contract.SHORT_NAME]


def test_one_served_storage_version_with_status_subresource(version):
    assert version["name"] == contract.VERSION
    assert version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}


def test_printer_columns_in_contract_order(version):
    columns = version["additionalPrinterColumns"]
    headers = [c["name"].upper() for c in columns if not c.get("priority")]
    wide = [c["name"].upper() for c in columns if c.get("priority")]
    assert headers == ["BUSINESS", "MODE", "PHASE", "SCANNED", "SAVED", "AGE"]
    assert wide == ["SCHEDULE", "LAST-SYNC", "NEXT"]
    by_name = {c["name"].upper(): c for c in columns}
    assert by_name["SCANNED"] == {**by_name["SCANNED"], "type": "integer",
                                  "jsonPath": ".status.progress.messagesScanned"}
    assert by_name["SAVED"]["jsonPath"] == ".status.progress.savedReceipts"
    assert by_name["AGE"]["type"] == "date" and by_name["AGE"]["jsonPath"] == ".metadata.creationTimestamp"
    assert by_name["NEXT"]["jsonPath"] == ".status.nextScheduleTime"
    # kubectl renders a future time in a date column as "<invalid>", so NEXT shows the timestamp.
    assert by_name["NEXT"]["type"] == "string"
    # Wide columns come after AGE so `kubectl get -o wide` keeps the narrow columns first.
    assert [c["name"] for c in columns].index("Age") < [c["name"] for c in columns].index("Schedule")


def _walk(node: dict, path: str):
    yield path, node
    for key, child in (node.get("properties") or {}).items():
        yield from _walk(child, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")


def test_every_spec_and_status_field_is_documented(version):
    root = version["schema"]["openAPIV3Schema"]
    undocumented = [
        path for top in ("spec", "status") for path, node in _walk(root["properties"][top], top)
        if not node.get("description")
    ]
    assert undocumented == []


def test_spec_never_preserves_unknown_fields(version):
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert not any(node.get("x-kubernetes-preserve-unknown-fields") for _, node in _walk(spec, "spec"))


def test_status_has_every_contract_field(version):
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    expected = {
        "phase", "reason", "message", "jobId", "workerJob", "attempt", "runId", "enqueuedAt", "startedAt",
        "finishedAt", "lastHeartbeatTime", "progress", "dateRange", "lastScheduleTime", "nextScheduleTime",
        "runs", "conditions", "observedGeneration",
    }
    assert expected <= set(status)
    assert status["phase"]["enum"] == list(contract.PHASES)
    assert set(status["progress"]["properties"]) == {"messagesScanned", "savedReceipts"}
    assert set(status["dateRange"]["properties"]) == {"from", "to"}
    assert {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"} <= set(
        status["conditions"]["items"]["properties"])
    assert {"runId", "phase", "reason", "message", "startTime", "messagesScanned", "savedReceipts", "attempt"} <= set(
        status["runs"]["items"]["properties"])


def test_spec_enums_match_the_contract(version):
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert spec["mode"]["enum"] == [contract.MODE_INCREMENTAL, contract.MODE_FULL]
    assert spec["priority"]["enum"] == list(contract.PRIORITIES)
    assert spec["concurrencyPolicy"]["enum"] == ["Forbid", "Replace", "Allow"]
    assert spec["gmail"]["properties"]["secretRef"]["properties"]["key"]["default"] == contract.DEFAULT_CREDENTIALS_KEY


def test_chart_ships_the_same_crd(crd):
    copies = sorted(CRD_PATH.parents[2].glob("charts/*/crds/*.yaml"))
    assert copies, "the chart ships no crds/"
    shipped = [yaml.safe_load(p.read_text()) for p in copies]
    assert crd in shipped
