"""The Node object and its Lease, as a kubelet registers and renews them. Pure builders."""
from __future__ import annotations

import datetime as dt
import os
import platform

from .env import POD_IP

LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40
RENEW_SECONDS = 10  # the kubelet renews at a quarter of the lease duration
STATUS_SECONDS = 60
KUBELET_VERSION = "v1.37.2"  # the control plane's release; this node is a stand-in kubelet
MAX_PODS = "110"


def micro_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def capacity() -> dict[str, str]:
    memory_kib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024
    return {"cpu": str(os.cpu_count() or 1), "memory": f"{memory_kib}Ki", "pods": MAX_PODS,
            "ephemeral-storage": "50Gi"}


def node_object(name: str) -> dict:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                                  "kubernetes.io/arch": arch, "beta.kubernetes.io/os": "linux",
                                                  "beta.kubernetes.io/arch": arch}},
            "spec": {}}


def node_status(name: str, kubelet_port: int, now: dt.datetime, ready_since: dt.datetime) -> dict:
    stamp, since = micro_time(now)[:19] + "Z", micro_time(ready_since)[:19] + "Z"

    def condition(kind: str, status: str, reason: str, message: str) -> dict:
        return {"type": kind, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": stamp, "lastTransitionTime": since}

    uname = platform.uname()
    return {
        "capacity": capacity(), "allocatable": capacity(),
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory",
                      "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [{"type": "InternalIP", "address": POD_IP}, {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        "nodeInfo": {"machineID": "receiptsync-sandbox", "systemUUID": "receiptsync-sandbox", "bootID": "",
                     "kernelVersion": uname.release, "osImage": "ReceiptSync sandbox (processes on the host)",
                     "containerRuntimeVersion": "receiptsync-process://0.1", "kubeletVersion": KUBELET_VERSION,
                     "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": node_object(name)["metadata"]
                     ["labels"]["kubernetes.io/arch"]},
    }


def lease_object(name: str, now: dt.datetime) -> dict:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": LEASE_NAMESPACE},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": micro_time(now)}}
