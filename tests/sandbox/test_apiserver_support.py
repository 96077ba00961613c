"""Shared helpers for the sandbox API server tests: a real server process on a free port, a
kubeconfig for it, and runners for the real kubectl/helm binaries. (No tests in here.)"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
KUBECTL_133 = VENV_BIN / "kubectl"
KUBECTL_132 = Path("/usr/bin/kubectl")
HELM = VENV_BIN / "helm"
KUBECTLS = [pytest.param(KUBECTL_133, id="kubectl-1.33"), pytest.param(KUBECTL_132, id="kubectl-1.32")]


@dataclasses.dataclass
class ApiServer:
    url: str
    state_dir: Path
    kubeconfig: Path
    process: subprocess.Popen
    token: str = "test-user"

    def kubectl(self, *args: str, binary: Path = KUBECTL_133, input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess:
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), KUBECACHEDIR=str(self.state_dir / f"cache-{abs(hash(str(binary)))}"))
        result = subprocess.run([str(binary), *args], input=input, capture_output=True, text=True, env=env,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        home = self.state_dir / "helm"
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), HELM_CACHE_HOME=str(home / "cache"),
                   HELM_CONFIG_HOME=str(home / "config"), HELM_DATA_HOME=str(home / "data"))
        result = subprocess.run([str(HELM), *args], capture_output=True, text=True, env=env, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def request(self, method: str, path: str, body: object | None = None, *, content_type: str = "application/json",
                accept: str = "application/json", token: str | None = None) -> tuple[int, dict]:
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": content_type, "Accept": accept,
                                              "Authorization": f"Bearer {token or self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")


def write_kubeconfig(path: Path, url: str, token: str) -> None:
    path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: sandbox
  cluster: {{server: "{url}"}}
users:
- name: tester
  user: {{token: "{token}"}}
contexts:
- name: sandbox
  context: {{cluster: sandbox, user: tester, namespace: default}}
current-context: sandbox
""")


def start_apiserver(state_dir: Path) -> ApiServer:
    state_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "receiptsync_sandbox.apiserver", "--port", "0", "--state-dir", str(state_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    line = process.stdout.readline().strip()
    if not line.startswith("READY "):
        process.kill()
        raise RuntimeError(f"API server did not start: {line}{process.stdout.read()}")
    url = line.split(" ", 1)[1]
    kubeconfig = state_dir / "kubeconfig"
    write_kubeconfig(kubeconfig, url, "test-user")
    return ApiServer(url=url, state_dir=state_dir, kubeconfig=kubeconfig, process=process)


def stop_apiserver(server: ApiServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    shutil.rmtree(server.state_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory) -> ApiServer:
    server = start_apiserver(tmp_path_factory.mktemp("apiserver"))
    yield server
    stop_apiserver(server)


@pytest.fixture(scope="module")
def k8s_client(apiserver):
    """The official kubernetes Python client, configured from the kubeconfig."""
    import kubernetes

    client = kubernetes.config.new_client_from_config(config_file=str(apiserver.kubeconfig))
    yield client
    client.close()


WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Phase, type: string, jsonPath: .status.phase}
    - {name: Color, type: string, jsonPath: .spec.color, priority: 1}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, default: 1}
              color: {type: string}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
"""
