"""The benchmarks' world: one sandbox (`receiptsync-sandbox up --no-operator`: etcd, kube-apiserver
with RBAC, Pod Security and an audit log, kube-controller-manager, kube-scheduler, our node agent as
the kubelet), the CRD, generated mailboxes, and per benchmark a :class:`BenchWorld`: the tenant the
operator tests and the fault suite use (``testing.TenantWorld``: a restricted namespace, the chart's
ServiceAccount and RBAC installed with helm, a TokenRequest kubeconfig) with the real
`receiptsync-operator` running as that ServiceAccount with the chart's settings. The bench's own
calls go to kube-apiserver over TLS as the cluster admin (:mod:`.kube`)."""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import glob
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis
import yaml

from receiptsync_common import contract
from receiptsync_operator import job_state
from receiptsync_sandbox import statefile
from receiptsync_sandbox.gmail.auth import authorized_user
from receiptsync_sandbox.gmail.samples import generate_mailbox
from receiptsync_sandbox.operator_install import CHART, CONNECTIONS_NAMESPACE
from receiptsync_sandbox.testing import OperatorProcess, Sandbox, TenantWorld, operator_env, wait_until

from .common import children_cpu_seconds, cpu_seconds, say
from .kube import RS_PATH, BenchError, Kube, Watch

ROOT = Path(__file__).resolve().parent.parent
CRD = ROOT / "manifests" / "crds" / "receiptsyncs.yaml"
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
JOB_SELECTOR = (f"{contract.LABEL_MANAGED_BY}={contract.MANAGED_BY_VALUE},"
                f"{contract.LABEL_COMPONENT}={contract.COMPONENT_WORKER}")
# The chart's operator settings the bench does not take over (it sets these per world).
OWN_SETTINGS = {contract.OPERATOR_ENV_REDIS_URL, contract.OPERATOR_ENV_NAMESPACE, contract.OPERATOR_ENV_MAX_WORKERS,
                contract.OPERATOR_ENV_METRICS_PORT, contract.OPERATOR_ENV_LEASE_NAME,
                contract.OPERATOR_ENV_LEASE_NAMESPACE, contract.OPERATOR_ENV_POD_NAME, "POD_NAMESPACE"}


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    try:
        return wait_until(condition, timeout, interval, message=what)
    except AssertionError as exc:
        raise BenchError(str(exc)) from None


# --- mailboxes ----------------------------------------------------------------------------------------
TINY_MAILBOXES, TINY_MESSAGES = 20, 6  # P3, P4: a run is mostly process start and the control plane
IDLE_MAILBOX = "idle@example.com"  # P6: synced once, then scheduled runs find nothing new


def tiny_address(index: int) -> str:
    return f"tiny{index:02d}@example.com"


def medium_address(index: int) -> str:
    return f"medium{index:02d}@example.com"


