"""The ReceiptSync CRD (manifests/crds/receiptsyncs.yaml) as the real kube-apiserver of the sandbox
applies it: defaults, every OpenAPI and CEL rule, and rejections that name the field.

The CRD is installed once per module; each case is a server-side dry run (``dryRun=All``) through one
API client, so nothing is stored: a dry-run create returns the object as it would be stored
(defaulted, pruned) or raises ApiException 422 whose Status lists ``details.causes[].field``."""
from __future__ import annotations

import copy
import json
import time
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from receiptsync_common import contract

pytestmark = pytest.mark.slow

CRD_PATH = Path(__file__).resolve().parents[2] / "manifests" / "crds" / "receiptsyncs.yaml"
CRD = yaml.safe_load(CRD_PATH.read_text())
CRD_NAME = CRD["metadata"]["name"]
SPEC_SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
GROUP, VERSION, PLURAL = contract.GROUP, contract.VERSION, contract.PLURAL

# kube-apiserver does not run CEL rules on an object whose OpenAPI errors could make them fail or cost
# too much (wrong type, required, enum, too long): it says so in one more cause, on field "<nil>".
NOT_CHECKED = ("some validation rules were not checked because the object was invalid; "
               "correct the existing errors to complete validation")


# --- one API client, one namespace, the CRD installed ------------------------------------------------


@pytest.fixture(scope="module")
def api(sandbox):
    sandbox.kubectl("apply", "-f", str(CRD_PATH))
    sandbox.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=30s")
    api_client = sandbox.api()
    yield api_client
    api_client.close()


@pytest.fixture(scope="module")
def custom(api):
    return client.CustomObjectsApi(api)


@pytest.fixture(scope="module")
def ns(api, custom):
    name = "schema-" + uuid.uuid4().hex[:8]
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})

    def served():  # Established can come a moment before the resource is served
        try:
            custom.create_namespaced_custom_object(GROUP, VERSION, name, PLURAL, resource(), dry_run="All")
            return True
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            return False

    deadline = time.monotonic() + 30
    while not served():
        assert time.monotonic() < deadline, f"{PLURAL} not served 30 s after Established"
        time.sleep(0.2)
    yield name
    core.delete_namespace(name)


def resource(**spec) -> dict:
    return {
        "apiVersion": contract.API_VERSION,
        "kind": contract.KIND,
        "metadata": {"name": "acme-sync"},
        "spec": {"businessId": "acme", **spec},
    }


def warnings_of(headers) -> list[str]:
    """The texts of the `Warning: 299 - "..."` response headers."""
    return [json.loads(value.split(" - ", 1)[1]) for value in headers.getlist("Warning")]


@pytest.fixture(scope="module")
def admit(custom, ns):
    """Dry-run create: returns the object as it would be stored; ApiException on a rejection."""
    def admit(obj: dict, **kwargs) -> dict:
        return custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, obj, dry_run="All", **kwargs)
    return admit


@pytest.fixture(scope="module")
def admit_warned(custom, ns):
    """Dry-run create: (object as it would be stored, warnings)."""
    def admit_warned(obj: dict, **kwargs) -> tuple[dict, list[str]]:
        data, _, headers = custom.create_namespaced_custom_object_with_http_info(
            GROUP, VERSION, ns, PLURAL, obj, dry_run="All", **kwargs)
        return data, warnings_of(headers)
    return admit_warned


def refusal(call, *args, status: int = 422, **kwargs) -> dict:
    """The Status body of a call that must fail with HTTP ``status``."""
    with pytest.raises(client.ApiException) as caught:
        call(*args, **kwargs)
    assert caught.value.status == status, caught.value.body
    return json.loads(caught.value.body)


@pytest.fixture(scope="module")
def reject(admit):
    """Dry-run create that must be refused with 422: its Status."""
    return lambda obj, **kwargs: refusal(admit, obj, **kwargs)


def causes(status: dict) -> list[tuple[str, str, str]]:
    return [(c.get("field"), c.get("reason"), c.get("message")) for c in status["details"].get("causes", [])]


def named(status: dict) -> list[tuple[str, str, str]]:
    """The causes that name a field (all but the "rules not checked" notice)."""
    return [cause for cause in causes(status) if cause[0] != "<nil>"]


def rules_skipped(status: dict) -> bool:
    return ("<nil>", "FieldValueInvalid", f"Invalid value: null: {NOT_CHECKED}") in causes(status)


