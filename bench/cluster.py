"""The benchmarks' world: one sandbox (`receiptsync-sandbox up --no-operator`), the CRD, tiny
generated mailboxes, and the real `receiptsync-operator` as a subprocess per benchmark (its own
namespace, Redis database, kubeconfig user and PID, so its API calls, Redis traffic and peak RSS are
its own). Plain HTTP to the API server (bearer token "bench") for everything the bench itself does.
"""
from __future__ import annotations

import datetime as dt
import glob
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis

from receiptsync_common import contract
from receiptsync_sandbox.gmail.auth import authorized_user
from receiptsync_sandbox.gmail.samples import generate_mailbox
from receiptsync_sandbox.kubeconfig import service_account_token
from receiptsync_sandbox.testing import OperatorProcess, Sandbox, wait_until

from .common import say

ROOT = Path(__file__).resolve().parent.parent
CRD = ROOT / "manifests" / "crds" / "receiptsyncs.yaml"
BENCH_USER = "bench"
OPERATOR_SA_NAMESPACE = "receiptsync-system"
OPERATOR_SA = "receiptsync-operator"
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
RS_PATH = f"/apis/{contract.GROUP}/{contract.VERSION}/namespaces/{{ns}}/{contract.PLURAL}"
JOB_SELECTOR = f"{contract.LABEL_MANAGED_BY}={contract.MANAGED_BY_VALUE},{contract.LABEL_COMPONENT}={contract.COMPONENT_WORKER}"


class BenchError(RuntimeError):
    pass


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    try:
        return wait_until(condition, timeout, interval, message=what)
    except AssertionError as exc:
        raise BenchError(str(exc)) from None


# --- mailboxes ----------------------------------------------------------------------------------------
MAILBOXES = 20
MAILBOX_MESSAGES = 6


def mailbox_address(index: int) -> str:
    return f"tiny{index:02d}@example.com"


def make_tiny_mailboxes(folder: Path, end: dt.date) -> list[str]:
    """MAILBOXES folders of MAILBOX_MESSAGES messages (half receipts) within the last month."""
    addresses = []
    for index in range(MAILBOXES):
        address = mailbox_address(index)
        generate_mailbox(folder, address, MAILBOX_MESSAGES, 0.5, months=1, seed=index, end_date=end)
        addresses.append(address)
    return addresses


