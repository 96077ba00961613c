"""Policy checks on the rendered chart: Pod Security "restricted" for every pod template (and for
the worker pods the operator will build from the chart's worker template), RBAC minimality."""
from __future__ import annotations

import copy
import json
import re

import kubernetes_validate
import pytest

from chart_render import COMBINATIONS, KUBERNETES_VERSION, find, operator_env, template, template_text
from pss_policy import OPERATOR_RBAC_ALLOWED, pod_spec_of, rbac_violations, restricted_violations


def _pod_templates(objects):
    for obj in objects:
        spec = pod_spec_of(obj)
        if spec is not None:
            yield f"{obj['kind']}/{obj['metadata']['name']}", spec


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_every_pod_template_is_restricted(combination):
    objects = template(COMBINATIONS[combination])
    templates = dict(_pod_templates(objects))
    assert templates
    for where, spec in templates.items():
        assert restricted_violations(spec) == [], where


def _worker_pod(objects) -> dict:
    """The worker pod spec as the operator builds it: the chart's overlay plus image and env."""
    overlay = json.loads(operator_env(objects)["RECEIPTSYNC_WORKER_TEMPLATE_JSON"]["value"])
    spec = copy.deepcopy(overlay["spec"])
    spec["restartPolicy"] = "Never"
    spec["containers"][0]["image"] = operator_env(objects)["RECEIPTSYNC_WORKER_IMAGE"]["value"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "worker"}, "spec": spec}


@pytest.mark.parametrize("combination", ["defaults", "worker-placement", "bundled-stores"])
def test_worker_pods_are_restricted_and_get_no_token(combination):
    pod = _worker_pod(template(COMBINATIONS[combination]))
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    assert restricted_violations(pod["spec"]) == []
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_only_the_operator_pod_mounts_a_service_account_token():
    objects = template(COMBINATIONS["bundled-stores"])
    for where, spec in _pod_templates(objects):
        expected = where.startswith("Deployment/") and where.endswith("receipt-sync")
        assert spec.get("automountServiceAccountToken") is expected, where
    (account,) = find(objects, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False


BAD_POD = {
    "hostNetwork": True,
    "securityContext": {"runAsUser": 0, "seccompProfile": {"type": "Unconfined"}},
    "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
    "containers": [{
        "name": "bad",
        "image": "busybox",
        "ports": [{"containerPort": 80, "hostPort": 80}],
        "securityContext": {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}},
    }],
}


def test_the_pod_security_check_catches_a_bad_pod():
    problems = "\n".join(restricted_violations(BAD_POD))
    for expected in ("hostNetwork", "hostPath", "runAsUser must not be 0", "Unconfined", "privileged",
                     "allowPrivilegeEscalation", "drop must include ALL", "SYS_ADMIN", "runAsNonRoot",
                     "hostPort", "readOnlyRootFilesystem"):
        assert expected in problems, expected


def test_the_pod_security_check_catches_one_missing_setting():
    (deployment,) = find(template(), "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    assert restricted_violations(spec) == []
    for field in ("allowPrivilegeEscalation", "readOnlyRootFilesystem", "capabilities"):
        broken = copy.deepcopy(spec)
        del broken["containers"][0]["securityContext"][field]
        assert restricted_violations(broken), field
    broken = copy.deepcopy(spec)
    del broken["securityContext"]["seccompProfile"]
    assert any("seccompProfile" in p for p in restricted_violations(broken))


# --- RBAC ------------------------------------------------------------------------------------------

RBAC_KINDS = ("ClusterRole", "Role")


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_rbac_has_no_wildcards_and_nothing_beyond_the_allow_list(combination):
    objects = template(COMBINATIONS[combination])
    roles = [o for o in objects if o["kind"] in RBAC_KINDS]
    assert roles
    for role in roles:
        assert rbac_violations(role["rules"]) == [], role["metadata"]["name"]
    bindings = [o for o in objects if o["kind"] in ("ClusterRoleBinding", "RoleBinding")]
    role_names = {(o["kind"], o["metadata"]["name"]) for o in roles}
    for binding in bindings:
        assert (binding["roleRef"]["kind"], binding["roleRef"]["name"]) in role_names
        assert [s["kind"] for s in binding["subjects"]] == ["ServiceAccount"]


def test_the_rbac_check_catches_excess():
    assert rbac_violations([{"apiGroups": ["*"], "resources": ["jobs"], "verbs": ["get"]}])
    assert rbac_violations([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}])
    assert rbac_violations([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}])
    assert rbac_violations([{"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}])
    assert rbac_violations([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}])
    assert rbac_violations([{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["*"]}])
    assert rbac_violations([{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}])


def test_rbac_grants_what_the_operator_needs():
    """The allow-list is also the need-list: every entry is granted in the default install."""
    granted = set()
    for role in template() + template(["--set", "rbac.scope=namespace"]):
        if role["kind"] in RBAC_KINDS:
            for rule in role["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        granted |= {(group, resource, verb) for verb in rule["verbs"]}
    needed = {(g, r, v) for (g, r), verbs in OPERATOR_RBAC_ALLOWED.items() for v in verbs}
    assert granted == needed


def test_secrets_are_never_read_nor_deleted_only_applied_and_not_at_all_with_shared_credentials():
    def secret_rules(objects):
        return [rule for o in objects if o["kind"] in RBAC_KINDS
                for rule in o["rules"] if "secrets" in rule["resources"]]

    assert [rule["verbs"] for rule in secret_rules(template())] == [["create", "patch"]]
    assert secret_rules(template(COMBINATIONS["shared-worker-credentials"])) == []


@pytest.mark.parametrize("combination", ["defaults", "namespace-scope"])
def test_every_rbac_rule_is_explained_by_a_comment(combination):
    text = template_text(COMBINATIONS[combination]).stdout
    for document in text.split("\n---\n"):
        if not re.search(r"^kind: (ClusterRole|Role)$", document, re.MULTILINE):
            continue
        lines = document.splitlines()
        for index, line in enumerate(lines):
            if line.strip().startswith("- apiGroups:"):
                above = [text.strip() for text in lines[:index] if text.strip()]
                assert above and above[-1].startswith("#"), f"rule without a comment: {lines[index:index + 3]}"