def only_cause(status: dict) -> tuple[str, str, str]:
    (cause,) = causes(status)
    return cause


# --- the CRD itself ----------------------------------------------------------------------------------


def test_the_api_server_accepts_the_crd(sandbox, api, ns):
    stored = client.ApiextensionsV1Api(api).read_custom_resource_definition(CRD_NAME)
    conditions = {c.type: c for c in stored.status.conditions}
    assert conditions["Established"].status == "True"
    assert conditions["NamesAccepted"].status == "True"
    assert "NonStructuralSchema" not in conditions, conditions["NonStructuralSchema"].message
    assert stored.status.accepted_names.short_names == [contract.SHORT_NAME]
    # An update of the CRD (what `kubectl apply` of a new version does) passes validation too.
    result = sandbox.kubectl("apply", "--dry-run=server", "-f", str(CRD_PATH))
    assert f"customresourcedefinition.apiextensions.k8s.io/{CRD_NAME}" in result.stdout
    assert "(server dry run)" in result.stdout


# --- defaults --------------------------------------------------------------------------------------


def test_minimal_spec_gets_every_default(admit, ns):
    stored = admit(resource(gmail={"secretRef": {"name": "acme-gmail"}}))
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
    assert (stored["metadata"]["name"], stored["metadata"]["namespace"]) == ("acme-sync", ns)
    assert not {"labels", "annotations", "finalizers"} & set(stored["metadata"])
    assert "status" not in stored


def test_given_values_are_kept_and_absent_objects_not_invented(admit):
    given = dict(mode="full", monthsBack=3, maxMessages=10, priority="high", timeout="90s", backoffLimit=0,
                 concurrencyPolicy="Allow", suspend=True, successfulRunsHistoryLimit=0, failedRunsHistoryLimit=5,
                 fromDate="2025-01-01", toDate="2025-01-31", query="from:shop", schedule="@daily",
                 timeZone="Europe/Berlin", startingDeadlineSeconds=0)
    stored = admit(resource(**given))
    assert stored["spec"] == {"businessId": "acme", **given}  # no gmail object appears from nowhere


def test_null_fields_are_defaulted_or_dropped(admit):
    stored = admit(resource(mode=None, query=None))
    assert stored["spec"]["mode"] == "incremental"
    assert "query" not in stored["spec"]


def test_integral_float_counts_as_integer(admit):
    assert admit(resource(monthsBack=6.0))["spec"]["monthsBack"] == 6


# --- dates -----------------------------------------------------------------------------------------


def test_reversed_dates_name_both_fields(reject):
    status = reject(resource(fromDate="2025-05-01", toDate="2025-04-01"))
    assert status["code"] == 422 and status["reason"] == "Invalid"
    message = "Invalid value: spec.fromDate (2025-05-01) must not be later than spec.toDate (2025-04-01)"
    assert status["message"] == f'ReceiptSync.receipts.prosaas.pro "acme-sync" is invalid: spec.fromDate: {message}'
    assert status["details"]["causes"] == [
        {"reason": "FieldValueInvalid", "message": message, "field": "spec.fromDate"}]


def test_equal_dates_and_a_single_date_are_fine(admit):
    admit(resource(fromDate="2025-04-01", toDate="2025-04-01"))
    admit(resource(fromDate="2025-04-01"))
    admit(resource(toDate="2025-04-01"))


def test_calendar_invalid_date_passes_the_schema(admit):
    # The pattern checks the shape only; 2025-02-30 is rejected by the operator (status InvalidSpec).
    assert admit(resource(fromDate="2025-02-30"))["spec"]["fromDate"] == "2025-02-30"


PATTERN = "spec.toDate in body should match '^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$'"


@pytest.mark.parametrize("bad,reason,message", [
    *[(bad, "FieldValueInvalid", f'Invalid value: "{bad}": {PATTERN}')
      for bad in ["2025/01/01", "2025-1-01", "2025-13-01", "2025-01-32", "25-01-01"]],
    # Past maxLength the server reports only the length, not the pattern.
    ("2025-01-01T00:00:00Z", "FieldValueTooLong", "Too long: may not be more than 10 bytes"),
])
def test_date_shape_is_checked(reject, bad, reason, message):
    assert named(reject(resource(toDate=bad))) == [("spec.toDate", reason, message)]


