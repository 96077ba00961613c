"""A small async Kubernetes REST client for the operator's own calls (status, Jobs, Secrets, Events,
Leases). kopf does the watching; this does the writes, with plain dicts and no model classes.

Credentials come the usual way: in-cluster service account, else the kubeconfig (KUBECONFIG or
~/.kube/config), loaded by the official ``kubernetes`` package — once. Building the headers again for
every request (the package's refresh hook reloads the whole configuration) cost about a tenth of the
operator's CPU with many resources, so they are kept and only rebuilt when a credentials file changes
(rotated service account token, rewritten kubeconfig or client certificate) or the server answers 401.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import ssl
import time
from collections.abc import AsyncIterator
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


logger = logging.getLogger(__name__)

# 429 (API Priority and Fairness), 5xx and dropped connections are retried, honouring Retry-After,
# this many times with a total wait of at most RETRY_BUDGET_SECONDS; then the caller sees the error.
RETRIES = 4
RETRY_BUDGET_SECONDS = 10.0
RETRYABLE_STATUSES = (429, 500, 502, 503, 504)


def retry_wait(retry: int, retry_after: str | None, rand: float) -> float:
    """Seconds before retry number ``retry`` (0-based): the server's Retry-After when it sends one
    (capped), else 0.2 s doubling, jittered."""
    if retry_after:
        try:
            return min(RETRY_BUDGET_SECONDS, max(0.0, float(retry_after)))
        except ValueError:
            pass
    return 0.2 * 2 ** retry * (0.5 + rand)


SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
FILES_CHECK_SECONDS = 1.0  # how often the credentials files' mtimes are looked at (a stat each)


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(SERVICE_ACCOUNT_TOKEN)


def _load_configuration() -> k8s_client.Configuration:
    configuration = k8s_client.Configuration()
    if _in_cluster():
        k8s_config.load_incluster_config(client_configuration=configuration)
    else:
        k8s_config.load_kube_config(client_configuration=configuration, persist_config=False)
    return configuration


def _credential_files(cfg: k8s_client.Configuration) -> list[str]:
    """The files whose change means new credentials."""
    if _in_cluster():
        files = [SERVICE_ACCOUNT_TOKEN]
    else:
        files = [f for f in os.environ.get("KUBECONFIG", os.path.expanduser("~/.kube/config")).split(os.pathsep) if f]
    return files + [f for f in (cfg.cert_file, cfg.key_file, cfg.ssl_ca_cert) if f]


def _mtimes(files: list[str]) -> tuple[float | None, ...]:
    stamps = []
    for path in files:
        try:
            stamps.append(os.stat(path).st_mtime_ns)
        except OSError:
            stamps.append(None)
    return tuple(stamps)


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
        # A configuration handed in is used as it is (tests); a loaded one is reloaded when its files change.
        self._reloadable = configuration is None
        self._cfg = configuration or _load_configuration()
        self._session: aiohttp.ClientSession | None = None
        self._cached_headers: dict[str, str] | None = None
        self._files = _credential_files(self._cfg) if self._reloadable else []
        self._stamps = _mtimes(self._files)
        self._files_checked = time.monotonic()
        # The lease's fence: once this says no, every write is refused here, before it leaves the
        # process (the Lease's own requests pass ``fenced=False``).
        self.may_write = lambda: True

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
        """The auth headers, built once and rebuilt only after reload()."""
        if self._cached_headers is None:
            self._cached_headers = self._build_headers()
        return dict(self._cached_headers)

    def _build_headers(self) -> dict[str, str]:
        # Tokens that expire (in-cluster, exec plugins) are renewed by the package's hook.
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

    async def reload(self) -> None:
        """Credentials changed (a file, or a 401): load them again; new certificates need a new session."""
        self._cached_headers = None
        if not self._reloadable:
            return
        self._cfg = _load_configuration()
        self._files = _credential_files(self._cfg)
        self._stamps = _mtimes(self._files)
        old, self._session = self._session, None
        if old is not None and not old.closed:
            # Requests still on the old session finish first (the client timeout is 30 s).
            asyncio.get_running_loop().call_later(35.0, lambda: asyncio.ensure_future(old.close()))

    async def _check_files(self) -> None:
        now = time.monotonic()
        if not self._reloadable or now - self._files_checked < FILES_CHECK_SECONDS:
            return
        self._files_checked = now
        if _mtimes(self._files) != self._stamps:
            await self.reload()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
        fenced: bool = True,
    ) -> dict[str, Any]:
        await self._check_files()
        data = None if body is None else json.dumps(body)
        reloaded = False
        waited = 0.0
        retry = 0
        while True:
            # Asked before every try: a retry after a back-off (or a freeze) may no longer be ours to send.
            if fenced and method != "GET" and not self.may_write():
                raise ApiError(503, {"reason": "NotLeader", "message": "this replica does not hold the lease"},
                               method, path)
            session = await self.session()
            headers = self._headers()
            if body is not None:
                headers["Content-Type"] = content_type
            retry_after = None
            try:
                async with session.request(method, path, data=data, params=params, headers=headers) as response:
                    text = await response.text()
                    status = response.status
                    retry_after = response.headers.get("Retry-After")
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError) as exc:
                if retry >= RETRIES or waited >= RETRY_BUDGET_SECONDS:
                    raise
                status, text, error = 0, "", exc
            else:
                error = None
            if error is None:
                try:
                    payload = json.loads(text) if text else {}
                except ValueError:
                    payload = {"message": text[:500]}
                if status == 401 and not reloaded:
                    reloaded = True
                    await self.reload()  # expired or rotated credentials: once more with fresh ones
                    continue
                if status < 400:
                    return payload
                if status not in RETRYABLE_STATUSES or retry >= RETRIES or waited >= RETRY_BUDGET_SECONDS:
                    raise ApiError(status, payload, method, path)
            wait = min(retry_wait(retry, retry_after, random.random()), RETRY_BUDGET_SECONDS - waited)
            logger.debug("retrying %s %s in %.1fs (%s)", method, path, wait, error or status)
            await asyncio.sleep(wait)
            waited += wait
            retry += 1

    async def watch(self, path: str, params: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        """The events of one watch request (ends when the server closes it); ApiError if refused."""
        session = await self.session()
        query = {**params, "watch": "1"}
        timeout = aiohttp.ClientTimeout(total=None, sock_read=float(params.get("timeoutSeconds", 300)) + 30)
        async with session.get(path, params=query, headers=self._headers(), timeout=timeout) as response:
            if response.status >= 400:
                text = await response.text()
                try:
                    payload = json.loads(text) if text else {}
                except ValueError:
                    payload = {"message": text[:500]}
                if response.status == 401:
                    await self.reload()
                raise ApiError(response.status, payload, "WATCH", path)
            async for line in response.content:
                if line.strip():
                    yield json.loads(line)

    async def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        return await self.request("GET", path, params=params)

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, body=body)

    async def replace(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("PUT", path, body=body)

    async def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("PATCH", path, body=body, content_type="application/merge-patch+json")

    async def delete(self, path: str, propagation: str = "Foreground") -> dict[str, Any]:
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        return await self.request("DELETE", path, body=body)
