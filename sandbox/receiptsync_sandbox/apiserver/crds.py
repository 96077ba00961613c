"""CustomResourceDefinitions: the resource types one CRD declares, and the status the server sets."""
from __future__ import annotations

from typing import Any

from .resources import ResourceType

CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"


def types_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    types = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subresources = ["status"] if "status" in (version.get("subresources") or {}) else []
        if "scale" in (version.get("subresources") or {}):
            subresources.append("scale")
        types.append(ResourceType(
            group=spec["group"],
            version=version["name"],
            kind=names["kind"],
            plural=names["plural"],
            singular=names.get("singular") or names["kind"].lower(),
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            short_names=list(names.get("shortNames") or []),
            categories=list(names.get("categories") or []),
            subresources=subresources,
            schema=(version.get("schema") or {}).get("openAPIV3Schema"),
            printer_columns=list(version.get("additionalPrinterColumns") or []),
            crd_name=crd["metadata"]["name"],
            served=True,
            storage=bool(version.get("storage")),
            has_generation=True,
        ))
    return types


def accepted_status(crd: dict[str, Any], now: str) -> dict[str, Any]:
    """What the CRD controllers would converge to: names accepted, established, stored versions."""
    spec = crd.get("spec") or {}
    names = dict(spec.get("names") or {})
    names.setdefault("singular", names.get("kind", "").lower())
    names.setdefault("listKind", names.get("kind", "") + "List")
    old = crd.get("status") or {}
    stored = list(old.get("storedVersions") or [])
    for version in spec.get("versions") or []:
        if version.get("storage") and version["name"] not in stored:
            stored.append(version["name"])
    previous = {c.get("type"): c for c in old.get("conditions") or []}

    def condition(kind: str, reason: str, message: str) -> dict[str, Any]:
        since = previous.get(kind, {}).get("lastTransitionTime") if previous.get(kind, {}).get("status") == "True" else None
        return {"type": kind, "status": "True", "lastTransitionTime": since or now, "reason": reason, "message": message}

    return {
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "acceptedNames": names,
        "storedVersions": stored,
    }


def crd_name_errors(crd: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The naming rule the sandbox itself relies on: metadata.name must be <plural>.<group>."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    expected = f"{names.get('plural')}.{spec.get('group')}"
    if crd["metadata"].get("name") != expected:
        return [("metadata.name", "FieldValueInvalid", f'Invalid value: "{crd["metadata"].get("name")}": '
                 "must be spec.names.plural+\".\"+spec.group")]
    if not spec.get("versions"):
        return [("spec.versions", "FieldValueRequired", "Required value: must have exactly one version marked as storage version")]
    return []
