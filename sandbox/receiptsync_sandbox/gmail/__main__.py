"""``python -m receiptsync_sandbox.gmail --port P --mailbox-dir MDIR``: serve until interrupted.

Prints ``READY http://127.0.0.1:P`` once listening. Every knob of EmulatorConfig is also a flag.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from aiohttp import web

from .config import EmulatorConfig
from .server import create_app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m receiptsync_sandbox.gmail", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--mailbox-dir", required=True, help="one sub-folder of *.eml per mailbox address")
    parser.add_argument("--state-dir", help="keeps history ids across restarts")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every HTTP request")
    parser.add_argument("--quota", action=argparse.BooleanOptionalAction, default=True,
                        help="enforce the per-mailbox quota (default on)")
    parser.add_argument("--quota-rate", type=float, default=250.0, help="units/s per mailbox")
    parser.add_argument("--quota-burst", type=float, default=250.0, help="bucket capacity in units")
    parser.add_argument("--quota-status", type=int, choices=(429, 403), default=429)
    parser.add_argument("--error-rate-5xx", type=float, default=0.0)
    parser.add_argument("--error-rate-429", type=float, default=0.0)
    parser.add_argument("--slow-rate", type=float, default=0.0)
    parser.add_argument("--slow-ms", type=float, default=0.0)
    parser.add_argument("--revoked", action="append", default=[], help="a revoked mailbox (repeatable)")
    parser.add_argument("--history-retention", type=int, help="history records kept per mailbox")
    parser.add_argument("--token-ttl-s", type=int, default=3600)
    parser.add_argument("--seed", type=int)
    return parser.parse_args(argv)


def config_from(args: argparse.Namespace) -> EmulatorConfig:
    return EmulatorConfig(
        latency_ms=args.latency_ms, quota_enabled=args.quota, quota_rate=args.quota_rate,
        quota_burst=args.quota_burst, quota_status=args.quota_status, error_rate_5xx=args.error_rate_5xx,
        error_rate_429=args.error_rate_429, slow_rate=args.slow_rate, slow_ms=args.slow_ms,
        revoked={address.lower() for address in args.revoked}, history_retention=args.history_retention,
        token_ttl_s=args.token_ttl_s, seed=args.seed,
    )


async def serve(args: argparse.Namespace) -> None:
    app = create_app(args.mailbox_dir, config_from(args), state_dir=args.state_dir)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = runner.addresses[0][1]
    print(f"READY http://{args.host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
