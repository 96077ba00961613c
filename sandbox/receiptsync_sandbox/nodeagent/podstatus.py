"""Pod status as the kubelet would report it, from what the agent knows of each container. Pure."""
from __future__ import annotations

import dataclasses
import datetime as dt

from .env import POD_IP

SANDBOX_IMAGES_HINT = "the sandbox node only runs the project's own images (receiptsync-operator, receiptsync-worker)"


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclasses.dataclass
class ContainerState:
    """One container as the agent sees it; rendered into a containerStatuses entry."""

    name: str
    image: str
    state: str = "waiting"  # waiting | running | terminated
    reason: str = "ContainerCreating"
    message: str = ""
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    restart_count: int = 0
    last_terminated: dict | None = None
    pid: int | None = None

    def terminated_status(self) -> dict:
        return _drop_empty({"exitCode": self.exit_code, "reason": self.reason, "message": self.message,
                            "startedAt": self.started_at, "finishedAt": self.finished_at,
                            "containerID": self.container_id})

    @property
    def container_id(self) -> str:
        return f"sandbox://{self.pid}" if self.pid else ""

    def to_status(self) -> dict:
        if self.state == "running":
            state = {"running": {"startedAt": self.started_at}}
        elif self.state == "terminated":
            state = {"terminated": self.terminated_status()}
        else:
            state = {"waiting": _drop_empty({"reason": self.reason, "message": self.message})}
        status = {
            "name": self.name,
            "image": self.image,
            "imageID": f"sandbox://{self.image}",
            "state": state,
            "lastState": {"terminated": self.last_terminated} if self.last_terminated else {},
            "ready": self.state == "running",
            "started": self.state == "running",
            "restartCount": self.restart_count,
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status


def exit_code_of(returncode: int) -> int:
    """Popen reports death by signal N as -N; a container runtime reports 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def termination_reason(exit_code: int) -> str:
    return "Completed" if exit_code == 0 else "Error"


def should_restart(restart_policy: str, exit_code: int) -> bool:
    if restart_policy == "Always":
        return True
    if restart_policy == "OnFailure":
        return exit_code != 0
    return False


def restart_delay(restart_count: int, ran_for: float, base: float = 1.0, cap: float = 30.0,
                  reset_after: float = 60.0) -> float:
    """Crash-loop back-off: doubles per restart, capped; a container that ran a while starts over.
    (The kubelet uses 10 s .. 5 min; the sandbox is for tests, so it is quicker.)"""
    if ran_for >= reset_after:
        return base
    return min(cap, base * (2 ** restart_count))


def initialized(init_containers: list[ContainerState]) -> bool:
    return all(c.state == "terminated" and c.exit_code == 0 for c in init_containers)


def pod_phase(restart_policy: str, containers: list[ContainerState], init_containers: list[ContainerState] = ()) -> str:
    """The kubelet's getPhase: Pending until the init containers are done (Failed if one failed
    under restartPolicy Never), then from the regular containers."""
    if not initialized(list(init_containers)):
        init_failed = any(c.state == "terminated" and c.exit_code != 0 for c in init_containers)
        return "Failed" if init_failed and restart_policy == "Never" else "Pending"
    waiting = running = stopped = succeeded = failed = 0
    for container in containers:
        if container.state == "running":
            running += 1
        elif container.state == "terminated":
            stopped += 1
            if container.exit_code == 0:
                succeeded += 1
            else:
                failed += 1
        elif container.last_terminated:
            stopped += 1  # waiting to restart after having run
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if not stopped:
        return "Pending"
    if restart_policy == "Always":
        return "Running"
    if restart_policy == "OnFailure":
        return "Succeeded" if stopped == succeeded and all(c.state == "terminated" for c in containers) else "Running"
    return "Failed" if failed else "Succeeded"


def pod_status(phase: str, containers: list[ContainerState], start_time: str, now: str,
               previous_conditions: list[dict] | None = None, init_containers: list[ContainerState] = ()) -> dict:
    ready = phase == "Running" and all(c.state == "running" for c in containers)
    unready = [c.name for c in containers if c.state != "running"]
    not_ready_message = f"containers with unready status: [{' '.join(unready)}]" if unready else ""
    incomplete = [c.name for c in init_containers if not (c.state == "terminated" and c.exit_code == 0)]
    # PodScheduled belongs to the scheduler; a strategic-merge patch keeps it (conditions merge by type).
    conditions = [
        _condition("Initialized", not incomplete, "ContainersNotInitialized" if incomplete else "",
                   f"containers with incomplete status: [{' '.join(incomplete)}]" if incomplete else ""),
        _condition("ContainersReady", ready, "" if ready else "ContainersNotReady", not_ready_message),
        _condition("Ready", ready, "" if ready else "ContainersNotReady", not_ready_message),
    ]
    if phase in ("Succeeded", "Failed"):
        for condition in conditions[1:]:
            condition["reason"] = "PodCompleted"
            condition["message"] = ""
    status = {
        "phase": phase,
        "conditions": keep_transition_times(conditions, previous_conditions or [], now),
        "hostIP": POD_IP,
        "hostIPs": [{"ip": POD_IP}],
        "podIP": POD_IP,
        "podIPs": [{"ip": POD_IP}],
        "startTime": start_time,
        "containerStatuses": [_initializing(c.to_status()) if incomplete else c.to_status() for c in containers],
    }
    if init_containers:
        status["initContainerStatuses"] = [c.to_status() for c in init_containers]
    return status


def _initializing(status: dict) -> dict:
    """A regular container that waits for init containers says so, as the kubelet does."""
    if (status["state"].get("waiting") or {}).get("reason") == "ContainerCreating":
        status["state"] = {"waiting": {"reason": "PodInitializing"}}
    return status


def pull_failure(image: str, attempts: int) -> tuple[str, str]:
    """The kubelet's words for an image it cannot pull: ErrImagePull on a failed try, then
    ImagePullBackOff while it waits to try again."""
    if attempts % 2:
        return "ErrImagePull", f'failed to pull and unpack image "{image}": {SANDBOX_IMAGES_HINT}'
    return "ImagePullBackOff", f'Back-off pulling image "{image}"'


def pull_delay(attempts: int, base: float = 10.0, cap: float = 300.0) -> float:
    """Image pull back-off, as the kubelet's: 10 s doubling to 5 min."""
    return min(cap, base * 2 ** max(0, attempts - 1))


def _condition(kind: str, status: bool, reason: str = "", message: str = "") -> dict:
    return _drop_empty({"type": kind, "status": "True" if status else "False", "reason": reason, "message": message})


def keep_transition_times(conditions: list[dict], previous: list[dict], now: str) -> list[dict]:
    """lastTransitionTime moves only when a condition's status changes."""
    before = {c.get("type"): c for c in previous}
    for condition in conditions:
        old = before.get(condition["type"])
        same = old is not None and old.get("status") == condition["status"] and old.get("lastTransitionTime")
        condition["lastTransitionTime"] = old["lastTransitionTime"] if same else now
    return conditions


def _drop_empty(values: dict) -> dict:
    return {key: value for key, value in values.items() if value not in (None, "")}
