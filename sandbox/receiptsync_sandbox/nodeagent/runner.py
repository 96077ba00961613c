"""Runs one Pod bound to our node: prepares its environment and volumes, runs each container as a
process in its own mount namespace, restarts per restartPolicy, keeps the Pod's status current as
a kubelet reports it, and stops it when asked."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from .. import events
from ..kubeclient import CONFIGMAPS, PODS, SECRETS, SERVICEACCOUNTS, STRATEGIC_MERGE_PATCH, ApiError, KubeClient
from ..nodeagent.images import REPO_ROOT
from . import env as envlib
from . import images, mounts, podstatus, volumes
from .process import ContainerProcess, StartError, resolve_executable

log = logging.getLogger(__name__)

COMPONENT = "kubelet"
TERMINATION_MESSAGE_LIMIT = 4096
# A 403 while the Node authorizer's graph catches up with a binding: 20, 40, 80 … ms, then the
# normal config retry.
FORBIDDEN_FIRST_PAUSE = 0.02
FORBIDDEN_QUICK_RETRIES = 6
TOKEN_SECONDS = 3607  # what the ServiceAccount admission plugin asks for in kube-api-access volumes
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def forbidden_pause(refusals_before: int, normal: float) -> float:
    """The pause after a 403 while preparing a pod. The Node authorizer learns "this pod is bound here,
    it uses that Secret" from its own watch, a few milliseconds after the binding we saw: ask again
    soon, doubling, never slower than the normal config retry."""
    return min(normal, FORBIDDEN_FIRST_PAUSE * 2 ** refusals_before)


@dataclasses.dataclass
class AgentConfig:
    state_dir: Path
    server: str  # the API server's URL: in-cluster clients find it in KUBERNETES_SERVICE_HOST/PORT
    node_name: str = envlib.NODE_NAME
    max_grace_seconds: float = 10.0  # the sandbox caps terminationGracePeriodSeconds
    config_retry_seconds: float = 2.0
    restart_base_seconds: float = 1.0
    bin_dir: str = dataclasses.field(default_factory=lambda: os.path.dirname(sys.executable))

    def pod_dir(self, namespace: str, name: str) -> Path:
        return self.state_dir / "pods" / namespace / name

    def log_path(self, namespace: str, name: str, container: str) -> Path:
        return self.state_dir / "logs" / namespace / name / f"{container}.log"

    def service_env(self) -> dict[str, str]:
        """What the kubelet tells every container about the `kubernetes` Service."""
        host, port = self.server.split("://", 1)[-1].rsplit(":", 1)
        return {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port,
                "KUBERNETES_SERVICE_PORT_HTTPS": port, "KUBERNETES_PORT": f"tcp://{host}:{port}",
                "KUBERNETES_PORT_443_TCP": f"tcp://{host}:{port}", "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
                "KUBERNETES_PORT_443_TCP_ADDR": host, "KUBERNETES_PORT_443_TCP_PORT": port}

    def kept_paths(self) -> list[Path]:
        """What a container process itself needs to see: no volume may be mounted over these."""
        return [Path(sys.prefix).resolve(), Path(self.bin_dir).resolve(), REPO_ROOT, self.state_dir.resolve()]


@dataclasses.dataclass
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    termination_file: Path | None = None
    memory_limit: int | None = None
    start_error: str = ""  # known before starting (e.g. no such executable): the runtime's StartError


def now_text() -> str:
    return podstatus.rfc3339(dt.datetime.now(dt.timezone.utc))


def grace_seconds(pod: dict, cap: float) -> float:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    grace = meta.get("deletionGracePeriodSeconds")
    if grace is None:
        grace = spec.get("terminationGracePeriodSeconds")
    return min(float(30 if grace is None else grace), cap)


async def delete_pod_object(client: KubeClient, pod: dict) -> None:
    """The kubelet's last word on a terminating pod: delete it now that nothing runs."""
    meta = pod["metadata"]
    try:
        await client.delete(PODS, meta.get("namespace"), meta["name"], grace_period_seconds=0, uid=meta.get("uid"))
    except ApiError as exc:
        log.warning("could not delete pod %s/%s: %s", meta.get("namespace"), meta["name"], exc)


