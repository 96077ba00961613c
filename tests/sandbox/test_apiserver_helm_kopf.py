"""helm v4 (server-side apply) and kopf against the sandbox API server."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import kubernetes

from test_apiserver_support import VENV_BIN, WIDGET_CRD, apiserver, k8s_client  # noqa: F401  (fixtures)

CHART = Path(__file__).parent / "charts" / "tiny"


def test_helm_install_upgrade_uninstall(apiserver):  # noqa: F811
    apiserver.kubectl("create", "ns", "helm")
    apiserver.helm("install", "t1", str(CHART), "-n", "helm", "--set", "extraKey=e1")
    data = json.loads(apiserver.kubectl("-n", "helm", "get", "cm", "t1-config", "-o", "json").stdout)["data"]
    assert data == {"greeting": "hello", "extra": "e1"}
    apiserver.helm("upgrade", "t1", str(CHART), "-n", "helm", "--set", "greeting=bye", "--set", "replicas=2")
    data = json.loads(apiserver.kubectl("-n", "helm", "get", "cm", "t1-config", "-o", "json").stdout)["data"]
    assert data == {"greeting": "bye"}  # a value no longer rendered is removed
    replicas = apiserver.kubectl("-n", "helm", "get", "deploy", "t1-web", "-o", "jsonpath={.spec.replicas}").stdout
    assert replicas == "2"
    listed = apiserver.helm("list", "-n", "helm", "-o", "json").stdout
    assert json.loads(listed)[0]["revision"] == "2"
    apiserver.helm("uninstall", "t1", "-n", "helm")
    left = apiserver.kubectl("-n", "helm", "get", "cm,deploy,secret", "-o", "name").stdout
    assert "t1-" not in left and "sh.helm.release" not in left


OPERATOR = textwrap.dedent('''
    import kopf

    @kopf.on.startup()
    def configure(settings: kopf.OperatorSettings, **_):
        settings.watching.server_timeout = 5
        settings.persistence.finalizer = "example.com/kopf-finalizer"

    @kopf.on.create("example.com", "v1", "widgets")
    def created(spec, body, patch, **_):
        kopf.info(body, reason="Made", message="widget made")
        patch.status["phase"] = "Created"

    @kopf.on.update("example.com", "v1", "widgets", field="spec.size")
    def resized(new, patch, **_):
        patch.status["phase"] = f"Resized-{new}"

    @kopf.on.delete("example.com", "v1", "widgets")
    def deleted(**_):
        pass
''')


def _wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_kopf_operator_lists_watches_patches_and_posts_events(apiserver, k8s_client, tmp_path):  # noqa: F811
    apiserver.kubectl("apply", "-f", "-", input=WIDGET_CRD)
    apiserver.kubectl("create", "ns", "kopf")
    script = tmp_path / "operator.py"
    script.write_text(OPERATOR)
    env = dict(os.environ, KUBECONFIG=str(apiserver.kubeconfig))
    operator = subprocess.Popen([str(VENV_BIN / "kopf"), "run", "--standalone", "-n", "kopf", str(script)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    custom = kubernetes.client.CustomObjectsApi(k8s_client)
    try:
        custom.create_namespaced_custom_object("example.com", "v1", "kopf", "widgets", {
            "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}})
        get = lambda: custom.get_namespaced_custom_object("example.com", "v1", "kopf", "widgets", "w")  # noqa: E731
        _wait_for(lambda: get().get("status", {}).get("phase") == "Created")
        assert "example.com/kopf-finalizer" in get()["metadata"]["finalizers"]
        custom.patch_namespaced_custom_object("example.com", "v1", "kopf", "widgets", "w", {"spec": {"size": 2}})
        _wait_for(lambda: get().get("status", {}).get("phase") == "Resized-2")
        described = apiserver.kubectl("-n", "kopf", "describe", "wd", "w").stdout
        assert "Made" in described and "widget made" in described
        custom.delete_namespaced_custom_object("example.com", "v1", "kopf", "widgets", "w")
        core = kubernetes.client.CoreV1Api(k8s_client)
        _wait_for(lambda: not custom.list_namespaced_custom_object("example.com", "v1", "kopf", "widgets")["items"])
        assert core.list_namespaced_event("kopf").items
    finally:
        operator.terminate()
        output = operator.communicate(timeout=15)[0]
    assert "Traceback" not in output, output
