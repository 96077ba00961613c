"""The worker Job manifest: ownership, labels, only this resource's Secret, restricted pod, the chart's
template merged in (the operator keeping image, command, env and labels), and valid names."""
from __future__ import annotations

import dataclasses
import datetime as dt

from receiptsync_common import contract as c
from hypothesis import given
from hypothesis import strategies as hs

from receiptsync_operator import runs, worker_job
from receiptsync_operator.config import Settings

NOW = dt.datetime(2025, 6, 15, 12, 0, 0, tzinfo=dt.timezone.utc)
META = {"namespace": "team-a", "name": "acme", "uid": "0123456789abcdef", "generation": 1}
SPEC = {"businessId": "acme", "timeout": "30m", "gmail": {"secretRef": {"name": "gmail-acme", "key": "creds"}}}
SETTINGS = Settings(redis_url="redis://r:6379/0", worker_database_url="postgresql://u:pw@db/x",
                    worker_gmail_api_endpoint="http://gmail:1", worker_command=("python", "w.py"))


def manifest(settings=SETTINGS, spec=SPEC, meta=META):
    payload = runs.build_payload(meta, spec, run_id=2, attempt=3, now=NOW)
    return worker_job.build(payload, meta, spec, settings)


def env_of(m):
    return {e["name"]: e for e in m["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_name_labels_owner():
    m = manifest()
    assert m["metadata"]["name"] == c.worker_job_name("acme", META["uid"], 2, 3)
    labels = m["metadata"]["labels"]
    assert labels[c.LABEL_MANAGED_BY] == c.MANAGED_BY_VALUE and labels[c.LABEL_COMPONENT] == c.COMPONENT_WORKER
    assert labels[c.LABEL_SYNC_NAME] == "acme" and labels[c.LABEL_RUN_ID] == "2" and labels[c.LABEL_ATTEMPT] == "3"
    assert labels[c.LABEL_JOB_ID] == "team-a.acme.01234567.r2.a3"
    assert m["spec"]["template"]["metadata"]["labels"] == labels
    assert m["metadata"]["annotations"][c.JOB_ID_ANNOTATION] == "team-a.acme.01234567.r2.a3"
    (owner,) = m["metadata"]["ownerReferences"]
    assert owner == {"apiVersion": c.API_VERSION, "kind": c.KIND, "name": "acme", "uid": META["uid"],
                     "controller": True, "blockOwnerDeletion": True}


def test_only_this_resources_secret_by_reference():
    env = env_of(manifest())
    assert env[c.ENV_GMAIL_CREDENTIALS] == {"name": c.ENV_GMAIL_CREDENTIALS,
                                           "valueFrom": {"secretKeyRef": {"name": "gmail-acme", "key": "creds"}}}
    assert env[c.ENV_JOB_ID]["value"] == "team-a.acme.01234567.r2.a3"
    assert env[c.ENV_REDIS_URL]["value"] == "redis://r:6379/0"
    assert env[c.ENV_DATABASE_URL]["value"] == "postgresql://u:pw@db/x"
    assert env[c.ENV_GMAIL_API_ENDPOINT]["value"] == "http://gmail:1"
    secret_refs = [e for e in env.values() if "valueFrom" in e]
    assert len(secret_refs) == 1


def test_worker_redis_url_override_and_optional_env():
    s = dataclasses.replace(SETTINGS, worker_redis_url="redis://other:1/2", worker_database_url="",
                            worker_gmail_api_endpoint="")
    env = env_of(manifest(s))
    assert env[c.ENV_REDIS_URL]["value"] == "redis://other:1/2"
    assert c.ENV_DATABASE_URL not in env and c.ENV_GMAIL_API_ENDPOINT not in env


def test_default_secret_key():
    spec = {**SPEC, "gmail": {"secretRef": {"name": "g"}}}
    secret_ref = env_of(manifest(spec=spec))[c.ENV_GMAIL_CREDENTIALS]["valueFrom"]["secretKeyRef"]
    assert secret_ref["key"] == "credentials.json"


def test_job_spec_and_restricted_pod():
    m = manifest()
    spec = m["spec"]
    assert spec["backoffLimit"] == 0
    # Counted from the Job's start: the pod may take up to the start timeout to run, and the worker's
    # own deadline (spec.timeout from its start) must still come first.
    assert spec["activeDeadlineSeconds"] == 1800 + SETTINGS.worker_deadline_grace + SETTINGS.worker_start_timeout
    assert spec["ttlSecondsAfterFinished"] == SETTINGS.worker_job_ttl
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True
    assert container["command"] == ["python", "w.py"]
    assert container["image"] == SETTINGS.worker_image


def test_default_command_is_the_image_entrypoint():
    m = manifest(dataclasses.replace(SETTINGS, worker_command=()))
    assert "command" not in m["spec"]["template"]["spec"]["containers"][0]


def test_long_names_fit_label_limits():
    meta = {**META, "name": "x" * 200}
    m = manifest(meta=meta)
    for value in m["metadata"]["labels"].values():
        assert len(value) <= 63
    assert len(m["metadata"]["name"]) <= 63
    assert m["metadata"]["annotations"][c.JOB_ID_ANNOTATION].startswith("team-a." + "x" * 200)


def test_label_value():
    assert worker_job.label_value("abc") == "abc"
    long = worker_job.label_value("a" * 100)
    assert len(long) <= 63 and long != worker_job.label_value("a" * 101)
    assert worker_job.label_value("-odd-") != "-odd-" and len(worker_job.label_value("-odd-")) <= 63


def test_selector():
    assert worker_job.worker_selector() == (f"{c.LABEL_MANAGED_BY}={c.MANAGED_BY_VALUE},"
                                            f"{c.LABEL_COMPONENT}={c.COMPONENT_WORKER}")


def test_connection_urls_by_secret_reference_when_configured():
    m = manifest(dataclasses.replace(SETTINGS, worker_connection_secret="receiptsync-connections"))
    env = env_of(m)
    assert env[c.ENV_REDIS_URL] == {"name": c.ENV_REDIS_URL, "valueFrom": {"secretKeyRef": {
        "name": "receiptsync-connections", "key": c.CONNECTION_SECRET_REDIS_URL_KEY}}}
    assert env[c.ENV_DATABASE_URL]["valueFrom"]["secretKeyRef"] == {
        "name": "receiptsync-connections", "key": c.CONNECTION_SECRET_DATABASE_URL_KEY}
    assert "pw@" not in repr(m) and "redis://" not in repr(m)  # no URL (nor password) in the manifest
    plain = env_of(manifest())
    assert plain[c.ENV_REDIS_URL]["value"] == "redis://r:6379/0"  # the plain mode stays for the sandbox


def test_worker_tuning_passes_through_only_when_set():
    from receiptsync_operator import config

    assert c.WORKER_ENV_QUOTA_RATE not in env_of(manifest())
    tuned = config.load({c.WORKER_ENV_QUOTA_RATE: "100", c.WORKER_ENV_FETCH_THREADS: "8"}, [])
    env = env_of(manifest(dataclasses.replace(SETTINGS, worker_quota_rate=tuned.worker_quota_rate,
                                              worker_fetch_threads=tuned.worker_fetch_threads)))
    assert env[c.WORKER_ENV_QUOTA_RATE]["value"] == "100" and env[c.WORKER_ENV_FETCH_THREADS]["value"] == "8"
    assert c.WORKER_ENV_QUOTA_BURST not in env


# --- valid Job names for every valid ReceiptSync name ----------------------------------------------------
_DNS_LABEL = __import__("re").compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN_PART = hs.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
resource_names = hs.lists(_SUBDOMAIN_PART, min_size=1, max_size=12).map(".".join).filter(lambda n: len(n) <= 253)


def _valid_job_name(name: str) -> bool:
    # A Job name is a DNS subdomain; it also becomes a pod label value (<= 63, no ".-" or "-.").
    return len(name) <= 63 and all(_DNS_LABEL.match(part) for part in name.split("."))


def test_the_name_that_gave_a_422():
    name = "a" * 47 + ".b" + "c" * 60  # "rs-aaa….-abcde-r1-a1" before
    job = c.worker_job_name(name, "abcdef0123", 1, 1)
    assert ".-" not in job and _valid_job_name(job), job


@given(resource_names, hs.from_regex(r"[0-9a-f]{8}", fullmatch=True), hs.integers(1, 10**6), hs.integers(1, 11))
def test_job_names_are_valid_for_every_valid_resource_name(name, uid, run_id, attempt):
    job = c.worker_job_name(name, uid, run_id, attempt)
    assert _valid_job_name(job), job
    assert job.endswith(f"-{uid[:5]}-r{run_id}-a{attempt}")


# --- the chart's worker template ---------------------------------------------------------------------------
CHART_TEMPLATE = {  # as charts/receipt-sync's _helpers.tpl renders it
    "spec": {
        "automountServiceAccountToken": False, "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001},
        "containers": [{"name": "worker", "imagePullPolicy": "Always",
                        "securityContext": {"readOnlyRootFilesystem": True},
                        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "300Mi"}},
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        "env": [{"name": "EXTRA", "value": "1"}, {"name": c.ENV_JOB_ID, "value": "forged"}]}],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
        "nodeSelector": {"disk": "ssd"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "receipts", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}},
        "priorityClassName": "batch-low",
        "imagePullSecrets": [{"name": "regcred"}],
        "restartPolicy": "Always",
    },
    "metadata": {"labels": {"team": "receipts", c.LABEL_MANAGED_BY: "someone-else"},
                 "annotations": {"cost-center": "42"}},
}


