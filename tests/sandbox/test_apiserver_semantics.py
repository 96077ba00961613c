"""kube-apiserver semantics, checked through the official kubernetes Python client and raw HTTP."""
from __future__ import annotations

import asyncio
import json
import threading
import time

import aiohttp
import kubernetes
import pytest
from kubernetes.client.rest import ApiException

from test_apiserver_support import WIDGET_CRD, apiserver, k8s_client  # noqa: F401  (fixtures)


def _create_ns(client, name: str) -> None:
    kubernetes.client.CoreV1Api(client).create_namespace({"metadata": {"name": name}})


def _wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def test_metadata_resource_versions_and_conflicts(k8s_client):  # noqa: F811
    core = kubernetes.client.CoreV1Api(k8s_client)
    _create_ns(k8s_client, "meta")
    first = core.create_namespaced_config_map("meta", {"metadata": {"generateName": "gen-"}, "data": {"a": "1"}})
    assert first.metadata.name.startswith("gen-") and len(first.metadata.name) == 9
    assert first.metadata.uid and first.metadata.creation_timestamp
    second = core.patch_namespaced_config_map(first.metadata.name, "meta", {"data": {"a": "2"}})
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    stale = core.read_namespaced_config_map(first.metadata.name, "meta")
    stale.metadata.resource_version = first.metadata.resource_version
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_config_map(first.metadata.name, "meta", stale)
    assert conflict.value.status == 409
    assert json.loads(conflict.value.body)["reason"] == "Conflict"
    with pytest.raises(ApiException) as exists:
        core.create_namespaced_config_map("meta", {"metadata": {"name": first.metadata.name}})
    assert exists.value.status == 409 and json.loads(exists.value.body)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("nope", "meta")
    body = json.loads(missing.value.body)
    assert missing.value.status == 404 and body["kind"] == "Status" and body["details"]["name"] == "nope"
    # a no-op write keeps the resourceVersion
    same = core.patch_namespaced_config_map(first.metadata.name, "meta", {"data": {"a": "2"}})
    assert same.metadata.resource_version == second.metadata.resource_version


