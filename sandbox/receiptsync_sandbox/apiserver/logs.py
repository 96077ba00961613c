"""pods/log: serves the files the node agent writes at <state_dir>/logs/<namespace>/<pod>/<container>.log."""
from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from .errors import ApiError, bad_request
from .operations import PODS, Api

TERMINAL_PHASES = ("Succeeded", "Failed")
_POLL_SECONDS = 0.2


def log_path(state_dir: Path, namespace: str, pod: str, container: str) -> Path:
    return state_dir / "logs" / namespace / pod / f"{container}.log"


def pick_container(pod: dict[str, Any], requested: str | None) -> str:
    spec = pod.get("spec") or {}
    names = [c["name"] for c in spec.get("containers") or []]
    init_names = [c["name"] for c in spec.get("initContainers") or []]
    name = pod["metadata"]["name"]
    if requested:
        if requested not in names + init_names:
            raise bad_request(f"container {requested} is not valid for pod {name}")
        return requested
    if len(names) == 1:
        return names[0]
    raise bad_request(f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]")


def select_lines(text: str, tail_lines: int | None) -> str:
    if tail_lines is None:
        return text
    if tail_lines <= 0:
        return ""
    lines = text.splitlines(keepends=True)
    return "".join(lines[-tail_lines:])


def with_timestamps(text: str) -> str:
    """The sandbox does not keep per-line times; it stamps lines with the moment they are served."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return "".join(f"{stamp} {line}" for line in text.splitlines(keepends=True))


async def serve_log(request: web.Request, api: Api, state_dir: Path, namespace: str, name: str) -> web.StreamResponse:
    rt = api.registry.storage_type(PODS)
    pod = api.get(rt, namespace, name)
    container = pick_container(pod, request.query.get("container"))
    path = log_path(state_dir, namespace, name, container)
    tail = request.query.get("tailLines")
    stamps = request.query.get("timestamps") == "true"
    if not path.exists():
        phase = (pod.get("status") or {}).get("phase", "Pending")
        if phase == "Pending" or request.query.get("follow") != "true":
            raise ApiError(400, f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating')
    text = path.read_text(errors="replace") if path.exists() else ""
    first = select_lines(text, int(tail) if tail else None)
    if request.query.get("follow") != "true":
        body = with_timestamps(first) if stamps else first
        return web.Response(text=body, content_type="text/plain")
    response = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    await _write(response, first, stamps)
    await _follow(request, response, api, namespace, name, path, len(text.encode()), stamps)
    return response


async def _follow(request: web.Request, response: web.StreamResponse, api: Api, namespace: str, name: str,
                  path: Path, offset: int, stamps: bool) -> None:
    """Stream what is appended until the pod has terminated (and its log is drained) or the client leaves."""
    pending = b""
    while request.transport is not None and not request.transport.is_closing():
        pod = api.store.get(PODS, namespace, name)
        finished = pod is None or (pod.get("status") or {}).get("phase") in TERMINAL_PHASES
        chunk = b""
        if path.exists():
            with path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
        offset += len(chunk)
        pending += chunk
        complete, _, pending = pending.rpartition(b"\n")
        try:
            if complete:
                await _write(response, complete.decode(errors="replace") + "\n", stamps)
            if finished and not chunk:
                if pending:
                    await _write(response, pending.decode(errors="replace"), stamps)
                return
        except ConnectionResetError:
            return
        await asyncio.sleep(_POLL_SECONDS)


async def _write(response: web.StreamResponse, text: str, stamps: bool) -> None:
    if text:
        await response.write((with_timestamps(text) if stamps else text).encode())
