"""A container's environment, computed the way the kubelet does, from data fetched beforehand.

Pure: the shell fetches the Secrets/ConfigMaps a pod references (``referenced_sources``) and passes
their decoded data in; a missing required one raises ``ContainerConfigError`` with the kubelet's
wording, which the agent reports as CreateContainerConfigError.
"""
from __future__ import annotations

import base64
import dataclasses
import re

POD_IP = "127.0.0.1"
NODE_NAME = "sandbox"


class ContainerConfigError(Exception):
    pass


@dataclasses.dataclass
class Sources:
    """Decoded data of the Secrets and ConfigMaps a pod references; None means "does not exist"."""

    secrets: dict[str, dict[str, str] | None] = dataclasses.field(default_factory=dict)
    configmaps: dict[str, dict[str, str] | None] = dataclasses.field(default_factory=dict)
    service_account_token: str | None = None  # from a TokenRequest bound to the pod


def referenced_sources(pod: dict) -> tuple[set[str], set[str]]:
    """Names of the Secrets and ConfigMaps the pod's containers and volumes refer to."""
    secrets, configmaps = set(), set()
    spec = pod.get("spec") or {}
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        for item in container.get("env") or []:
            ref = item.get("valueFrom") or {}
            if "secretKeyRef" in ref:
                secrets.add(ref["secretKeyRef"].get("name", ""))
            if "configMapKeyRef" in ref:
                configmaps.add(ref["configMapKeyRef"].get("name", ""))
        for item in container.get("envFrom") or []:
            if "secretRef" in item:
                secrets.add(item["secretRef"].get("name", ""))
            if "configMapRef" in item:
                configmaps.add(item["configMapRef"].get("name", ""))
    for volume in spec.get("volumes") or []:
        if "secret" in volume:
            secrets.add(volume["secret"].get("secretName", ""))
        if "configMap" in volume:
            configmaps.add(volume["configMap"].get("name", ""))
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "secret" in source:
                secrets.add(source["secret"].get("name", ""))
            if "configMap" in source:
                configmaps.add(source["configMap"].get("name", ""))
    return secrets, configmaps


def decode_secret(secret: dict) -> dict[str, str]:
    data = {key: base64.b64decode(value).decode("utf-8", "replace")
            for key, value in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})  # the API server should have folded these; be lenient
    return data


def decode_configmap(configmap: dict) -> dict[str, str]:
    return dict(configmap.get("data") or {})


def container_env(pod: dict, container: dict, sources: Sources, base: dict[str, str]) -> dict[str, str]:
    """``base`` (PATH, HOME, image ENV...) overlaid with envFrom, then env - later entries win."""
    env = dict(base)
    namespace = (pod.get("metadata") or {}).get("namespace", "default")
    for item in container.get("envFrom") or []:
        env.update(_env_from(item, namespace, sources))
    for item in container.get("env") or []:
        value = _env_value(item, pod, namespace, sources, env)
        if value is not None:
            env[item["name"]] = value
    return env


def _env_from(item: dict, namespace: str, sources: Sources) -> dict[str, str]:
    prefix = item.get("prefix", "")
    if "secretRef" in item:
        ref, data, kind = item["secretRef"], sources.secrets.get(item["secretRef"].get("name", "")), "secret"
    elif "configMapRef" in item:
        ref, data, kind = (item["configMapRef"], sources.configmaps.get(item["configMapRef"].get("name", "")),
                           "configmap")
    else:
        return {}
    if data is None:
        if ref.get("optional"):
            return {}
        raise ContainerConfigError(f'{kind} "{ref.get("name")}" not found')
    return {prefix + key: value for key, value in data.items()}


def _env_value(item: dict, pod: dict, namespace: str, sources: Sources, env: dict[str, str]) -> str | None:
    if "valueFrom" not in item:
        return expand(item.get("value", ""), env)
    ref = item["valueFrom"]
    if "secretKeyRef" in ref:
        return _key_ref(ref["secretKeyRef"], sources.secrets, "secret", "Secret", namespace)
    if "configMapKeyRef" in ref:
        return _key_ref(ref["configMapKeyRef"], sources.configmaps, "configmap", "ConfigMap", namespace)
    if "fieldRef" in ref:
        return field_value(pod, ref["fieldRef"].get("fieldPath", ""))
    return None  # resourceFieldRef: the sandbox has no resource limits to report


def _key_ref(ref: dict, known: dict, kind: str, kind_title: str, namespace: str) -> str | None:
    name, key = ref.get("name", ""), ref.get("key", "")
    data = known.get(name)
    if data is None:
        if ref.get("optional"):
            return None
        raise ContainerConfigError(f'{kind} "{name}" not found')
    if key not in data:
        if ref.get("optional"):
            return None
        raise ContainerConfigError(f"couldn't find key {key} in {kind_title} {namespace}/{name}")
    return data[key]


_LABEL_PATH = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def field_value(pod: dict, path: str) -> str:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
        "spec.nodeName": spec.get("nodeName") or NODE_NAME,
        "status.podIP": POD_IP,
        "status.podIPs": POD_IP,
        "status.hostIP": POD_IP,
        "status.hostIPs": POD_IP,
    }
    if path in simple:
        return simple[path]
    match = _LABEL_PATH.match(path)
    if match:
        return (meta.get(match.group(1)) or {}).get(match.group(2), "")
    raise ContainerConfigError(f"unsupported fieldRef fieldPath {path!r}")


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known names are substituted, unknown ones kept, `$$` escapes."""

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _REFERENCE.sub(substitute, text)