# --- the cluster ----------------------------------------------------------------------------------------
class Cluster:
    def __init__(self, work: Path, medium_mailboxes: int = 0, medium_messages: int = 0) -> None:
        self.work = work
        self.mailbox_dir = work / "mailboxes"
        self.end = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
        self.medium = (medium_mailboxes, medium_messages)
        self.sandbox: Sandbox | None = None
        self.kube: Kube | None = None
        self.versions: dict[str, Any] = {}
        self.chart_settings: dict[str, str] = {}

    def start(self) -> "Cluster":
        began = time.monotonic()
        for index in range(TINY_MAILBOXES):
            generate_mailbox(self.mailbox_dir, tiny_address(index), TINY_MESSAGES, 0.5, months=1, seed=index,
                             end_date=self.end)
        count, size = self.medium
        for index in range(count):  # P2: runs long enough for progress-only status updates
            generate_mailbox(self.mailbox_dir, medium_address(index), size, 0.5, months=1, seed=100 + index,
                             end_date=self.end)
        generate_mailbox(self.mailbox_dir, IDLE_MAILBOX, 40, 0.5, months=1, seed=7, end_date=self.end)
        say(f"mailboxes generated in {time.monotonic() - began:.1f}s")
        precompile()
        self.sandbox = Sandbox(self.work / "sandbox", operator=False, mailbox_dir=self.mailbox_dir)
        self.sandbox.start()
        self.env = self.sandbox.env
        self.kube = Kube(Path(self.sandbox.kubeconfig), self.work / "admin-tls")
        self.sandbox.kubectl("apply", "-f", str(CRD))
        self.sandbox.kubectl("wait", "--for=condition=Established", f"crd/{contract.PLURAL}.{contract.GROUP}",
                             "--timeout=60s")
        versions = json.loads(self.sandbox.kubectl("version", "-o", "json").stdout)
        self.versions = {"server": versions["serverVersion"]["gitVersion"],
                         "kubectl": versions["clientVersion"]["gitVersion"]}
        self.chart_settings = chart_operator_settings(self.kube)
        say(f"sandbox up in {self.sandbox.up_seconds:.1f}s: kube-apiserver {self.versions['server']} at "
            f"{self.kube.server}")
        return self

    def stop(self) -> None:
        if self.sandbox is not None:
            self.sandbox.stop()

    @property
    def state_dir(self) -> Path:
        assert self.sandbox is not None
        return self.sandbox.state_dir

    def request(self, method: str, path: str, body: Any = None, timeout: float = 60) -> Any:
        assert self.kube is not None
        return self.kube.request(method, path, body, timeout)

    # --- objects -----------------------------------------------------------------------------------------
    def create_secrets(self, namespace: str, addresses: list[str], prefix: str = "gmail") -> None:
        token_uri = self.env["GMAIL_TOKEN_URI"]
        for index, address in enumerate(addresses):
            credentials = authorized_user(address, token_uri, client_id="bench", client_secret="bench-secret")
            path = f"/api/v1/namespaces/{namespace}/secrets"
            self.request("POST", path, secret(f"{prefix}-{index:02d}", credentials))

    def receiptsync(self, name: str, secret_name: str, **spec: Any) -> dict:
        """A ReceiptSync: a full sync of the last 40 days by default; ``spec`` overrides (None drops a field)."""
        body = {"businessId": name, "mode": contract.MODE_FULL,
                "fromDate": (self.end - dt.timedelta(days=40)).isoformat(), "toDate": self.end.isoformat(),
                "backoffLimit": 3, "gmail": {"secretRef": {"name": secret_name}}, **spec}
        body = {key: value for key, value in body.items() if value is not None}
        return {"apiVersion": contract.API_VERSION, "kind": contract.KIND, "metadata": {"name": name}, "spec": body}

    def create_receiptsync(self, namespace: str, name: str, secret_name: str, **spec: Any) -> dict:
        return self.request("POST", RS_PATH.format(ns=namespace), self.receiptsync(name, secret_name, **spec))

    def create_many(self, namespace: str, items: list[tuple[str, str]], threads: int = 8) -> None:
        """(name, secret) pairs, created by ``threads`` threads at once."""
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda item: self.create_receiptsync(namespace, *item), items))

    def worker_jobs(self, namespace: str) -> list[dict]:
        return self.request("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs?labelSelector={JOB_SELECTOR}")["items"]

    def active_worker_jobs(self, namespace: str) -> int:
        return sum(1 for job in self.worker_jobs(namespace) if job_state.is_active(job))

    def pods(self, namespace: str, selector: str = "") -> list[dict]:
        query = f"?labelSelector={selector}" if selector else ""
        return self.request("GET", f"/api/v1/namespaces/{namespace}/pods{query}")["items"]

    # --- Redis --------------------------------------------------------------------------------------------
    def redis_url(self, db: int) -> str:
        return self.env["REDIS_URL"].rsplit("/", 1)[0] + f"/{db}"

    def redis(self, db: int) -> redis.Redis:
        client = redis.Redis.from_url(self.redis_url(db), decode_responses=True)
        client.flushdb()
        return client

    # --- the node agent (our kubelet) and the pod logs it writes -----------------------------------------
    def node_agent_pid(self) -> int:
        state = statefile.load(self.state_dir)
        assert state is not None
        return state.processes["nodeagent"].pid

    def component_cpu(self) -> dict[str, float]:
        """CPU seconds so far (user + sys) of each sandbox process, the children it reaped included
        (PostgreSQL's backends); the node agent's own apart from its containers' (the workers)."""
        state = statefile.load(self.state_dir)
        assert state is not None
        pids = {name: process.pid for name, process in state.processes.items()}
        if state.redis_pid:
            pids["redis"] = state.redis_pid.pid
        try:
            pids["postgres"] = int(Path((state.postgres or {})["data_dir"], "postmaster.pid").read_text().split()[0])
        except (OSError, KeyError, ValueError, IndexError):
            pass
        out: dict[str, float] = {}
        for name, pid in pids.items():
            own, reaped = cpu_seconds(pid) or 0.0, children_cpu_seconds(pid) or 0.0
            if name == "nodeagent":
                out["nodeagent"], out["worker containers"] = own, reaped
            else:
                out[name] = own + reaped
        return out

    def node_agent_retries(self, namespace: str) -> dict[str, list[str]]:
        """pod name -> the errors the node agent hit preparing it, each followed by a pause before the
        next try (e.g. the Node authorizer's 403 for a Secret before it has seen the pod bound to this
        node: tens of milliseconds; anything else: its config retry), from the node agent's log."""
        marker = f"pod {namespace}/"
        found: dict[str, list[str]] = {}
        for line in (self.state_dir / "logs" / "nodeagent.log").read_text(errors="replace").splitlines():
            if ("error while preparing" in line or "refused while preparing" in line) and marker in line:
                pod, _, error = line.split(marker, 1)[1].partition(": ")
                error = error[error.find("HTTP"):] if "HTTP" in error else error
                found.setdefault(pod, []).append(re.sub(r'(secrets|namespace) "[^"]*"', r'\1 "…"', error)[:200])
        return found

    def log_events(self, namespace: str, event: str) -> dict[str, dict]:
        """job_id -> the first ``event`` line (JOB_START, JOB_DONE) its worker logged, from the pod logs
        on disk (its "time" is the worker's own clock, same machine)."""
        found: dict[str, dict] = {}
        for path in glob.glob(str(self.state_dir / "logs" / namespace / "*" / "*.log")):
            try:
                lines = Path(path).read_text(errors="replace").splitlines()
            except OSError:
                continue
            for line in lines:
                if event not in line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("event") == event and record.get("job_id") and record.get("time"):
                    record["epoch"] = parse_rfc3339(record["time"])
                    found.setdefault(record["job_id"], record)
        return found