class PodRunner:
    def __init__(self, client: KubeClient, config: AgentConfig, pod: dict):
        self.client = client
        self.config = config
        self.pod = pod
        meta = pod["metadata"]
        self.namespace, self.name, self.uid = meta.get("namespace", "default"), meta["name"], meta.get("uid", "")
        self.spec = pod.get("spec") or {}
        self.restart_policy = self.spec.get("restartPolicy") or "Always"
        self.init_containers = [podstatus.ContainerState(c["name"], c.get("image", ""))
                                for c in self.spec.get("initContainers") or []]
        self.containers = [podstatus.ContainerState(c["name"], c.get("image", ""))
                           for c in self.spec.get("containers") or []]
        self.start_time = now_text()
        self.task: asyncio.Task | None = None
        self._stop = asyncio.Event()
        self._grace = config.max_grace_seconds
        self._delete_object = False
        self._publish_lock = asyncio.Lock()
        self._last_status: dict | None = None
        self._reported_errors: set[str] = set()

    @property
    def pod_dir(self) -> Path:
        return self.config.pod_dir(self.namespace, self.name)

    def request_stop(self, grace: float, delete_object: bool) -> None:
        self._grace = min(self._grace, grace) if self._stop.is_set() else grace
        self._delete_object = self._delete_object or delete_object
        self._stop.set()

    async def run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one broken pod must not take the agent down
            log.exception("pod %s/%s failed in the agent", self.namespace, self.name)
        finally:
            await self._finish()

    async def _finish(self) -> None:
        if self._stop.is_set():
            shutil.rmtree(self.pod_dir, ignore_errors=True)  # home, token, secret volumes
        if self._delete_object:
            await delete_pod_object(self.client, self.pod)

    async def _run(self) -> None:
        foreign = [c for c in self.init_containers + self.containers if images.project_image(c.image) is None]
        if foreign:
            await self._image_pull_backoff(foreign)
            return
        launches = await self._prepare()
        if launches is None:
            return
        init_launches, main_launches = launches[: len(self.init_containers)], launches[len(self.init_containers):]
        # Init containers run one after the other, each to success, before the regular ones start.
        init_policy = "Never" if self.restart_policy == "Never" else "OnFailure"
        for state, launch in zip(self.init_containers, init_launches):
            await self._run_container(state, launch, init_policy)
            if state.exit_code != 0 or self._stop.is_set():
                await self._publish()
                return
        await asyncio.gather(*(self._run_container(state, launch, self.restart_policy)
                               for state, launch in zip(self.containers, main_launches)))
        await self._publish()

    async def _image_pull_backoff(self, foreign: list[podstatus.ContainerState]) -> None:
        """No runtime here can pull another image: report it as a kubelet reports a failed pull,
        trying again with the kubelet's back-off until the pod is deleted."""
        attempts = 0
        while not self._stop.is_set():
            attempts += 1
            for state in foreign:
                state.reason, state.message = podstatus.pull_failure(state.image, attempts)
            await self._publish()
            reason, message = podstatus.pull_failure(foreign[0].image, attempts)
            if attempts % 2:
                await events.record(self.client, self.pod, "Warning", "Failed", f"Failed to pull image "
                                    f'"{foreign[0].image}": {message}', COMPONENT)
                await self._sleep_or_stop(1.0)  # ErrImagePull shows briefly, then the back-off
                continue
            await events.record(self.client, self.pod, "Normal", "BackOff", message, COMPONENT)
            await self._sleep_or_stop(podstatus.pull_delay(attempts // 2))

    # --- preparation -----------------------------------------------------------------------------

    async def _prepare(self) -> list[Launch] | None:
        """Retry until every container's config resolves (CreateContainerConfigError meanwhile)."""
        forbidden = 0
        while not self._stop.is_set():
            pause = self.config.config_retry_seconds
            try:
                return await self._launches()
            except envlib.ContainerConfigError as exc:
                await self._config_error(str(exc))
            except ApiError as exc:
                if exc.status == 403 and forbidden < FORBIDDEN_QUICK_RETRIES:
                    pause = forbidden_pause(forbidden, pause)
                    forbidden += 1
                    log.info("pod %s/%s: refused while preparing, retrying in %.0f ms: %s", self.namespace,
                             self.name, pause * 1000, exc)
                else:
                    log.warning("pod %s/%s: API error while preparing: %s", self.namespace, self.name, exc)
            await self._sleep_or_stop(pause)
        return None

    async def _config_error(self, message: str) -> None:
        for state in self.init_containers + self.containers:
            state.reason, state.message = "CreateContainerConfigError", message
        await self._publish()
        if message not in self._reported_errors:
            self._reported_errors.add(message)
            await events.record(self.client, self.pod, "Warning", "Failed", f"Error: {message}", COMPONENT)

    async def _launches(self) -> list[Launch]:
        sources = await self._fetch_sources()
        home = self.pod_dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        home.chmod(0o777)  # the container's user may be anyone (runAsNonRoot)
        mounted = volumes.materialize(self.pod, sources, self.pod_dir / "volumes")
        volume_dirs = {volume.name: volume.path for volume in mounted}
        base = {"PATH": f"{self.config.bin_dir}:{SYSTEM_PATH}", "HOME": str(home), "HOSTNAME": self.name,
                "LANG": "C.UTF-8", **self.config.service_env()}
        every = (self.spec.get("initContainers") or []) + self.spec["containers"]
        return [self._launch(container, sources, base, home, volume_dirs) for container in every]

    def _launch(self, container: dict, sources: envlib.Sources, base: dict[str, str], home: Path,
                volume_dirs: dict[str, Path]) -> Launch:
        image = images.load_image_config(images.project_image(container["image"]))  # type: ignore[arg-type]
        image_env = {name: value for name, value in image.env if name != "PATH"}
        env = envlib.container_env(self.pod, container, sources, {**image_env, **base})
        argv = [envlib.expand(part, env) for part in images.container_argv(container, image)]
        keep = self.config.kept_paths()
        binds, stand_ins = mounts.container_mounts(container, volume_dirs, keep)
        env.update(stand_ins)
        termination_file = self.pod_dir / "termination" / container["name"]
        termination_file.parent.mkdir(parents=True, exist_ok=True)
        termination_file.write_bytes(b"")
        termination_file.chmod(0o666)
        termination = mounts.termination_mount(container, termination_file, keep)
        if termination:
            binds.append(termination)
        start_error = ""
        try:
            if argv:
                argv[0] = resolve_executable(argv[0], env.get("PATH", ""))
        except StartError as exc:
            start_error = str(exc)
        working_dir = container.get("workingDir")
        cwd = Path(working_dir) if working_dir and os.path.isdir(working_dir) else home
        limit = mounts.parse_quantity(((container.get("resources") or {}).get("limits") or {}).get("memory"))
        return Launch(mounts.wrap(argv, binds), env, cwd, termination_file, limit, start_error)

    async def _fetch_sources(self) -> envlib.Sources:
        secret_names, configmap_names = envlib.referenced_sources(self.pod)
        sources = envlib.Sources()
        for name in secret_names:
            secret = await self.client.get_or_none(SECRETS, self.namespace, name)
            sources.secrets[name] = envlib.decode_secret(secret) if secret else None
        for name in configmap_names:
            configmap = await self.client.get_or_none(CONFIGMAPS, self.namespace, name)
            sources.configmaps[name] = envlib.decode_configmap(configmap) if configmap else None
        if self._wants_token():
            sources.service_account_token = await self._request_token()
        return sources

    def _wants_token(self) -> bool:
        return any("serviceAccountToken" in source for volume in self.spec.get("volumes") or []
                   for source in (volume.get("projected") or {}).get("sources") or [])

    async def _request_token(self) -> str:
        """A TokenRequest bound to this pod, as the kubelet makes for a projected token volume."""
        account = self.spec.get("serviceAccountName") or "default"
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": TOKEN_SECONDS,
                         "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid}}}
        answer = await self.client.request("POST", SERVICEACCOUNTS.path(self.namespace, account, "token"), body=body)
        return answer["status"]["token"]

    # --- running ---------------------------------------------------------------------------------

    async def _run_container(self, state: podstatus.ContainerState, launch: Launch, restart_policy: str) -> None:
        log_path = self.config.log_path(self.namespace, self.name, state.name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_bytes(b"")  # a new pod of an old name starts with a fresh log
        while True:
            began = time.monotonic()
            exit_code, reason = await self._run_once(state, launch, log_path)
            state.state, state.exit_code, state.finished_at = "terminated", exit_code, now_text()
            if reason != "StartError":
                state.reason = reason or podstatus.termination_reason(exit_code)
                state.message = termination_message(launch.termination_file, log_path, exit_code,
                                                    self._container_spec(state.name))
            if self._stop.is_set() or not podstatus.should_restart(restart_policy, exit_code):
                await self._publish()
                return
            delay = podstatus.restart_delay(state.restart_count, time.monotonic() - began,
                                            self.config.restart_base_seconds)
            state.last_terminated = state.terminated_status()
            state.state, state.reason = "waiting", "CrashLoopBackOff"
            state.message = f"back-off {delay:g}s restarting failed container={state.name} pod={self.name}"
            await self._publish()
            await events.record(self.client, self.pod, "Warning", "BackOff", "Back-off restarting failed container",
                                COMPONENT)
            if await self._sleep_or_stop(delay):
                return
            state.restart_count += 1

    def _container_spec(self, name: str) -> dict:
        every = (self.spec.get("initContainers") or []) + (self.spec.get("containers") or [])
        return next((c for c in every if c.get("name") == name), {})

    async def _run_once(self, state: podstatus.ContainerState, launch: Launch, log_path: Path) -> tuple[int, str]:
        """Start and wait for one process; returns its container exit code and a reason that the
        exit code alone does not tell (StartError, OOMKilled), else ""."""
        state.started_at = now_text()
        if launch.termination_file:
            launch.termination_file.write_bytes(b"")
        try:
            if launch.start_error:
                raise StartError(launch.start_error)
            process = await ContainerProcess.start(launch.argv, launch.env, launch.cwd, log_path)
        except StartError as exc:
            state.pid, state.reason, state.message = None, "StartError", str(exc)
            with open(log_path, "a") as log_file:
                log_file.write(f"sandbox: {exc}\n")
            await events.record(self.client, self.pod, "Warning", "Failed", f"Error: {exc}", COMPONENT)
            return 128, "StartError"
        pid_file = self.pod_dir / f"{state.name}.pid"
        pid_file.write_text(str(process.pid))
        state.state, state.pid, state.reason, state.message = "running", process.pid, "", ""
        await self._publish()
        await events.record(self.client, self.pod, "Normal", "Started", f"Started container {state.name}", COMPONENT)
        returncode, oom = await self._wait_or_stop(process, launch.memory_limit)
        pid_file.unlink(missing_ok=True)
        return podstatus.exit_code_of(returncode), "OOMKilled" if oom else ""

    async def _wait_or_stop(self, process: ContainerProcess, memory_limit: int | None) -> tuple[int, bool]:
        exited = asyncio.create_task(process.wait())
        stopping = asyncio.create_task(self._stop.wait())
        watching = asyncio.create_task(process.enforce_memory_limit(memory_limit)) if memory_limit else None
        waiters = {exited, stopping} | ({watching} if watching else set())
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        oom = bool(watching and watching.done() and not watching.cancelled() and watching.result())
        if watching and not watching.done():
            watching.cancel()
        if exited.done() or oom:
            return await exited, oom
        exited.cancel()
        log.info("stopping pod %s/%s container pid %s (grace %.0fs)", self.namespace, self.name, process.pid,
                 self._grace)
        return await process.stop(self._grace), False

    async def _sleep_or_stop(self, seconds: float) -> bool:
        """True when a stop was requested during the sleep."""
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
            return True
        except asyncio.TimeoutError:
            return False

    # --- status ----------------------------------------------------------------------------------

    async def _publish(self) -> None:
        async with self._publish_lock:
            phase = podstatus.pod_phase(self.restart_policy, self.containers, self.init_containers)
            previous = (self._last_status or self.pod.get("status") or {}).get("conditions")
            status = podstatus.pod_status(phase, self.containers, self.start_time, now_text(), previous,
                                          self.init_containers)
            await self._patch_status(status)

    async def _patch_status(self, status: dict) -> None:
        if status == self._last_status:
            return
        try:
            # Strategic merge, as the kubelet: conditions merge by type, so PodScheduled stays.
            await self.client.patch(PODS, self.namespace, self.name, {"status": status}, subresource="status",
                                    content_type=STRATEGIC_MERGE_PATCH)
            self._last_status = status
        except ApiError as exc:
            if exc.status != 404:
                log.warning("pod %s/%s: status update failed: %s", self.namespace, self.name, exc)


def termination_message(path: Path | None, log_path: Path, exit_code: int, container: dict) -> str:
    """What the container left at its terminationMessagePath (at most 4 KiB), or with
    FallbackToLogsOnError and a failure, the end of its log."""
    text = ""
    if path is not None:
        try:
            text = path.read_bytes()[:TERMINATION_MESSAGE_LIMIT].decode("utf-8", "replace").strip()
        except OSError:
            text = ""
    if not text and exit_code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
        try:
            tail = log_path.read_bytes()[-TERMINATION_MESSAGE_LIMIT:]
            text = b"\n".join(tail.splitlines()[-80:]).decode("utf-8", "replace").strip()
        except OSError:
            text = ""
    return text
