"""`make demo`: start the sandbox, install ReceiptSync into it, sync the sample mailbox, show the result.

Every step is a command a person could type; the demo prints each one before running it.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATE_DIR = ROOT / ".sandbox"
MAILBOX_DIR = STATE_DIR.parent / ".sandbox-mailboxes"
DEMO_ADDRESS = "demo@example.com"
EXAMPLE = ROOT / "manifests" / "examples" / "receiptsync.yaml"


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def run(argv: list[str], env: dict[str, str], check: bool = True, capture: bool = False, input: str | None = None):
    print("$ " + " ".join(shlex.quote(a) for a in argv), flush=True)
    result = subprocess.run(argv, env=env, text=True, capture_output=capture, input=input)
    if capture and result.stdout:
        print(result.stdout, end="", flush=True)
    if check and result.returncode != 0:
        if capture and result.stderr:
            print(result.stderr, file=sys.stderr)
        raise SystemExit(f"demo: step failed ({result.returncode}): {' '.join(argv)}")
    return result


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("export "):
            name, _, value = line[len("export "):].partition("=")
            env[name] = shlex.split(value)[0] if value else ""
    return env


def generate_mailbox() -> None:
    from receiptsync_sandbox.gmail import samples

    target = MAILBOX_DIR / DEMO_ADDRESS
    if target.exists() and any(target.glob("*.eml")):
        return
    say(f"Generating the sample mailbox for {DEMO_ADDRESS} (Hebrew/English receipts, invoices with PDFs, other mail)")
    samples.generate_mailbox(MAILBOX_DIR, DEMO_ADDRESS, count=150, receipt_ratio=0.3, months=18, seed=7, end_date=None)


def start_sandbox(env: dict[str, str]) -> dict[str, str]:
    if (STATE_DIR / "env").exists():
        say("Stopping the sandbox left by an earlier demo")
        run(["receiptsync-sandbox", "down", "--state-dir", str(STATE_DIR)], env, check=False)
    say("Starting the sandbox: a local stand-in Kubernetes API, node agent, Redis, PostgreSQL and Gmail emulator")
    run(["receiptsync-sandbox", "up", "--state-dir", str(STATE_DIR), "--mailbox-dir", str(MAILBOX_DIR)], env)
    merged = dict(env)
    merged.update(read_env_file(STATE_DIR / "env"))
    return merged


def create_credentials_secret(env: dict[str, str]) -> None:
    say("Storing the demo mailbox's Gmail credentials in a Secret (only this tenant's worker will see it)")
    from receiptsync_sandbox.gmail.auth import authorized_user

    credentials = authorized_user(DEMO_ADDRESS, env["GMAIL_TOKEN_URI"], client_id="demo-client.apps.example.com",
                                  client_secret="demo-client-secret")
    secret = {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gmail-demo"},
        "type": "Opaque", "stringData": {"credentials.json": json.dumps(credentials)},
    }
    run(["kubectl", "apply", "-f", "-"], env, input=json.dumps(secret))


def wait_for_phase(env: dict[str, str], name: str, run_id: int | None = None, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        result = subprocess.run(["kubectl", "get", "rsync", name, "-o", "json"], env=env, text=True,
                                capture_output=True)
        if result.returncode == 0:
            status = json.loads(result.stdout).get("status") or {}
            phase = status.get("phase")
            if phase != last:
                print(f"   phase: {phase} ({status.get('reason', '')})", flush=True)
                last = phase
            if phase in ("Finished", "Failed") and (run_id is None or status.get("runId") == run_id):
                return status
        time.sleep(1)
    raise SystemExit(f"demo: {name} did not finish within {timeout:.0f}s")


def print_receipts(env: dict[str, str]) -> int:
    import psycopg

    with psycopg.connect(env["DATABASE_URL"]) as conn:
        rows = conn.execute(
            "SELECT received_at::date, sender, subject, amount, currency FROM receipts "
            "ORDER BY received_at DESC"
        ).fetchall()
    print(f"{'DATE':<11} {'AMOUNT':>10} {'CUR':<4} {'FROM':<32} SUBJECT")
    for day, sender, subject, amount, currency in rows:
        amount_text = f"{amount:.2f}" if amount is not None else "-"
        print(f"{day!s:<11} {amount_text:>10} {currency or '-':<4} {(sender or '')[:32]:<32} {subject or ''}")
    print(f"({len(rows)} receipts)")
    return len(rows)


def main() -> int:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    generate_mailbox()
    env = start_sandbox(env)
    create_credentials_secret(env)
    say("Declaring a sync the way a user would: kubectl apply")
    run(["kubectl", "apply", "-f", str(EXAMPLE)], env)
    name = "demo"
    status = wait_for_phase(env, name)
    run(["kubectl", "get", "rsync", "-o", "wide"], env)
    say("Receipts saved in PostgreSQL")
    first_count = print_receipts(env)
    if status.get("phase") != "Finished":
        raise SystemExit(f"demo: the sync ended {status.get('phase')}: {status.get('message')}")
    say("Asking for one more run with the run-now annotation: nothing new should be added")
    run(["kubectl", "annotate", "--overwrite", "rsync", name, f"receipts.prosaas.pro/run-now={int(time.time())}"], env)
    time.sleep(1)
    next_run = int(status.get("runId") or 0) + 1
    wait_for_phase(env, name, run_id=next_run)
    run(["kubectl", "get", "rsync", "-o", "wide"], env)
    second_count = print_receipts(env)
    print(f"\nreceipts after the first run: {first_count}; after run-now: {second_count} (no duplicates)")
    say(f"The sandbox keeps running. Try: . {STATE_DIR}/env && kubectl describe rsync {name}")
    print(f"Stop it with: receiptsync-sandbox down --state-dir {STATE_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