class BenchWorld(TenantWorld):
    """One benchmark's tenant (a TenantWorld), its Gmail Secrets, an emptied Redis database, the operator
    leading there as the chart's ServiceAccount with the chart's settings, and a watch on its
    ReceiptSyncs. Closing keeps the namespace (its deletion would load the next benchmark) and fails
    when kube-apiserver refused the operator anything (a 403 in the audit log)."""

    def __init__(self, cluster: Cluster, bench: str, redis_db: int, max_workers: int, addresses: list[str],
                 chart_values: tuple[str, ...] = (), **settings: str | None) -> None:
        tmp = cluster.work / f"world-{bench}"
        tmp.mkdir(parents=True, exist_ok=True)
        assert cluster.sandbox is not None and cluster.kube is not None
        super().__init__(cluster.sandbox, tmp, prefix=f"bench-{bench}-")
        self.cluster = cluster
        self.redis_db = redis_db
        self.redis_url = cluster.redis_url(redis_db)
        self.redis = cluster.redis(redis_db)
        self.audit_from = cluster.sandbox.audit_mark()
        cluster.create_secrets(self.ns, addresses)
        env = operator_env(cluster.sandbox, namespace=self.ns, redis_url=self.redis_url, lease_name=self.lease,
                           identity=f"bench-{bench}-operator", kubeconfig=self.kubeconfig,
                           **{**(chart_operator_settings(cluster.kube, *chart_values) if chart_values
                                 else cluster.chart_settings), contract.OPERATOR_ENV_MAX_WORKERS: str(max_workers),
                              **settings})
        self.operator = OperatorProcess(env, tmp / "operator.log", self.operator_user, lead_timeout=90,
                                        stop_timeout=20).start()
        self.operators.append(self.operator)
        try:
            self.operator.wait_leading(interval=0.2)
        except AssertionError as exc:
            raise BenchError(f"the operator did not lead: {exc}") from None
        self.watch = Watch(cluster.kube, self.ns).start()
        time.sleep(1.0)  # the watch's initial list, the operator's first pass

    def operator_audit(self, since_line: int | None = None) -> list[dict]:
        since = self.audit_from if since_line is None else since_line
        return self.sandbox.audit(user=self.operator_user, since_line=since)

    def close(self) -> None:
        self.watch.stop()
        for op in self.operators:
            op.stop()
        refused = [f"{r['verb']} {r['requestURI']}" for r in self.operator_audit()
                   if (r.get("responseStatus") or {}).get("code") == 403]
        if refused and not self.allow_forbidden:
            raise BenchError(f"kube-apiserver refused the operator {len(refused)} call(s): {refused[:5]}")


