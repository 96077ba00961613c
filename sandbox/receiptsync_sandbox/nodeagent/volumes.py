"""Secret, ConfigMap, projected (ServiceAccount token, ConfigMap, downward API) and emptyDir volumes,
written to a per-pod folder that `mounts` binds at the containers' mount paths."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from .env import ContainerConfigError, Sources, field_value


@dataclasses.dataclass(frozen=True)
class MaterializedVolume:
    name: str
    path: Path
    mount_paths: tuple[str, ...]


def volume_files(volume: dict, sources: Sources, pod: dict | None = None) -> dict[str, str] | None:
    """Relative path -> content for a secret/configMap/projected volume; {} for emptyDir; None if unsupported."""
    if "projected" in volume:
        files: dict[str, str] = {}
        for source in volume["projected"].get("sources") or []:
            files.update(_projected_source(source, sources, pod or {}))
        return files
    if "secret" in volume:
        return _secret_files(volume["secret"], sources, name_key="secretName")
    if "configMap" in volume:
        return _configmap_files(volume["configMap"], sources)
    if "emptyDir" in volume:
        return {}
    return None


def _projected_source(source: dict, sources: Sources, pod: dict) -> dict[str, str]:
    if "serviceAccountToken" in source:
        if sources.service_account_token is None:
            raise ContainerConfigError("the ServiceAccount token could not be requested")
        return {source["serviceAccountToken"].get("path", "token"): sources.service_account_token}
    if "configMap" in source:
        return _configmap_files(source["configMap"], sources)
    if "secret" in source:
        return _secret_files(source["secret"], sources, name_key="name")  # projected sources say "name"
    if "downwardAPI" in source:
        return {item["path"]: field_value(pod, item["fieldRef"]["fieldPath"])
                for item in source["downwardAPI"].get("items") or [] if "fieldRef" in item}
    return {}


def _secret_files(ref: dict, sources: Sources, name_key: str) -> dict[str, str]:
    name = ref.get(name_key, "")
    return _project(sources.secrets.get(name), ref, "secret", name)


def _configmap_files(ref: dict, sources: Sources) -> dict[str, str]:
    name = ref.get("name", "")
    return _project(sources.configmaps.get(name), ref, "configmap", name)


def _project(data: dict[str, str] | None, ref: dict, kind: str, name: str) -> dict[str, str]:
    if data is None:
        if ref.get("optional"):
            return {}
        raise ContainerConfigError(f'{kind} "{name}" not found')
    items = ref.get("items")
    if not items:
        return dict(data)
    files = {}
    for item in items:
        if item.get("key") not in data:
            if ref.get("optional"):
                continue
            raise ContainerConfigError(f"couldn't find key {item.get('key')} in {kind} {name}")
        files[item.get("path") or item["key"]] = data[item["key"]]
    return files


def materialize(pod: dict, sources: Sources, volumes_dir: Path) -> list[MaterializedVolume]:
    spec = pod.get("spec") or {}
    mounts: dict[str, list[str]] = {}
    for container in spec.get("containers") or []:
        for mount in container.get("volumeMounts") or []:
            mounts.setdefault(mount.get("name", ""), []).append(mount.get("mountPath", ""))
    result = []
    for volume in spec.get("volumes") or []:
        files = volume_files(volume, sources, pod)
        if files is None:
            continue
        target = volumes_dir / volume["name"]
        target.mkdir(parents=True, exist_ok=True)
        for relative, content in files.items():
            path = (target / relative).resolve()
            if target.resolve() not in path.parents:
                raise ContainerConfigError(f"volume {volume['name']}: path {relative!r} escapes the volume")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            path.chmod(0o644)  # a container's non-root user reads them, as with defaultMode 0644
        result.append(MaterializedVolume(volume["name"], target, tuple(mounts.get(volume["name"], []))))
    return result
