"""The worker Job manifest: ownership, labels, only this resource's Secret, restricted pod."""
from __future__ import annotations

import dataclasses
import datetime as dt

from receiptsync_common import contract as c
from receiptsync_operator import jobs, runs
from receiptsync_operator.config import Settings

NOW = dt.datetime(2025, 6, 15, 12, 0, 0, tzinfo=dt.timezone.utc)
META = {"namespace": "team-a", "name": "acme", "uid": "0123456789abcdef", "generation": 1}
SPEC = {"businessId": "acme", "timeout": "30m", "gmail": {"secretRef": {"name": "gmail-acme", "key": "creds"}}}
SETTINGS = Settings(redis_url="redis://r:6379/0", worker_database_url="postgresql://u:pw@db/x",
                    worker_gmail_api_endpoint="http://gmail:1", worker_command=("python", "w.py"))


def manifest(settings=SETTINGS, spec=SPEC, meta=META):
    payload = runs.build_payload(meta, spec, run_id=2, attempt=3, now=NOW)
    return jobs.build(payload, meta, spec, settings)


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
    assert env_of(manifest(spec=spec))[c.ENV_GMAIL_CREDENTIALS]["valueFrom"]["secretKeyRef"]["key"] == "credentials.json"


def test_job_spec_and_restricted_pod():
    m = manifest()
    spec = m["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 1800 + SETTINGS.worker_deadline_grace
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
    assert container["image"] == SETTINGS.worker_image == f"{c.WORKER_IMAGE}:{c.IMAGE_TAG}"


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
    assert jobs.label_value("abc") == "abc"
    long = jobs.label_value("a" * 100)
    assert len(long) <= 63 and long != jobs.label_value("a" * 101)
    assert jobs.label_value("-odd-") != "-odd-" and len(jobs.label_value("-odd-")) <= 63


def job(conditions=None, **status):
    return {"metadata": {"name": "j"}, "status": {"conditions": conditions or [], **status}}


def test_job_states():
    assert jobs.state(None) == runs.JOB_GONE
    assert jobs.state(job()) == runs.JOB_ACTIVE
    assert jobs.state(job(active=1)) == runs.JOB_ACTIVE
    assert jobs.state(job([{"type": "Complete", "status": "True"}])) == runs.JOB_SUCCEEDED
    assert jobs.state(job([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}])) == runs.JOB_FAILED
    assert jobs.state(job([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}])) == runs.JOB_DEADLINE
    assert jobs.state(job([{"type": "Failed", "status": "False"}])) == runs.JOB_ACTIVE
    assert jobs.state(job(failed=1)) == runs.JOB_FAILED
    assert jobs.is_active(job()) and not jobs.is_active(job(succeeded=1))


def test_backoff_doubles_and_caps():
    b = jobs.Backoff(base=1, cap=8)
    assert [b.failed("j", 0) for _ in range(5)] == [1, 2, 4, 8, 8]
    assert b.blocked(now=7.9) == {"j"} and b.blocked(now=8.1) == set()
    b.succeeded("j")
    assert b.attempts("j") == 0 and b.blocked(0) == set()


def test_selector():
    assert jobs.worker_selector() == f"{c.LABEL_MANAGED_BY}={c.MANAGED_BY_VALUE},{c.LABEL_COMPONENT}={c.COMPONENT_WORKER}"


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
