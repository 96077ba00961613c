"""The Helm chart: lint, render every documented values combination, validate against the
Kubernetes schemas, check the wiring the operator relies on, and the values schema."""
from __future__ import annotations

import base64
import json
import re

import jsonschema
import kubernetes_validate
import pytest
import yaml

from chart_render import (CHART, COMBINATIONS, KUBERNETES_VERSION, NAMESPACE, find, helm, operator_env, template,
                          template_text)
from receiptsync_common import contract

# Kinds from other projects' CRDs: kubernetes-validate has no schema for them.
FOREIGN_CRD_KINDS = {"ServiceMonitor"}


def test_helm_lint_strict_is_clean():
    result = helm("lint", "--strict", str(CHART), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_lint_strict_for_every_combination(combination):
    result = helm("lint", "--strict", str(CHART), *COMBINATIONS[combination], check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_every_rendered_object_matches_the_kubernetes_schema(combination):
    objects = template(COMBINATIONS[combination], include_crds=True)
    assert objects
    checked = 0
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            checked += 1
        except kubernetes_validate.SchemaNotFoundError:
            assert obj["kind"] in FOREIGN_CRD_KINDS, f"no schema for {obj['kind']} - unexpected kind"
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {error.message}")
    assert checked >= len(objects) - 1


def test_validation_catches_a_broken_object():
    """The schema check above can fail: an unknown field in strict mode is rejected."""
    (deployment,) = find(template(), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_every_object_is_labelled_and_namespaced_where_it_should_be():
    for obj in template(COMBINATIONS["bundled-stores-persistent-netpol"]):
        labels = obj["metadata"].get("labels") or {}
        assert labels.get("app.kubernetes.io/instance") == "rs", obj["metadata"]["name"]
        assert labels.get("app.kubernetes.io/part-of") == "receiptsync"
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy",
                               "ValidatingAdmissionPolicyBinding"):
            assert obj["metadata"].get("namespace") == NAMESPACE, f"{obj['kind']} {obj['metadata']['name']}"


def test_default_install_objects():
    objects = template()
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    assert kinds == [
        ("ClusterRole", "rs-receipt-sync"),
        ("ClusterRole", "rs-receipt-sync-discovery"),
        ("ClusterRoleBinding", "rs-receipt-sync"),
        ("ClusterRoleBinding", "rs-receipt-sync-discovery"),
        ("Deployment", "rs-receipt-sync"),
        ("PodDisruptionBudget", "rs-receipt-sync"),
        ("Role", "rs-receipt-sync-leader-election"),
        ("RoleBinding", "rs-receipt-sync-leader-election"),
        ("Service", "rs-receipt-sync-metrics"),
        ("ServiceAccount", "rs-receipt-sync"),
        ("ValidatingAdmissionPolicy", "rs-receipt-sync-business-ids"),
        ("ValidatingAdmissionPolicy", "rs-receipt-sync-operator-secrets"),
        ("ValidatingAdmissionPolicyBinding", "rs-receipt-sync-business-ids"),
        ("ValidatingAdmissionPolicyBinding", "rs-receipt-sync-operator-secrets"),
    ]
    (deployment,) = find(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == "rs-receipt-sync"
    (pdb,) = find(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (service,) = find(objects, "Service")
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    # Nothing of the optional parts by default.
    assert not find(objects, "NetworkPolicy") and not find(objects, "StatefulSet") and not find(objects, "Secret")


def test_images_carry_no_registry_host_and_default_to_the_contract_tag():
    objects = template(COMBINATIONS["bundled-stores"])
    images = {c["image"] for o in objects if o["kind"] in ("Deployment", "StatefulSet")
              for c in o["spec"]["template"]["spec"]["containers"]}
    env = operator_env(objects)
    images.add(env["RECEIPTSYNC_WORKER_IMAGE"]["value"])
    assert images == {
        f"{contract.OPERATOR_IMAGE}:{contract.IMAGE_TAG}", f"{contract.WORKER_IMAGE}:{contract.IMAGE_TAG}",
        "redis:7.4-alpine", "postgres:16-alpine",
    }
    for image in images:
        first = image.split("/")[0]
        assert "/" not in image or not ("." in first or ":" in first or first == "localhost"), image


def test_operator_env_follows_the_contract():
    env = operator_env(template())
    for name in (contract.OPERATOR_ENV_REDIS_URL, contract.OPERATOR_ENV_NAMESPACE, contract.OPERATOR_ENV_MAX_WORKERS,
                 contract.OPERATOR_ENV_HEARTBEAT_TIMEOUT, contract.OPERATOR_ENV_WORKER_IMAGE,
                 contract.OPERATOR_ENV_DATABASE_URL, contract.OPERATOR_ENV_WORKER_GMAIL_API_ENDPOINT,
                 contract.OPERATOR_ENV_METRICS_PORT, contract.OPERATOR_ENV_LEASE_NAME,
                 contract.OPERATOR_ENV_LEASE_DURATION, contract.OPERATOR_ENV_POD_NAME,
                 contract.OPERATOR_ENV_POD_NAMESPACE, contract.OPERATOR_ENV_WORKER_JOB_TTL,
                 contract.OPERATOR_ENV_LOG_LEVEL, "RECEIPTSYNC_WORKER_TEMPLATE_JSON"):
        assert name in env, name
    # URLs come from an existing Secret by default: no credentials in the Deployment.
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "receiptsync-connections", "key": "redis-url"}
    assert env["RECEIPTSYNC_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "receiptsync-connections", "key": "database-url"}
    # Issue 14: per-attempt worker credentials derived from an (optional) key in the same Secret.
    assert env[contract.OPERATOR_ENV_WORKER_CREDENTIALS]["value"] == contract.WORKER_CREDENTIALS_PER_ATTEMPT
    assert env[contract.OPERATOR_ENV_CREDENTIAL_KEY]["valueFrom"]["secretKeyRef"] == {
        "name": "receiptsync-connections", "key": "credential-key", "optional": True}
    assert contract.OPERATOR_ENV_WORKER_DATABASE_URL not in env
    assert env["RECEIPTSYNC_NAMESPACE"]["value"] == ""  # cluster scope: every namespace
    assert env["RECEIPTSYNC_MAX_WORKERS"]["value"] == "4"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["RECEIPTSYNC_LEASE_NAME"]["value"] == "rs-receipt-sync"
    # Empty gmail.apiEndpoint: a cluster admin may set the endpoint in the connections Secret.
    assert env[contract.OPERATOR_ENV_WORKER_GMAIL_API_ENDPOINT]["valueFrom"]["secretKeyRef"] == {
        "name": "receiptsync-connections", "key": "gmail-api-endpoint", "optional": True}
    assert contract.OPERATOR_ENV_WORKER_CONNECTION_SECRET not in env  # workers get plain URLs


def test_worker_connection_secret_and_no_gmail_lookup():
    env = operator_env(template(["--set", "worker.connectionSecret=receiptsync-worker-connections",
                                 "--set", "gmail.existingSecret="]))
    assert env[contract.OPERATOR_ENV_WORKER_CONNECTION_SECRET]["value"] == "receiptsync-worker-connections"
    assert env[contract.OPERATOR_ENV_WORKER_GMAIL_API_ENDPOINT] == {
        "name": contract.OPERATOR_ENV_WORKER_GMAIL_API_ENDPOINT, "value": ""}


def test_operator_env_with_plain_values_and_bundled_stores():
    env = operator_env(template(COMBINATIONS["plain-urls"] + ["--set", "maxWorkers=9"]))
    assert env["REDIS_URL"] == {"name": "REDIS_URL", "value": "redis://redis.example:6379/0"}
    assert env["RECEIPTSYNC_DATABASE_URL"]["value"] == "postgresql://u:p@pg.example:5432/receiptsync"
    assert env["RECEIPTSYNC_GMAIL_API_ENDPOINT"]["value"] == "http://gmail-emulator.example:8080"
    assert env["RECEIPTSYNC_MAX_WORKERS"]["value"] == "9"

    objects = template(COMBINATIONS["bundled-stores"])
    env = operator_env(objects)
    assert env["REDIS_URL"]["value"] == f"redis://rs-receipt-sync-redis.{NAMESPACE}.svc:6379/0"
    ref = env["RECEIPTSYNC_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    (secret,) = find(objects, "Secret", ref["name"])
    url = base64.b64decode(secret["data"][ref["key"]]).decode()
    password = base64.b64decode(secret["data"]["password"]).decode()
    assert url == f"postgresql://receiptsync:{password}@rs-receipt-sync-postgresql.{NAMESPACE}.svc:5432/receiptsync"
    assert len(password) >= 32
    (statefulset,) = find(objects, "StatefulSet")
    pg_env = {e["name"]: e for e in statefulset["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert pg_env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": ref["name"], "key": "password"}


def test_namespace_scope_watches_one_namespace():
    objects = template(COMBINATIONS["namespace-scope-other-namespace"])
    assert operator_env(objects)["RECEIPTSYNC_NAMESPACE"]["value"] == "tenants"
    roles = {(o["metadata"]["name"], o["metadata"]["namespace"]) for o in find(objects, "Role")}
    assert roles == {("rs-receipt-sync", "tenants"), ("rs-receipt-sync-leader-election", NAMESPACE)}
    (binding,) = find(objects, "RoleBinding", "rs-receipt-sync")
    assert binding["metadata"]["namespace"] == "tenants"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rs-receipt-sync", "namespace": NAMESPACE}]
    # The only cluster-wide grants left are read-only: CRD discovery (kopf), our own CRD, namespaces.
    (cluster_role,) = find(objects, "ClusterRole")
    assert cluster_role["rules"] == [
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]},
        {
            "apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
            "resourceNames": ["receiptsyncs.receipts.prosaas.pro"], "verbs": ["get"],
        },
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
    ]
    assert operator_env(template(COMBINATIONS["namespace-scope"]))["RECEIPTSYNC_NAMESPACE"]["value"] == NAMESPACE


def test_optional_parts_appear_only_when_enabled():
    assert not find(template(COMBINATIONS["one-replica"]), "PodDisruptionBudget")
    (deployment,) = find(template(COMBINATIONS["one-replica"]), "Deployment")
    assert deployment["spec"]["replicas"] == 1 and "affinity" not in deployment["spec"]["template"]["spec"]

    (monitor,) = find(template(COMBINATIONS["service-monitor"]), "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["endpoints"][0]["port"] == "http-metrics"

    policies = {o["metadata"]["name"]: o for o in find(template(COMBINATIONS["network-policy"]), "NetworkPolicy")}
    assert set(policies) == {"rs-receipt-sync-operator", "rs-receipt-sync-workers"}
    assert policies["rs-receipt-sync-workers"]["spec"]["ingress"] == []
    assert policies["rs-receipt-sync-workers"]["spec"]["podSelector"]["matchLabels"] == {
        contract.LABEL_MANAGED_BY: contract.MANAGED_BY_VALUE, contract.LABEL_COMPONENT: contract.COMPONENT_WORKER}
    assert policies["rs-receipt-sync-operator"]["spec"]["policyTypes"] == ["Ingress"]

    egress = {o["metadata"]["name"]: o for o in find(template(COMBINATIONS["network-policy-egress"]), "NetworkPolicy")}
    assert egress["rs-receipt-sync-operator"]["spec"]["policyTypes"] == ["Ingress", "Egress"]
    api_rule = egress["rs-receipt-sync-operator"]["spec"]["egress"][1]
    assert api_rule["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]

    bundled = template(COMBINATIONS["bundled-stores-persistent-netpol"])
    assert {o["metadata"]["name"] for o in find(bundled, "NetworkPolicy")} >= {
        "rs-receipt-sync-redis", "rs-receipt-sync-postgresql"}
    (statefulset,) = find(bundled, "StatefulSet")
    assert statefulset["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1Gi"


def test_worker_template_carries_placement_and_no_token():
    env = operator_env(template(COMBINATIONS["worker-placement"]))
    overlay = json.loads(env["RECEIPTSYNC_WORKER_TEMPLATE_JSON"]["value"])
    spec = overlay["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["nodeSelector"] == {"pool": "workers"}
    assert spec["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert spec["priorityClassName"] == "batch-low"
    (container,) = spec["containers"]
    assert container["name"] == "worker" and container["resources"]["limits"]["memory"] == "512Mi"


def test_operator_image_digest_replaces_the_tag():
    objects = template(COMBINATIONS["worker-placement"])
    (deployment,) = find(objects, "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "receiptsync-operator@sha256:" + "a" * 64


# --- values.schema.json -------------------------------------------------------------------------

BAD_VALUES = {
    "negative maxWorkers": ["--set", "maxWorkers=-1"],
    "maxWorkers of the wrong type": ["--set", "maxWorkers=many"],
    "unknown rbac scope": ["--set", "rbac.scope=galaxy"],
    "unknown top-level value": ["--set", "replicaCount=3"],
    "negative replicas": ["--set", "operator.replicas=-1"],
    "privilege escalation": ["--set", "worker.securityContext.allowPrivilegeEscalation=true"],
    "root pod": ["--set", "operator.podSecurityContext.runAsNonRoot=false"],
    "bad redis url": ["--set", "redis.url=http://not-redis"],
    "bad digest": ["--set", "worker.image.digest=latest"],
    "bad log level": ["--set", "logLevel=LOUD"],
    "bad worker connection Secret name": ["--set", "worker.connectionSecret=Not_A_Name"],
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_values_schema_rejects_bad_values(case):
    result = template_text(BAD_VALUES[case], check=False)
    assert result.returncode != 0, f"{case} was accepted"
    assert "schema" in result.stderr, result.stderr


def test_nothing_configured_for_redis_fails_with_a_clear_message():
    result = template_text(["--set", "redis.existingSecret="], check=False)
    assert result.returncode != 0 and "Redis is not configured" in result.stderr


SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def _resolve(node):
    while "$ref" in node:
        node = SCHEMA["definitions"][node["$ref"].rsplit("/", 1)[1]]
    return node


def value_keys(values=VALUES, node=SCHEMA, prefix=""):
    """Dotted names of every value, descending only into the chart's own closed objects (Kubernetes
    objects such as resources or nodeSelector are one value). Fails on a value the schema does not
    describe."""
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else key
        properties = _resolve(node).get("properties") or {}
        assert key in properties, f"values.schema.json does not describe {path}"
        child = _resolve(properties[key])
        if isinstance(value, dict) and value and child.get("additionalProperties") is False:
            yield from value_keys(value, child, path)
        else:
            yield path


def test_schema_covers_every_value_and_accepts_the_defaults():
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.Draft7Validator(SCHEMA).validate(VALUES)
    keys = list(value_keys())
    assert "operator.resources" in keys and "worker.image.repository" in keys


def test_readme_values_table_lists_every_value():
    readme = (CHART / "README.md").read_text()
    readme = readme[readme.index("\n## Values\n"):]
    readme = readme[: readme.index("\n## ", 1)]
    documented = set(re.findall(r"^\| `([A-Za-z0-9_.\[\]]+)` \|", readme, re.MULTILINE))
    keys = set(value_keys())
    missing = sorted(keys - documented)
    assert not missing, f"README.md values table lacks {missing}"
    unknown = sorted(documented - keys)
    assert not unknown, f"README.md documents values that do not exist: {unknown}"


def test_worker_tuning_reaches_the_operator_only_when_set():
    tuned = operator_env(template(COMBINATIONS["worker-tuning"]))
    assert tuned["RECEIPTSYNC_QUOTA_UNITS_PER_SECOND"]["value"] == "100"
    assert tuned["RECEIPTSYNC_QUOTA_BURST_UNITS"]["value"] == "50"
    assert tuned["RECEIPTSYNC_FETCH_THREADS"]["value"] == "8"
    assert "RECEIPTSYNC_FETCH_THREADS" not in operator_env(template([]))


def test_zero_replicas_installs_the_identity_only():
    """operator.replicas=0: the ServiceAccount and RBAC without an operator pod (the test suite runs
    its operator as a process with that identity)."""
    kinds = [doc["kind"] for doc in yaml.safe_load_all(template_text(["--set", "operator.replicas=0"]).stdout) if doc]
    assert "ServiceAccount" in kinds and "Role" in kinds or "ClusterRole" in kinds
    deployment = [doc for doc in yaml.safe_load_all(template_text(["--set", "operator.replicas=0"]).stdout)
                  if doc and doc["kind"] == "Deployment"]
    assert [d["spec"]["replicas"] for d in deployment] == [0]


def test_shared_worker_credentials_need_no_key_and_no_secret_rights():
    env = operator_env(template(COMBINATIONS["shared-worker-credentials"]))
    assert env[contract.OPERATOR_ENV_WORKER_CREDENTIALS]["value"] == contract.WORKER_CREDENTIALS_SHARED
    assert contract.OPERATOR_ENV_CREDENTIAL_KEY not in env