# --- schedule --------------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["0 3 * * *", "*/15 * * * *", "0 0 1,15 * MON-FRI", "30 2 ? jan sun",
                                      "@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually",
                                      "5-10/2 0-23 1-31 1-12 0-7"])
def test_valid_schedules(admit, schedule):
    assert admit(resource(schedule=schedule))["spec"]["schedule"] == schedule


@pytest.mark.parametrize("schedule", ["", "bogus", "* * * *", "0 3 * * * *", "60 * * * *", "0 24 * * *", "0 0 0 * *",
                                      "0 0 * 13 *", "0 0 * * 8", "@every 5m", "@reboot", " 0 3 * * *"])
def test_invalid_schedules_are_rejected_with_a_readable_message(reject, schedule):
    field, reason, message = only_cause(reject(resource(schedule=schedule)))
    assert (field, reason) == ("spec.schedule", "FieldValueInvalid")
    assert message.startswith(f'Invalid value: "{schedule}": spec.schedule must be a 5-field cron expression')
    assert "@hourly" in message


# --- timeout ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", ["90s", "30m", "1h", "1h30m", "1.5h"])
def test_valid_timeouts(admit, timeout):
    assert admit(resource(timeout=timeout))["spec"]["timeout"] == timeout


def test_zero_timeout_is_rejected_by_the_rule(reject):
    assert only_cause(reject(resource(timeout="0s"))) == (
        "spec.timeout", "FieldValueInvalid",
        'Invalid value: "0s": spec.timeout must be longer than zero, for example 90s, 30m or 1h')


@pytest.mark.parametrize("timeout", ["1d", "10", "-5m", "1 h", "forever"])
def test_badly_shaped_timeout_fails_the_pattern_only(reject, timeout):
    field, reason, message = only_cause(reject(resource(timeout=timeout)))
    assert (field, reason) == ("spec.timeout", "FieldValueInvalid")
    pattern = SPEC_SCHEMA["properties"]["timeout"]["pattern"]
    assert message == f'Invalid value: "{timeout}": spec.timeout in body should match \'{pattern}\''


# --- businessId, spec, strings ---------------------------------------------------------------------


@pytest.mark.parametrize("business,words", [
    ("", "spec.businessId in body should be at least 1 chars long"),
    ("a" * 65, "Too long: may not be more than 64 bytes"),
    ("acme corp", "spec.businessId in body should match '^[A-Za-z0-9_-]{1,64}$'"),
    ("acme/1", "spec.businessId in body should match"),
    ("ä", "spec.businessId in body should match"),
])
def test_business_id_shape(reject, business, words):
    found = named(reject(resource(businessId=business)))
    assert [field for field, _, _ in found] == ["spec.businessId"], found
    assert words in found[0][2]


def test_business_id_is_required(reject):
    obj = resource()
    del obj["spec"]["businessId"]
    status = reject(obj)
    assert named(status) == [("spec.businessId", "FieldValueRequired", "Required value")]
    assert rules_skipped(status)


def test_spec_is_required(reject):
    obj = resource()
    del obj["spec"]
    assert named(reject(obj)) == [("spec", "FieldValueRequired", "Required value")]


def test_query_longer_than_512_is_too_long(admit, reject):
    admit(resource(query="x" * 512))
    status = reject(resource(query="x" * 513))
    assert named(status) == [("spec.query", "FieldValueTooLong", "Too long: may not be more than 512 bytes")]
    assert rules_skipped(status)


def test_huge_strings_are_rejected_not_choked_on(reject, admit):
    huge = "9" * 500_000  # five of them: 2.5 MB, under the server's 3 MiB request limit
    status = reject(resource(businessId=huge, query=huge, schedule=huge, timeout=huge, fromDate=huge))
    assert {field for field, _, _ in named(status)} == {
        "spec.businessId", "spec.query", "spec.schedule", "spec.timeout", "spec.fromDate"}
    assert all(reason == "FieldValueTooLong" for _, reason, _ in named(status))
    assert all(len(message) < 1000 for _, _, message in causes(status))  # values are not echoed
    assert len(status["message"]) < 2000
    # A bigger request body is refused before it is decoded.
    status = refusal(admit, resource(query="9" * 3_200_000), status=413)
    assert status["reason"] == "RequestEntityTooLarge"
    assert status["message"] == "Request entity too large: limit is 3145728"


