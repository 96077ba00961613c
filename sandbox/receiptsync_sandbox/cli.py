"""`receiptsync-sandbox up|down --state-dir DIR`: the sandbox's command line (CONTRACT section 2).

Exit codes: 0 done; 1 failed (or `up` on a dir that is already running); 2 bad usage.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import down, up


def say(text: str) -> None:
    print(f"receiptsync-sandbox: {text}", flush=True)


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(
        prog="receiptsync-sandbox",
        description="A local stand-in Kubernetes cluster for ReceiptSync: API server, node agent running the "
                    "project's own images as local processes, Redis, PostgreSQL and a Gmail emulator.")
    commands = main_parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="start the sandbox in the background and wait until it is ready")
    start.add_argument("--state-dir", required=True, type=Path, help="where state, logs, kubeconfig and env go")
    start.add_argument("--mailbox-dir", type=Path,
                       help="one sub-folder of *.eml files per mailbox address (default: a generated sample)")
    start.add_argument("--no-operator", action="store_true", help="don't install the CRD and the operator")
    stop = commands.add_parser("down", help="stop everything `up` started in the state dir")
    stop.add_argument("--state-dir", required=True, type=Path)
    return main_parser


def run_up(args: argparse.Namespace) -> int:
    began = time.monotonic()
    try:
        state = up.bring_up(args.state_dir, args.mailbox_dir, with_operator=not args.no_operator, say=say)
    except up.AlreadyRunning as exc:
        say(str(exc))
        return 1
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - whatever failed, leave nothing running
        say(f"up failed: {exc or type(exc).__name__}")
        say(f"stopping what was started (logs are kept in {args.state_dir.resolve() / 'logs'})")
        down.bring_down(args.state_dir, say=lambda _: None)
        return 1
    say(f"ready in {time.monotonic() - began:.1f}s: API {state.urls['api']}, Gmail {state.urls['gmail']}")
    say(f"use it with: . {state.state_dir / 'env'}")
    return 0


def run_down(args: argparse.Namespace) -> int:
    if not args.state_dir.exists():
        say(f"nothing to stop: {args.state_dir} does not exist")
        return 0
    if down.bring_down(args.state_dir, say=say):
        say("stopped")
    else:
        say(f"nothing was running in {args.state_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler = run_up if args.command == "up" else run_down
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
