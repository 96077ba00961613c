"""What the sandbox API server knows about one kind of resource.

Built-in kinds are declared in a table; custom kinds are added when their CRD is created and
removed when it is deleted. The HTTP layer, the schema/OpenAPI layer and the tables all read this.
"""
from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class ResourceType:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: list[str] = dataclasses.field(default_factory=list)
    categories: list[str] = dataclasses.field(default_factory=list)
    verbs: list[str] = dataclasses.field(
        default_factory=lambda: ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    )
    subresources: list[str] = dataclasses.field(default_factory=list)  # e.g. ["status", "scale", "log"]
    # For custom resources: the version's openAPIV3Schema (None for built-ins, which are not validated
    # beyond what the sandbox needs), and additionalPrinterColumns for Table output.
    schema: dict[str, Any] | None = None
    printer_columns: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    crd_name: str | None = None  # set for custom resources
    served: bool = True
    storage: bool = True
    # metadata.generation is kept (and bumped on non-metadata changes) only for kinds that have it.
    has_generation: bool = False
    # What DELETE does with dependents when the client names no propagationPolicy (Jobs orphan).
    default_propagation: str = "Background"
    # Custom resources: H2's CompiledSchema for this version (None until compiled / for built-ins).
    compiled_schema: Any = None
    # Built-ins whose objects are served under two groups (events) share one storage key.
    storage_override: tuple[str, str] | None = None

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def key(self) -> tuple[str, str]:
        """Storage identity: objects are stored once per (group, plural), whatever version is asked."""
        return self.storage_override or (self.group, self.plural)

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def is_custom(self) -> bool:
        return self.crd_name is not None

    @property
    def qualified(self) -> str:
        """`plural.group` as error messages spell it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural
