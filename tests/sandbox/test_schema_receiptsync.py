"""admit() over the real ReceiptSync CRD: defaults, every rule, and messages that name the field."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from receiptsync_sandbox.apiserver import schema

CRD_PATH = Path(__file__).resolve().parents[2] / "manifests" / "crds" / "receiptsyncs.yaml"
CRD = yaml.safe_load(CRD_PATH.read_text())
COMPILED = schema.compile_schema(CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def resource(**spec) -> dict:
    return {
        "apiVersion": "receipts.prosaas.pro/v1alpha1",
        "kind": "ReceiptSync",
        "metadata": {"name": "acme-sync", "namespace": "default"},
        "spec": {"businessId": "acme", **spec},
    }


def admit(obj, old=None, **kwargs):
    return schema.admit(COMPILED, obj, old, **kwargs)


def lines(errors) -> list[str]:
    return [e.line() for e in errors]


def only_error(obj, **kwargs) -> schema.FieldError:
    _, errors, _ = admit(obj, **kwargs)
    assert len(errors) == 1, lines(errors)
    return errors[0]


def test_minimal_spec_gets_every_default():
    stored, errors, warnings = admit(resource(gmail={"secretRef": {"name": "acme-gmail"}}))
    assert errors == [] and warnings == []
    assert stored["spec"] == {
        "businessId": "acme",
        "mode": "incremental",
        "monthsBack": 12,
        "maxMessages": 5000,
        "priority": "default",
        "timeout": "1h",
        "backoffLimit": 3,
        "concurrencyPolicy": "Forbid",
        "suspend": False,
        "successfulRunsHistoryLimit": 3,
        "failedRunsHistoryLimit": 1,
        "gmail": {"secretRef": {"name": "acme-gmail", "key": "credentials.json"}},
    }
    assert stored["metadata"] == {"name": "acme-sync", "namespace": "default"}


def test_given_values_are_kept_and_absent_objects_not_invented():
    given = dict(mode="full", monthsBack=3, maxMessages=10, priority="high", timeout="90s", backoffLimit=0,
                 concurrencyPolicy="Allow", suspend=True, successfulRunsHistoryLimit=0, failedRunsHistoryLimit=5,
                 fromDate="2025-01-01", toDate="2025-01-31", query="from:shop", schedule="@daily",
                 timeZone="Europe/Berlin", startingDeadlineSeconds=0)
    stored, errors, _ = admit(resource(**given))
    assert errors == []
    assert stored["spec"] == {"businessId": "acme", **given}  # no gmail object appears from nowhere


def test_input_object_is_not_mutated():
    obj = resource(extra=1)
    before = copy.deepcopy(obj)
    admit(obj, field_validation="Ignore")
    assert obj == before


def test_reversed_dates_name_both_fields():
    error = only_error(resource(fromDate="2025-05-01", toDate="2025-04-01"))
    assert error.field == "spec.fromDate"
    assert error.reason == "FieldValueInvalid"
    assert "spec.fromDate (2025-05-01)" in error.message and "spec.toDate (2025-04-01)" in error.message
    status = schema.invalid_status("ReceiptSync", "receipts.prosaas.pro", "acme-sync", [error])
    assert status["code"] == 422 and status["reason"] == "Invalid"
    assert status["message"].startswith('ReceiptSync.receipts.prosaas.pro "acme-sync" is invalid: spec.fromDate: ')
    assert "spec.toDate" in status["message"]
    assert status["details"]["causes"] == [{"reason": "FieldValueInvalid", "message": error.message, "field": "spec.fromDate"}]


def test_equal_dates_and_a_single_date_are_fine():
    assert admit(resource(fromDate="2025-04-01", toDate="2025-04-01"))[1] == []
    assert admit(resource(fromDate="2025-04-01"))[1] == []
    assert admit(resource(toDate="2025-04-01"))[1] == []


def test_calendar_invalid_date_passes_the_schema():
    # The pattern checks the shape only; 2025-02-30 is rejected by the operator (status InvalidSpec),
    # as a real kube-apiserver with this CRD would accept it too.
    assert admit(resource(fromDate="2025-02-30"))[1] == []


@pytest.mark.parametrize("bad", ["2025/01/01", "2025-1-01", "2025-13-01", "2025-01-32", "25-01-01", "2025-01-01T00:00:00Z"])
def test_date_shape_is_checked(bad):
    _, errors, _ = admit(resource(toDate=bad))
    assert {e.field for e in errors} == {"spec.toDate"}
    assert any("spec.toDate in body should match" in e.message for e in errors)


@pytest.mark.parametrize("schedule", ["0 3 * * *", "*/15 * * * *", "0 0 1,15 * MON-FRI", "30 2 ? jan sun", "@hourly",
                                      "@daily", "@weekly", "@monthly", "@yearly", "@annually", "5-10/2 0-23 1-31 1-12 0-7"])
def test_valid_schedules(schedule):
    assert admit(resource(schedule=schedule))[1] == []


@pytest.mark.parametrize("schedule", ["", "bogus", "* * * *", "0 3 * * * *", "60 * * * *", "0 24 * * *", "0 0 0 * *",
                                      "0 0 * 13 *", "0 0 * * 8", "@every 5m", "@reboot", " 0 3 * * *"])
def test_invalid_schedules_are_rejected_with_a_readable_message(schedule):
    error = only_error(resource(schedule=schedule))
    assert error.field == "spec.schedule"
    assert "spec.schedule must be a 5-field cron expression" in error.message
    assert "@hourly" in error.message


@pytest.mark.parametrize("timeout", ["90s", "30m", "1h", "1h30m", "1.5h"])
def test_valid_timeouts(timeout):
    assert admit(resource(timeout=timeout))[1] == []


def test_zero_timeout_is_rejected_by_the_rule():
    error = only_error(resource(timeout="0s"))
    assert error.field == "spec.timeout"
    assert "spec.timeout must be longer than zero" in error.message


@pytest.mark.parametrize("timeout", ["1d", "10", "-5m", "1 h", "forever"])
def test_badly_shaped_timeout_fails_the_pattern_only(timeout):
    error = only_error(resource(timeout=timeout))
    assert error.field == "spec.timeout" and "should match" in error.message


@pytest.mark.parametrize("business", ["", "a" * 65, "acme corp", "acme/1", "ä"])
def test_business_id_shape(business):
    _, errors, _ = admit(resource(businessId=business))
    assert errors and all(e.field == "spec.businessId" for e in errors), lines(errors)


def test_business_id_is_required():
    obj = resource()
    del obj["spec"]["businessId"]
    error = only_error(obj)
    assert (error.field, error.reason, error.message) == ("spec.businessId", "FieldValueRequired", "Required value")


def test_spec_is_required():
    obj = resource()
    del obj["spec"]
    assert only_error(obj).field == "spec"


def test_query_longer_than_512_is_too_long():
    assert admit(resource(query="x" * 512))[1] == []
    error = only_error(resource(query="x" * 513))
    assert (error.field, error.reason) == ("spec.query", "FieldValueTooLong")
    assert "may not be more than 512" in error.message


def test_huge_strings_are_rejected_not_choked_on():
    huge = "9" * 1_000_000
    _, errors, _ = admit(resource(businessId=huge, query=huge, schedule=huge, timeout=huge, fromDate=huge))
    fields = {e.field for e in errors}
    assert {"spec.businessId", "spec.query", "spec.schedule", "spec.timeout", "spec.fromDate"} <= fields
    assert all(len(e.message) < 1000 for e in errors)  # values are cut in messages


@pytest.mark.parametrize("field,value,words", [
    ("monthsBack", 0, "greater than or equal to 1"),
    ("monthsBack", 121, "less than or equal to 120"),
    ("maxMessages", 0, "greater than or equal to 1"),
    ("maxMessages", 100001, "less than or equal to 100000"),
    ("backoffLimit", 11, "less than or equal to 10"),
    ("backoffLimit", -1, "greater than or equal to 0"),
    ("startingDeadlineSeconds", -1, "greater than or equal to 0"),
])
def test_numeric_bounds(field, value, words):
    error = only_error(resource(**{field: value}))
    assert error.field == f"spec.{field}"
    assert words in error.message


@pytest.mark.parametrize("field,value", [("mode", "fast"), ("priority", "urgent"), ("concurrencyPolicy", "forbid")])
def test_enums_list_the_supported_values(field, value):
    _, errors, _ = admit(resource(**{field: value}))
    assert errors[0].field == f"spec.{field}" and errors[0].reason == "FieldValueNotSupported"
    assert f'Unsupported value: "{value}": supported values:' in errors[0].message


@pytest.mark.parametrize("field,value,expected", [
    ("monthsBack", "12", "integer"), ("suspend", "yes", "boolean"), ("businessId", 42, "string"),
    ("gmail", "secret", "object"), ("maxMessages", 1.5, "integer"),
])
def test_wrong_types_are_type_errors_and_block_rules(field, value, expected):
    _, errors, _ = admit(resource(**{field: value}, fromDate="2025-05-01", toDate="2025-04-01"))
    assert errors[0].field == f"spec.{field}" and errors[0].reason == "FieldValueTypeInvalid"
    assert f"must be of type {expected}" in errors[0].message
    # As in kube-apiserver, CEL rules are not run on an object with type errors, and it says so.
    assert "some validation rules were not checked" in errors[-1].message
    assert not any(e.field == "spec.fromDate" for e in errors)


def test_integral_float_counts_as_integer():
    assert admit(resource(monthsBack=6.0))[1] == []


def test_unknown_fields_strict_warn_ignore():
    obj = resource(foo=1, gmail={"secretRef": {"name": "s", "nmae": "typo"}})
    obj["bogus"] = True
    stored, errors, warnings = admit(obj)
    assert sorted(e.field for e in errors) == ["bogus", "spec.foo", "spec.gmail.secretRef.nmae"]
    assert all(e.reason == "FieldValueUnknown" for e in errors)
    assert 'unknown field "spec.foo"' in lines(errors)
    stored, errors, warnings = admit(obj, field_validation="Warn")
    assert errors == []
    assert sorted(warnings) == ['unknown field "bogus"', 'unknown field "spec.foo"', 'unknown field "spec.gmail.secretRef.nmae"']
    assert "foo" not in stored["spec"] and "bogus" not in stored
    assert stored["spec"]["gmail"]["secretRef"] == {"name": "s", "key": "credentials.json"}
    stored, errors, warnings = admit(obj, field_validation="Ignore")
    assert errors == [] and warnings == [] and "foo" not in stored["spec"]


def test_unknown_metadata_fields_are_pruned_but_object_meta_kept():
    obj = resource()
    obj["metadata"].update({"labels": {"a": "b"}, "annotations": {"receipts.prosaas.pro/run-now": "1"},
                            "finalizers": ["x"], "ownerReferences": [], "whatever": 1})
    stored, errors, warnings = admit(obj, field_validation="Warn")
    assert errors == [] and warnings == ['unknown field "metadata.whatever"']
    assert stored["metadata"] == {k: v for k, v in obj["metadata"].items() if k != "whatever"}


def test_null_fields_are_defaulted_or_dropped():
    stored, errors, _ = admit(resource(mode=None, query=None))
    assert errors == []
    assert stored["spec"]["mode"] == "incremental"
    assert "query" not in stored["spec"]


def test_secret_ref_name_required_and_shaped():
    error = only_error(resource(gmail={"secretRef": {}}))
    assert (error.field, error.reason) == ("spec.gmail.secretRef.name", "FieldValueRequired")
    error = only_error(resource(gmail={"secretRef": {"name": "Not_A_Name"}}))
    assert error.field == "spec.gmail.secretRef.name"


def test_several_errors_are_all_reported_in_one_status():
    _, errors, _ = admit(resource(monthsBack=0, query="x" * 600, schedule="nope"))
    assert {e.field for e in errors} == {"spec.monthsBack", "spec.query", "spec.schedule"}
    status = schema.invalid_status("ReceiptSync", "receipts.prosaas.pro", "acme-sync", errors)
    message = status["message"]
    assert message.startswith('ReceiptSync.receipts.prosaas.pro "acme-sync" is invalid: [')
    assert all(field in message for field in ("spec.monthsBack", "spec.query", "spec.schedule"))
    assert len(status["details"]["causes"]) == 3


# --- updates, status -----------------------------------------------------------------------------


def _stored(obj):
    stored, errors, _ = admit(obj)
    assert errors == []
    return stored


def test_status_write_validates_status_only():
    old = _stored(resource())
    new = copy.deepcopy(old)
    new["status"] = {"phase": "Started", "progress": {"messagesScanned": 5, "savedReceipts": 2},
                     "startedAt": "2025-05-01T10:00:00Z", "conditions": [{"type": "Complete", "status": "False"}]}
    stored, errors, _ = admit(new, old, subresource="status")
    assert errors == [] and stored["status"]["progress"]["savedReceipts"] == 2
    new["status"]["phase"] = "Running"
    error = only_error(new, old=old, subresource="status")
    assert error.field == "status.phase" and error.reason == "FieldValueNotSupported"


def test_status_timestamps_must_be_rfc3339():
    old = _stored(resource())
    new = copy.deepcopy(old)
    new["status"] = {"startedAt": "yesterday"}
    error = only_error(new, old=old, subresource="status")
    assert error.field == "status.startedAt" and "date-time" in error.message
    new["status"] = {"startedAt": "2025-05-01T10:00:00.123456+00:00"}
    assert admit(new, old, subresource="status")[1] == []


def test_status_runs_keep_extra_fields_for_operator_evolution():
    old = _stored(resource())
    new = copy.deepcopy(old)
    new["status"] = {"runs": [{"runId": 1, "phase": "Finished", "somethingNew": {"x": 1}}]}
    stored, errors, warnings = admit(new, old, subresource="status")
    assert errors == [] and warnings == []
    assert stored["status"]["runs"][0]["somethingNew"] == {"x": 1}


def test_duplicate_condition_types_are_rejected():
    old = _stored(resource())
    new = copy.deepcopy(old)
    new["status"] = {"conditions": [{"type": "Complete", "status": "True"}, {"type": "Complete", "status": "False"}]}
    error = only_error(new, old=old, subresource="status")
    assert error.field == "status.conditions[1]" and error.reason == "FieldValueDuplicate"


def test_update_with_unchanged_invalid_spec_is_ratcheted():
    # An object stored before a rule existed (or by a looser CRD version) can still get labels or status.
    old = resource(fromDate="2025-05-01", toDate="2025-04-01")
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"team": "a"}
    assert admit(new, old)[1] == []
    new["spec"]["monthsBack"] = 6  # touching spec re-checks spec
    assert [e.field for e in admit(new, old)[1]] == ["spec.fromDate"]
