"""The emulator on a free port, served from a background thread of its own.

For tests and tools written in synchronous code (google-api-python-client blocks, so the server
cannot share its thread):

    with ThreadedEmulator(mailbox_dir, EmulatorConfig(latency_ms=100)) as gmail:
        gmail.url        # "http://127.0.0.1:PORT/"  -> client_options={"api_endpoint": gmail.url}
        gmail.token_uri  # "http://127.0.0.1:PORT/token"
        gmail.configure(error_rate_5xx=0.1); gmail.stats()
"""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from aiohttp import web

from ..testing import emulator_admin
from .config import EmulatorConfig
from .server import EMULATOR, Emulator, create_app


class ThreadedEmulator:
    def __init__(self, mailbox_dir: Path | str, config: EmulatorConfig | None = None,
                 state_dir: Path | str | None = None, host: str = "127.0.0.1", port: int = 0):
        self.mailbox_dir = Path(mailbox_dir)
        self.config = config or EmulatorConfig()
        self.state_dir = state_dir
        self.host = host
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="gmail-emulator", daemon=True)

    def start(self) -> "ThreadedEmulator":
        self._thread.start()
        if not self._ready.wait(60) or self._failure is not None:
            raise RuntimeError(f"the Gmail emulator did not start: {self._failure!r}")
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> "ThreadedEmulator":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self.app = create_app(self.mailbox_dir, self.config, state_dir=self.state_dir)
            self._runner = web.AppRunner(self.app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            self._loop.run_until_complete(web.TCPSite(self._runner, self.host, self.port).start())
            self.port = self._runner.addresses[0][1]
        except BaseException as exc:  # reported by start()
            self._failure = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def token_uri(self) -> str:
        return self.url + "token"

    @property
    def state(self) -> Emulator:
        """The live state (read it; change knobs through :meth:`configure`, which is thread-safe)."""
        return self.app[EMULATOR]

    def admin(self, path: str, body: dict | None = None) -> Any:
        """GET, or POST of ``body``, to the admin API (``_emulator/...``): the one client, testing's."""
        return emulator_admin(self.url, path, body)

    def configure(self, **changes: Any) -> dict:
        return self.admin("_emulator/config", changes)

    def stats(self) -> dict:
        return self.admin("_emulator/stats")

    def reset_stats(self) -> None:
        self.admin("_emulator/stats/reset", {})