def secret(name: str, credentials: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "stringData": {contract.DEFAULT_CREDENTIALS_KEY: json.dumps(credentials)}}


def chart_operator_settings(kube: Kube, *values: str) -> dict[str, str]:
    """The operator's settings as the chart renders them with its default values (worker template with
    resources and pod security, heartbeat timeout, lease duration, Job TTL, worker credentials, ...),
    Secret references resolved from the sandbox's Secret as the kubelet would; the bench sets
    namespace, Redis database, lease, identity, metrics port and maxWorkers itself. ``values``: helm
    arguments a cluster admin would add (``--set-json worker.extraEnv=...``)."""
    rendered = subprocess.run([str(Path(sys.executable).parent / "helm"), "template", "rs", str(CHART),
                               "--set", "watchNamespace=bench", *values], capture_output=True, text=True,
                              check=True).stdout
    for doc in yaml.safe_load_all(rendered):
        if (doc or {}).get("kind") != "Deployment":
            continue
        settings: dict[str, str] = {}
        for env in doc["spec"]["template"]["spec"]["containers"][0].get("env") or []:
            if env["name"] in OWN_SETTINGS:
                continue
            if "value" in env:
                settings[env["name"]] = str(env["value"])
            elif "secretKeyRef" in (env.get("valueFrom") or {}):
                ref = env["valueFrom"]["secretKeyRef"]
                value = secret_value(kube, CONNECTIONS_NAMESPACE, ref["name"], ref["key"])
                if value is not None:
                    settings[env["name"]] = value
        return settings
    raise BenchError("the chart rendered no operator Deployment")


def secret_value(kube: Kube, namespace: str, name: str, key: str) -> str | None:
    try:
        data = kube.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}").get("data") or {}
    except BenchError:
        return None
    return base64.b64decode(data[key]).decode() if key in data else None


def precompile() -> None:
    """Bytecode for the project's own modules, as the images' build step does (`compileall`): the
    sandbox runs pods from this checkout with PYTHONDONTWRITEBYTECODE=1 (the image's ENV), so without
    it every worker process would compile our sources again."""
    folders = [str(ROOT / d) for d in ("common", "operator", "worker")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *folders], check=False, capture_output=True,
                   env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""})


def node_agent_pause() -> float:
    """Seconds the node agent waits after it failed to prepare a pod, before it tries again (a 403 is
    retried sooner: FORBIDDEN_FIRST_PAUSE, doubling)."""
    from receiptsync_sandbox.nodeagent.runner import AgentConfig

    return next(f.default for f in dataclasses.fields(AgentConfig) if f.name == "config_retry_seconds")


def retries_of(retries: dict[str, list[str]], job_name: str) -> int:
    """How often the node agent retried the pods of worker Job ``job_name``."""
    return sum(len(errors) for pod, errors in retries.items() if job_name and pod.startswith(job_name + "-"))


def parse_rfc3339(text: str) -> float | None:
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)).timestamp()


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


def audit_summary(records: list[dict]) -> dict[str, Any]:
    """Requests and writes in kube-apiserver's audit records (stage ResponseComplete), by verb and
    resource[/subresource]; refused ones (403) counted apart."""
    breakdown: Counter[str] = Counter()
    for record in records:
        ref = record.get("objectRef") or {}
        resource = (ref.get("resource") or record.get("requestURI", "?")) + (
            f"/{ref['subresource']}" if ref.get("subresource") else "")
        breakdown[f"{record['verb']} {resource}"] += 1
    return {"requests": len(records),
            "writes": sum(n for label, n in breakdown.items() if label.split()[0] in WRITE_VERBS),
            "forbidden": sum(1 for r in records if (r.get("responseStatus") or {}).get("code") == 403),
            "breakdown": dict(breakdown.most_common())}


def audit_time(record: dict) -> float | None:
    """When kube-apiserver received the request (microseconds in the audit record)."""
    return parse_rfc3339(record.get("requestReceivedTimestamp") or "")


def unique_suffix() -> str:
    return uuid.uuid4().hex[:5]
