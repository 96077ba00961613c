"""Pure parts of the sandbox API server: selectors, patches, apply bookkeeping, JSONPath, routing,
durations, protobuf decoding, watch event visibility."""
from __future__ import annotations

import base64
import subprocess

import pytest

from receiptsync_sandbox.apiserver import fieldsets, jsonpath, patches, protobuf, selectors, tables
from receiptsync_sandbox.apiserver.routing import Target, parse_resource_path
from receiptsync_sandbox.apiserver.store import StoredEvent
from receiptsync_sandbox.apiserver.watch import visible_type
from test_apiserver_support import KUBECTL_133


def _obj(labels=None, **fields):
    return {"metadata": {"name": "n", "labels": labels or {}}, **fields}


@pytest.mark.parametrize("selector, labels, expected", [
    ("a=1", {"a": "1"}, True),
    ("a=1", {}, False),
    ("a!=1", {}, True),
    ("a in (1, 2),b", {"a": "2", "b": ""}, True),
    ("a notin (1,2)", {"a": "3"}, True),
    ("!a", {"a": "3"}, False),
    ("app.kubernetes.io/name=x", {"app.kubernetes.io/name": "x"}, True),
])
def test_label_selectors(selector, labels, expected):
    assert selectors.labels_match(selectors.parse_label_selector(selector), _obj(labels)) is expected


def test_field_selectors_follow_dotted_paths():
    event = {"metadata": {"name": "e"}, "involvedObject": {"name": "x", "kind": "Pod"}, "count": 2}
    assert selectors.fields_match(selectors.parse_field_selector("involvedObject.name=x,involvedObject.kind=Pod"), event)
    assert not selectors.fields_match(selectors.parse_field_selector("involvedObject.uid=1"), event)
    assert selectors.fields_match(selectors.parse_field_selector("spec.missing="), event)


