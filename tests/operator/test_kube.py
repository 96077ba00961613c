"""The operator's REST client: credentials are loaded once (not for every request), and a 401 makes
it load them again and retry once. Against a real aiohttp server on localhost."""
from __future__ import annotations

from aiohttp import web
from kubernetes import client as k8s_client

from receiptsync_operator.kube import Kube


def configuration(host: str, token: str, calls: list[int]) -> k8s_client.Configuration:
    cfg = k8s_client.Configuration()
    cfg.host = host
    cfg.api_key = {"authorization": token}
    cfg.refresh_api_key_hook = lambda _: calls.append(1)
    return cfg


async def test_headers_are_built_once_and_rebuilt_after_a_401(unused_tcp_port):
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        if request.headers.get("Authorization") != "Bearer new":
            return web.json_response({"reason": "Unauthorized"}, status=401)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/x", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    calls: list[int] = []
    host = f"http://127.0.0.1:{unused_tcp_port}"
    kube = Kube(configuration(host, "Bearer new", calls))
    try:
        assert await kube.get("/x") == {"ok": True}
        built = len(calls)
        for _ in range(5):
            assert await kube.get("/x") == {"ok": True}
        assert len(calls) == built  # the refresh hook (a whole kubeconfig reload) ran for the first only
        # A token that went stale: one 401, fresh headers, one retry.
        kube._cfg.api_key = {"authorization": "Bearer old"}
        kube._cached_headers = None
        kube._headers()
        kube._cfg.api_key = {"authorization": "Bearer new"}
        assert await kube.get("/x") == {"ok": True}
        assert seen[-2:] == ["Bearer old", "Bearer new"]
    finally:
        await kube.close()
        await runner.cleanup()
