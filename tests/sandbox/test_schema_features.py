"""admit() on small schemas: each structural-schema and CEL feature the sandbox implements."""
from __future__ import annotations

import copy

import pytest

from receiptsync_sandbox.apiserver import schema


def compiled(spec_schema: dict, **root_extra) -> schema.CompiledSchema:
    return schema.compile_schema({
        "type": "object",
        "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                       "metadata": {"type": "object"}, "spec": spec_schema,
                       "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        **root_extra,
    })


def obj(spec) -> dict:
    return {"apiVersion": "t.example.com/v1", "kind": "T", "metadata": {"name": "t"}, "spec": spec}


def errors_of(c, spec, old_spec=None, **kwargs) -> list[str]:
    old = obj(old_spec) if old_spec is not None else None
    return [e.line() for e in schema.admit(c, obj(spec), old, **kwargs)[1]]


def test_transition_rule_runs_only_on_update():
    c = compiled({"type": "object", "properties": {"size": {
        "type": "integer",
        "x-kubernetes-validations": [{"rule": "self >= oldSelf", "message": "size may only grow"}]}}})
    assert errors_of(c, {"size": 1}) == []  # create: no oldSelf, rule skipped
    assert errors_of(c, {"size": 5}, {"size": 3}) == []
    assert errors_of(c, {"size": 2}, {"size": 3}) == ['spec.size: Invalid value: "integer": size may only grow']


def test_immutable_field_rule_with_reason_and_field_path():
    c = compiled({"type": "object", "properties": {"id": {"type": "string"}}, "x-kubernetes-validations": [
        {"rule": "!has(oldSelf.id) || self.id == oldSelf.id", "message": "id is immutable",
         "reason": "FieldValueForbidden", "fieldPath": ".id"}]})
    _, errors, _ = schema.admit(c, obj({"id": "b"}), obj({"id": "a"}))
    assert [(e.field, e.reason, e.message) for e in errors] == [("spec.id", "FieldValueForbidden", "Forbidden: id is immutable")]


def test_message_expression_and_fallbacks():
    c = compiled({"type": "object", "properties": {"n": {"type": "integer"}}, "x-kubernetes-validations": [
        {"rule": "self.n < 10", "messageExpression": "'n is ' + string(self.n) + ', must be under 10'"},
        {"rule": "self.n < 20", "message": "plain", "messageExpression": "self.n"},  # not a string: fall back
        {"rule": "self.n < 30"},
    ]})
    assert errors_of(c, {"n": 35}) == [
        'spec: Invalid value: "object": n is 35, must be under 10',
        'spec: Invalid value: "object": plain',
        'spec: Invalid value: "object": failed rule: self.n < 30',
    ]


def test_cel_runtime_errors_become_field_errors():
    c = compiled({"type": "object", "x-kubernetes-preserve-unknown-fields": True, "x-kubernetes-validations": [
        {"rule": "self.missing == 1", "message": "needs missing"},
        {"rule": "self.s + 1 == 2", "message": "adds"},
        {"rule": "1 / self.zero == 1", "message": "divides"},
        {"rule": "self.s", "message": "not a bool"},
    ]})
    lines = errors_of(c, {"s": "text", "zero": 0})
    assert len(lines) == 4
    assert all(line.startswith("spec: Invalid value:") for line in lines)
    assert "evaluation error" in lines[0] and "evaluation error" in lines[1] and "evaluation error" in lines[2]
    assert "did not evaluate to a bool" in lines[3]


def test_uncompilable_rule_is_an_error_not_a_crash():
    c = compiled({"type": "object", "x-kubernetes-validations": [{"rule": "self.a ==="}, {"rule": "self.nosuchfn()"}]})
    lines = errors_of(c, {})
    assert len(lines) == 2 and all("compil" in line for line in lines)


