"""Discovery documents: legacy (/api, /apis, per group-version) and aggregated (apidiscovery.k8s.io/v2)."""
from __future__ import annotations

from typing import Any

from .registry import Registry
from .resources import ResourceType

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
SERVER_VERSION = {
    "major": "1", "minor": "33", "gitVersion": "v1.33.0-receiptsync-sandbox", "gitCommit": "sandbox",
    "gitTreeState": "clean", "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24.2",
    "compiler": "gc", "platform": "linux/amd64",
}
_ADDRESSES = [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]


def wants_aggregated(accept: str) -> str | None:
    """The aggregated media type the client prefers, if it offered one (kubectl 1.33 offers v2 first)."""
    for offer in accept.split(","):
        params = {p.strip() for p in offer.split(";")}
        if "as=APIGroupDiscoveryList" in params and "g=apidiscovery.k8s.io" in params:
            return AGGREGATED_V2 if "v=v2" in params else AGGREGATED_V2BETA1
    return None


def api_versions() -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": _ADDRESSES}


def api_group_list(registry: Registry) -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [api_group(g, vs) for g, vs in registry.groups() if g]}


def api_group(group: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": entries,
            "preferredVersion": entries[0]}


def api_resource_list(registry: Registry, group: str, version: str) -> dict[str, Any]:
    resources = []
    for rt in registry.types_of(group, version):
        resources.append(_legacy_resource(rt))
        for sub in rt.subresources:
            resources.append({"name": f"{rt.plural}/{sub}", "singularName": "", "namespaced": rt.namespaced,
                              "kind": _sub_kind(rt, sub), "verbs": _sub_verbs(sub)})
    group_version = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}


def _legacy_resource(rt: ResourceType) -> dict[str, Any]:
    entry = {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced, "kind": rt.kind,
             "verbs": rt.verbs, "storageVersionHash": _hash(rt)}
    if rt.short_names:
        entry["shortNames"] = rt.short_names
    if rt.categories:
        entry["categories"] = rt.categories
    return entry


def _sub_kind(rt: ResourceType, sub: str) -> str:
    return {"scale": "Scale", "log": "Pod", "binding": "Binding"}.get(sub, rt.kind)


def _sub_verbs(sub: str) -> list[str]:
    return {"log": ["get"], "finalize": ["update"], "binding": ["create"]}.get(sub, ["get", "patch", "update"])


def _hash(rt: ResourceType) -> str:
    import base64
    import hashlib

    digest = hashlib.sha256(f"{rt.group}/{rt.version}/{rt.kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


# --- aggregated discovery ------------------------------------------------------------------------
def aggregated(registry: Registry, *, core: bool, media_type: str) -> dict[str, Any]:
    items = []
    for group, versions in registry.groups():
        if (group == "") != core:
            continue
        items.append({
            "metadata": {"name": group, "creationTimestamp": None},
            "versions": [{"version": v, "resources": [_aggregated_resource(rt) for rt in registry.types_of(group, v)],
                          "freshness": "Current"} for v in versions],
        })
    version = "v2" if media_type == AGGREGATED_V2 else "v2beta1"
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}", "metadata": {},
            "items": items}


def _aggregated_resource(rt: ResourceType) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": rt.plural,
        "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "scope": "Namespaced" if rt.namespaced else "Cluster",
        "singularResource": rt.singular,
        "verbs": rt.verbs,
    }
    if rt.short_names:
        entry["shortNames"] = rt.short_names
    if rt.categories:
        entry["categories"] = rt.categories
    subs = []
    for sub in rt.subresources:
        kind = _sub_kind(rt, sub)
        group, version = ("autoscaling", "v1") if sub == "scale" else (rt.group, rt.version)
        subs.append({"subresource": sub, "responseKind": {"group": group, "version": version, "kind": kind},
                     "verbs": _sub_verbs(sub)})
    if subs:
        entry["subresources"] = subs
    return entry
