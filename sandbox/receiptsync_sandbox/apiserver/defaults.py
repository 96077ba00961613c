"""Defaulting kube-apiserver does to built-in kinds on create (pure: object in, object out)."""
from __future__ import annotations

import random
from typing import Any, Callable


def _job(obj: dict[str, Any]) -> None:
    uid = obj["metadata"]["uid"]
    name = obj["metadata"]["name"]
    spec = obj.setdefault("spec", {})
    # The Job controller's labels: the selector points at the uid so a re-created Job never adopts old Pods.
    if not spec.get("manualSelector"):
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        labels = spec.setdefault("template", {}).setdefault("metadata", {}).setdefault("labels", {})
        labels.update({
            "controller-uid": uid,
            "batch.kubernetes.io/controller-uid": uid,
            "job-name": name,
            "batch.kubernetes.io/job-name": name,
        })
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completions", 1)
    spec.setdefault("parallelism", 1)
    spec.setdefault("suspend", False)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    _pod_spec(spec.setdefault("template", {}).setdefault("spec", {}), restart="OnFailure")


def _deployment(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))


def _replicaset(obj: dict[str, Any]) -> None:
    obj.setdefault("spec", {}).setdefault("replicas", 1)
    _pod_spec(obj["spec"].setdefault("template", {}).setdefault("spec", {}))


def _cronjob(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)


def _pod_spec(spec: dict[str, Any], restart: str = "Always") -> None:
    spec.setdefault("restartPolicy", restart)
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for container in spec.get("containers") or []:
        container.setdefault("imagePullPolicy", "Always" if str(container.get("image", "")).endswith(":latest")
                             or ":" not in str(container.get("image", "")) else "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")


def _pod(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    _pod_spec(spec)
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("enableServiceLinks", True)
    status = obj.setdefault("status", {})
    status.setdefault("phase", "Pending")
    status.setdefault("qosClass", "BestEffort")


def _service(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if "clusterIP" not in spec:
        spec["clusterIP"] = f"10.96.{random.randint(0, 255)}.{random.randint(1, 254)}"
    if spec["clusterIP"] != "None":
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    obj.setdefault("status", {"loadBalancer": {}})


def _namespace(obj: dict[str, Any]) -> None:
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj["status"] = {"phase": "Active"}
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]


def _secret(obj: dict[str, Any]) -> None:
    obj.setdefault("type", "Opaque")


_DEFAULTERS: dict[tuple[str, str], Callable[[dict[str, Any]], None]] = {
    ("batch", "jobs"): _job,
    ("batch", "cronjobs"): _cronjob,
    ("apps", "deployments"): _deployment,
    ("apps", "replicasets"): _replicaset,
    ("", "pods"): _pod,
    ("", "services"): _service,
    ("", "namespaces"): _namespace,
    ("", "secrets"): _secret,
}


def apply_create_defaults(key: tuple[str, str], obj: dict[str, Any]) -> None:
    defaulter = _DEFAULTERS.get(key)
    if defaulter:
        defaulter(obj)


def normalize_on_write(key: tuple[str, str], obj: dict[str, Any]) -> None:
    """Conversions the real server makes on every write, not just create."""
    if key == ("", "secrets") and obj.get("stringData"):
        import base64

        data = obj.setdefault("data", {}) or {}
        for name, text in obj.pop("stringData").items():
            data[name] = base64.b64encode(str(text).encode()).decode()
        obj["data"] = data
    elif key == ("", "secrets"):
        obj.pop("stringData", None)