def test_number_fields_are_doubles_in_cel_and_formats_are_typed():
    c = compiled({"type": "object", "properties": {
        "ratio": {"type": "number", "x-kubernetes-validations": [{"rule": "self <= 1.5"}]},
        "at": {"type": "string", "format": "date-time",
               "x-kubernetes-validations": [{"rule": "self > timestamp('2020-01-01T00:00:00Z')"}]},
        "day": {"type": "string", "format": "date",
                "x-kubernetes-validations": [{"rule": "self.getFullYear() >= 2020"}]},
    }})
    assert errors_of(c, {"ratio": 1, "at": "2024-02-29T10:00:00Z", "day": "2024-02-29"}) == []
    lines = errors_of(c, {"ratio": 2, "at": "2019-01-01T00:00:00Z", "day": "2019-12-31"})
    assert [line.split(":")[0] for line in lines] == ["spec.ratio", "spec.at", "spec.day"]


def test_date_format_checks_the_calendar():
    c = compiled({"type": "object", "properties": {"d": {"type": "string", "format": "date"}}})
    assert errors_of(c, {"d": "2024-02-29"}) == []
    assert errors_of(c, {"d": "2025-02-30"}) == ['spec.d: Invalid value: "2025-02-30": spec.d in body must be of type date: "2025-02-30"']


def test_matches_uses_re2_semantics():
    c = compiled({"type": "object", "properties": {"s": {"type": "string", "x-kubernetes-validations": [
        {"rule": "self.matches('^[a-z]+$')", "message": "lowercase only"}]}}})
    assert errors_of(c, {"s": "abc"}) == []
    assert errors_of(c, {"s": "abC"}) == ['spec.s: Invalid value: "string": lowercase only']


def test_kube_string_and_list_functions():
    c = compiled({"type": "object", "x-kubernetes-preserve-unknown-fields": True, "x-kubernetes-validations": [
        {"rule": "self.s.lowerAscii() == 'abc'"},
        {"rule": "self.s.split('B').size() == 2"},
        {"rule": "self.l.isSorted() && self.l.sum() == 6 && self.l.max() == 3"},
        {"rule": "self.s.indexOf('C') == 2"},
        {"rule": "['a','b'].join('-') == 'a-b'"},
    ]})
    assert errors_of(c, {"s": "aBC", "l": [1, 2, 3]}) == []


def test_nullable_and_non_nullable_nulls():
    c = compiled({"type": "object", "required": ["keep"], "properties": {
        "keep": {"type": "string", "nullable": True},
        "drop": {"type": "string"},
        "items": {"type": "array", "items": {"type": "string"}},
    }})
    stored, errors, _ = schema.admit(c, obj({"keep": None, "drop": None}), None)
    assert errors == [] and stored["spec"] == {"keep": None}
    assert errors_of(c, {"keep": "x", "items": ["a", None]}) == [
        'spec.items[1]: Invalid value: "null": spec.items[1] in body must be of type string: "null"']


def test_int_or_string():
    c = compiled({"type": "object", "properties": {"port": {"x-kubernetes-int-or-string": True}}})
    assert errors_of(c, {"port": 80}) == [] and errors_of(c, {"port": "http"}) == []
    assert errors_of(c, {"port": True}) == [
        'spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean"']


def test_defaults_inside_existing_objects_and_array_items_only():
    c = compiled({"type": "object", "properties": {
        "opt": {"type": "object", "properties": {"a": {"type": "integer", "default": 1}}},
        "made": {"type": "object", "default": {}, "properties": {"b": {"type": "integer", "default": 2}}},
        "list": {"type": "array", "items": {"type": "object", "properties": {"c": {"type": "string", "default": "z"}}}},
        "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"d": {"type": "boolean", "default": True}}}},
    }})
    stored, errors, _ = schema.admit(c, obj({"list": [{}, {"c": "y"}], "map": {"k": {}}}), None)
    assert errors == []
    assert stored["spec"] == {"made": {"b": 2}, "list": [{"c": "z"}, {"c": "y"}], "map": {"k": {"d": True}}}
    stored, _, _ = schema.admit(c, obj({"opt": {}}), None)
    assert stored["spec"]["opt"] == {"a": 1}


