"""The OpenAPI documents: what kubectl explain, client-side apply (strategic merge) and server-side
field-validation detection read from them."""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from receiptsync_sandbox.apiserver import openapi
from receiptsync_sandbox.apiserver.builtins import builtin_types
from receiptsync_sandbox.apiserver.resources import ResourceType

CRD = yaml.safe_load((Path(__file__).resolve().parents[2] / "manifests" / "crds" / "receiptsyncs.yaml").read_text())
RSYNC_DEF = "pro.prosaas.receipts.v1alpha1.ReceiptSync"


def receiptsync_type(schema=None) -> ResourceType:
    version = CRD["spec"]["versions"][0]
    return ResourceType(
        group="receipts.prosaas.pro", version="v1alpha1", kind="ReceiptSync", plural="receiptsyncs",
        singular="receiptsync", namespaced=True, short_names=["rsync"], subresources=["status"],
        schema=schema or version["schema"]["openAPIV3Schema"], printer_columns=version["additionalPrinterColumns"],
        crd_name=CRD["metadata"]["name"],
    )


@pytest.fixture(scope="module")
def types() -> list[ResourceType]:
    return builtin_types() + [receiptsync_type()]


def _refs(node, found=None) -> set[str]:
    found = set() if found is None else found
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            found.add(node["$ref"])
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)
    return found


def _resolve(document: dict, ref: str) -> dict:
    node = document
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


def _gvk_schemas(schemas: dict) -> dict[tuple, str]:
    return {(g["group"], g["version"], g["kind"]): name for name, s in schemas.items()
            for g in s.get("x-kubernetes-group-version-kind", [])}


def test_index_lists_every_group_version_with_a_hash(types):
    index = openapi.openapi_v3_index(types)
    expected = {f"apis/{t.group}/{t.version}" if t.group else f"api/{t.version}" for t in types}
    assert set(index["paths"]) == expected
    url = index["paths"]["apis/receipts.prosaas.pro/v1alpha1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/receipts.prosaas.pro/v1alpha1?hash=")
    assert url.split("hash=")[1] == openapi.openapi_v3_hash(types, "receipts.prosaas.pro", "v1alpha1")


def test_hash_changes_when_the_crd_schema_changes(types):
    before = openapi.openapi_v3_hash(types, "receipts.prosaas.pro", "v1alpha1")
    schema = copy.deepcopy(CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    schema["properties"]["spec"]["description"] = "changed"
    changed = [t for t in types if t.kind != "ReceiptSync"] + [receiptsync_type(schema)]
    assert openapi.openapi_v3_hash(changed, "receipts.prosaas.pro", "v1alpha1") != before
    assert openapi.openapi_v3_hash(changed, "apps", "v1") == openapi.openapi_v3_hash(types, "apps", "v1")


def test_every_ref_resolves_in_every_document(types):
    for group, version in {(t.group, t.version) for t in types}:
        document = openapi.openapi_v3_document(types, group, version)
        assert document["openapi"].startswith("3.0")
        for ref in _refs(document):
            assert ref.startswith("#/components/schemas/")
            _resolve(document, ref)
    swagger = openapi.openapi_v2(types)
    assert swagger["swagger"] == "2.0"
    for ref in _refs(swagger):
        assert ref.startswith("#/definitions/")
        _resolve(swagger, ref)


def test_receiptsync_document_documents_every_field(types):
    document = openapi.openapi_v3_document(types, "receipts.prosaas.pro", "v1alpha1")
    schemas = document["components"]["schemas"]
    assert _gvk_schemas(schemas)[("receipts.prosaas.pro", "v1alpha1", "ReceiptSync")] == RSYNC_DEF
    assert _gvk_schemas(schemas)[("receipts.prosaas.pro", "v1alpha1", "ReceiptSyncList")] == RSYNC_DEF + "List"
    rsync = schemas[RSYNC_DEF]
    spec = rsync["properties"]["spec"]
    assert spec["description"] == "What to sync, from which mailbox, and when."
    assert {"businessId", "fromDate", "toDate", "gmail", "schedule", "timeout"} <= set(spec["properties"])
    assert all(p.get("description") for p in spec["properties"].values())
    assert spec["properties"]["gmail"]["properties"]["secretRef"]["properties"]["key"]["default"] == "credentials.json"
    assert rsync["properties"]["metadata"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" in schemas


def _patch_operations(document: dict) -> dict[tuple, dict]:
    found = {}
    for path, item in document["paths"].items():
        if "patch" in item:
            gvk = item["patch"]["x-kubernetes-group-version-kind"]
            found.setdefault((gvk["group"], gvk["version"], gvk["kind"]), item["patch"])
    return found


def test_every_patchable_kind_advertises_field_validation(types):
    """kubectl decides whether the server validates fields from exactly this parameter."""
    for rt in types:
        if "patch" not in rt.verbs:
            continue
        document = openapi.openapi_v3_document(types, rt.group, rt.version)
        operation = _patch_operations(document)[(rt.group, rt.version, rt.kind)]
        names = {(p["name"], p["in"]) for p in operation["parameters"]}
        assert {("fieldValidation", "query"), ("fieldManager", "query"), ("dryRun", "query"), ("force", "query")} <= names


def test_strategic_merge_is_offered_for_built_ins_only(types):
    apps = _patch_operations(openapi.openapi_v3_document(types, "apps", "v1"))[("apps", "v1", "Deployment")]
    assert "application/strategic-merge-patch+json" in apps["requestBody"]["content"]
    custom = _patch_operations(openapi.openapi_v3_document(types, "receipts.prosaas.pro", "v1alpha1"))
    content = custom[("receipts.prosaas.pro", "v1alpha1", "ReceiptSync")]["requestBody"]["content"]
    assert "application/strategic-merge-patch+json" not in content
    assert {"application/merge-patch+json", "application/json-patch+json", "application/apply-patch+yaml"} <= set(content)


def test_namespaced_paths_and_verbs(types):
    paths = openapi.openapi_v3_document(types, "receipts.prosaas.pro", "v1alpha1")["paths"]
    base = "/apis/receipts.prosaas.pro/v1alpha1"
    assert set(paths[f"{base}/namespaces/{{namespace}}/receiptsyncs"]) >= {"get", "post", "delete", "parameters"}
    assert set(paths[f"{base}/namespaces/{{namespace}}/receiptsyncs/{{name}}"]) >= {"get", "put", "patch", "delete"}
    assert set(paths[f"{base}/namespaces/{{namespace}}/receiptsyncs/{{name}}/status"]) >= {"get", "put", "patch"}
    assert "get" in paths[f"{base}/receiptsyncs"]
    core = openapi.openapi_v3_document(types, "", "v1")["paths"]
    assert "/api/v1/namespaces/{name}" in core and "/api/v1/namespaces/{namespace}/pods/{name}/log" in core


def test_patch_metadata_of_built_ins_for_strategic_merge(types):
    schemas = openapi.openapi_v3_document(types, "apps", "v1")["components"]["schemas"]
    pod_spec = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]
    container = schemas["io.k8s.api.core.v1.Container"]["properties"]
    expected = [
        (pod_spec["containers"], "name"), (pod_spec["volumes"], "name"), (pod_spec["initContainers"], "name"),
        (container["env"], "name"), (container["ports"], "containerPort"), (container["volumeMounts"], "mountPath"),
    ]
    for prop, key in expected:
        assert prop["x-kubernetes-patch-merge-key"] == key
        assert "merge" in prop["x-kubernetes-patch-strategy"]
    deployment = schemas["io.k8s.api.apps.v1.Deployment"]
    assert deployment["x-kubernetes-group-version-kind"] == [{"group": "apps", "kind": "Deployment", "version": "v1"}]
    assert deployment["properties"]["spec"]["allOf"] == [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}]
    assert "enum" not in deployment["properties"]["apiVersion"]