@pytest.mark.parametrize("changes,field,words", [
    ({"timeZone": "../../etc/passwd"}, "spec.timeZone", "spec.timeZone in body should match"),
    ({"timeZone": "A" * 65}, "spec.timeZone", "Too long: may not be more than 64 bytes"),
    ({"gmail": {"secretRef": {"name": "s", "key": ""}}}, "spec.gmail.secretRef.key", "should be at least 1 chars long"),
    ({"gmail": {"secretRef": {"name": "s", "key": "a b"}}}, "spec.gmail.secretRef.key", "should match"),
    ({"gmail": {"secretRef": {"name": "n" * 254}}}, "spec.gmail.secretRef.name", "may not be more than 253 bytes"),
])
def test_other_string_rules(reject, changes, field, words):
    found = named(reject(resource(**changes)))
    assert [name for name, _, _ in found] == [field], found
    assert words in found[0][2]


def test_secret_ref_name_required_and_shaped(reject):
    status = reject(resource(gmail={"secretRef": {}}))
    assert named(status) == [("spec.gmail.secretRef.name", "FieldValueRequired", "Required value")]
    field, reason, message = only_cause(reject(resource(gmail={"secretRef": {"name": "Not_A_Name"}})))
    assert (field, reason) == ("spec.gmail.secretRef.name", "FieldValueInvalid")
    assert message.startswith('Invalid value: "Not_A_Name": spec.gmail.secretRef.name in body should match')


# --- numbers, enums, types -------------------------------------------------------------------------


@pytest.mark.parametrize("field,value,words", [
    ("monthsBack", 0, "greater than or equal to 1"),
    ("monthsBack", 121, "less than or equal to 120"),
    ("maxMessages", 0, "greater than or equal to 1"),
    ("maxMessages", 100001, "less than or equal to 100000"),
    ("backoffLimit", 11, "less than or equal to 10"),
    ("backoffLimit", -1, "greater than or equal to 0"),
    ("startingDeadlineSeconds", -1, "greater than or equal to 0"),
    ("successfulRunsHistoryLimit", 101, "less than or equal to 100"),
    ("failedRunsHistoryLimit", -1, "greater than or equal to 0"),
])
def test_numeric_bounds(reject, field, value, words):
    assert only_cause(reject(resource(**{field: value}))) == (
        f"spec.{field}", "FieldValueInvalid", f"Invalid value: {value}: spec.{field} in body should be {words}")


@pytest.mark.parametrize("field,value", [("mode", "fast"), ("priority", "urgent"), ("concurrencyPolicy", "forbid")])
def test_enums_list_the_supported_values(reject, field, value):
    status = reject(resource(**{field: value}))
    (cause,) = named(status)
    assert cause[:2] == (f"spec.{field}", "FieldValueNotSupported")
    assert cause[2].startswith(f'Unsupported value: "{value}": supported values: ')
    supported = SPEC_SCHEMA["properties"][field]["enum"]
    assert cause[2].endswith(", ".join(f'"{v}"' for v in supported))
    assert rules_skipped(status)


@pytest.mark.parametrize("field,value,expected", [
    ("monthsBack", "12", "integer"), ("suspend", "yes", "boolean"), ("businessId", 42, "string"),
    ("gmail", "secret", "object"), ("maxMessages", 1.5, "integer"),
])
def test_wrong_types_are_type_errors_and_block_rules(reject, field, value, expected):
    status = reject(resource(**{field: value}, fromDate="2025-05-01", toDate="2025-04-01"))
    found = causes(status)
    assert found[0][:2] == (f"spec.{field}", "FieldValueTypeInvalid")
    assert f"spec.{field} in body must be of type {expected}" in found[0][2]
    # CEL rules are not run on an object with type errors, and the server says so.
    assert found[-1] == ("<nil>", "FieldValueInvalid", f"Invalid value: null: {NOT_CHECKED}")
    assert not any(cause[0] == "spec.fromDate" for cause in found)


def test_several_errors_are_all_reported_in_one_status(reject):
    status = reject(resource(monthsBack=0, timeout="0s", schedule="nope"))
    assert {field for field, _, _ in causes(status)} == {"spec.monthsBack", "spec.timeout", "spec.schedule"}
    message = status["message"]
    assert message.startswith('ReceiptSync.receipts.prosaas.pro "acme-sync" is invalid: [')
    assert all(field in message for field in ("spec.monthsBack", "spec.timeout", "spec.schedule"))
    assert len(status["details"]["causes"]) == 3


def test_a_too_long_value_hides_the_rule_errors(reject):
    # maxLength bounds the cost of CEL rules, so past it the server checks no rule at all.
    status = reject(resource(monthsBack=0, query="x" * 600, schedule="nope"))
    assert {field for field, _, _ in named(status)} == {"spec.monthsBack", "spec.query"}
    assert rules_skipped(status)


# --- unknown fields ---------------------------------------------------------------------------------

UNKNOWN = ['unknown field "bogus"', 'unknown field "spec.foo"', 'unknown field "spec.gmail.secretRef.nmae"']


def _with_unknown_fields() -> dict:
    obj = resource(foo=1, gmail={"secretRef": {"name": "s", "nmae": "typo"}})
    obj["bogus"] = True
    return obj


def test_unknown_fields_strict(admit):
    status = refusal(admit, _with_unknown_fields(), field_validation="Strict", status=400)
    assert status["reason"] == "BadRequest"
    assert status["message"] == ('ReceiptSync in version "v1alpha1" cannot be handled as a ReceiptSync: '
                                 'strict decoding error: ' + ", ".join(UNKNOWN))


@pytest.mark.parametrize("validation", ["Warn", None])  # Warn is the server's default
def test_unknown_fields_warn(admit_warned, validation):
    stored, warnings = admit_warned(_with_unknown_fields(), field_validation=validation)
    assert sorted(warnings) == UNKNOWN
    assert "foo" not in stored["spec"] and "bogus" not in stored
    assert stored["spec"]["gmail"]["secretRef"] == {"name": "s", "key": "credentials.json"}


def test_unknown_fields_ignore(admit_warned):
    stored, warnings = admit_warned(_with_unknown_fields(), field_validation="Ignore")
    assert warnings == [] and "foo" not in stored["spec"] and "bogus" not in stored


def test_unknown_metadata_fields_are_pruned_but_object_meta_kept(admit_warned):
    obj = resource()
    kept = {"labels": {"a": "b"}, "annotations": {"receipts.prosaas.pro/run-now": "1"},
            "finalizers": ["receipts.prosaas.pro/cleanup"]}
    obj["metadata"].update(kept, ownerReferences=[], whatever=1)
    stored, warnings = admit_warned(obj, field_validation="Warn")
    assert warnings == ['unknown field "metadata.whatever"']
    assert {key: stored["metadata"].get(key) for key in kept} == kept
    assert "whatever" not in stored["metadata"]
    assert "ownerReferences" not in stored["metadata"]  # an empty list is not kept


# --- status writes (an object that exists), and updates --------------------------------------------


@pytest.fixture(scope="module")
def stored(custom, ns):
    obj = resource()
    obj["metadata"]["name"] = "stored-sync"
    return custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, obj)


@pytest.fixture(scope="module")
def write_status(custom, ns, stored):
    """Dry-run PUT of the status subresource of ``stored`` with ``status``: (object, warnings)."""
    def write_status(status: dict, spec: dict | None = None) -> tuple[dict, list[str]]:
        new = copy.deepcopy(stored)
        new["status"] = status
        if spec is not None:
            new["spec"] = spec
        data, _, headers = custom.replace_namespaced_custom_object_status_with_http_info(
            GROUP, VERSION, ns, PLURAL, stored["metadata"]["name"], new, dry_run="All")
        return data, warnings_of(headers)
    return write_status


def test_status_write_validates_status_only(write_status):
    status = {"phase": "Started", "progress": {"messagesScanned": 5, "savedReceipts": 2},
              "startedAt": "2025-05-01T10:00:00Z", "conditions": [{"type": "Complete", "status": "False"}]}
    after, warnings = write_status(status)
    assert after["status"] == status and warnings == []
    # The spec of a status write is ignored, not validated.
    after, _ = write_status({"phase": "Queued"}, spec={"businessId": "", "monthsBack": 0})
    assert after["spec"]["businessId"] == "acme" and after["spec"]["monthsBack"] == 12
    status = refusal(write_status, {**status, "phase": "Running"})
    assert named(status) == [("status.phase", "FieldValueNotSupported",
                              'Unsupported value: "Running": supported values: '
                              '"Pending", "Queued", "Started", "Finished", "Failed"')]