def test_preserve_unknown_fields_and_embedded_resources():
    c = compiled({"type": "object", "properties": {
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"n": {"type": "integer"}}},
        "template": {"type": "object", "x-kubernetes-embedded-resource": True, "properties": {"spec": {"type": "object"}}},
    }})
    spec = {"free": {"n": 1, "anything": {"deep": [1]}},
            "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "junk": 1}, "spec": {}, "other": 1}}
    stored, errors, warnings = schema.admit(c, obj(spec), None, field_validation="Warn")
    assert errors == []
    assert stored["spec"]["free"] == spec["free"]
    assert stored["spec"]["template"] == {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}
    assert sorted(warnings) == ['unknown field "spec.template.metadata.junk"', 'unknown field "spec.template.other"']
    assert errors_of(c, {"free": {"n": "one"}})[0].startswith("spec.free.n: Invalid value")


def test_list_types_and_sizes():
    c = compiled({"type": "object", "properties": {
        "tags": {"type": "array", "x-kubernetes-list-type": "set", "maxItems": 3, "items": {"type": "string"}},
        "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"], "minItems": 1,
                  "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "n": {"type": "integer"}}}},
    }})
    assert errors_of(c, {"tags": ["a", "b"], "ports": [{"name": "a"}, {"name": "b"}]}) == []
    lines = errors_of(c, {"tags": ["a", "a", "b", "c"], "ports": [{"name": "a", "n": 1}, {"name": "a", "n": 2}]})
    assert 'spec.tags: Too many: 4: must have at most 3 items' in lines
    assert 'spec.tags[1]: Duplicate value: "a"' in lines
    assert 'spec.ports[1]: Duplicate value: {"name":"a"}' in lines
    assert errors_of(c, {"ports": []}) == ['spec.ports: Invalid value: 0: spec.ports in body should have at least 1 items']


def test_transition_rules_correlate_map_list_items_by_key():
    c = compiled({"type": "object", "properties": {"ports": {
        "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
        "items": {"type": "object", "properties": {"name": {"type": "string"}, "n": {"type": "integer"}},
                  "x-kubernetes-validations": [{"rule": "self.n >= oldSelf.n", "message": "n may only grow"}]}}}})
    old = {"ports": [{"name": "a", "n": 5}, {"name": "b", "n": 1}]}
    assert errors_of(c, {"ports": [{"name": "b", "n": 2}, {"name": "a", "n": 6}, {"name": "new", "n": 0}]}, old) == []
    assert errors_of(c, {"ports": [{"name": "b", "n": 0}, {"name": "a", "n": 5}]}, old) == [
        'spec.ports[0]: Invalid value: "object": n may only grow']


def test_root_rule_and_status_subresource_scope():
    c = compiled({"type": "object", "properties": {"n": {"type": "integer"}}},
                 **{"x-kubernetes-validations": [{"rule": "self.metadata.name.size() < 5", "message": "short names"}]})
    long_name = obj({"n": 1})
    long_name["metadata"]["name"] = "much-too-long"
    assert [e.line() for e in schema.admit(c, long_name, None)[1]] == ['Invalid value: "object": short names']
    old = copy.deepcopy(long_name)
    new = copy.deepcopy(long_name)
    new["status"] = {"x": 1}
    new["spec"] = {"n": "not validated on /status"}
    stored, errors, _ = schema.admit(c, new, old, subresource="status")
    assert errors == [] and stored["status"] == {"x": 1}


@pytest.mark.parametrize("mode", ["Strict", "strict"])
def test_field_validation_mode_names_are_case_insensitive(mode):
    c = compiled({"type": "object"})
    assert errors_of(c, {"x": 1}, field_validation=mode) == ['unknown field "spec.x"']
