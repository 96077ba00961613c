"""Property: admit() never raises, whatever JSON-ish spec, status or old object it is given."""
from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from receiptsync_sandbox.apiserver import schema

CRD = yaml.safe_load((Path(__file__).resolve().parents[2] / "manifests" / "crds" / "receiptsyncs.yaml").read_text())
COMPILED = schema.compile_schema(CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
SPEC_KEYS = list(CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63), st.floats(allow_nan=False),
    st.text(max_size=40), st.sampled_from(["2025-05-01", "2025-02-30", "0 3 * * *", "@daily", "90s", "0s", "1h"]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=10), children, max_size=4)),
    max_leaves=12,
)
specs = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(SPEC_KEYS + ["unknown"]), json_values, max_size=len(SPEC_KEYS)),
)


def _resource(spec, status):
    obj = {"apiVersion": "receipts.prosaas.pro/v1alpha1", "kind": "ReceiptSync", "metadata": {"name": "p"}, "spec": spec}
    if status is not None:
        obj["status"] = status
    return obj


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs, status=st.one_of(st.none(), json_values), old_spec=st.one_of(st.none(), specs),
       mode=st.sampled_from(["Strict", "Warn", "Ignore"]), subresource=st.sampled_from([None, "status"]))
@example(spec={}, status=None, old_spec=2**63, mode="Strict", subresource=None)  # beyond int64 in CEL
@example(spec={"monthsBack": -(2**70), "timeout": "99999999999999h"}, status=None, old_spec=None, mode="Strict",
         subresource=None)
def test_admit_never_raises(spec, status, old_spec, mode, subresource):
    old = _resource(old_spec, None) if old_spec is not None else None
    stored, errors, warnings = schema.admit(COMPILED, _resource(spec, status), old,
                                            field_validation=mode, subresource=subresource)
    assert isinstance(stored, dict)
    assert all(isinstance(e, schema.FieldError) and e.message for e in errors)
    assert all(isinstance(w, str) for w in warnings)
    # Whatever was wrong, the Status body can be built and names a field for each cause.
    body = schema.invalid_status("ReceiptSync", "receipts.prosaas.pro", "p", errors)
    assert len(body["details"]["causes"]) == len(errors)


@settings(max_examples=200, deadline=None)
@given(spec=st.dictionaries(st.sampled_from(SPEC_KEYS), json_values, max_size=len(SPEC_KEYS)))
def test_accepted_objects_are_stable(spec):
    """Admitting what was stored again changes nothing and finds nothing (defaults are idempotent)."""
    spec = {**spec, "businessId": "acme"}
    stored, errors, _ = schema.admit(COMPILED, _resource(spec, None), None, field_validation="Ignore")
    if errors:
        return
    again, errors_again, warnings = schema.admit(COMPILED, stored, None)
    assert again == stored and errors_again == [] and warnings == []