def test_structured_label_selector():
    selector = {"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "In", "values": ["x"]}]}
    assert selectors.match_label_selector_object(selector, {"a": "1", "b": "x"})
    assert not selectors.match_label_selector_object(selector, {"a": "1"})


def test_merge_patch_is_rfc7386():
    assert patches.merge_patch({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": None, "d": 3}, "l": [2]}) == \
        {"a": {"c": 2, "d": 3}, "l": [2]}


def test_strategic_merge_named_lists_and_directives():
    original = {"spec": {"containers": [{"name": "a", "image": "1", "ports": [{"containerPort": 80}]},
                                        {"name": "b", "image": "1"}],
                         "volumes": [{"name": "v", "emptyDir": {}}]},
                "metadata": {"finalizers": ["x"]}}
    patch = {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                      "containers": [{"name": "a", "ports": [{"containerPort": 81}]}, {"name": "b", "image": "2"}],
                      "volumes": [{"name": "v", "$patch": "delete"}]},
             "metadata": {"finalizers": ["y"]}}
    result = patches.strategic_merge(original, patch)
    assert [c["name"] for c in result["spec"]["containers"]] == ["b", "a"]
    assert result["spec"]["containers"][1]["ports"] == [{"containerPort": 80}, {"containerPort": 81}]
    assert result["spec"]["containers"][0]["image"] == "2"
    assert result["spec"]["volumes"] == []
    assert result["metadata"]["finalizers"] == ["x", "y"]
    assert patches.strategic_merge({"a": {"x": 1, "y": 2}}, {"a": {"$retainKeys": ["x"], "x": 3}}) == {"a": {"x": 3}}
    assert patches.strategic_merge({"l": [1, 2]}, {"l": [3]}, atomic_lists=True) == {"l": [3]}


def test_apply_bookkeeping_removes_only_what_the_applier_owned():
    applied = {"metadata": {"name": "x", "labels": {"a": "1"}},
               "spec": {"containers": [{"name": "c", "image": "i", "env": [{"name": "E", "value": "1"}]}]}}
    owned = fieldsets.applied_paths(applied, atomic_lists=False)
    assert fieldsets.from_fields_v1(fieldsets.to_fields_v1(owned)) == owned
    live = {"metadata": {"name": "x", "labels": {"a": "1", "other": "kept"}},
            "spec": {"containers": [{"name": "c", "image": "i", "env": [{"name": "E", "value": "1"}],
                                     "imagePullPolicy": "IfNotPresent"}]}}
    now = fieldsets.applied_paths({"metadata": {"name": "x"}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
                                  atomic_lists=False)
    fieldsets.remove_paths(live, owned - now)
    assert live["metadata"]["labels"] == {"other": "kept"}
    assert live["spec"]["containers"] == [{"name": "c", "image": "i", "imagePullPolicy": "IfNotPresent"}]


def test_jsonpath_subset():
    obj = {"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]},
           "spec": {"items": [{"n": 1}, {"n": 2}], "dotted.key": "v"}}
    assert jsonpath.find(obj, '.status.conditions[?(@.type=="Ready")].status') == ["True"]
    assert jsonpath.find(obj, ".spec.items[*].n") == [1, 2]
    assert jsonpath.find(obj, ".spec.items[1].n") == [2]
    assert jsonpath.find(obj, ".spec['dotted.key']") == ["v"]
    assert jsonpath.find(obj, ".spec.nothing") == []


@pytest.mark.parametrize("seconds, text", [(5, "5s"), (119, "119s"), (150, "2m30s"), (600, "10m"),
                                           (3 * 3600 + 60, "3h1m"), (30 * 3600, "30h"), (3 * 86400, "3d"),
                                           (400 * 86400, "400d"), (3 * 365 * 86400, "3y")])
def test_ages_read_like_kubectl(seconds, text):
    assert tables.human_duration(seconds) == text


@pytest.mark.parametrize("path, target", [
    ("/api/v1/namespaces", Target("", "v1", "namespaces")),
    ("/api/v1/namespaces/x", Target("", "v1", "namespaces", name="x")),
    ("/api/v1/namespaces/x/status", Target("", "v1", "namespaces", name="x", subresource="status")),
    ("/api/v1/namespaces/x/pods", Target("", "v1", "pods", namespace="x")),
    ("/api/v1/namespaces/x/pods/p/log", Target("", "v1", "pods", namespace="x", name="p", subresource="log")),
    ("/apis/apps/v1/watch/namespaces/x/deployments/d",
     Target("apps", "v1", "deployments", namespace="x", name="d", legacy_watch=True)),
    ("/apis/rbac.authorization.k8s.io/v1/clusterroles/r", Target("rbac.authorization.k8s.io", "v1", "clusterroles", name="r")),
    ("/apis/apps", None),
])
def test_routing(path, target):
    assert parse_resource_path(path) == target


def test_watch_visibility_follows_the_selection():
    inside = lambda o: o["metadata"].get("labels", {}).get("x") == "1"  # noqa: E731
    new, old = _obj({"x": "1"}), _obj({"x": "2"})
    assert visible_type(StoredEvent(1, "MODIFIED", ("", "c"), new, old), inside) == "ADDED"
    assert visible_type(StoredEvent(1, "MODIFIED", ("", "c"), old, new), inside) == "DELETED"
    assert visible_type(StoredEvent(1, "MODIFIED", ("", "c"), old, old), inside) is None
    assert visible_type(StoredEvent(1, "DELETED", ("", "c"), new, new), inside) == "DELETED"


def test_protobuf_decoding_of_a_real_kubectl_body(tmp_path):
    """What kubectl 1.33 actually sends for `create secret` (captured via --dry-run=client is JSON, so
    encode a Secret the way client-go does: magic + runtime.Unknown wrapping the message)."""
    def field(number: int, payload: bytes) -> bytes:
        return bytes([(number << 3) | 2, len(payload)]) + payload

    entry = field(1, b"token") + field(2, b"\x00\x01secret")
    meta = field(1, b"s") + field(11, field(1, b"app") + field(2, b""))  # labels {app: ""}
    secret = field(1, meta) + field(2, entry) + field(3, b"Opaque")
    body = protobuf.MAGIC + field(1, field(1, b"v1") + field(2, b"Secret")) + field(2, secret)
    decoded = protobuf.decode_object(body)
    assert decoded == {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "labels": {"app": ""}},
                       "data": {"token": base64.b64encode(b"\x00\x01secret").decode()}, "type": "Opaque"}
    assert KUBECTL_133.exists()  # the descriptor tables were generated from this binary
