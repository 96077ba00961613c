"""Which resource types are served right now: the built-ins plus those of every live CRD."""
from __future__ import annotations

from .builtins import GROUP_ORDER, builtin_types
from .resources import ResourceType


class Registry:
    def __init__(self) -> None:
        self._builtin = builtin_types()
        self._custom: dict[str, list[ResourceType]] = {}  # CRD name -> its served versions
        self.revision = 0  # bumped on every change, so derived documents (OpenAPI) can be cached

    def all(self) -> list[ResourceType]:
        types = list(self._builtin)
        for crd_types in self._custom.values():
            types.extend(crd_types)
        return types

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        for rt in self.all():
            if rt.group == group and rt.version == version and rt.plural == plural:
                return rt
        return None

    def by_key(self, key: tuple[str, str]) -> list[ResourceType]:
        """Every served version of one storage key (first = the storage/preferred version)."""
        found = [rt for rt in self.all() if rt.key == key]
        found.sort(key=lambda rt: (not rt.storage, rt.group != key[0]))
        return found

    def storage_type(self, key: tuple[str, str]) -> ResourceType | None:
        found = self.by_key(key)
        return found[0] if found else None

    def set_custom(self, crd_name: str, types: list[ResourceType]) -> None:
        self._custom[crd_name] = types
        self.revision += 1

    def remove_custom(self, crd_name: str) -> None:
        if self._custom.pop(crd_name, None) is not None:
            self.revision += 1

    def groups(self) -> list[tuple[str, list[str]]]:
        """(group, versions) pairs, preferred version first, in kube-apiserver's order."""
        versions: dict[str, list[str]] = {}
        for rt in self.all():
            seen = versions.setdefault(rt.group, [])
            if rt.version not in seen:
                seen.append(rt.version)
        for group, vers in versions.items():
            vers.sort(key=version_priority)
        order = {g: i for i, g in enumerate(GROUP_ORDER)}
        return sorted(versions.items(), key=lambda gv: (order.get(gv[0], len(order)), gv[0]))

    def types_of(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self.all() if rt.group == group and rt.version == version]


def version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes version ordering: GA > beta > alpha, higher numbers first (v2 > v1 > v1beta2)."""
    import re

    match = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not match:
        return (3, 0, 0)
    major, stage, minor = match.groups()
    stage_rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (stage_rank, -int(major), -int(minor or 0))
