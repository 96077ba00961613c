"""A tiny async Kubernetes API client over aiohttp, for the sandbox's node agent.

It talks to kube-apiserver as a kubelet does: TLS with the node's client certificate, plain REST
paths for get/list/watch/create/patch/delete.
"""
from __future__ import annotations

import asyncio
import dataclasses
import base64
import json
import ssl
import tempfile
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import quote

import aiohttp

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


class ApiError(Exception):
    def __init__(self, status: int, body: Any, method: str = "", path: str = ""):
        self.status = status
        self.body = body
        message = body.get("message") if isinstance(body, dict) else str(body)
        super().__init__(f"{method} {path}: HTTP {status}: {message}")

    @property
    def reason(self) -> str:
        return self.body.get("reason", "") if isinstance(self.body, dict) else ""


class WatchExpired(Exception):
    """The server says the resourceVersion we watched from is too old (410 Gone): relist."""


@dataclasses.dataclass(frozen=True)
class Resource:
    """Where one kind of object lives in the REST tree."""

    api_version: str  # "v1", "batch/v1"
    plural: str
    kind: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        parts = [base]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{quote(namespace)}")
        parts.append(self.plural)
        if name:
            parts.append(quote(name))
        if subresource:
            parts.append(subresource)
        return "/".join(parts)


PODS = Resource("v1", "pods", "Pod")
EVENTS = Resource("v1", "events", "Event")
SECRETS = Resource("v1", "secrets", "Secret")
CONFIGMAPS = Resource("v1", "configmaps", "ConfigMap")
SERVICEACCOUNTS = Resource("v1", "serviceaccounts", "ServiceAccount")
NODES = Resource("v1", "nodes", "Node", namespaced=False)
LEASES = Resource("coordination.k8s.io/v1", "leases", "Lease")


class KubeClient:
    def __init__(self, server: str, ssl_context: ssl.SSLContext | None = None, token: str | None = None,
                 timeout: float = 30.0):
        self.server = server.rstrip("/")
        self.token = token
        self.ssl_context = ssl_context
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: Path) -> "KubeClient":
        """Server, CA and client certificate (or token) of the kubeconfig's first cluster and user."""
        import yaml

        config = yaml.safe_load(Path(path).read_text())
        cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
        context = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        if "client-certificate-data" in user:
            with tempfile.TemporaryDirectory() as folder:  # ssl loads a key pair from files only
                cert, key = Path(folder, "tls.crt"), Path(folder, "tls.key")
                cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
                key.write_bytes(base64.b64decode(user["client-key-data"]))
                context.load_cert_chain(str(cert), str(key))
        return cls(cluster["server"], context, user.get("token"))

    async def __aenter__(self) -> "KubeClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Accept": "application/json"}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            self._session = aiohttp.ClientSession(
                headers=headers, connector=aiohttp.TCPConnector(limit=20, ssl=self.ssl_context or True))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, path: str, *, params: dict | None = None, body: Any = None,
                      content_type: str = "application/json") -> Any:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        async with self.session.request(method, self.server + path, params=_clean(params), data=data,
                                        headers=headers, timeout=timeout) as response:
            text = await response.text()
            payload: Any = _parse(text)
            if response.status >= 400:
                raise ApiError(response.status, payload, method, path)
            return payload

    async def get(self, resource: Resource, namespace: str | None, name: str) -> dict:
        return await self.request("GET", resource.path(namespace, name))

    async def get_or_none(self, resource: Resource, namespace: str | None, name: str) -> dict | None:
        try:
            return await self.get(resource, namespace, name)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, resource: Resource, namespace: str | None = None, **params: Any) -> dict:
        return await self.request("GET", resource.path(namespace), params=params)

    async def create(self, resource: Resource, namespace: str | None, body: dict) -> dict:
        return await self.request("POST", resource.path(namespace), body=body)

    async def patch(self, resource: Resource, namespace: str | None, name: str, body: Any, *,
                    subresource: str | None = None, content_type: str = MERGE_PATCH) -> dict:
        return await self.request("PATCH", resource.path(namespace, name, subresource), body=body,
                                  content_type=content_type)

    async def patch_status(self, resource: Resource, namespace: str | None, name: str, status: dict) -> dict:
        return await self.patch(resource, namespace, name, {"status": status}, subresource="status")

    async def delete(self, resource: Resource, namespace: str | None, name: str, *,
                     grace_period_seconds: int | None = None, propagation_policy: str | None = None,
                     uid: str | None = None, missing_ok: bool = True) -> dict | None:
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if propagation_policy:
            options["propagationPolicy"] = propagation_policy
        if uid:
            options["preconditions"] = {"uid": uid}
        try:
            return await self.request("DELETE", resource.path(namespace, name), body=options)
        except ApiError as exc:
            # 409 on a uid precondition means the object we meant is already gone and replaced.
            if missing_ok and exc.status in (404, 409):
                return None
            raise

    async def watch(self, resource: Resource, resource_version: str, namespace: str | None = None,
                    timeout_seconds: int = 240, **params: Any) -> AsyncIterator[dict]:
        """Yield watch events ({"type", "object"}) until the server ends the stream."""
        query = {"watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                 "timeoutSeconds": str(timeout_seconds), **params}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._timeout, sock_read=timeout_seconds + 30)
        async with self.session.get(self.server + resource.path(namespace), params=_clean(query),
                                    timeout=timeout) as response:
            if response.status == 410:
                raise WatchExpired(await response.text())
            if response.status >= 400:
                raise ApiError(response.status, _parse(await response.text()), "WATCH", resource.path(namespace))
            async for line in _lines(response.content):
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    if status.get("code") == 410:
                        raise WatchExpired(status.get("message", "too old resource version"))
                    raise ApiError(status.get("code", 500), status, "WATCH", resource.path(namespace))
                yield event


async def _lines(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    buffer = b""
    async for chunk in stream.iter_any():
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


def _clean(params: dict | None) -> dict | None:
    if not params:
        return None
    return {key: str(value).lower() if isinstance(value, bool) else str(value)
            for key, value in params.items() if value is not None}


def _parse(text: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


async def wait_until_ready(client: KubeClient, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await client.request("GET", "/version")
            return
        except (aiohttp.ClientError, ApiError, asyncio.TimeoutError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)