def test_status_timestamps_must_be_rfc3339(write_status):
    status = refusal(write_status, {"startedAt": "yesterday"})
    assert named(status) == [("status.startedAt", "FieldValueTypeInvalid",
                              'Invalid value: "yesterday": startedAt in body must be of type date-time: "yesterday"')]
    after, _ = write_status({"startedAt": "2025-05-01T10:00:00.123456+00:00"})
    assert after["status"]["startedAt"] == "2025-05-01T10:00:00.123456+00:00"


def test_status_runs_keep_extra_fields_for_operator_evolution(write_status):
    after, warnings = write_status({"runs": [{"runId": 1, "phase": "Finished", "somethingNew": {"x": 1}}]})
    assert warnings == []
    assert after["status"]["runs"][0]["somethingNew"] == {"x": 1}


def test_duplicate_condition_types_are_rejected(write_status):
    status = refusal(write_status, {"conditions": [{"type": "Complete", "status": "True"},
                                                   {"type": "Complete", "status": "False"}]})
    assert only_cause(status) == ("status.conditions[1]", "FieldValueDuplicate", 'Duplicate value: {"type":"Complete"}')


RATCHET_GROUP = "ratchet.receiptsync.test"


@pytest.fixture
def loose_copy(api, custom, ns):
    """The CRD under another group without its spec-level rule, holding an object that breaks that
    rule; the rule is then put back. Yields (object, the group's API version)."""
    extensions = client.ApiextensionsV1Api(api)
    crd = copy.deepcopy(CRD)
    name = f"{PLURAL}.{RATCHET_GROUP}"
    crd["metadata"] = {"name": name}
    crd["spec"]["group"] = RATCHET_GROUP
    for key in ("shortNames", "categories"):  # no clash with the real one in kubectl's short names
        crd["spec"]["names"].pop(key, None)
    spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = spec_schema.pop("x-kubernetes-validations")
    assert any("fromDate <= self.toDate" in rule["rule"] for rule in rules)
    extensions.create_custom_resource_definition(crd)
    try:
        obj = resource(fromDate="2025-05-01", toDate="2025-04-01")
        obj["apiVersion"] = f"{RATCHET_GROUP}/{VERSION}"
        obj["metadata"]["name"] = "old-sync"
        deadline = time.monotonic() + 30
        while True:
            try:
                old = custom.create_namespaced_custom_object(RATCHET_GROUP, VERSION, ns, PLURAL, obj)
                break
            except client.ApiException as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        current = api.sanitize_for_serialization(extensions.read_custom_resource_definition(name))
        served_schema = current["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        served_schema["properties"]["spec"]["x-kubernetes-validations"] = rules
        extensions.replace_custom_resource_definition(name, current)
        probe = {**obj, "metadata": {"name": "probe"}}
        while True:  # until the server uses the schema with the rule
            try:
                custom.create_namespaced_custom_object(RATCHET_GROUP, VERSION, ns, PLURAL, probe, dry_run="All")
            except client.ApiException as exc:
                assert exc.status == 422, exc.body
                break
            assert time.monotonic() < deadline, "the restored rule was never enforced"
            time.sleep(0.1)
        yield old
    finally:
        extensions.delete_custom_resource_definition(name)


def test_update_with_unchanged_invalid_spec_is_ratcheted(custom, ns, loose_copy):
    # An object stored before a rule existed can still get labels or status.
    old = loose_copy
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"team": "a"}
    after = custom.replace_namespaced_custom_object(RATCHET_GROUP, VERSION, ns, PLURAL, "old-sync", new, dry_run="All")
    assert after["metadata"]["labels"] == {"team": "a"}
    with_status = {**copy.deepcopy(old), "status": {"phase": "Queued"}}
    after = custom.replace_namespaced_custom_object_status(RATCHET_GROUP, VERSION, ns, PLURAL, "old-sync",
                                                           with_status, dry_run="All")
    assert after["status"] == {"phase": "Queued"}
    new["spec"]["monthsBack"] = 6  # touching spec re-checks spec
    status = refusal(custom.replace_namespaced_custom_object, RATCHET_GROUP, VERSION, ns, PLURAL, "old-sync", new,
                     dry_run="All")
    assert [field for field, _, _ in causes(status)] == ["spec.fromDate"]
