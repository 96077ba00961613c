"""A small async Kubernetes REST client for the operator's own calls (status, Jobs, Secrets, Events,
Leases). kopf does the watching; this does the writes, with plain dicts and no model classes.

Credentials come the usual way: in-cluster service account, else the kubeconfig (KUBECONFIG or
~/.kube/config), loaded by the official ``kubernetes`` package.
"""
from __future__ import annotations

import json
import os
import ssl
from typing import Any

import aiohttp
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config


class ApiError(Exception):
    def __init__(self, status: int, body: Any, method: str = "", path: str = "") -> None:
        self.status = status
        self.body = body if isinstance(body, dict) else {"message": str(body)}
        self.reason = self.body.get("reason", "")
        self.message = self.body.get("message", "")
        super().__init__(f"{method} {path}: HTTP {status} {self.reason}: {self.message}")


def _load_configuration() -> k8s_client.Configuration:
    configuration = k8s_client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST") and os.path.exists(
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    ):
        k8s_config.load_incluster_config(client_configuration=configuration)
    else:
        k8s_config.load_kube_config(client_configuration=configuration, persist_config=False)
    return configuration


def custom_path(group: str, version: str, plural: str, namespace: str | None = None, name: str | None = None) -> str:
    base = f"/apis/{group}/{version}"
    if namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    return base + (f"/{name}" if name else "")


def core_path(plural: str, namespace: str | None = None, name: str | None = None) -> str:
    base = "/api/v1" + (f"/namespaces/{namespace}" if namespace else "")
    return base + f"/{plural}" + (f"/{name}" if name else "")


class Kube:
    """One aiohttp session to the API server."""

    def __init__(self, configuration: k8s_client.Configuration | None = None) -> None:
        self._cfg = configuration or _load_configuration()
        self._session: aiohttp.ClientSession | None = None

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self._cfg.host.startswith("https"):
            return False
        if not self._cfg.verify_ssl:
            return False
        context = ssl.create_default_context(cafile=self._cfg.ssl_ca_cert or None)
        if self._cfg.cert_file:
            context.load_cert_chain(self._cfg.cert_file, self._cfg.key_file)
        return context

    def _headers(self) -> dict[str, str]:
        # In-cluster tokens rotate; the kubernetes package refreshes them through this hook.
        if self._cfg.refresh_api_key_hook is not None:
            self._cfg.refresh_api_key_hook(self._cfg)
        token = self._cfg.get_api_key_with_prefix("BearerToken") or self._cfg.get_api_key_with_prefix("authorization")
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = token
        elif self._cfg.username:
            headers["Authorization"] = self._cfg.get_basic_auth_token()
        return headers

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl(), limit=32)
            self._session = aiohttp.ClientSession(
                base_url=self._cfg.host.rstrip("/"),
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=30),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        session = await self.session()
        headers = self._headers()
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body)
        async with session.request(method, path, data=data, params=params, headers=headers) as response:
            text = await response.text()
            try:
                payload = json.loads(text) if text else {}
            except ValueError:
                payload = {"message": text[:500]}
            if response.status >= 400:
                raise ApiError(response.status, payload, method, path)
            return payload

    async def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        return await self.request("GET", path, params=params)

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, body=body)

    async def replace(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("PUT", path, body=body)

    async def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("PATCH", path, body=body, content_type="application/merge-patch+json")

    async def delete(self, path: str, propagation: str = "Background") -> dict[str, Any]:
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        return await self.request("DELETE", path, body=body)


def is_not_found(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and exc.status == 404


def is_conflict(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and exc.status == 409