# --- the cluster ----------------------------------------------------------------------------------------
class Cluster:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.mailbox_dir = work / "mailboxes"
        self.end = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
        self.sandbox: Sandbox | None = None
        self.operators: list[OperatorProcess] = []

    def start(self) -> "Cluster":
        self.mailbox_dir.mkdir(parents=True, exist_ok=True)
        self.addresses = make_tiny_mailboxes(self.mailbox_dir, self.end)
        self.sandbox = Sandbox(self.work / "sandbox", operator=False, mailbox_dir=self.mailbox_dir)
        began = time.monotonic()
        self.sandbox.start()
        self.env = self.sandbox.env
        self.api_url = self.env["RECEIPTSYNC_SANDBOX_API"].rstrip("/")
        self.sandbox.kubectl("apply", "-f", str(CRD))
        self.sandbox.kubectl("wait", "--for=condition=Established", f"crd/{contract.PLURAL}.{contract.GROUP}",
                             "--timeout=30s")
        say(f"sandbox up in {time.monotonic() - began:.1f}s (API {self.api_url})")
        return self

    def stop(self) -> None:
        for operator in self.operators:
            operator.stop()
        if self.sandbox is not None:
            self.sandbox.stop()

    @property
    def state_dir(self) -> Path:
        assert self.sandbox is not None
        return self.sandbox.state_dir

    # --- REST ---------------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, timeout: float = 60,
                content_type: str = "application/json") -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.api_url + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {BENCH_USER}", "Content-Type": content_type,
                                              "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise BenchError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:300]!r}") from exc
        return json.loads(raw) if raw else None

    def create_namespace(self, name: str) -> None:
        self.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def create_secrets(self, namespace: str) -> None:
        token_uri = self.env["GMAIL_TOKEN_URI"]
        for index, address in enumerate(self.addresses):
            creds = authorized_user(address, token_uri, client_id="bench", client_secret="bench-secret")
            self.request("POST", f"/api/v1/namespaces/{namespace}/secrets", {
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"gmail-{index:02d}"},
                "stringData": {contract.DEFAULT_CREDENTIALS_KEY: json.dumps(creds)}})

    def receiptsync(self, name: str, index: int) -> dict:
        first = self.end - dt.timedelta(days=40)
        return {"apiVersion": contract.API_VERSION, "kind": contract.KIND, "metadata": {"name": name},
                "spec": {"businessId": name, "mode": contract.MODE_FULL, "fromDate": first.isoformat(),
                         "toDate": self.end.isoformat(), "backoffLimit": 3,
                         "gmail": {"secretRef": {"name": f"gmail-{index % len(self.addresses):02d}"}}}}

    def create_receiptsync(self, namespace: str, name: str, index: int) -> dict:
        return self.request("POST", RS_PATH.format(ns=namespace), self.receiptsync(name, index))

    def create_many(self, namespace: str, names: list[str], threads: int = 8) -> None:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda pair: self.create_receiptsync(namespace, pair[1], pair[0]), enumerate(names)))

    def list_receiptsyncs(self, namespace: str) -> list[dict]:
        return self.request("GET", RS_PATH.format(ns=namespace))["items"]

    def worker_jobs(self, namespace: str) -> list[dict]:
        query = urllib.parse.urlencode({"labelSelector": JOB_SELECTOR})
        return self.request("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs?{query}")["items"]

    def active_worker_jobs(self, namespace: str) -> int:
        return sum(1 for job in self.worker_jobs(namespace) if job_active(job))

    # --- audit --------------------------------------------------------------------------------------
    def audit_clear(self) -> None:
        self.request("DELETE", "/sandbox/audit")

    def audit(self, user: str) -> list[dict]:
        return self.request("GET", "/sandbox/audit?" + urllib.parse.urlencode({"user": user}))

    # --- Redis --------------------------------------------------------------------------------------
    def redis_url(self, db: int) -> str:
        return self.env["REDIS_URL"].rsplit("/", 1)[0] + f"/{db}"

    def redis(self, db: int) -> redis.Redis:
        client = redis.Redis.from_url(self.redis_url(db), decode_responses=True)
        client.flushdb()
        return client

    # --- the operator ---------------------------------------------------------------------------------
    def start_operator(self, namespace: str, redis_db: int, max_workers: int, **extra: str) -> OperatorProcess:
        assert self.sandbox is not None
        operator = OperatorProcess.launch(
            self.sandbox, self.work / f"operator-{namespace}.log", namespace=namespace,
            redis_url=self.redis_url(redis_db), identity=f"bench-operator-{namespace}",
            lease_name=f"bench-{namespace}", token=service_account_token(OPERATOR_SA_NAMESPACE, OPERATOR_SA),
            lead_timeout=60, stop_timeout=20, **{contract.OPERATOR_ENV_MAX_WORKERS: str(max_workers), **extra})
        self.operators.append(operator)
        try:
            operator.wait_leading(interval=0.2)
        except AssertionError as exc:
            raise BenchError(f"the operator did not lead: {exc}") from None
        return operator

    # --- pod logs ------------------------------------------------------------------------------------
    def job_start_times(self, namespace: str) -> dict[str, float]:
        """job_id -> epoch seconds of its worker's JOB_START log line (from the pod logs on disk)."""
        found: dict[str, float] = {}
        for path in glob.glob(str(self.state_dir / "logs" / namespace / "*" / "*.log")):
            try:
                lines = Path(path).read_text(errors="replace").splitlines()
            except OSError:
                continue
            for line in lines:
                if contract.LOG_JOB_START not in line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("event") == contract.LOG_JOB_START and record.get("job_id") and record.get("time"):
                    moment = parse_rfc3339(record["time"])
                    if moment is not None:
                        found.setdefault(record["job_id"], moment)
        return found


def parse_rfc3339(text: str) -> float | None:
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)).timestamp()


def job_active(job: dict) -> bool:
    """Holds a worker slot (the operator's own rule: no Complete/Failed condition, no final count)."""
    status = job.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return False
    return not (status.get("succeeded") or status.get("failed"))


