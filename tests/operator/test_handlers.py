"""kopf settings: our (legacy) finalizer is the controller's alone to release, and bookkeeping lives
under our own prefix."""
from __future__ import annotations

import kopf

from receiptsync_common import contract as c
from receiptsync_operator import handlers
from receiptsync_operator.handlers import configure_kopf


def test_kopf_settings():
    settings = kopf.OperatorSettings()
    configure_kopf(settings)
    # kopf strips "its" finalizer where no handler needs one: it must never be ours.
    assert settings.persistence.finalizer != c.FINALIZER
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
    the controller sees deletions through the watch (DELETED events) and adds no finalizer either,
    so kopf writes no metadata at all."""
    registry = kopf.get_default_registry()
    assert not registry._changing.get_all_handlers()
    assert not registry._spawning.get_all_handlers()
    watched = {(h.selector.group, h.selector.any_name) for h in registry._watching.get_all_handlers()}
    assert watched == {(c.GROUP, c.PLURAL)}, watched  # Jobs and Pods are the controller's own list+watch
    assert handlers.receiptsync_changed.__name__ in {h.fn.__name__ for h in registry._watching.get_all_handlers()}
