"""Small pure checks the packaging tests apply to rendered objects.

``restricted_violations``: the Kubernetes Pod Security Standard "restricted" (baseline included),
plus this project's rule that root filesystems are read-only.
``rbac_violations``: no wildcards, and nothing beyond an allow-list of (group, resource) -> verbs.
Each returns a list of human-readable problems; empty means compliant.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SECCOMP_OK = {"RuntimeDefault", "Localhost"}
SELINUX_TYPES_OK = {None, "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def pod_spec_of(obj: Mapping) -> Mapping | None:
    """The pod spec inside a Pod, a workload's template, or a CronJob; None for other kinds."""
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return (spec.get("template") or {}).get("spec") or {}
    if kind == "CronJob":
        return ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template", {}).get("spec") or {}
    return None


def _containers(spec: Mapping) -> Iterable[tuple[str, Mapping]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(field) or []:
            yield f"{field}[{container.get('name', '?')}]", container


def restricted_violations(spec: Mapping) -> list[str]:
    problems: list[str] = []
    pod_sc = spec.get("securityContext") or {}

    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            problems.append(f"spec.{field} must not be true")
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        bad = kinds - RESTRICTED_VOLUME_TYPES
        if bad:
            problems.append(f"volume {volume.get('name')!r} has disallowed type {sorted(bad)}")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            problems.append(f"sysctl {sysctl.get('name')!r} is not in the safe set")
    if (pod_sc.get("seLinuxOptions") or {}).get("type") not in SELINUX_TYPES_OK:
        problems.append("pod seLinuxOptions.type is not allowed")
    if pod_sc.get("runAsUser") == 0:
        problems.append("pod securityContext.runAsUser must not be 0")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in SECCOMP_OK:
        problems.append(f"pod seccompProfile.type {pod_seccomp!r} is not RuntimeDefault/Localhost")

    for where, container in _containers(spec):
        sc = container.get("securityContext") or {}
        if sc.get("privileged"):
            problems.append(f"{where}: privileged must not be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{where}: capabilities.drop must include ALL")
        extra = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
        if extra:
            problems.append(f"{where}: capabilities.add {sorted(extra)} not allowed")
        run_as_non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if run_as_non_root is not True:
            problems.append(f"{where}: runAsNonRoot must be true (container or pod)")
        if sc.get("runAsUser") == 0:
            problems.append(f"{where}: runAsUser must not be 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in SECCOMP_OK:
            problems.append(f"{where}: seccompProfile must be RuntimeDefault or Localhost (container or pod)")
        if (sc.get("seLinuxOptions") or {}).get("type") not in SELINUX_TYPES_OK:
            problems.append(f"{where}: seLinuxOptions.type is not allowed")
        if sc.get("procMount", "Default") != "Default":
            problems.append(f"{where}: procMount must be Default")
        if (sc.get("appArmorProfile") or {}).get("type") == "Unconfined":
            problems.append(f"{where}: appArmorProfile must not be Unconfined")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                problems.append(f"{where}: hostPort {port['hostPort']} not allowed")
        # Project rule, stricter than the standard: nothing writes to the image's filesystem.
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: readOnlyRootFilesystem must be true")
    return problems


# (apiGroup, resource) -> verbs the operator may hold. Anything else is a finding.
OPERATOR_RBAC_ALLOWED: dict[tuple[str, str], set[str]] = {
    # patch: the release of the finalizer older operators added (this one adds none), at deletion.
    ("receipts.prosaas.pro", "receiptsyncs"): {"get", "list", "watch", "patch", "update"},
    ("receipts.prosaas.pro", "receiptsyncs/status"): {"get", "patch", "update"},
    # Checked by OwnerReferencesPermissionEnforcement for the worker Jobs' blockOwnerDeletion.
    ("receipts.prosaas.pro", "receiptsyncs/finalizers"): {"update"},
    ("batch", "jobs"): {"create", "delete", "get", "list", "watch"},
    # Worker-credentials Secrets (issue 14), one per ReceiptSync: never read, only written by server-side
    # apply (patch, and create when the apply makes it); never deleted (the garbage collector does).
    ("", "secrets"): {"create", "patch"},
    ("", "pods"): {"list", "watch"},
    ("", "events"): {"create", "patch", "list"},
    ("coordination.k8s.io", "leases"): {"get", "create", "update"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
    ("", "namespaces"): {"list", "watch"},
}


def rbac_violations(rules: Iterable[Mapping],
                    allowed: Mapping[tuple[str, str], set[str]] = OPERATOR_RBAC_ALLOWED) -> list[str]:
    problems: list[str] = []
    for index, rule in enumerate(rules):
        groups, resources, verbs = rule.get("apiGroups") or [], rule.get("resources") or [], rule.get("verbs") or []
        if rule.get("nonResourceURLs"):
            problems.append(f"rule {index}: nonResourceURLs not allowed")
        for field, values in (("apiGroups", groups), ("resources", resources), ("verbs", verbs)):
            if any("*" in value for value in values):
                problems.append(f"rule {index}: wildcard in {field}")
            if not values:
                problems.append(f"rule {index}: empty {field}")
        for group in groups:
            for resource in resources:
                permitted = allowed.get((group, resource))
                if permitted is None:
                    problems.append(f"rule {index}: {resource!r} in group {group!r} is not on the allow-list")
                    continue
                extra = set(verbs) - permitted
                if extra:
                    problems.append(f"rule {index}: verbs {sorted(extra)} on {group or 'core'}/{resource} not allowed")
    return problems