# --- watching ReceiptSyncs ----------------------------------------------------------------------------------
class Watch:
    """A watch on one namespace's ReceiptSyncs: every event with the local receive time."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.events: list[tuple[float, str, dict]] = []  # (epoch seconds, type, object)
        self.latest: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{namespace}", daemon=True)
        self._socket: socket.socket | None = None

    def start(self) -> "Watch":
        self._thread.start()
        return self

    def _run(self) -> None:
        resource_version = ""
        while not self._stop.is_set():
            params = {"watch": "1", "timeoutSeconds": "3600", "allowWatchBookmarks": "false"}
            if resource_version:
                params["resourceVersion"] = resource_version
            url = f"{self.cluster.api_url}{RS_PATH.format(ns=self.namespace)}?{urllib.parse.urlencode(params)}"
            req = urllib.request.Request(url, headers={"Authorization": f"Bearer {BENCH_USER}"})
            try:
                with urllib.request.urlopen(req, timeout=3600) as response:
                    self._socket = _socket_of(response)
                    for line in response:
                        received = time.time()
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":
                            resource_version = ""
                            break
                        resource_version = (obj.get("metadata") or {}).get("resourceVersion", resource_version)
                        name = (obj.get("metadata") or {}).get("name", "")
                        with self._changed:
                            self.events.append((received, event.get("type", ""), obj))
                            if event.get("type") == "DELETED":
                                self.latest.pop(name, None)
                            else:
                                self.latest[name] = obj
                            self._changed.notify_all()
            except Exception:  # noqa: BLE001 - a dropped watch is resumed
                if self._stop.is_set():
                    return
                time.sleep(0.2)

    def stop(self) -> None:
        # Shut the socket down rather than close the response: closing takes the reader's lock,
        # which the watch thread holds while it blocks in readline().
        self._stop.set()
        if self._socket is not None:
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)

    def phases(self, names: Iterable[str] | None = None) -> dict[str, str]:
        with self._lock:
            items = self.latest.items() if names is None else [(n, self.latest.get(n, {})) for n in names]
            return {name: ((obj.get("status") or {}).get("phase") or "") for name, obj in items}

    def wait(self, predicate: Callable[[dict[str, dict]], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self.latest):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
                self._changed.wait(min(remaining, 1.0))

    def snapshot(self) -> list[tuple[float, str, dict]]:
        with self._lock:
            return list(self.events)


def _socket_of(response) -> "socket.socket | None":
    try:
        return response.fp.raw._sock
    except AttributeError:
        return None


def terminal(objects: dict[str, dict], names: Iterable[str]) -> bool:
    return all(((objects.get(n) or {}).get("status") or {}).get("phase") in contract.TERMINAL_PHASES for n in names)


def count_terminal(objects: dict[str, dict], names: Iterable[str]) -> int:
    return sum(1 for n in names if ((objects.get(n) or {}).get("status") or {}).get("phase") in contract.TERMINAL_PHASES)


def stream_entries(client: redis.Redis) -> list[tuple[float, dict[str, str]]]:
    """Every heartbeat in the events stream: (write time from the entry id, fields)."""
    out = []
    last = "-"
    while True:
        batch = client.xrange(contract.EVENTS_STREAM, min=last, max="+", count=5000)
        if last != "-":
            batch = batch[1:]
        if not batch:
            return out
        for entry_id, fields in batch:
            out.append((int(entry_id.split("-")[0]) / 1000.0, fields))
        last = batch[-1][0]


def commandstats(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(values["calls"]) for name, values in stats.items()}


def redis_ops(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    names = set(before) | set(after)
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in names}
    delta.pop("info", None)  # our own INFO calls
    return {name: count for name, count in sorted(delta.items(), key=lambda kv: -kv[1]) if count > 0}


def audit_summary(entries: list[dict]) -> dict[str, Any]:
    total = sum(e["count"] for e in entries)
    writes = sum(e["count"] for e in entries if e["verb"] in WRITE_VERBS)
    breakdown: dict[str, int] = {}
    for e in entries:
        resource = e["resource"] + (f"/{e['subresource']}" if e["subresource"] else "")
        label = f"{e['verb']} {resource}"
        breakdown[label] = breakdown.get(label, 0) + e["count"]
    return {"requests": total, "writes": writes,
            "breakdown": dict(sorted(breakdown.items(), key=lambda kv: -kv[1]))}


def unique_suffix() -> str:
    return uuid.uuid4().hex[:5]


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")
