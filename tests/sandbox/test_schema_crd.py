"""validate_crd(): what makes the sandbox refuse a CustomResourceDefinition, as kube-apiserver would."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from receiptsync_sandbox.apiserver import schema

BASE = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "shortNames": ["wd"]},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "subresources": {"status": {}},
            "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {"size": {"type": "integer", "default": 1, "minimum": 0}},
                         "x-kubernetes-validations": [{"rule": "self.size < 100", "message": "small"}]},
            }}},
        }],
    },
}


def crd_with(change) -> dict:
    crd = copy.deepcopy(BASE)
    change(crd)
    return crd


def fields(crd) -> list[str]:
    return [e.field for e in schema.validate_crd(crd)]


def version(crd) -> dict:
    return crd["spec"]["versions"][0]


def spec_schema(crd) -> dict:
    return version(crd)["schema"]["openAPIV3Schema"]["properties"]["spec"]


def test_a_good_crd_passes():
    assert schema.validate_crd(BASE) == []


def test_the_project_crd_and_the_chart_copy_pass():
    root = Path(__file__).resolve().parents[2]
    for path in [root / "manifests" / "crds" / "receiptsyncs.yaml", *root.glob("charts/*/crds/*.yaml")]:
        assert schema.validate_crd(yaml.safe_load(path.read_text())) == [], path


@pytest.mark.parametrize("change,field", [
    (lambda c: c["metadata"].update(name="widgets.other.com"), "metadata.name"),
    (lambda c: c["spec"].update(group="nodot"), "spec.group"),
    (lambda c: c["spec"].update(scope="Global"), "spec.scope"),
    (lambda c: c["spec"]["names"].update(plural="Widgets"), "spec.names.plural"),
    (lambda c: c["spec"]["names"].pop("kind"), "spec.names.kind"),
    (lambda c: c["spec"]["names"].update(shortNames=["Bad_Short"]), "spec.names.shortNames[0]"),
    (lambda c: version(c).update(storage=False), "spec.versions"),
    (lambda c: c["spec"]["versions"].append({**copy.deepcopy(version(c)), "name": "v2"}), "spec.versions"),
    (lambda c: version(c).update(name="V1"), "spec.versions[0].name"),
    (lambda c: version(c).pop("schema"), "spec.versions[0].schema.openAPIV3Schema"),
    (lambda c: version(c).update(subresources={"status": {}, "logs": {}}), "spec.versions[0].subresources.logs"),
    (lambda c: version(c)["additionalPrinterColumns"][0].update(type="float"), "spec.versions[0].additionalPrinterColumns[0].type"),
    (lambda c: version(c)["additionalPrinterColumns"][0].pop("jsonPath"), "spec.versions[0].additionalPrinterColumns[0].jsonPath"),
    (lambda c: c["spec"].update(preserveUnknownFields=True), "spec.preserveUnknownFields"),
])
def test_bad_names_versions_and_columns(change, field):
    assert field in fields(crd_with(change))


SCHEMA_PATH = "spec.versions[0].schema.openAPIV3Schema"


@pytest.mark.parametrize("change,field", [
    (lambda s: s.pop("type"), f"{SCHEMA_PATH}.properties[spec].type"),
    (lambda s: s["properties"]["size"].update(type="int"), f"{SCHEMA_PATH}.properties[spec].properties[size].type"),
    (lambda s: s["properties"].update(list={"type": "array"}), f"{SCHEMA_PATH}.properties[spec].properties[list].items"),
    (lambda s: s["properties"].update(m={"type": "object", "additionalProperties": False}),
     f"{SCHEMA_PATH}.properties[spec].properties[m].additionalProperties"),
    (lambda s: s["properties"]["size"].update(default="big"), f"{SCHEMA_PATH}.properties[spec].properties[size].default"),
    (lambda s: s["properties"]["size"].update(default=-1), f"{SCHEMA_PATH}.properties[spec].properties[size].default"),
    (lambda s: s["properties"].update(p={"type": "string", "pattern": "(?<=x)y"}), f"{SCHEMA_PATH}.properties[spec].properties[p].pattern"),
    (lambda s: s.update(required=["nothere"]), f"{SCHEMA_PATH}.properties[spec].required"),
])
def test_non_structural_or_inconsistent_schemas(change, field):
    assert field in fields(crd_with(lambda c: change(spec_schema(c))))


@pytest.mark.parametrize("rule", ["self.size <", "self.size.nosuch()", "has(self.size) &&& true"])
def test_rules_that_do_not_compile_are_refused(rule):
    crd = crd_with(lambda c: spec_schema(c)["x-kubernetes-validations"][0].update(rule=rule))
    errors = schema.validate_crd(crd)
    assert [e.field for e in errors] == [f"{SCHEMA_PATH}.properties[spec].x-kubernetes-validations[0].rule"]
    assert "compil" in errors[0].message


def test_bad_rule_reason_is_refused():
    crd = crd_with(lambda c: spec_schema(c)["x-kubernetes-validations"][0].update(reason="Nope"))
    assert "reason: Unsupported value" in schema.validate_crd(crd)[0].message


def test_root_metadata_may_only_constrain_name():
    crd = crd_with(lambda c: version(c)["schema"]["openAPIV3Schema"]["properties"].update(
        metadata={"type": "object", "properties": {"labels": {"type": "object"}}}))
    assert f"{SCHEMA_PATH}.properties[metadata]" in fields(crd)


def test_invalid_status_names_the_crd():
    errors = schema.validate_crd(crd_with(lambda c: c["spec"].update(scope="Global")))
    status = schema.invalid_status("CustomResourceDefinition", "apiextensions.k8s.io", "widgets.example.com", errors)
    assert status["message"].startswith(
        'CustomResourceDefinition.apiextensions.k8s.io "widgets.example.com" is invalid: spec.scope: Unsupported value: "Global"')


def test_default_crd_fills_names():
    crd = crd_with(lambda c: [c["spec"]["names"].pop(k) for k in ("singular",)])
    defaulted = schema.default_crd(crd)
    assert defaulted["spec"]["names"]["singular"] == "widget"
    assert defaulted["spec"]["names"]["listKind"] == "WidgetList"
    assert "listKind" not in crd["spec"]["names"]
