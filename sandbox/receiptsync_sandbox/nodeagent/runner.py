"""Runs one Pod: prepares its environment, runs each container as a process, restarts per
restartPolicy, keeps the Pod's status current, and stops it when asked."""
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
from ..kubeclient import CONFIGMAPS, PODS, SECRETS, SERVICEACCOUNTS, ApiError, KubeClient
from ..kubeconfig import kubeconfig, service_account_token, write_kubeconfig
from . import env as envlib
from . import images, podstatus, volumes
from .process import ContainerProcess, StartError

log = logging.getLogger(__name__)

COMPONENT = "kubelet"
SCHEDULER = "default-scheduler"  # the sandbox has none; refusing a foreign image is its decision
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclasses.dataclass
class AgentConfig:
    state_dir: Path
    server: str  # API server URL written into pods' kubeconfigs
    max_grace_seconds: float = 10.0  # the sandbox caps terminationGracePeriodSeconds
    config_retry_seconds: float = 2.0
    restart_base_seconds: float = 1.0
    bin_dir: str = dataclasses.field(default_factory=lambda: os.path.dirname(sys.executable))

    def pod_dir(self, namespace: str, name: str) -> Path:
        return self.state_dir / "pods" / namespace / name

    def log_path(self, namespace: str, name: str, container: str) -> Path:
        return self.state_dir / "logs" / namespace / name / f"{container}.log"


