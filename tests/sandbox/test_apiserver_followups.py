"""H10 follow-ups: pods/binding, the `sandbox` Node, `kind: List` with client-side validation (OpenAPI v2
as protobuf), and kubectl's everyday read commands against the sandbox API server."""
from __future__ import annotations

import json
import urllib.request

import pytest

from receiptsync_sandbox.apiserver import openapi_proto
from test_apiserver_support import KUBECTLS, apiserver  # noqa: F401  (fixture)

LIST_MANIFEST = """
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {{name: {prefix}-a, namespace: {ns}}}
  data: {{x: "1"}}
- apiVersion: v1
  kind: ConfigMap
  metadata: {{name: {prefix}-b, namespace: {ns}}}
"""


def _tag(binary) -> str:
    return "k133" if ".venv" in str(binary) else "k132"


def _pod(server, ns: str, name: str) -> None:
    status, _ = server.request("POST", f"/api/v1/namespaces/{ns}/pods",
                               {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                                "spec": {"containers": [{"name": "c", "image": "receiptsync/worker"}]}})
    assert status == 201


def _binding(name: str, node: str = "sandbox") -> dict:
    return {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}}


# --- pods/binding ---------------------------------------------------------------------------------
def test_binding_sets_node_name_once(apiserver):  # noqa: F811
    _pod(apiserver, "default", "bind-me")
    status, body = apiserver.request("POST", "/api/v1/namespaces/default/pods/bind-me/binding", _binding("bind-me"))
    assert status == 201 and body["status"] == "Success"
    _, pod = apiserver.request("GET", "/api/v1/namespaces/default/pods/bind-me")
    assert pod["spec"]["nodeName"] == "sandbox"
    assert {"type": "PodScheduled", "status": "True"}.items() <= pod["status"]["conditions"][0].items()
    status, body = apiserver.request("POST", "/api/v1/namespaces/default/pods/bind-me/binding",
                                     _binding("bind-me", "elsewhere"))
    assert status == 409 and body["reason"] == "Conflict" and 'already assigned to node "sandbox"' in body["message"]
    status, _ = apiserver.request("POST", "/api/v1/namespaces/default/pods/missing/binding", _binding("missing"))
    assert status == 404


def test_binding_rejects_non_node_target_and_other_methods(apiserver):  # noqa: F811
    _pod(apiserver, "default", "bind-bad")
    bad = _binding("bind-bad")
    bad["target"]["kind"] = "Pod"
    status, _ = apiserver.request("POST", "/api/v1/namespaces/default/pods/bind-bad/binding", bad)
    assert status == 422
    status, _ = apiserver.request("GET", "/api/v1/namespaces/default/pods/bind-bad/binding")
    assert status == 405


def test_bound_pod_deletion_is_graceful_until_confirmed(apiserver):  # noqa: F811
    """What the node agent relies on: after its binding, deleting a running bare pod waits for it."""
    _pod(apiserver, "default", "graceful")
    apiserver.request("POST", "/api/v1/namespaces/default/pods/graceful/binding", _binding("graceful"))
    status, pod = apiserver.request("PATCH", "/api/v1/namespaces/default/pods/graceful/status",
                                    {"status": {"phase": "Running"}},
                                    content_type="application/merge-patch+json")
    assert status == 200
    status, deleted = apiserver.request("DELETE", "/api/v1/namespaces/default/pods/graceful")
    assert status == 200 and deleted["metadata"]["deletionTimestamp"]
    assert deleted["metadata"]["deletionGracePeriodSeconds"] == 30
    status, still = apiserver.request("GET", "/api/v1/namespaces/default/pods/graceful")
    assert status == 200 and still["metadata"]["deletionTimestamp"]
    status, _ = apiserver.request("POST", "/api/v1/namespaces/default/pods/graceful/binding", _binding("graceful"))
    assert status == 409
    status, _ = apiserver.request("DELETE", "/api/v1/namespaces/default/pods/graceful",
                                  {"gracePeriodSeconds": 0, "preconditions": {"uid": pod["metadata"]["uid"]}})
    assert status == 200
    status, _ = apiserver.request("GET", "/api/v1/namespaces/default/pods/graceful")
    assert status == 404


def test_binding_in_discovery(apiserver):  # noqa: F811
    _, core = apiserver.request("GET", "/api/v1")
    assert {"name": "pods/binding", "singularName": "", "namespaced": True, "kind": "Binding",
            "verbs": ["create"]} in core["resources"]


def test_node_agent_binds_through_the_served_path():
    """The node agent POSTs to exactly the URL the server serves."""
    from receiptsync_sandbox.apiserver.routing import parse_resource_path
    from receiptsync_sandbox.kubeclient import PODS

    target = parse_resource_path(PODS.path("ns", "p", "binding"))
    assert (target.plural, target.namespace, target.name, target.subresource) == ("pods", "ns", "p", "binding")


