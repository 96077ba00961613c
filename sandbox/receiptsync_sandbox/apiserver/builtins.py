"""The built-in kinds the sandbox serves, as kube-apiserver 1.33 declares them in discovery."""
from __future__ import annotations

from .resources import ResourceType

_ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
_NO_COLLECTION_DELETE = ["create", "delete", "get", "list", "patch", "update", "watch"]


def _rt(group, version, kind, plural, namespaced=True, short=(), subresources=(), categories=(),
        generation=False, verbs=None, propagation="Background", storage_override=None) -> ResourceType:
    return ResourceType(
        group=group, version=version, kind=kind, plural=plural, singular=kind.lower(),
        namespaced=namespaced, short_names=list(short), categories=list(categories),
        verbs=list(verbs or _ALL_VERBS), subresources=list(subresources), has_generation=generation,
        default_propagation=propagation, storage_override=storage_override,
    )


def builtin_types() -> list[ResourceType]:
    return [
        _rt("", "v1", "Namespace", "namespaces", namespaced=False, short=["ns"], subresources=["status", "finalize"],
            verbs=_NO_COLLECTION_DELETE),
        _rt("", "v1", "Secret", "secrets"),
        _rt("", "v1", "ConfigMap", "configmaps", short=["cm"]),
        _rt("", "v1", "ServiceAccount", "serviceaccounts", short=["sa"]),
        _rt("", "v1", "Service", "services", short=["svc"], subresources=["status"], categories=["all"],
            verbs=_NO_COLLECTION_DELETE),
        _rt("", "v1", "Endpoints", "endpoints", short=["ep"]),
        _rt("", "v1", "Pod", "pods", short=["po"], subresources=["binding", "status", "log"], categories=["all"]),
        _rt("", "v1", "Node", "nodes", namespaced=False, short=["no"], subresources=["status"]),
        _rt("", "v1", "Event", "events", short=["ev"]),
        _rt("events.k8s.io", "v1", "Event", "events", short=["ev"], storage_override=("", "events")),
        _rt("apps", "v1", "Deployment", "deployments", short=["deploy"], subresources=["status", "scale"],
            categories=["all"], generation=True),
        _rt("apps", "v1", "ReplicaSet", "replicasets", short=["rs"], subresources=["status", "scale"],
            categories=["all"], generation=True),
        _rt("batch", "v1", "Job", "jobs", subresources=["status"], categories=["all"], generation=True,
            propagation="Orphan"),
        _rt("batch", "v1", "CronJob", "cronjobs", short=["cj"], subresources=["status"], categories=["all"],
            generation=True),
        _rt("coordination.k8s.io", "v1", "Lease", "leases"),
        _rt("rbac.authorization.k8s.io", "v1", "Role", "roles"),
        _rt("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
        _rt("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", namespaced=False),
        _rt("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", namespaced=False),
        _rt("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", short=["pdb"], subresources=["status"],
            generation=True),
        _rt("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", short=["netpol"], generation=True),
        _rt("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
            namespaced=False, short=["crd", "crds"], subresources=["status"], generation=True),
        _rt("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews",
            namespaced=False, verbs=["create"]),
        _rt("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews",
            namespaced=False, verbs=["create"]),
    ]


# Groups whose preferred version matters for discovery ordering: core first, then as the real server.
GROUP_ORDER = [
    "", "apiregistration.k8s.io", "apps", "events.k8s.io", "authentication.k8s.io", "authorization.k8s.io",
    "autoscaling", "batch", "certificates.k8s.io", "networking.k8s.io", "policy", "rbac.authorization.k8s.io",
    "storage.k8s.io", "admissionregistration.k8s.io", "apiextensions.k8s.io", "scheduling.k8s.io",
    "coordination.k8s.io", "node.k8s.io", "discovery.k8s.io", "flowcontrol.apiserver.k8s.io",
]