@dataclasses.dataclass
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path


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
        self.init_containers = [podstatus.ContainerState(c["name"], c.get("image", "")) for c in self.spec.get("initContainers") or []]
        self.containers = [podstatus.ContainerState(c["name"], c.get("image", "")) for c in self.spec.get("containers") or []]
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
            shutil.rmtree(self.pod_dir, ignore_errors=True)  # home, kubeconfig, secret volumes
        if self._delete_object:
            await delete_pod_object(self.client, self.pod)

    async def _run(self) -> None:
        foreign = [c.image for c in self.init_containers + self.containers if images.project_image(c.image) is None]
        if foreign or not self.containers:
            await self._refuse(foreign[0] if foreign else "<none>")
            return
        await self._bind()
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

    async def _bind(self) -> None:
        """Do the scheduler's part for a bare pod: bind it to the sandbox's node, so its deletion
        is graceful (the API server waits for the kubelet) instead of immediate."""
        if self.spec.get("nodeName"):
            return
        binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": self.name, "namespace": self.namespace},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": envlib.NODE_NAME}}
        try:
            await self.client.request("POST", PODS.path(self.namespace, self.name, "binding"), body=binding)
        except ApiError as exc:  # an API server without pods/binding: deletion is immediate, still handled
            log.debug("pod %s/%s: binding not possible: %s", self.namespace, self.name, exc)

    async def _refuse(self, image: str) -> None:
        status = podstatus.unschedulable_status(image, now_text(), (self.pod.get("status") or {}).get("conditions"))
        await self._patch_status(status)
        message = f"image {image} is not a ReceiptSync image; {podstatus.SANDBOX_IMAGES_HINT}"
        await events.record(self.client, self.pod, "Warning", "FailedScheduling", message, SCHEDULER)
        await self._stop.wait()

    # --- preparation -----------------------------------------------------------------------------

    async def _prepare(self) -> list[Launch] | None:
        """Retry until every container's config resolves (CreateContainerConfigError meanwhile)."""
        while not self._stop.is_set():
            try:
                return await self._launches()
            except envlib.ContainerConfigError as exc:
                await self._config_error(str(exc))
            except ApiError as exc:
                log.warning("pod %s/%s: API error while preparing: %s", self.namespace, self.name, exc)
            await self._sleep_or_stop(self.config.config_retry_seconds)
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
        mounted = volumes.materialize(self.pod, sources, self.pod_dir / "volumes")
        base = {"PATH": f"{self.config.bin_dir}:{SYSTEM_PATH}", "HOME": str(home), "HOSTNAME": self.name,
                "LANG": "C.UTF-8"}
        kubeconfig_path = await self._service_account_kubeconfig()
        if kubeconfig_path:
            base["KUBECONFIG"] = str(kubeconfig_path)
        every = (self.spec.get("initContainers") or []) + self.spec["containers"]
        launches = [self._launch(container, sources, base, home) for container in every]
        for volume in mounted:
            where = ", ".join(volume.mount_paths) or "no mount"
            await events.record(self.client, self.pod, "Normal", "VolumeMaterialized",
                                f"volume {volume.name} ({where}) is at {volume.path}: the sandbox cannot mount at absolute paths",
                                COMPONENT)
        return launches

    def _launch(self, container: dict, sources: envlib.Sources, base: dict[str, str], home: Path) -> Launch:
        image = images.load_image_config(images.project_image(container["image"]))  # type: ignore[arg-type]
        image_env = {name: value for name, value in image.env if name != "PATH"}
        env = envlib.container_env(self.pod, container, sources, {**image_env, **base})
        argv = [envlib.expand(part, env) for part in images.container_argv(container, image)]
        working_dir = container.get("workingDir")
        cwd = Path(working_dir) if working_dir and os.path.isdir(working_dir) else home
        return Launch(argv, env, cwd)

    async def _fetch_sources(self) -> envlib.Sources:
        secret_names, configmap_names = envlib.referenced_sources(self.pod)
        sources = envlib.Sources()
        for name in secret_names:
            secret = await self.client.get_or_none(SECRETS, self.namespace, name)
            sources.secrets[name] = envlib.decode_secret(secret) if secret else None
        for name in configmap_names:
            configmap = await self.client.get_or_none(CONFIGMAPS, self.namespace, name)
            sources.configmaps[name] = envlib.decode_configmap(configmap) if configmap else None
        return sources

    async def _service_account_kubeconfig(self) -> Path | None:
        account = self.spec.get("serviceAccountName") or self.spec.get("serviceAccount") or "default"
        automount = self.spec.get("automountServiceAccountToken")
        if automount is None:
            service_account = await self.client.get_or_none(SERVICEACCOUNTS, self.namespace, account)
            automount = (service_account or {}).get("automountServiceAccountToken", True)
        if automount is False:
            return None
        token = service_account_token(self.namespace, account)
        config = kubeconfig(self.config.server, token, user=token, namespace=self.namespace)
        return write_kubeconfig(self.pod_dir / "kubeconfig", config)

    # --- running ---------------------------------------------------------------------------------

    async def _run_container(self, state: podstatus.ContainerState, launch: Launch, restart_policy: str) -> None:
        log_path = self.config.log_path(self.namespace, self.name, state.name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_bytes(b"")  # a new pod of an old name starts with a fresh log
        while True:
            began = time.monotonic()
            exit_code = await self._run_once(state, launch, log_path)
            state.state, state.exit_code, state.finished_at = "terminated", exit_code, now_text()
            if self._stop.is_set() or not podstatus.should_restart(restart_policy, exit_code):
                await self._publish()
                return
            delay = podstatus.restart_delay(state.restart_count, time.monotonic() - began, self.config.restart_base_seconds)
            state.last_terminated = state.terminated_status()
            state.state, state.reason = "waiting", "CrashLoopBackOff"
            state.message = f"back-off {delay:g}s restarting failed container={state.name} pod={self.name}"
            await self._publish()
            await events.record(self.client, self.pod, "Warning", "BackOff", "Back-off restarting failed container", COMPONENT)
            if await self._sleep_or_stop(delay):
                return
            state.restart_count += 1

    async def _run_once(self, state: podstatus.ContainerState, launch: Launch, log_path: Path) -> int:
        """Start and wait for one process; returns its container exit code."""
        state.started_at = now_text()
        try:
            process = await ContainerProcess.start(launch.argv, launch.env, launch.cwd, log_path)
        except StartError as exc:
            state.pid, state.reason, state.message = None, "StartError", str(exc)
            with open(log_path, "a") as log_file:
                log_file.write(f"sandbox: {exc}\n")
            await events.record(self.client, self.pod, "Warning", "Failed", f"Error: {exc}", COMPONENT)
            return 128
        pid_file = self.pod_dir / f"{state.name}.pid"
        pid_file.write_text(str(process.pid))
        state.state, state.pid, state.reason, state.message = "running", process.pid, "", ""
        await self._publish()
        await events.record(self.client, self.pod, "Normal", "Started", f"Started container {state.name}", COMPONENT)
        returncode = await self._wait_or_stop(process)
        pid_file.unlink(missing_ok=True)
        exit_code = podstatus.exit_code_of(returncode)
        state.reason, state.message = podstatus.termination_reason(exit_code), ""
        return exit_code

    async def _wait_or_stop(self, process: ContainerProcess) -> int:
        exited = asyncio.create_task(process.wait())
        stopping = asyncio.create_task(self._stop.wait())
        await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if exited.done():
            return exited.result()
        exited.cancel()
        log.info("stopping pod %s/%s container pid %s (grace %.0fs)", self.namespace, self.name, process.pid, self._grace)
        return await process.stop(self._grace)

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
            status = podstatus.pod_status(phase, self.containers, self.start_time, now_text(), previous, self.init_containers)
            await self._patch_status(status)

    async def _patch_status(self, status: dict) -> None:
        if status == self._last_status:
            return
        try:
            await self.client.patch_status(PODS, self.namespace, self.name, status)
            self._last_status = status
        except ApiError as exc:
            if exc.status != 404:
                log.warning("pod %s/%s: status update failed: %s", self.namespace, self.name, exc)
