"""The sandbox's one Node, `sandbox`: where the node agent runs every pod (it binds bare pods to it).

It exists so node-aware clients work (`kubectl get nodes`, `kubectl describe node sandbox`, anything
listing nodes for capacity); its capacity is this machine's, and it is always Ready.
"""
from __future__ import annotations

import os
import platform
import shutil
import uuid
from pathlib import Path
from typing import Any

NODE_NAME = "sandbox"  # receiptsync_sandbox.nodeagent.env.NODE_NAME
KUBELET_VERSION = "v1.33.0"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def node_object() -> dict[str, Any]:
    arch = _ARCH.get(platform.machine(), platform.machine())
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE_NAME, "labels": {
        "kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux", "kubernetes.io/arch": arch,
        "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": arch}}, "spec": {}}


def node_status(now: str, state_dir: Path) -> dict[str, Any]:
    capacity = {"cpu": str(os.cpu_count() or 1), "memory": f"{_memory_kib()}Ki", "pods": "110",
                "ephemeral-storage": f"{shutil.disk_usage(state_dir).total // 1024}Ki"}

    def condition(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
        return {"type": type_, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": now}

    machine = uuid.uuid5(uuid.NAMESPACE_DNS, platform.node() or NODE_NAME).hex
    return {
        "capacity": capacity,
        "allocatable": dict(capacity),
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE_NAME}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": machine, "systemUUID": machine, "bootID": str(uuid.uuid4()),
            "kernelVersion": platform.release(), "osImage": "ReceiptSync sandbox (local processes)",
            "containerRuntimeVersion": "receiptsync-sandbox://1.0", "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION, "operatingSystem": "linux",
            "architecture": _ARCH.get(platform.machine(), platform.machine()),
        },
    }


def node_lease(node: dict[str, Any], now: str) -> dict[str, Any]:
    """kube-node-lease/sandbox, as a kubelet keeps it (shown by `kubectl describe node`)."""
    micro = now.replace("Z", ".000000Z")
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {
        "name": NODE_NAME, "namespace": "kube-node-lease",
        "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": NODE_NAME, "uid": node["metadata"]["uid"]}]},
        "spec": {"holderIdentity": NODE_NAME, "leaseDurationSeconds": 40, "renewTime": micro}}


def _memory_kib() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024
