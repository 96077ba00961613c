"""The bench's own calls to kube-apiserver, as the cluster admin: TLS with the CA and the client
certificate embedded in the sandbox's admin kubeconfig, kept-alive connections (urllib3), plain
JSON REST paths, and a watch on one namespace's ReceiptSyncs (or Jobs) that keeps every event with
its local receive time."""
from __future__ import annotations

import base64
import json
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import urllib3
import yaml

from receiptsync_common import contract

RS_PATH = f"/apis/{contract.GROUP}/{contract.VERSION}/namespaces/{{ns}}/{contract.PLURAL}"


class BenchError(RuntimeError):
    pass


class _Gone(Exception):
    """The watch's resourceVersion is too old."""


def ssl_context(kubeconfig: Path, folder: Path) -> tuple[str, ssl.SSLContext]:
    """(server URL, an SSL context trusting the cluster's CA and presenting the kubeconfig's client
    certificate). The certificate and key are written to ``folder`` (0600): ssl reads them from files."""
    config = yaml.safe_load(Path(kubeconfig).read_text())
    cluster = config["clusters"][0]["cluster"]
    user = config["users"][0]["user"]
    context = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "admin.crt", folder / "admin.key"
    for path, field in ((cert, "client-certificate-data"), (key, "client-key-data")):
        path.write_bytes(base64.b64decode(user[field]))
        os.chmod(path, 0o600)
    context.load_cert_chain(str(cert), str(key))
    return cluster["server"].rstrip("/"), context


class Kube:
    """JSON REST over one connection pool (a thread-safe urllib3 PoolManager)."""

    def __init__(self, kubeconfig: Path, folder: Path) -> None:
        self.server, self.context = ssl_context(kubeconfig, folder)
        self.pool = urllib3.PoolManager(ssl_context=self.context, maxsize=16, retries=False)

    def request(self, method: str, path: str, body: Any = None, timeout: float = 60,
                content_type: str = "application/json") -> Any:
        data = None if body is None else json.dumps(body).encode()
        response = self.pool.request(method, self.server + path, body=data, timeout=timeout,
                                     headers={"Content-Type": content_type, "Accept": "application/json"})
        if response.status >= 400:
            raise BenchError(f"{method} {path}: HTTP {response.status}: {response.data[:300]!r}")
        return json.loads(response.data) if response.data else None

    def version(self) -> dict:
        return self.request("GET", "/version")


class Watch:
    """A watch on one namespace's ReceiptSyncs (or other objects at ``path``, a REST path with
    ``{ns}``): every event with the local receive time."""

    def __init__(self, kube: Kube, namespace: str, path: str = RS_PATH) -> None:
        self.kube = kube
        self.namespace = namespace
        self.path = path
        self.events: list[tuple[float, str, dict]] = []  # (epoch seconds, type, object)
        self.latest: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{namespace}", daemon=True)
        self._response: urllib3.BaseHTTPResponse | None = None

    def start(self) -> "Watch":
        self._thread.start()
        return self

    def _run(self) -> None:
        resource_version = ""
        while not self._stop.is_set():
            query = "watch=1&timeoutSeconds=3600&allowWatchBookmarks=false"
            if resource_version:
                query += f"&resourceVersion={resource_version}"
            try:
                response = self.kube.pool.request(
                    "GET", f"{self.kube.server}{self.path.format(ns=self.namespace)}?{query}", preload_content=False,
                    timeout=urllib3.Timeout(connect=30, read=3700))
                self._response = response
                buffer = b""
                for chunk in response.stream(65536, decode_content=True):
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    received = time.time()
                    for line in lines:
                        if line.strip():
                            resource_version = self._take(received, json.loads(line), resource_version)
            except _Gone:
                resource_version = ""  # 410 Gone: start over from now
            except Exception:  # noqa: BLE001 - a dropped watch is resumed
                if self._stop.is_set():
                    return
                time.sleep(0.2)

    def _take(self, received: float, event: dict, resource_version: str) -> str:
        obj = event.get("object") or {}
        if event.get("type") == "ERROR":
            raise _Gone()
        name = (obj.get("metadata") or {}).get("name", "")
        with self._changed:
            self.events.append((received, event.get("type", ""), obj))
            if event.get("type") == "DELETED":
                self.latest.pop(name, None)
            else:
                self.latest[name] = obj
            self._changed.notify_all()
        return (obj.get("metadata") or {}).get("resourceVersion", resource_version)

    def stop(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            try:
                response.shutdown()  # unblocks the reader (urllib3 >= 2.3)
            except Exception:  # noqa: BLE001
                pass
        self._thread.join(timeout=5)

    def phases(self, names: Iterable[str] | None = None) -> dict[str, str]:
        with self._lock:
            items = self.latest.items() if names is None else [(n, self.latest.get(n, {})) for n in names]
            return {name: ((obj.get("status") or {}).get("phase") or "") for name, obj in items}

    def wait(self, predicate: Callable[[dict[str, dict]], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self.latest):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
                self._changed.wait(min(remaining, 1.0))

    def snapshot(self, start: int = 0) -> list[tuple[float, str, dict]]:
        """The events received so far, from the ``start``-th on."""
        with self._lock:
            return self.events[start:]


def phase_of(obj: dict | None) -> str:
    return ((obj or {}).get("status") or {}).get("phase") or ""


def terminal(objects: dict[str, dict], names: Iterable[str]) -> bool:
    return all(phase_of(objects.get(n)) in contract.TERMINAL_PHASES for n in names)


def count_terminal(objects: dict[str, dict], names: Iterable[str]) -> int:
    return sum(1 for n in names if phase_of(objects.get(n)) in contract.TERMINAL_PHASES)
