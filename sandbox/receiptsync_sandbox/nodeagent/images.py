"""Which images the sandbox can run, and what their ENTRYPOINT/CMD/ENV are.

There is no container runtime: a project image "runs" as a local process from this checkout's venv.
Its entrypoint is read from the repo's Dockerfile final stage so pods behave like the real image.
"""
from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

from receiptsync_common import contract

REPO_ROOT = Path(__file__).resolve().parents[3]
DOCKERFILES = {contract.OPERATOR_IMAGE: "Dockerfile.operator", contract.WORKER_IMAGE: "Dockerfile.worker"}
# Used when the package is installed without its source tree (no Dockerfiles next to it).
FALLBACK_ENTRYPOINTS = {contract.OPERATOR_IMAGE: ["receiptsync-operator"],
                        contract.WORKER_IMAGE: ["receiptsync-worker"]}


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


def image_repository(image: str) -> str:
    """`registry:5000/team/receiptsync-worker:0.1.0@sha256:..` -> `receiptsync-worker`."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def project_image(image: str) -> str | None:
    """The project image name this reference points at, or None for anyone else's image."""
    repository = image_repository(image or "")
    return repository if repository in DOCKERFILES else None


def parse_dockerfile(text: str) -> ImageConfig:
    """ENTRYPOINT, CMD (JSON form) and ENV of the final stage."""
    config = ImageConfig()
    for instruction, argument in dockerfile_instructions(text):
        if instruction == "FROM":
            config = ImageConfig()
        elif instruction == "ENTRYPOINT":
            # Docker: setting ENTRYPOINT resets a CMD inherited from earlier in the stage.
            config = dataclasses.replace(config, entrypoint=_exec_form(argument), cmd=())
        elif instruction == "CMD":
            config = dataclasses.replace(config, cmd=_exec_form(argument))
        elif instruction == "ENV":
            config = dataclasses.replace(config, env=config.env + _env_pairs(argument))
    return config


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, argument) pairs, continuation lines joined, comments and blank lines dropped
    (inside a continuation too, as Docker does)."""
    result, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def _exec_form(argument: str) -> tuple[str, ...]:
    try:
        value = json.loads(argument)
    except json.JSONDecodeError:
        return ("/bin/sh", "-c", argument)  # shell form, as Docker runs it
    return tuple(str(part) for part in value)


def _env_pairs(argument: str) -> tuple[tuple[str, str], ...]:
    words = shlex.split(argument)
    if words and "=" not in words[0]:  # legacy `ENV NAME value with spaces`
        return ((words[0], " ".join(words[1:])),)
    return tuple(tuple(word.split("=", 1)) for word in words if "=" in word)  # type: ignore[misc]


def load_image_config(repository: str, repo_root: Path = REPO_ROOT) -> ImageConfig:
    dockerfile = repo_root / DOCKERFILES[repository]
    if dockerfile.exists():
        return parse_dockerfile(dockerfile.read_text())
    return ImageConfig(entrypoint=tuple(FALLBACK_ENTRYPOINTS[repository]))


def container_argv(container: dict, image: ImageConfig) -> list[str]:
    """Kubernetes rules: `command` replaces ENTRYPOINT (and drops CMD); `args` replaces CMD."""
    command = container.get("command")
    args = container.get("args")
    if command:
        return [*command, *(args or [])]
    return [*image.entrypoint, *(args if args is not None else image.cmd)]
