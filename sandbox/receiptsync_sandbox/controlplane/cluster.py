"""Start the upstream control plane for a sandbox: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler, each its own process (launched by the caller so `down` can find it), and wait until
the API server is ready and the controllers have given `default` its ServiceAccount."""
from __future__ import annotations

import dataclasses
import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from .. import kubeconfig as kubeconfigs
from ..services import free_port, wait_for_port
from . import components, pki as pkilib
from .components import Layout, Ports

NODE_NAME = "sandbox"
Launch = Callable[[str, list[str]], subprocess.Popen]


class ControlPlaneError(RuntimeError):
    pass


@dataclasses.dataclass
class ControlPlane:
    layout: Layout
    pki: pkilib.Pki
    ports: Ports

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.layout.kubeconfig(pkilib.ADMIN.file)

    @property
    def node_kubeconfig(self) -> Path:
        return self.layout.kubeconfig("node")

    def ssl_context(self, identity: pkilib.Identity = pkilib.ADMIN) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.cert(identity.file)), str(self.pki.key(identity.file)))
        return context

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 10) -> dict:
        """One admin call to the API server (for the few bootstrap steps `up` does itself)."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if method == "PATCH":
            headers["Content-Type"] = "application/merge-patch+json"
        req = urllib.request.Request(self.server + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, context=self.ssl_context(), timeout=timeout) as response:
            return json.loads(response.read() or b"{}")


def prepare(state_dir: Path) -> ControlPlane:
    """Certificates, kubeconfigs and the audit policy; nothing runs yet."""
    layout = Layout(state_dir)
    ports = Ports(*(free_port() for _ in range(5)))
    pki = pkilib.create(layout.pki, NODE_NAME)
    layout.audit_policy.write_text(components.AUDIT_POLICY)
    plane = ControlPlane(layout, pki, ports)
    identities = [pkilib.ADMIN, pkilib.CONTROLLER_MANAGER, pkilib.SCHEDULER, pkilib.node_identity(NODE_NAME)]
    for identity in identities:
        config = kubeconfigs.kubeconfig(plane.server, pki.ca_cert, user=identity.user,
                                        client_cert=pki.cert(identity.file), client_key=pki.key(identity.file))
        kubeconfigs.write_kubeconfig(layout.kubeconfig(identity.file), config)
    return plane


def start(plane: ControlPlane, binary: Path, launch: Launch, timeout: float = 60.0) -> None:
    layout, ports = plane.layout, plane.ports
    etcd = launch("etcd", components.etcd(binary, layout, ports))
    _wait(lambda: _port_open(ports.etcd_client), etcd, "etcd", timeout)
    apiserver = launch("kube-apiserver", components.apiserver(binary, layout, ports, plane.pki))
    _wait(lambda: _ready(plane), apiserver, "kube-apiserver", timeout)
    manager = launch("kube-controller-manager", components.controller_manager(binary, layout, ports, plane.pki))
    scheduler = launch("kube-scheduler", components.scheduler(binary, layout, ports))
    _wait(lambda: _healthy(ports.scheduler), scheduler, "kube-scheduler", timeout)
    # The ServiceAccount admission plugin refuses pods until their namespace has `default`.
    _wait(lambda: _exists(plane, "/api/v1/namespaces/default/serviceaccounts/default"), manager,
          "kube-controller-manager", timeout)


def _wait(condition: Callable[[], bool], process: subprocess.Popen, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise ControlPlaneError(f"{name} exited with code {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise ControlPlaneError(f"{name} was not ready after {timeout:.0f}s")
        time.sleep(0.2)


def _port_open(port: int) -> bool:
    try:
        wait_for_port(port, timeout=0.2)
        return True
    except Exception:  # noqa: BLE001 - not yet
        return False


def _ready(plane: ControlPlane) -> bool:
    try:
        req = urllib.request.Request(plane.server + "/readyz")
        with urllib.request.urlopen(req, context=plane.ssl_context(), timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _healthy(port: int) -> bool:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # its self-signed serving cert
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=context, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _exists(plane: ControlPlane, path: str) -> bool:
    try:
        plane.request("GET", path, timeout=2)
        return True
    except (urllib.error.URLError, OSError):
        return False
