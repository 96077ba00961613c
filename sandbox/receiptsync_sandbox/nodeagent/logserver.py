"""The kubelet's log endpoint, so `kubectl logs [-f] [--tail N]` works: the API server proxies
GET /containerLogs/{namespace}/{pod}/{container} to the Node's kubeletEndpoint over TLS with its
kubelet-client certificate, which this server requires (signed by the cluster CA)."""
from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Callable

from aiohttp import web

FOLLOW_POLL_SECONDS = 0.2
LogPath = Callable[[str, str, str], Path]
StillRunning = Callable[[str, str, str], bool]


def tail_bytes(data: bytes, tail_lines: int | None, limit_bytes: int | None) -> bytes:
    if tail_lines is not None:
        lines = data.splitlines(keepends=True)
        data = b"".join(lines[-tail_lines:]) if tail_lines > 0 else b""
    if limit_bytes is not None:
        data = data[:limit_bytes]
    return data


def _int(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None


def app(log_path: LogPath, still_running: StillRunning) -> web.Application:
    async def container_logs(request: web.Request) -> web.StreamResponse:
        namespace, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        path = log_path(namespace, pod, container)
        if not path.exists():
            raise web.HTTPNotFound(text=f'container "{container}" in pod "{pod}" has no log yet')
        query = request.query
        data = tail_bytes(path.read_bytes(), _int(query.get("tailLines")), _int(query.get("limitBytes")))
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(data)
        if query.get("follow") in ("true", "1"):
            offset = path.stat().st_size
            while True:
                await asyncio.sleep(FOLLOW_POLL_SECONDS)
                size = path.stat().st_size if path.exists() else 0
                if size > offset:
                    with open(path, "rb") as log_file:
                        log_file.seek(offset)
                        await response.write(log_file.read(size - offset))
                    offset = size
                elif not still_running(namespace, pod, container):
                    break
        await response.write_eof()
        return response

    application = web.Application()
    application.router.add_get("/containerLogs/{namespace}/{pod}/{container}", container_logs)
    return application


async def serve(application: web.Application, port: int, cert: Path, key: Path, client_ca: Path) -> web.AppRunner:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(client_ca))
    context.load_cert_chain(str(cert), str(key))
    context.verify_mode = ssl.CERT_REQUIRED
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    return runner