def test_generation_bumps_only_on_spec_changes(k8s_client):  # noqa: F811
    apps = kubernetes.client.AppsV1Api(k8s_client)
    _create_ns(k8s_client, "gen")
    dep = {"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
        "metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}}}}
    created = apps.create_namespaced_deployment("gen", dep)
    assert created.metadata.generation == 1 and created.spec.strategy.type == "RollingUpdate"
    labelled = apps.patch_namespaced_deployment("d", "gen", {"metadata": {"labels": {"x": "y"}}})
    assert labelled.metadata.generation == 1
    status = apps.patch_namespaced_deployment_status("d", "gen", {"status": {"replicas": 1}})
    assert status.metadata.generation == 1 and status.status.replicas == 1
    changed = apps.patch_namespaced_deployment("d", "gen", {"spec": {"replicas": 4}})
    assert changed.metadata.generation == 2 and changed.status.replicas == 1


def test_patch_flavours(k8s_client, apiserver):  # noqa: F811
    _create_ns(k8s_client, "patches")
    base = "/apis/apps/v1/namespaces/patches/deployments"
    dep = {"metadata": {"name": "p"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
        "metadata": {"labels": {"a": "b"}}, "spec": {"containers": [
            {"name": "one", "image": "x:1", "env": [{"name": "A", "value": "1"}]},
            {"name": "two", "image": "y:1"}]}}}}
    assert apiserver.request("POST", base, dep)[0] == 201
    strategic = {"spec": {"template": {"spec": {"containers": [
        {"name": "one", "env": [{"name": "B", "value": "2"}]}, {"name": "two", "$patch": "delete"}]}}}}
    status, obj = apiserver.request("PATCH", base + "/p", strategic, content_type="application/strategic-merge-patch+json")
    containers = obj["spec"]["template"]["spec"]["containers"]
    assert status == 200 and [c["name"] for c in containers] == ["one"]
    assert containers[0]["image"] == "x:1" and containers[0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    ops = [{"op": "replace", "path": "/spec/replicas", "value": 5}, {"op": "test", "path": "/metadata/name", "value": "p"}]
    status, obj = apiserver.request("PATCH", base + "/p", ops, content_type="application/json-patch+json")
    assert status == 200 and obj["spec"]["replicas"] == 5
    status, _ = apiserver.request("PATCH", base + "/p", [{"op": "test", "path": "/spec/replicas", "value": 1}],
                                  content_type="application/json-patch+json")
    assert status == 422
    status, obj = apiserver.request("PATCH", base + "/p?dryRun=All", {"spec": {"replicas": 9}},
                                    content_type="application/merge-patch+json")
    assert status == 200 and obj["spec"]["replicas"] == 9
    assert apiserver.request("GET", base + "/p")[1]["spec"]["replicas"] == 5


def test_selectors(k8s_client):  # noqa: F811
    core = kubernetes.client.CoreV1Api(k8s_client)
    _create_ns(k8s_client, "sel")
    for name, labels in [("a", {"tier": "web", "env": "prod"}), ("b", {"tier": "db", "env": "prod"}),
                         ("c", {"tier": "web"})]:
        core.create_namespaced_config_map("sel", {"metadata": {"name": name, "labels": labels}})

    def names(**kw):
        return sorted(i.metadata.name for i in core.list_namespaced_config_map("sel", **kw).items
                      if i.metadata.name != "kube-root-ca.crt")

    assert names(label_selector="tier=web") == ["a", "c"]
    assert names(label_selector="tier==web,env=prod") == ["a"]
    assert names(label_selector="tier!=web") == ["b"]
    assert names(label_selector="tier in (db, web),env") == ["a", "b"]
    assert names(label_selector="tier notin (db)") == ["a", "c"]
    assert names(label_selector="!env") == ["c"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b,metadata.namespace=sel") == ["a", "c"]
    pods = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    core.create_namespaced_pod("sel", pods)
    assert len(core.list_pod_for_all_namespaces(field_selector="status.phase=Pending").items) == 1
    assert len(core.list_pod_for_all_namespaces(field_selector="status.phase=Running").items) == 0
    first_page = core.list_namespaced_config_map("sel", limit=2)
    assert len(first_page.items) == 2 and first_page.metadata._continue
    rest = core.list_namespaced_config_map("sel", limit=2, _continue=first_page.metadata._continue)
    assert len(rest.items) >= 1


def _watch_lines(apiserver, path: str, count: int, timeout: float = 10) -> list[dict]:  # noqa: F811
    async def run() -> list[dict]:
        events = []
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer t"}) as session:
            async with session.get(apiserver.url + path, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                async for line in response.content:
                    events.append(json.loads(line))
                    if len(events) >= count:
                        break
        return events

    return asyncio.run(run())


def test_watch_resume_and_gone(k8s_client, apiserver):  # noqa: F811
    core = kubernetes.client.CoreV1Api(k8s_client)
    _create_ns(k8s_client, "watch")
    start = core.list_namespaced_config_map("watch").metadata.resource_version
    core.create_namespaced_config_map("watch", {"metadata": {"name": "w1"}})
    core.patch_namespaced_config_map("w1", "watch", {"data": {"k": "v"}})
    core.delete_namespaced_config_map("w1", "watch")
    events = _watch_lines(apiserver, f"/api/v1/namespaces/watch/configmaps?watch=1&resourceVersion={start}", 3)
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and versions[0] > int(start)
    # the official client's watch resumes from a version too
    watcher = kubernetes.watch.Watch()
    seen = [e["type"] for e in watcher.stream(core.list_namespaced_config_map, "watch", resource_version=start,
                                              timeout_seconds=1)]
    assert seen == ["ADDED", "MODIFIED", "DELETED"]
    apiserver.request("POST", "/sandbox/compact")
    expired = _watch_lines(apiserver, f"/api/v1/watch/namespaces/watch/configmaps?resourceVersion={start}", 1)
    assert expired[0]["type"] == "ERROR" and expired[0]["object"]["code"] == 410


def test_watch_selection_timeout_and_bookmarks(k8s_client, apiserver):  # noqa: F811
    core = kubernetes.client.CoreV1Api(k8s_client)
    _create_ns(k8s_client, "wsel")
    core.create_namespaced_config_map("wsel", {"metadata": {"name": "m", "labels": {"pick": "yes"}}})
    rv = core.read_namespaced_config_map("m", "wsel").metadata.resource_version
    core.patch_namespaced_config_map("m", "wsel", {"metadata": {"labels": {"pick": "no"}}})
    core.patch_namespaced_config_map("m", "wsel", {"metadata": {"labels": {"pick": "yes"}}})
    events = _watch_lines(apiserver, f"/api/v1/namespaces/wsel/configmaps?watch=true&labelSelector=pick%3Dyes"
                                     f"&resourceVersion={rv}", 2)
    assert [e["type"] for e in events] == ["DELETED", "ADDED"]  # left, then re-entered the selection
    began = time.monotonic()
    initial = _watch_lines(apiserver, "/api/v1/namespaces/wsel/configmaps?watch=1&timeoutSeconds=1", 10)
    assert time.monotonic() - began < 5 and [e["type"] for e in initial] == ["ADDED"]
    with_initial = _watch_lines(apiserver, "/api/v1/namespaces/wsel/configmaps?watch=1&sendInitialEvents=true"
                                           "&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan", 2)
    assert with_initial[1]["type"] == "BOOKMARK"
    assert with_initial[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_concurrent_watchers_each_get_every_event(k8s_client, apiserver):  # noqa: F811
    core = kubernetes.client.CoreV1Api(k8s_client)
    _create_ns(k8s_client, "fanout")
    rv = core.list_namespaced_config_map("fanout").metadata.resource_version
    path = f"/api/v1/namespaces/fanout/configmaps?watch=1&resourceVersion={rv}"

    async def fast(session, count):
        names = []
        async with session.get(apiserver.url + path) as response:
            async for line in response.content:
                names.append(json.loads(line)["object"]["metadata"]["name"])
                if len(names) == count:
                    return names

    async def slow(session):
        async with session.get(apiserver.url + path) as response:
            await asyncio.sleep(30)  # never reads: must not hold anyone up

    async def run():
        async with aiohttp.ClientSession() as session:
            stalled = asyncio.create_task(slow(session))
            watchers = [asyncio.create_task(fast(session, 40)) for _ in range(4)]
            await asyncio.sleep(0.3)
            await asyncio.to_thread(lambda: [core.create_namespaced_config_map(
                "fanout", {"metadata": {"name": f"c{i:02d}"}, "data": {"pad": "x" * 2000}}) for i in range(40)])
            results = await asyncio.wait_for(asyncio.gather(*watchers), timeout=20)
            stalled.cancel()
            return results

    results = asyncio.run(run())
    expected = [f"c{i:02d}" for i in range(40)]
    assert all(r == expected for r in results)


def test_finalizers_and_owner_reference_gc(k8s_client):  # noqa: F811
    core = kubernetes.client.CoreV1Api(k8s_client)
    batch = kubernetes.client.BatchV1Api(k8s_client)
    custom = kubernetes.client.CustomObjectsApi(k8s_client)
    ext = kubernetes.client.ApiextensionsV1Api(k8s_client)
    import yaml

    try:
        ext.create_custom_resource_definition(yaml.safe_load(WIDGET_CRD))
    except ApiException as exc:
        assert exc.status == 409
    _create_ns(k8s_client, "gc")
    owner = custom.create_namespaced_custom_object("example.com", "v1", "gc", "widgets",
                                                   {"apiVersion": "example.com/v1", "kind": "Widget",
                                                    "metadata": {"name": "owner", "finalizers": ["example.com/x"]}})
    ref = {"apiVersion": "example.com/v1", "kind": "Widget", "name": "owner", "uid": owner["metadata"]["uid"],
           "controller": True, "blockOwnerDeletion": True}
    job = batch.create_namespaced_job("gc", {"metadata": {"name": "j", "ownerReferences": [ref]}, "spec": {
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}})
    job_ref = {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": job.metadata.uid, "controller": True}
    core.create_namespaced_pod("gc", {"metadata": {"name": "j-pod", "ownerReferences": [job_ref]},
                                      "spec": {"containers": [{"name": "c", "image": "i"}]}})
    custom.delete_namespaced_custom_object("example.com", "v1", "gc", "widgets", "owner")
    held = custom.get_namespaced_custom_object("example.com", "v1", "gc", "widgets", "owner")
    assert held["metadata"]["deletionTimestamp"]
    time.sleep(1.2)
    assert batch.read_namespaced_job("j", "gc")  # the owner still exists: nothing collected yet
    custom.patch_namespaced_custom_object("example.com", "v1", "gc", "widgets", "owner", {"metadata": {"finalizers": None}})
    _wait_until(lambda: not batch.list_namespaced_job("gc").items and not core.list_namespaced_pod("gc").items)


def test_propagation_policies(k8s_client):  # noqa: F811
    core = kubernetes.client.CoreV1Api(k8s_client)
    _create_ns(k8s_client, "prop")

    def owner_and_child(name):
        owner = core.create_namespaced_config_map("prop", {"metadata": {"name": name}})
        ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": owner.metadata.uid}
        core.create_namespaced_secret("prop", {"metadata": {"name": f"{name}-child", "ownerReferences": [ref]}})

    owner_and_child("orphaning")
    core.delete_namespaced_config_map("orphaning", "prop", propagation_policy="Orphan")
    _wait_until(lambda: not any(c.metadata.name == "orphaning" for c in core.list_namespaced_config_map("prop").items))
    time.sleep(1.2)
    kept = core.read_namespaced_secret("orphaning-child", "prop")
    assert not kept.metadata.owner_references

    owner_and_child("fg")
    core.delete_namespaced_config_map("fg", "prop", propagation_policy="Foreground")
    _wait_until(lambda: not [s for s in core.list_namespaced_secret("prop").items if s.metadata.name == "fg-child"]
                and not [c for c in core.list_namespaced_config_map("prop").items if c.metadata.name == "fg"])


def test_namespace_deletion_removes_contents(k8s_client):  # noqa: F811
    core = kubernetes.client.CoreV1Api(k8s_client)
    _create_ns(k8s_client, "doomed")
    assert core.read_namespaced_service_account("default", "doomed")
    core.create_namespaced_config_map("doomed", {"metadata": {"name": "x"}})
    core.delete_namespace("doomed")
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_config_map("doomed", {"metadata": {"name": "late"}})
    assert refused.value.status in (403, 404)
    _wait_until(lambda: "doomed" not in [n.metadata.name for n in core.list_namespace().items])


def test_pod_graceful_deletion_and_status(k8s_client):  # noqa: F811
    core = kubernetes.client.CoreV1Api(k8s_client)
    _create_ns(k8s_client, "pods")
    pod = core.create_namespaced_pod("pods", {"metadata": {"name": "p"}, "spec": {
        "containers": [{"name": "c", "image": "i"}], "nodeName": "sandbox-node"}})
    assert pod.spec.restart_policy == "Always" and pod.spec.service_account_name == "default"
    core.patch_namespaced_pod_status("p", "pods", {"status": {"phase": "Running"}})
    core.delete_namespaced_pod("p", "pods")
    terminating = core.read_namespaced_pod("p", "pods")  # bound and running: waits for its kubelet
    assert terminating.metadata.deletion_timestamp
    core.delete_namespaced_pod("p", "pods", grace_period_seconds=0)  # the node agent confirms
    assert not core.list_namespaced_pod("pods").items


def test_audit_records_calls_per_user(apiserver):  # noqa: F811
    apiserver.request("GET", "/api/v1/namespaces/default/configmaps", token="auditor")
    apiserver.request("PATCH", "/api/v1/namespaces/default/configmaps/none", {}, token="auditor",
                      content_type="application/merge-patch+json")
    status, entries = apiserver.request("GET", "/sandbox/audit?user=auditor")
    assert status == 200
    verbs = {(e["verb"], e["resource"], e["namespace"]) for e in entries}
    assert verbs == {("list", "configmaps", "default"), ("patch", "configmaps", "default")}


def test_tables_for_jobs_and_pods(apiserver, k8s_client):  # noqa: F811
    _create_ns(k8s_client, "tables")
    job = {"metadata": {"name": "j"}, "spec": {"template": {"spec": {"restartPolicy": "Never",
                                                                     "containers": [{"name": "c", "image": "i"}]}}}}
    apiserver.request("POST", "/apis/batch/v1/namespaces/tables/jobs", job)
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    status, table = apiserver.request("GET", "/apis/batch/v1/namespaces/tables/jobs?includeObject=Object", accept=accept)
    assert [c["name"] for c in table["columnDefinitions"]][:5] == ["Name", "Status", "Completions", "Duration", "Age"]
    assert table["rows"][0]["cells"][:3] == ["j", "Running", "0/1"]
    assert table["rows"][0]["object"]["kind"] == "Job"
    status, table = apiserver.request("GET", "/api/v1/namespaces/tables/pods", accept=accept)
    assert [c["name"] for c in table["columnDefinitions"]][:5] == ["Name", "Ready", "Status", "Restarts", "Age"]


def test_unknown_resources_and_scopes_are_404(apiserver):  # noqa: F811
    assert apiserver.request("GET", "/apis/example.com/v9/things")[0] == 404
    assert apiserver.request("GET", "/api/v1/namespaces/default/namespaces")[0] == 404
    assert apiserver.request("GET", "/api/v1/configmaps/foo")[0] == 404


def test_events_api_groups_share_one_storage(apiserver):  # noqa: F811
    apiserver.request("POST", "/api/v1/namespaces", {"metadata": {"name": "evg"}})
    new_style = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e1"},
                 "eventTime": "2025-01-01T00:00:00.000000Z", "reportingController": "me", "reportingInstance": "me-1",
                 "action": "Sync", "reason": "Synced", "type": "Normal", "note": "hello",
                 "regarding": {"kind": "ConfigMap", "name": "c", "namespace": "evg"}}
    assert apiserver.request("POST", "/apis/events.k8s.io/v1/namespaces/evg/events", new_style)[0] == 201
    status, core = apiserver.request("GET", "/api/v1/namespaces/evg/events/e1")
    assert core["message"] == "hello" and core["involvedObject"]["name"] == "c" and core["apiVersion"] == "v1"
    status, listed = apiserver.request("GET", "/apis/events.k8s.io/v1/namespaces/evg/events?fieldSelector=regarding.name%3Dc")
    assert [e["note"] for e in listed["items"]] == ["hello"]


def test_create_ignores_status_where_status_is_a_subresource(apiserver):  # noqa: F811
    apiserver.request("POST", "/api/v1/namespaces", {"metadata": {"name": "nostatus"}})
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]},
           "status": {"phase": "Running"}}
    status, created = apiserver.request("POST", "/api/v1/namespaces/nostatus/pods", pod)
    assert status == 201 and created["status"]["phase"] == "Pending"
    status, dry = apiserver.request("POST", "/api/v1/namespaces/nostatus/configmaps?dryRun=All", {"metadata": {"name": "d"}})
    assert status == 201 and apiserver.request("GET", "/api/v1/namespaces/nostatus/configmaps/d")[0] == 404


async def test_in_process_app_bookmarks_warnings_and_deletecollection(tmp_path):
    """create_app() served in-process: periodic BOOKMARKs, Warning headers from schema admission,
    and deletecollection with a label selector."""
    import yaml
    from aiohttp.test_utils import TestClient, TestServer

    from receiptsync_sandbox.apiserver.server import create_app

    async with TestClient(TestServer(create_app(tmp_path, bookmark_interval=0.3))) as client:
        crd = yaml.safe_load(WIDGET_CRD)
        assert (await client.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)).status == 201
        base = "/apis/example.com/v1/namespaces/default/widgets"
        widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
                  "spec": {"size": 1, "unknownField": True}}
        response = await client.post(base + "?fieldValidation=Warn", json=widget)
        assert response.status == 201
        assert any("unknownField" in w for w in response.headers.getall("Warning", []))
        assert "unknownField" not in (await response.json())["spec"]  # pruned
        strict = await client.post(base + "?fieldValidation=Strict", json=dict(widget, metadata={"name": "w2"}))
        assert strict.status in (400, 422)

        async with client.get(base + "?watch=1&allowWatchBookmarks=true&resourceVersion=0") as stream:
            types = []
            while len(types) < 2:
                types.append(json.loads(await asyncio.wait_for(stream.content.readline(), 5))["type"])
        assert types == ["ADDED", "BOOKMARK"]

        for name, tier in (("a", "x"), ("b", "x"), ("c", "y")):
            await client.post("/api/v1/namespaces/default/configmaps",
                              json={"metadata": {"name": name, "labels": {"tier": tier}}})
        deleted = await client.delete("/api/v1/namespaces/default/configmaps?labelSelector=tier%3Dx")
        assert sorted(i["metadata"]["name"] for i in (await deleted.json())["items"]) == ["a", "b"]
        left = await (await client.get("/api/v1/namespaces/default/configmaps")).json()
        assert [i["metadata"]["name"] for i in left["items"]] == ["c"]
