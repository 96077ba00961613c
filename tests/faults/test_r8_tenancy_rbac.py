"""R8 with per-attempt worker credentials (issue 14), on the fault sandbox's real kube-apiserver audit log
and under the chart's Role as installed: two tenants' syncs with real workers, then

* no call of the operator was refused (the world checks it when it closes);
* every call is granted, and every grant was called or is listed with its reason;
* the operator never read, listed, watched or deleted a Secret: it wrote its resources' credentials
  Secrets by server-side apply only (patch);
* each worker Job references only its own tenant's Gmail Secret and its own attempt's keys of its
  resource's credentials Secret;
* nothing an attempt was given works after it: database role and Redis user are gone (its keys may stay
  in the Secret, dead, until the resource's next apply); the Secret goes with its ReceiptSync.

(test_r8_security.py runs its operators with shared worker credentials; this file is its per-attempt twin.)
"""
from __future__ import annotations

import secrets

import psycopg
import pytest
import redis

from faultkit import LOAD_MAILBOXES, add, wait_until
from receiptsync_common import contract as c
from receiptsync_operator import redis_acl, worker_job

pytestmark = [pytest.mark.slow]

# Grants a short run does not call, and why; everything else the Role grants must be called.
GRANTS_NOT_CALLED = {
    ("update", c.GROUP, "receiptsyncs/finalizers"),  # checked by OwnerReferencesPermissionEnforcement only
    ("patch", c.GROUP, "receiptsyncs"),  # releases the finalizer an older operator added, at deletion
    ("update", c.GROUP, "receiptsyncs"), ("update", c.GROUP, "receiptsyncs/status"),  # kopf versions that PUT
    ("delete", "batch", "jobs"),  # a running worker's (cancel, timeout, Replace, deletion); finished: GC
    ("get", c.GROUP, "receiptsyncs/status"),
    ("get", c.GROUP, "receiptsyncs"),  # a heartbeat before the watch delivered its resource
    ("patch", "", "events"), ("list", "", "events"),  # a repeated Event; a Job's FailedCreate
    ("get", "batch", "jobs"), ("get", "", "pods"),  # cache misses after a restart
    ("create", "", "secrets"),  # authorizes the server-side apply that makes a Secret (audited as patch)
}


def _per_attempt(world) -> dict[str, str]:
    return {c.OPERATOR_ENV_DATABASE_URL: world.sandbox.env["DATABASE_URL"],
            c.OPERATOR_ENV_CREDENTIAL_KEY: secrets.token_hex(32), c.OPERATOR_ENV_HEARTBEAT_TIMEOUT: "10"}


def test_per_attempt_credentials_rbac_is_exactly_what_is_used(world, report):
    mark = world.sandbox.audit_mark()
    world.start_operator(**_per_attempt(world))
    tenants = {"tenant-a": ("gmail-a", LOAD_MAILBOXES[0]), "tenant-b": ("gmail-b", LOAD_MAILBOXES[1])}
    world.apply(*[world.secret(secret, address) for secret, address in tenants.values()],
                *[world.rsync(name, secret=secret) for name, (secret, _) in tenants.items()])
    issued = {}
    for name, (secret, _) in tenants.items():
        status = world.wait_status(name, lambda s: bool(s.get("workerJob")), 60)
        job = wait_until(lambda: world.get("jobs", status["workerJob"]), timeout=30)
        spec = job["spec"]["template"]["spec"]
        refs = [(e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
                for container in spec["containers"] for e in container.get("env") or []
                if (e.get("valueFrom") or {}).get("secretKeyRef")]
        credentials = worker_job.credentials_secret_name(world.get(c.PLURAL, name)["metadata"])
        assert {ref for ref, _ in refs} == {secret, credentials}, refs
        assert all(key.startswith(job["metadata"]["name"] + ".") for ref, key in refs if ref == credentials), refs
        issued[name] = (credentials, status["jobId"])
    for name in tenants:
        done = world.wait_terminal(name, timeout=120)
        assert done["phase"] == c.PHASE_FINISHED, done
    add(report, "R8", runs=len(tenants))

    # Nothing an attempt was given works after it.
    def roles_left() -> int:
        with psycopg.connect(world.sandbox.env["DATABASE_URL"]) as conn:
            return conn.execute("SELECT count(*) FROM attempt_credentials WHERE namespace = %s",
                                (world.ns,)).fetchone()[0]

    wait_until(lambda: roles_left() == 0, timeout=15, message="per-attempt database roles dropped")
    users = set(redis.Redis.from_url(world.redis_url, decode_responses=True).execute_command("ACL", "USERS"))
    assert not users & {redis_acl.user_name(job_id) for _, job_id in issued.values()}

    for name in tenants:
        world.kubectl("delete", c.PLURAL, name, "--wait=true", "--timeout=30s")
    # The operator deletes no Secret: the garbage collector takes each with its ReceiptSync.
    wait_until(lambda: all(world.get("secret", secret) is None for secret, _ in issued.values()), timeout=90,
               message="the credentials Secrets collected with their ReceiptSyncs")
    world.operators[-1].stop()  # its watches end: the audit log completes their records
    calls = {(e["verb"], ref.get("apiGroup", ""), "/".join(filter(None, (ref["resource"], ref.get("subresource")))))
             for e in world.sandbox.audit(user=world.operator_user, since_line=mark)
             if (ref := e.get("objectRef") or {}).get("resource")}
    role = world.get("role", f"rs-{world.ns}"[:40] + "-receipt-sync")
    granted = {(verb, group, resource) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    secret_calls = {call[0] for call in calls if call[2] == "secrets"}
    assert secret_calls == {"patch"}, secret_calls
    ours = {call for call in calls if call[2] not in ("leases", "customresourcedefinitions", "namespaces")}
    assert ours <= granted, f"called without a grant: {sorted(ours - granted)}"
    unused = granted - calls - GRANTS_NOT_CALLED
    add(report, "R8", rbac_grants_checked=len(granted), rbac_unused=len(unused))
    assert not unused, f"granted but never used: {sorted(unused)}"