def test_built_in_kinds_have_real_typed_schemas(types):
    for rt in types:
        if rt.crd_name:
            continue
        schemas = openapi.openapi_v3_document(types, rt.group, rt.version)["components"]["schemas"]
        name = _gvk_schemas(schemas)[(rt.group, rt.version, rt.kind)]
        assert name.startswith("io.k8s."), name
        assert not name.startswith("io.k8s.sandbox."), f"{rt.kind} fell back to an untyped schema"
        assert schemas[name]["properties"]["metadata"]
    schemas = openapi.openapi_v3_document(types, "", "v1")["components"]["schemas"]
    assert all(isinstance(s.get("type", "object"), str) for s in schemas.values())
    assert schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"] == "int-or-string"
    assert schemas["io.k8s.api.core.v1.ContainerPort"]["properties"]["containerPort"]["type"] == "integer"


def test_v2_has_no_v3_only_constructs(types):
    swagger = openapi.openapi_v2(types)
    text = json.dumps(swagger)
    assert '"requestBody"' not in text and "#/components/" not in text
    rsync = swagger["definitions"][RSYNC_DEF]
    assert rsync["properties"]["metadata"]["$ref"] == "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    patch = swagger["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert "application/strategic-merge-patch+json" in patch["consumes"]
    assert any(p["name"] == "fieldValidation" and p["in"] == "query" for p in patch["parameters"])


def test_documents_are_cached(types):
    fresh = [dataclasses.replace(t) for t in types]  # equal content, new objects: still a cache hit
    assert openapi.openapi_v3_document(fresh, "apps", "v1") is openapi.openapi_v3_document(types, "apps", "v1")
    assert openapi.openapi_v2(fresh) is openapi.openapi_v2(types)


def test_v2_strips_what_swagger_cannot_say_from_custom_schemas():
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "maybe": {"type": "string", "nullable": True},
        "port": {"x-kubernetes-int-or-string": True, "type": "string", "anyOf": [{"type": "integer"}, {"type": "string"}]},
    }}}}
    rt = dataclasses.replace(receiptsync_type(schema))
    spec = openapi.openapi_v2([rt])["definitions"][RSYNC_DEF]["properties"]["spec"]["properties"]
    assert spec["maybe"] == {"type": "string"}
    assert spec["port"] == {"x-kubernetes-int-or-string": True}
    v3 = openapi.openapi_v3_document([rt], rt.group, rt.version)["components"]["schemas"][RSYNC_DEF]
    assert v3["properties"]["spec"]["properties"]["maybe"]["nullable"] is True
