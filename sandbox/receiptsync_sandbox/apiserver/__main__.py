"""python -m receiptsync_sandbox.apiserver --port P --state-dir DIR"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from aiohttp import web

from .server import create_app


async def serve(port: int, state_dir: Path, host: str) -> None:
    runner = web.AppRunner(create_app(state_dir), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    print(f"READY http://{host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m receiptsync_sandbox.apiserver",
                                     description="The sandbox's stand-in Kubernetes API server (plain HTTP).")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on the READY line)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.state_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(args.port, args.state_dir, args.host))


if __name__ == "__main__":
    main()
