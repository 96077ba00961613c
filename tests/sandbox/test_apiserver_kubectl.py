"""The sandbox API server driven by the real kubectl binaries (1.33 from the venv, 1.32 on PATH)."""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from test_apiserver_support import KUBECTLS, WIDGET_CRD, apiserver  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def widgets(apiserver):  # noqa: F811
    apiserver.kubectl("apply", "-f", "-", input=WIDGET_CRD)
    apiserver.kubectl("wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=10s")
    return apiserver


def _tag(binary) -> str:
    return "k133" if ".venv" in str(binary) else "k132"


def _ns(server, name: str, binary) -> str:
    server.kubectl("create", "ns", name, binary=binary)
    return name


@pytest.mark.parametrize("kubectl", KUBECTLS)
def test_version_and_api_resources(apiserver, kubectl):  # noqa: F811
    version = json.loads(apiserver.kubectl("version", "-o", "json", binary=kubectl).stdout)
    assert version["serverVersion"]["minor"] == "33"
    resources = apiserver.kubectl("api-resources", binary=kubectl).stdout
    for line in ("configmaps", "deployments", "jobs", "leases", "customresourcedefinitions", "roles"):
        assert line in resources
    assert "events.k8s.io/v1" in resources


def test_legacy_discovery_fallback(apiserver):  # noqa: F811
    """A client that does not ask for aggregated discovery gets the legacy documents."""
    status, groups = apiserver.request("GET", "/apis")
    assert status == 200 and groups["kind"] == "APIGroupList"
    assert any(g["name"] == "apps" for g in groups["groups"])
    status, aggregated = apiserver.request(
        "GET", "/apis", accept="application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json")
    assert aggregated["kind"] == "APIGroupDiscoveryList"
    status, core = apiserver.request("GET", "/api/v1")
    assert {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]} in core["resources"]


@pytest.mark.parametrize("kubectl", KUBECTLS)
def test_configmap_lifecycle(apiserver, kubectl):  # noqa: F811
    ns = _ns(apiserver, f"cm-{_tag(kubectl)}", kubectl)
    apiserver.kubectl("-n", ns, "create", "configmap", "c1", "--from-literal=a=1", binary=kubectl)
    table = apiserver.kubectl("-n", ns, "get", "cm", binary=kubectl).stdout
    assert table.split("\n")[0].split() == ["NAME", "DATA", "AGE"]
    assert "c1" in table and "kube-root-ca" not in table
    apiserver.kubectl("-n", ns, "patch", "cm", "c1", "-p", '{"data":{"b":"2"}}', binary=kubectl)
    data = json.loads(apiserver.kubectl("-n", ns, "get", "cm", "c1", "-o", "json", binary=kubectl).stdout)["data"]
    assert data == {"a": "1", "b": "2"}
    described = apiserver.kubectl("-n", ns, "describe", "cm", "c1", binary=kubectl).stdout
    assert "Name:" in described and "c1" in described
    apiserver.kubectl("-n", ns, "delete", "cm", "c1", binary=kubectl)
    missing = apiserver.kubectl("-n", ns, "get", "cm", "c1", binary=kubectl, check=False)
    assert missing.returncode != 0 and 'configmaps "c1" not found' in missing.stderr


def test_object_in_missing_namespace_is_404(apiserver):  # noqa: F811
    result = apiserver.kubectl("-n", "nowhere", "create", "configmap", "c", check=False)
    assert 'namespaces "nowhere" not found' in result.stderr


@pytest.mark.parametrize("kubectl", KUBECTLS)
def test_deployment_apply_scale_and_columns(apiserver, kubectl):  # noqa: F811
    ns = _ns(apiserver, f"dep-{_tag(kubectl)}", kubectl)
    manifest = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: main, image: "example/web:1", env: [{{name: A, value: "1"}}]}}]