# --- the sandbox Node -----------------------------------------------------------------------------
@pytest.mark.parametrize("kubectl", KUBECTLS)
def test_get_and_describe_node(apiserver, kubectl):  # noqa: F811
    table = apiserver.kubectl("get", "nodes", binary=kubectl).stdout.splitlines()
    assert table[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    name, status, roles, _age, version = table[1].split()
    assert (name, status, roles, version) == ("sandbox", "Ready", "<none>", "v1.33.0")
    wide = apiserver.kubectl("get", "no", "-o", "wide", binary=kubectl).stdout
    assert "INTERNAL-IP" in wide and "127.0.0.1" in wide
    described = apiserver.kubectl("describe", "node", "sandbox", binary=kubectl).stdout
    for text in ("Name:               sandbox", "KubeletReady", "InternalIP:  127.0.0.1", "Kubelet Version:",
                 "Allocatable:", "HolderIdentity:  sandbox"):
        assert text in described
    assert "Failed to get lease" not in described


def test_node_object_shape(apiserver):  # noqa: F811
    status, node = apiserver.request("GET", "/api/v1/nodes/sandbox")
    assert status == 200 and node["kind"] == "Node" and "namespace" not in node["metadata"]
    st = node["status"]
    assert {"type": "Ready", "status": "True"}.items() <= [c for c in st["conditions"] if c["type"] == "Ready"][0].items()
    assert st["nodeInfo"]["kubeletVersion"] == "v1.33.0"
    assert {"type": "InternalIP", "address": "127.0.0.1"} in st["addresses"]
    for key in ("cpu", "memory", "pods"):
        assert st["capacity"][key] and st["allocatable"][key]
    status, _ = apiserver.request("GET", "/api/v1/namespaces/default/nodes/sandbox")
    assert status == 404


# --- kind: List ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kubectl", KUBECTLS)
def test_apply_list(apiserver, kubectl):  # noqa: F811
    tag = _tag(kubectl)
    ns = f"list-{tag}"
    apiserver.kubectl("create", "ns", ns, binary=kubectl)
    manifest = LIST_MANIFEST.format(prefix=tag, ns=ns)
    applied = apiserver.kubectl("apply", "-f", "-", input=manifest, binary=kubectl).stdout
    assert f"configmap/{tag}-a created" in applied and f"configmap/{tag}-b created" in applied
    again = apiserver.kubectl("apply", "-f", "-", input=manifest, binary=kubectl).stdout
    assert f"configmap/{tag}-a unchanged" in again
    names = apiserver.kubectl("-n", ns, "get", "cm", "-o", "name", binary=kubectl).stdout.split()
    assert {f"configmap/{tag}-a", f"configmap/{tag}-b"} <= set(names)


@pytest.mark.parametrize("kubectl", KUBECTLS)
def test_apply_list_validates_client_side(apiserver, kubectl):  # noqa: F811
    manifest = """
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: invalid-one}
  bogus: 1
"""
    result = apiserver.kubectl("apply", "-f", "-", input=manifest, binary=kubectl, check=False)
    assert result.returncode != 0
    assert 'unknown field "bogus" in io.k8s.api.core.v1.ConfigMap' in result.stderr
    assert "proto:" not in result.stderr


def test_openapi_v2_protobuf_decodes(apiserver):  # noqa: F811
    """The protobuf document parses with gnostic's descriptor and carries what kubectl reads."""
    from pathlib import Path

    from google.protobuf import any_pb2, descriptor_pool, message_factory

    from receiptsync_sandbox.apiserver.protobuf_schema_gen import raw_descriptor
    from test_apiserver_support import KUBECTL_133

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(raw_descriptor(Path(KUBECTL_133).read_bytes(), "openapiv2/OpenAPIv2.proto"))
    document_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("openapi.v2.Document"))
    request = urllib.request.Request(apiserver.url + "/openapi/v2",
                                     headers={"Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["Content-Type"] == openapi_proto.MEDIA_TYPE
        document = document_class.FromString(response.read())
    _, as_json = apiserver.request("GET", "/openapi/v2")
    assert document.swagger == "2.0"
    definitions = {d.name: d.value for d in document.definitions.additional_properties}
    assert set(definitions) == set(as_json["definitions"])
    configmap = definitions["io.k8s.api.core.v1.ConfigMap"]
    assert list(configmap.type.value) == ["object"]
    gvk = [e for e in configmap.vendor_extension if e.name == "x-kubernetes-group-version-kind"][0]
    assert json.loads(gvk.value.yaml) == as_json["definitions"]["io.k8s.api.core.v1.ConfigMap"][
        "x-kubernetes-group-version-kind"]
    assert len(document.paths.path) == len(as_json["paths"])


# --- everyday reads -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kubectl", KUBECTLS)
def test_everyday_commands(apiserver, kubectl):  # noqa: F811
    apiserver.request("POST", "/api/v1/namespaces/default/events",
                      {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "seen"}, "type": "Normal",
                       "reason": "Tested", "message": "hello", "involvedObject": {"kind": "Pod", "name": "x"}})
    assert "NAME" in apiserver.kubectl("get", "all", "-n", "default", binary=kubectl).stdout
    events = apiserver.kubectl("get", "events", "-A", binary=kubectl).stdout
    assert "Tested" in events and events.split()[0] == "NAMESPACE"
    resources = apiserver.kubectl("api-resources", "-o", "wide", binary=kubectl).stdout
    assert any(line.split()[:2] == ["nodes", "no"] for line in resources.splitlines())
    assert apiserver.kubectl("auth", "can-i", "create", "jobs", binary=kubectl).stdout.strip() == "yes"
