"""kind e2e fixtures: skip with the reason where kind cannot run, never download a binary.

Replaces pytest-kind's ``kind_cluster`` fixture for this folder. pytest-kind's command-line options
still apply (``--cluster-name``, ``--keep-cluster``, ``--kubeconfig``, ``--kind-image``,
``--kind-bin``, ``--kind-kubectl-bin``), but ``kind`` comes from ``--kind-bin`` or PATH and
``kubectl`` from ``--kind-kubectl-bin``, ``.venv/bin`` or PATH — pytest-kind's download path is
switched off, and the cluster's files go to a temporary folder, not ``./.pytest-kind``.
"""
from __future__ import annotations

import platform
from pathlib import Path

import pytest

import kind_support

try:
    from pytest_kind import KindCluster
except ImportError:  # pragma: no cover - pytest-kind is in requirements-dev.lock
    KindCluster = None


@pytest.fixture(scope="session")
def kind_environment(request) -> kind_support.KindEnvironment:
    """The tools this machine offers; skips every kind test with the reason when one is missing."""
    if KindCluster is None:
        pytest.skip("needs pytest-kind (requirements-dev.lock): not installed")
    env = kind_support.probe(
        kind_bin=request.config.getoption("kind_bin", default=None),
        kubectl_bin=request.config.getoption("kind_kubectl_bin", default=None),
    )
    reason = kind_support.skip_reason(env)
    if reason:
        pytest.skip(reason)
    return env


if KindCluster is not None:

    class LocalKindCluster(KindCluster):
        """pytest-kind's KindCluster with given binaries only (no downloads) and its files in
        ``workdir`` instead of ``./.pytest-kind/<name>`` under the current directory."""

        def __init__(self, name: str, workdir: Path, *, kind_bin: str, kubectl_bin: str,
                     kubeconfig: Path | None = None, image: str | None = None):
            # Not calling super().__init__: it creates ./.pytest-kind in the work tree.
            self.name = name
            self.image = image
            self.path = workdir
            self.path.mkdir(parents=True, exist_ok=True)
            self.kubeconfig_path = kubeconfig or (workdir / "kubeconfig")
            self.kind_path = Path(kind_bin)
            self.kubectl_path = Path(kubectl_bin)
            self.platform = platform.system().lower()

        def ensure_kind(self):
            if not self.kind_path.exists():
                raise RuntimeError(f"kind binary {self.kind_path} is missing (this suite never downloads it)")

        def ensure_kubectl(self):
            if not self.kubectl_path.exists():
                raise RuntimeError(f"kubectl binary {self.kubectl_path} is missing (this suite never downloads it)")


@pytest.fixture(scope="session")
def kind_cluster(request, kind_environment, tmp_path_factory):
    """A kind cluster (created, or re-used when one of that name exists), deleted after the session
    unless --keep-cluster."""
    name = request.config.getoption("cluster_name", default="pytest-kind")
    keep = request.config.getoption("keep_cluster", default=False)
    kubeconfig = request.config.getoption("kubeconfig", default=None)
    image = request.config.getoption("kind_image", default=None)
    cluster = LocalKindCluster(
        name,
        tmp_path_factory.mktemp("kind"),
        kind_bin=kind_environment.kind_bin,
        kubectl_bin=kind_environment.kubectl_bin,
        kubeconfig=Path(kubeconfig) if kubeconfig else None,
        image=image,
    )
    cluster.create()
    yield cluster
    if not keep:
        cluster.delete()
