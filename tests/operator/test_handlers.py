"""kopf settings: our finalizer is the controller's alone, bookkeeping under our own prefix, and a
server-side label selector so the Jobs watch only ever lists our worker Jobs."""
from __future__ import annotations

import kopf
from kopf._cogs.structs.references import Resource

from receiptsync_common import contract as c
from receiptsync_operator import jobs
from receiptsync_operator import handlers
from receiptsync_operator.handlers import configure_kopf


def test_kopf_settings():
    settings = kopf.OperatorSettings()
    configure_kopf(settings)
    # kopf strips "its" finalizer where no handler needs one: it must never be ours.
    assert settings.persistence.finalizer != c.FINALIZER
    job_resource = Resource(group="batch", version="v1", plural="jobs", kind="Job", singular="job",
                            namespaced=True, verbs=["list", "watch"])
    assert list(settings.watching.label_selectors.collect(job_resource)) == [jobs.worker_selector()]
    rs_resource = Resource(group=c.GROUP, version=c.VERSION, plural=c.PLURAL, kind=c.KIND, singular=c.SINGULAR,
                           namespaced=True, verbs=["list", "watch"])
    assert list(settings.watching.label_selectors.collect(rs_resource)) == []
    # kopf's diff-base and progress live in annotations under our prefix, never a user's.
    body = kopf.Body({"metadata": {"name": "x", "namespace": "n", "uid": "u"}, "spec": {"a": 1}})
    patch = kopf.Patch()
    storage = settings.persistence.diffbase_storage
    storage.store(body=body, patch=patch, essence=storage.build(body=body))
    assert patch["metadata"]["annotations"]
    assert all(k.startswith(c.GROUP + "/") for k in patch["metadata"]["annotations"])
    assert "status" not in patch and "spec" not in patch


def test_kopf_needs_no_finalizer_and_keeps_no_diff_base():
    """No kopf handler that needs a finalizer (deletion, daemons) or a diff-base (changing handlers):
    the controller handles its finalizer itself, so kopf writes no metadata at all."""
    registry = kopf.get_default_registry()
    assert not registry._changing.get_all_handlers()
    assert not registry._spawning.get_all_handlers()
    assert handlers.receiptsync_changed and handlers.worker_job_changed