"""
    assert "created" in apiserver.kubectl("apply", "-f", "-", input=manifest, binary=kubectl).stdout
    assert "configured" in apiserver.kubectl("apply", "-f", "-", input=manifest.replace('"1"}]', '"2"}]'),
                                             binary=kubectl).stdout
    dep = json.loads(apiserver.kubectl("-n", ns, "get", "deploy", "web", "-o", "json", binary=kubectl).stdout)
    assert dep["spec"]["replicas"] == 1  # defaulted
    assert dep["metadata"]["generation"] == 2
    assert dep["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "2"}]
    apiserver.kubectl("-n", ns, "scale", "deploy", "web", "--replicas=3", binary=kubectl)
    wide = apiserver.kubectl("-n", ns, "get", "deploy", "-o", "wide", binary=kubectl).stdout
    header = wide.split("\n")[0].split()
    assert header[:5] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"] and "IMAGES" in header
    assert "0/3" in wide and "example/web:1" in wide


@pytest.mark.parametrize("kubectl", KUBECTLS)
def test_crd_printer_columns_and_status_subresource(widgets, kubectl):
    ns = _ns(widgets, f"crd-{_tag(kubectl)}", kubectl)
    widgets.kubectl("-n", ns, "apply", "-f", "-", binary=kubectl,
                    input="apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3, color: red}\n")
    table = widgets.kubectl("-n", ns, "get", "wd", binary=kubectl).stdout.split("\n")
    assert table[0].split() == ["NAME", "SIZE", "PHASE", "AGE"]
    assert table[1].split()[:2] == ["w1", "3"]
    wide = widgets.kubectl("-n", ns, "get", "widgets", "-o", "wide", binary=kubectl).stdout.split("\n")
    assert wide[0].split() == ["NAME", "SIZE", "PHASE", "COLOR", "AGE"] and "red" in wide[1]
    # status changes on the main resource are ignored; spec changes on /status are ignored
    widgets.kubectl("-n", ns, "patch", "wd", "w1", "--type=merge", "-p", '{"status":{"phase":"Sneaky"}}', binary=kubectl)
    widgets.kubectl("-n", ns, "patch", "wd", "w1", "--subresource=status", "--type=merge",
                    "-p", '{"spec":{"size":99},"status":{"phase":"Ready"}}', binary=kubectl)
    obj = json.loads(widgets.kubectl("-n", ns, "get", "wd", "w1", "-o", "json", binary=kubectl).stdout)
    assert obj["status"] == {"phase": "Ready"}
    assert obj["spec"]["size"] == 3 and obj["metadata"]["generation"] == 1
    widgets.kubectl("-n", ns, "patch", "wd", "w1", "--type=merge", "-p", '{"spec":{"size":4}}', binary=kubectl)
    obj = json.loads(widgets.kubectl("-n", ns, "get", "wd", "w1", "-o", "json", binary=kubectl).stdout)
    assert obj["metadata"]["generation"] == 2


def test_crd_defaulting_and_deletion_removes_resources(apiserver):  # noqa: F811
    crd = WIDGET_CRD.replace("widgets", "gadgets").replace("widget", "gadget").replace("Widget", "Gadget") \
        .replace("[wd]", "[gd]")
    apiserver.kubectl("apply", "-f", "-", input=crd)
    apiserver.kubectl("wait", "--for=condition=Established", "crd/gadgets.example.com", "--timeout=10s")
    apiserver.kubectl("create", "ns", "gadgets")
    apiserver.kubectl("-n", "gadgets", "apply", "-f", "-",
                      input="apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g1}\nspec: {color: blue}\n")
    obj = json.loads(apiserver.kubectl("-n", "gadgets", "get", "gadget", "g1", "-o", "json").stdout)
    assert obj["spec"] == {"color": "blue", "size": 1}  # defaulted by the schema
    apiserver.kubectl("delete", "crd", "gadgets.example.com", "--timeout=20s")
    gone = apiserver.kubectl("-n", "gadgets", "get", "gadgets", check=False)
    assert gone.returncode != 0
    assert "gadgets" not in apiserver.kubectl("api-resources").stdout


def test_server_side_apply_removes_fields_no_longer_applied(apiserver):  # noqa: F811
    apiserver.kubectl("create", "ns", "ssa")
    base = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: s, namespace: ssa}\ndata: {a: '1', b: '2'}\n"
    assert "serverside-applied" in apiserver.kubectl("apply", "--server-side", "-f", "-", input=base).stdout
    apiserver.kubectl("-n", "ssa", "patch", "cm", "s", "--type=merge", "-p", '{"data":{"mine":"x"}}')
    apiserver.kubectl("apply", "--server-side", "-f", "-", input=base.replace(", b: '2'", ", c: '3'"))
    data = json.loads(apiserver.kubectl("-n", "ssa", "get", "cm", "s", "-o", "json").stdout)["data"]
    assert data == {"a": "1", "c": "3", "mine": "x"}


def test_wait_for_condition(widgets):
    widgets.kubectl("create", "ns", "waiting")
    widgets.kubectl("-n", "waiting", "apply", "-f", "-",
                    input="apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {size: 1}\n")
    waiter = subprocess.Popen(  # a background `kubectl wait` that the status patch releases
        [str(KUBECTLS[0].values[0]), "-n", "waiting", "wait", "--for=condition=Ready", "wd/w", "--timeout=20s"],
        env={"KUBECONFIG": str(widgets.kubeconfig), "KUBECACHEDIR": str(widgets.state_dir / "cache-wait")},
        stdout=-1, stderr=-1, text=True)
    time.sleep(1.0)
    widgets.kubectl("-n", "waiting", "patch", "wd", "w", "--subresource=status", "--type=merge",
                    "-p", '{"status":{"conditions":[{"type":"Ready","status":"True"}]}}')
    out, err = waiter.communicate(timeout=25)
    assert waiter.returncode == 0, err
    assert "condition met" in out


def test_finalizer_blocks_deletion_until_removed(apiserver):  # noqa: F811
    apiserver.kubectl("create", "ns", "fin")
    apiserver.kubectl("-n", "fin", "apply", "-f", "-",
                      input="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: f, finalizers: [example.com/hold]}\n")
    apiserver.kubectl("-n", "fin", "delete", "cm", "f", "--wait=false")
    held = json.loads(apiserver.kubectl("-n", "fin", "get", "cm", "f", "-o", "json").stdout)
    assert held["metadata"]["deletionTimestamp"]
    apiserver.kubectl("-n", "fin", "patch", "cm", "f", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    assert apiserver.kubectl("-n", "fin", "get", "cm", "f", check=False).returncode != 0


def test_events_show_in_describe(apiserver):  # noqa: F811
    apiserver.kubectl("create", "ns", "ev")
    apiserver.kubectl("-n", "ev", "create", "configmap", "target")
    uid = apiserver.kubectl("-n", "ev", "get", "cm", "target", "-o", "jsonpath={.metadata.uid}").stdout
    event = {"apiVersion": "v1", "kind": "Event", "metadata": {"generateName": "target.", "namespace": "ev"},
             "involvedObject": {"apiVersion": "v1", "kind": "ConfigMap", "name": "target", "namespace": "ev", "uid": uid},
             "reason": "Synced", "message": "it worked", "type": "Normal", "source": {"component": "tester"},
             "firstTimestamp": "2025-01-01T00:00:00Z", "lastTimestamp": "2025-01-01T00:00:00Z", "count": 1}
    status, _ = apiserver.request("POST", "/api/v1/namespaces/ev/events", event)
    assert status == 201
    other = dict(event, involvedObject=dict(event["involvedObject"], name="other", uid="x"), message="not this")
    apiserver.request("POST", "/api/v1/namespaces/ev/events", other)
    described = apiserver.kubectl("-n", "ev", "describe", "cm", "target").stdout
    assert "Synced" in described and "it worked" in described and "not this" not in described
    events = apiserver.kubectl("-n", "ev", "get", "events").stdout
    assert "configmap/target" in events


@pytest.mark.parametrize("kubectl", KUBECTLS)
def test_logs_from_the_node_agents_files(apiserver, kubectl):  # noqa: F811
    ns = _ns(apiserver, f"logs-{_tag(kubectl)}", kubectl)
    apiserver.kubectl("-n", ns, "create", "job", "j", "--image=example/worker:1", "--", "run", binary=kubectl)
    job = json.loads(apiserver.kubectl("-n", ns, "get", "job", "j", "-o", "json", binary=kubectl).stdout)
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert job["spec"]["selector"]["matchLabels"] == {"batch.kubernetes.io/controller-uid": job["metadata"]["uid"]}
    assert labels["job-name"] == "j" and job["spec"]["backoffLimit"] == 6
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "j-abcde", "labels": labels,
                        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j",
                                             "uid": job["metadata"]["uid"], "controller": True}]},
           "spec": {"containers": [{"name": "j", "image": "example/worker:1"}]}}
    status, created = apiserver.request("POST", f"/api/v1/namespaces/{ns}/pods", pod)
    assert status == 201 and created["status"]["phase"] == "Pending"
    log_dir = apiserver.state_dir / "logs" / ns / "j-abcde"
    log_dir.mkdir(parents=True)
    (log_dir / "j.log").write_text("line one\nline two\n")
    assert apiserver.kubectl("-n", ns, "logs", "job/j", binary=kubectl).stdout == "line one\nline two\n"
    assert apiserver.kubectl("-n", ns, "logs", "j-abcde", "--tail=1", binary=kubectl).stdout == "line two\n"


@pytest.mark.parametrize("kubectl", KUBECTLS)
def test_explain_custom_resource(widgets, kubectl):
    explained = widgets.kubectl("explain", "widgets.spec", binary=kubectl).stdout
    assert "size" in explained and "<integer>" in explained


def test_get_watch_streams_changes(widgets):
    widgets.kubectl("create", "ns", "getw")
    widgets.kubectl("-n", "getw", "apply", "-f", "-",
                    input="apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {size: 1}\n")
    env = {"KUBECONFIG": str(widgets.kubeconfig), "KUBECACHEDIR": str(widgets.state_dir / "cache-getw")}
    watcher = subprocess.Popen([str(KUBECTLS[0].values[0]), "-n", "getw", "get", "wd", "-w", "--request-timeout=3s"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    widgets.kubectl("-n", "getw", "patch", "wd", "w", "--type=merge", "-p", '{"spec":{"size":7}}')
    out, _ = watcher.communicate(timeout=15)
    rows = [line.split() for line in out.strip().split("\n")]
    assert rows[0][:2] == ["NAME", "SIZE"] and rows[1][:2] == ["w", "1"] and rows[-1][:2] == ["w", "7"]


def test_logs_follow_until_the_pod_terminates(apiserver):  # noqa: F811
    apiserver.kubectl("create", "ns", "follow")
    apiserver.kubectl("-n", "follow", "run", "p", "--image=example/x:1", "--restart=Never")
    log = apiserver.state_dir / "logs" / "follow" / "p" / "p.log"
    log.parent.mkdir(parents=True)
    log.write_text("first\n")
    env = {"KUBECONFIG": str(apiserver.kubeconfig), "KUBECACHEDIR": str(apiserver.state_dir / "cache-follow")}
    follower = subprocess.Popen([str(KUBECTLS[0].values[0]), "-n", "follow", "logs", "-f", "p"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.8)
    with log.open("a") as handle:
        handle.write("second\n")
    time.sleep(0.5)
    apiserver.kubectl("-n", "follow", "patch", "pod", "p", "--subresource=status", "--type=merge",
                      "-p", '{"status":{"phase":"Succeeded"}}')
    out, err = follower.communicate(timeout=15)
    assert follower.returncode == 0, err
    assert out == "first\nsecond\n"
