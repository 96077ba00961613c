"""meta.k8s.io/v1 Table responses for `kubectl get`: per-kind columns like the real server prints,
CRDs' additionalPrinterColumns, and the Age column every CRD table gets."""
from __future__ import annotations

import datetime
import json
from typing import Any, Callable

from . import jsonpath
from .resources import ResourceType

Row = Callable[[dict[str, Any]], list[Any]]


def wants_table(accept: str) -> bool:
    return any("as=Table" in offer and "g=meta.k8s.io" in offer for offer in accept.split(","))


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration, so ages read exactly like a real cluster's."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def _since(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    try:
        when = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    return human_duration((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds())


def _age(obj: dict[str, Any]) -> str:
    return _since(obj["metadata"].get("creationTimestamp"))


def _col(name: str, type_: str = "string", priority: int = 0, description: str = "", fmt: str = "") -> dict[str, Any]:
    return {"name": name, "type": type_, "format": fmt, "description": description, "priority": priority}


_NAME = _col("Name", fmt="name", description="Name must be unique within a namespace.")
_AGE = _col("Age", description="CreationTimestamp is a timestamp representing the server time when this object was created.")
_CREATED_AT = _col("Created At", "date", description="Time when the object was created.")


# --- built-in kinds ------------------------------------------------------------------------------
def _pod_row(pod: dict[str, Any]) -> list[Any]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    reason = status.get("reason") or status.get("phase") or "Pending"
    for c in reversed(statuses):  # as kubectl's printer: the first container's state wins
        state = c.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif "terminated" in state:
            terminated = state["terminated"] or {}
            reason = terminated.get("reason") or f"ExitCode:{terminated.get('exitCode', 0)}"
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return [pod["metadata"]["name"], f"{ready}/{len(spec.get('containers') or [])}", reason, restarts, _age(pod),
            status.get("podIP") or "<none>", spec.get("nodeName") or "<none>", "<none>", "<none>"]


def _job_status(job: dict[str, Any]) -> str:
    status = job.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    if conditions.get("Complete") == "True":
        return "Complete"
    if conditions.get("Failed") == "True":
        return "Failed"
    if job["metadata"].get("deletionTimestamp"):
        return "Terminating"
    if conditions.get("Suspended") == "True":
        return "Suspended"
    if conditions.get("FailureTarget") == "True":
        return "FailureTarget"
    return "Running"


def _job_duration(job: dict[str, Any]) -> str:
    status = job.get("status") or {}
    start, end = status.get("startTime"), status.get("completionTime")
    if not start:
        return ""
    parse = lambda t: datetime.datetime.fromisoformat(t.replace("Z", "+00:00"))  # noqa: E731
    finish = parse(end) if end else datetime.datetime.now(datetime.timezone.utc)
    return human_duration((finish - parse(start)).total_seconds())


def _job_row(job: dict[str, Any]) -> list[Any]:
    spec, status = job.get("spec") or {}, job.get("status") or {}
    completions = spec.get("completions")
    done = f"{status.get('succeeded') or 0}/{completions}" if completions is not None else f"{status.get('succeeded') or 0}/1 of {spec.get('parallelism') or 1}"
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return [job["metadata"]["name"], _job_status(job), done, _job_duration(job), _age(job),
            ",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers),
            _selector_text((spec.get("selector") or {}).get("matchLabels"))]


def _selector_text(labels: dict[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in (labels or {}).items()) or "<none>"


def _deployment_row(dep: dict[str, Any]) -> list[Any]:
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return [dep["metadata"]["name"], f"{status.get('readyReplicas') or 0}/{spec.get('replicas', 1)}",
            status.get("updatedReplicas") or 0, status.get("availableReplicas") or 0, _age(dep),
            ",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers),
            _selector_text((spec.get("selector") or {}).get("matchLabels"))]


def _service_ports(svc: dict[str, Any]) -> str:
    ports = (svc.get("spec") or {}).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


def _event_row(ev: dict[str, Any]) -> list[Any]:
    involved = ev.get("involvedObject") or ev.get("regarding") or {}
    last = ev.get("lastTimestamp") or ev.get("eventTime") or ev["metadata"].get("creationTimestamp")
    return [_since(last), ev.get("type", ""), ev.get("reason", ""),
            f"{(involved.get('kind') or '').lower()}/{involved.get('name', '')}", ev.get("message") or ev.get("note", "")]


def _node_row(node: dict[str, Any]) -> list[Any]:
    status = node.get("status") or {}
    ready = {c.get("type"): c.get("status") for c in status.get("conditions") or []}.get("Ready")
    text = {"True": "Ready", "False": "NotReady"}.get(ready, "Unknown")
    if (node.get("spec") or {}).get("unschedulable"):
        text += ",SchedulingDisabled"
    labels = node["metadata"].get("labels") or {}
    roles = sorted({k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/") and "/" in k}
                   | ({labels["kubernetes.io/role"]} if labels.get("kubernetes.io/role") else set()))
    addresses = {a.get("type"): a.get("address") for a in reversed(status.get("addresses") or [])}
    info = status.get("nodeInfo") or {}
    return [node["metadata"]["name"], text, ",".join(r for r in roles if r) or "<none>", _age(node),
            info.get("kubeletVersion", ""), addresses.get("InternalIP") or "<none>",
            addresses.get("ExternalIP") or "<none>", info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>", info.get("containerRuntimeVersion") or "<unknown>"]


_BUILTIN: dict[tuple[str, str], tuple[list[dict[str, Any]], Row]] = {
    ("", "namespaces"): ([_NAME, _col("Status"), _AGE],
                         lambda o: [o["metadata"]["name"], (o.get("status") or {}).get("phase", ""), _age(o)]),
    ("", "configmaps"): ([_NAME, _col("Data", "integer"), _AGE],
                         lambda o: [o["metadata"]["name"], len(o.get("data") or {}) + len(o.get("binaryData") or {}), _age(o)]),
    ("", "secrets"): ([_NAME, _col("Type"), _col("Data", "integer"), _AGE],
                      lambda o: [o["metadata"]["name"], o.get("type", "Opaque"), len(o.get("data") or {}), _age(o)]),
    ("", "serviceaccounts"): ([_NAME, _col("Secrets", "integer"), _AGE],
                              lambda o: [o["metadata"]["name"], len(o.get("secrets") or []), _age(o)]),
    ("", "services"): ([_NAME, _col("Type"), _col("Cluster-IP"), _col("External-IP"), _col("Port(s)"), _AGE,
                        _col("Selector", priority=1)],
                       lambda o: [o["metadata"]["name"], (o.get("spec") or {}).get("type", "ClusterIP"),
                                  (o.get("spec") or {}).get("clusterIP", ""), "<none>", _service_ports(o), _age(o),
                                  _selector_text((o.get("spec") or {}).get("selector"))]),
    ("", "endpoints"): ([_NAME, _col("Endpoints"), _AGE], lambda o: [o["metadata"]["name"], "<none>", _age(o)]),
    ("", "pods"): ([_NAME, _col("Ready"), _col("Status"), _col("Restarts", "string"), _AGE,
                    _col("IP", priority=1), _col("Node", priority=1), _col("Nominated Node", priority=1),
                    _col("Readiness Gates", priority=1)], _pod_row),
    ("", "nodes"): ([_NAME, _col("Status"), _col("Roles"), _AGE, _col("Version"), _col("Internal-IP", priority=1),
                     _col("External-IP", priority=1), _col("OS-Image", priority=1), _col("Kernel-Version", priority=1),
                     _col("Container-Runtime", priority=1)], _node_row),
    ("", "events"): ([_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Message")], _event_row),
    ("apps", "deployments"): ([_NAME, _col("Ready"), _col("Up-to-date", "integer"), _col("Available", "integer"), _AGE,
                               _col("Containers", priority=1), _col("Images", priority=1),
                               _col("Selector", priority=1)], _deployment_row),
    ("apps", "replicasets"): ([_NAME, _col("Desired", "integer"), _col("Current", "integer"), _col("Ready", "integer"), _AGE],
                              lambda o: [o["metadata"]["name"], (o.get("spec") or {}).get("replicas", 1),
                                         (o.get("status") or {}).get("replicas", 0),
                                         (o.get("status") or {}).get("readyReplicas", 0), _age(o)]),
    ("batch", "jobs"): ([_NAME, _col("Status"), _col("Completions"), _col("Duration"), _AGE,
                         _col("Containers", priority=1), _col("Images", priority=1), _col("Selector", priority=1)],
                        _job_row),
    ("batch", "cronjobs"): ([_NAME, _col("Schedule"), _col("Timezone"), _col("Suspend", "boolean"),
                             _col("Active", "integer"), _col("Last Schedule"), _AGE],
                            lambda o: [o["metadata"]["name"], (o.get("spec") or {}).get("schedule", ""),
                                       (o.get("spec") or {}).get("timeZone") or "<none>",
                                       bool((o.get("spec") or {}).get("suspend")),
                                       len((o.get("status") or {}).get("active") or []),
                                       _since((o.get("status") or {}).get("lastScheduleTime"))
                                       if (o.get("status") or {}).get("lastScheduleTime") else "<none>", _age(o)]),
    ("coordination.k8s.io", "leases"): ([_NAME, _col("Holder"), _AGE],
                                        lambda o: [o["metadata"]["name"],
                                                   (o.get("spec") or {}).get("holderIdentity", ""), _age(o)]),
    ("rbac.authorization.k8s.io", "rolebindings"): ([_NAME, _col("Role"), _AGE],
                                                    lambda o: [o["metadata"]["name"], _role_ref(o), _age(o)]),
    ("rbac.authorization.k8s.io", "clusterrolebindings"): ([_NAME, _col("Role"), _AGE],
                                                           lambda o: [o["metadata"]["name"], _role_ref(o), _age(o)]),
    ("rbac.authorization.k8s.io", "roles"): ([_NAME, _CREATED_AT],
                                             lambda o: [o["metadata"]["name"], o["metadata"].get("creationTimestamp")]),
    ("rbac.authorization.k8s.io", "clusterroles"): ([_NAME, _CREATED_AT],
                                                    lambda o: [o["metadata"]["name"], o["metadata"].get("creationTimestamp")]),
    ("apiextensions.k8s.io", "customresourcedefinitions"): (
        [_NAME, _CREATED_AT], lambda o: [o["metadata"]["name"], o["metadata"].get("creationTimestamp")]),
}


def _role_ref(binding: dict[str, Any]) -> str:
    ref = binding.get("roleRef") or {}
    return f"{ref.get('kind', '')}/{ref.get('name', '')}"


# --- custom resources ---------------------------------------------------------------------------
def _custom_columns(rt: ResourceType) -> tuple[list[dict[str, Any]], Row]:
    printer = rt.printer_columns
    columns = [_NAME] + [_col(c["name"], c.get("type", "string"), int(c.get("priority") or 0),
                              c.get("description", ""), c.get("format", "")) for c in printer]
    # Like apiextensions-apiserver: a CRD without printer columns defaults to one Age column.
    has_age = bool(printer)
    if not has_age:
        columns.append(_col("Age", "date", description=_AGE["description"]))

    def row(obj: dict[str, Any]) -> list[Any]:
        cells = [obj["metadata"]["name"]]
        for c in printer:
            cells.append(_cell(jsonpath.find(obj, c.get("jsonPath", "")), c.get("type", "string")))
        if not has_age:
            cells.append(_age(obj))
        return cells

    return columns, row


def _cell(values: list[Any], type_: str) -> Any:
    if not values or values[0] is None:
        return None
    value = values[0]
    if type_ == "date" and isinstance(value, str):
        return _since(value)
    if type_ == "string" and not isinstance(value, str):
        return json.dumps(value) if isinstance(value, (dict, list)) else str(value).lower() if isinstance(value, bool) else str(value)
    return value


def columns_for(rt: ResourceType) -> tuple[list[dict[str, Any]], Row]:
    if rt.is_custom:
        return _custom_columns(rt)
    if rt.key in _BUILTIN:
        return _BUILTIN[rt.key]
    return [_NAME, _AGE], lambda o: [o["metadata"]["name"], _age(o)]


def render(rt: ResourceType, objects: list[dict[str, Any]], resource_version: str, include_object: str,
           *, with_columns: bool = True) -> dict[str, Any]:
    columns, row = columns_for(rt)
    rows = []
    for obj in objects:
        entry: dict[str, Any] = {"cells": row(obj)}
        if include_object != "None":
            entry["object"] = obj if include_object == "Object" else partial_metadata(obj)
        rows.append(entry)
    table: dict[str, Any] = {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
                             "metadata": {"resourceVersion": resource_version}, "rows": rows}
    table["columnDefinitions"] = columns if with_columns else []
    return table


def partial_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