def test_chart_template_reaches_the_worker_job():
    m = manifest(dataclasses.replace(SETTINGS, worker_template=CHART_TEMPLATE))
    pod = m["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["nodeSelector"] == {"disk": "ssd"}
    assert pod["tolerations"] == CHART_TEMPLATE["spec"]["tolerations"]
    assert pod["affinity"] == CHART_TEMPLATE["spec"]["affinity"]
    assert pod["priorityClassName"] == "batch-low" and pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}]
    assert pod["securityContext"]["fsGroup"] == 10001 and pod["securityContext"]["seccompProfile"]
    assert container["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "300Mi"}}
    assert container["imagePullPolicy"] == "Always"
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}  # our floor stays
    meta = m["spec"]["template"]["metadata"]
    assert meta["labels"]["team"] == "receipts" and meta["annotations"]["cost-center"] == "42"


def test_the_operator_keeps_what_it_owns():
    m = manifest(dataclasses.replace(SETTINGS, worker_template=CHART_TEMPLATE))
    pod = m["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == SETTINGS.worker_image and container["command"] == ["python", "w.py"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    env = [e["name"] for e in container["env"]]
    assert env.count(c.ENV_JOB_ID) == 1 and env_of(m)[c.ENV_JOB_ID]["value"] == "team-a.acme.01234567.r2.a3"
    assert env[-1] == "EXTRA"  # the chart's extra env after ours
    labels = m["spec"]["template"]["metadata"]["labels"]
    assert labels[c.LABEL_MANAGED_BY] == c.MANAGED_BY_VALUE  # our selector label cannot be overridden
    assert m["spec"]["template"]["metadata"]["annotations"][c.JOB_ID_ANNOTATION] == "team-a.acme.01234567.r2.a3"


def test_no_template_changes_nothing_and_the_template_is_not_mutated():
    import copy

    before = copy.deepcopy(CHART_TEMPLATE)
    assert manifest(dataclasses.replace(SETTINGS, worker_template=None)) == manifest()
    worker_job.merge_template(manifest(), CHART_TEMPLATE)
    assert CHART_TEMPLATE == before


def test_check_template():
    assert worker_job.check_template(CHART_TEMPLATE) is None
    assert worker_job.check_template({}) is None
    assert "JSON object" in worker_job.check_template([])
    assert "tolerations" in worker_job.check_template({"spec": {"tolerations": {"a": 1}}})
