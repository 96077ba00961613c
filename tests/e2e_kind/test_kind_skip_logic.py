"""The kind e2e's skip decision (pure, runs everywhere, not marked kind), and proof that on a
machine without Docker `pytest -m kind` really skips — with the reason — instead of failing or
trying to download kind."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import kind_support
from kind_support import KindEnvironment, skip_reason

ALL_THERE = KindEnvironment(
    docker_cli="/usr/bin/docker", docker_engine="28.2.2", kind_bin="/usr/local/bin/kind",
    kubectl_bin="/repo/.venv/bin/kubectl", helm_bin="/repo/.venv/bin/helm",
)
DAEMON_DOWN = ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
               "Is the docker daemon running?")


def _with(**changes) -> KindEnvironment:
    import dataclasses

    return dataclasses.replace(ALL_THERE, **changes)


def test_runs_when_everything_is_there():
    assert skip_reason(ALL_THERE) is None


def test_no_docker_cli():
    reason = skip_reason(_with(docker_cli=None, docker_engine=None))
    assert reason.startswith("needs a Docker engine for kind: none reachable here")
    assert "no docker CLI" in reason


def test_docker_cli_without_an_engine_names_the_error():
    reason = skip_reason(_with(docker_engine=None, docker_error=f"\n  {DAEMON_DOWN}\nmore lines\n"))
    assert reason == f"needs a Docker engine for kind: none reachable here ({DAEMON_DOWN})"


def test_engine_error_is_one_short_line():
    reason = skip_reason(_with(docker_engine=None, docker_error="x" * 1000 + "\nsecond"))
    assert "\n" not in reason and len(reason) < 300 and reason.endswith("…)")
    assert skip_reason(_with(docker_engine=None, docker_error="")).endswith("(docker info failed)")


def test_docker_comes_first():
    # Without an engine nothing else matters, and the reason says so (not "kind missing").
    reason = skip_reason(KindEnvironment(docker_cli="/usr/bin/docker", docker_engine=None, docker_error=DAEMON_DOWN))
    assert reason.startswith("needs a Docker engine")


@pytest.mark.parametrize("missing, words", [
    ("kind_bin", ("kind binary", "--kind-bin", "never downloads")),
    ("kubectl_bin", ("kubectl", "--kind-kubectl-bin", "make deps")),
    ("helm_bin", ("helm", "make deps")),
])
def test_each_missing_tool_is_named(missing, words):
    reason = skip_reason(_with(**{missing: None}))
    assert reason and all(word in reason for word in words), reason


def test_explicit_tool_paths_must_exist(tmp_path):
    tool = tmp_path / "kind"
    assert kind_support.find_tool("kind", str(tool)) is None
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert kind_support.find_tool("kind", str(tool)) == str(tool.resolve())


def test_docker_probe_reports_a_missing_cli():
    assert kind_support.probe_docker(None) == (None, "no docker CLI")


def test_docker_probe_reports_a_failing_engine(tmp_path):
    fake = tmp_path / "docker"
    fake.write_text(f"#!/bin/sh\necho 'Client: Docker Engine'\necho '{DAEMON_DOWN}' >&2\nexit 1\n")
    fake.chmod(0o755)
    assert kind_support.probe_docker(str(fake)) == (None, DAEMON_DOWN)
    good = tmp_path / "docker-ok"
    good.write_text("#!/bin/sh\necho 28.2.2\n")
    good.chmod(0o755)
    assert kind_support.probe_docker(str(good)) == ("28.2.2", "")


def test_this_machine_decision_is_consistent():
    env = kind_support.probe()
    reason = skip_reason(env)
    if env.docker_engine is None:
        assert reason and reason.startswith("needs a Docker engine for kind: none reachable here")
    else:
        assert reason is None or "Docker" not in reason


@pytest.mark.slow
def test_pytest_m_kind_skips_cleanly_without_docker(tmp_path):
    """What `make test-kind` does, on this machine: with no Docker engine it must skip every kind
    test with the reason, exit 0, and leave no ./.pytest-kind behind."""
    env = kind_support.probe()
    if skip_reason(env) is None:
        pytest.skip("kind can run here: the real e2e runs under `make test-kind` instead")
    root = kind_support.ROOT
    before = (root / ".pytest-kind").exists()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(Path(__file__).parent), "-m", "kind", "-q", "-rs",
         "-p", "no:cacheprovider"],
        cwd=root, capture_output=True, text=True, timeout=240, env={**os.environ, "COLUMNS": "400"},
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "SKIPPED" in output and skip_reason(env) in output, output
    assert re.search(r"\b\d+ skipped\b", output) and not re.search(r"\b\d+ (passed|failed|errors?)\b", output), output
    assert (root / ".pytest-kind").exists() == before, "pytest-kind's work folder appeared"
