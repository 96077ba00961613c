"""Volumes at their real mount paths: each container process runs in a private mount namespace
(util-linux `unshare --mount`, needs root as a kubelet does) where the pod's volume folders are
bind-mounted at the container's `mountPath`s, so the projected ServiceAccount token is at
/var/run/secrets/kubernetes.io/serviceaccount and in-cluster config works unchanged.

There is no container root filesystem: a mount path that would hide what the process itself needs
(the venv, the checkout, the sandbox state, e.g. an emptyDir at /tmp when the checkout lives under
/tmp) is not mounted; for /tmp the process gets TMPDIR instead. Pure except `wrap`'s argv.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"

# Runs inside the new mount namespace: bind each SOURCE at TARGET (mode ro|rw), then exec the command.
_SCRIPT = r"""
while [ "$1" != "--" ]; do
  src=$1; dst=$2; mode=$3; shift 3
  if [ -d "$src" ]; then mkdir -p "$dst"
  elif [ ! -e "$dst" ]; then mkdir -p "$(dirname "$dst")" && : > "$dst"; fi
  mount --bind "$src" "$dst" || exit 125
  if [ "$mode" = ro ]; then mount -o remount,bind,ro "$dst" || exit 125; fi
done
shift
exec "$@"
"""


@dataclasses.dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool = False


def hides(target: str, keep: list[Path]) -> bool:
    """True when mounting over ``target`` would hide one of ``keep`` (or the whole root)."""
    path = Path(target)
    if not path.is_absolute() or path == Path("/"):
        return True
    return any(kept == path or path in kept.parents for kept in keep)


def container_mounts(container: dict, volume_dirs: dict[str, Path],
                     keep: list[Path]) -> tuple[list[Mount], dict[str, str]]:
    """The bind mounts for one container, and env that stands in for mounts that can't be made."""
    mounts, env = [], {}
    for mount in container.get("volumeMounts") or []:
        source = volume_dirs.get(mount.get("name", ""))
        target = mount.get("mountPath", "")
        if source is None:
            continue
        if mount.get("subPath"):
            source = source / mount["subPath"]
        if hides(target, keep):
            if target.rstrip("/") == "/tmp":
                env["TMPDIR"] = str(source)
            continue
        mounts.append(Mount(source, target, bool(mount.get("readOnly"))))
    return mounts, env


def termination_mount(container: dict, source: Path, keep: list[Path]) -> Mount | None:
    target = container.get("terminationMessagePath") or DEFAULT_TERMINATION_MESSAGE_PATH
    return None if hides(target, keep) else Mount(source, target)


def wrap(argv: list[str], mounts: list[Mount]) -> list[str]:
    if not mounts:
        return argv
    triples = [part for m in mounts for part in (str(m.source), m.target, "ro" if m.read_only else "rw")]
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", _SCRIPT, "mount-volumes", *triples, "--",
            *argv]


def parse_quantity(text: str | int | float | None) -> int | None:
    """A Kubernetes memory quantity in bytes ("300Mi", "1Gi", "500M", "1e9"); None when absent."""
    if text is None or text == "":
        return None
    value = str(text)
    binary = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    decimal = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for suffix, factor in {**binary, **decimal}.items():
        if value.endswith(suffix):
            return int(float(value[: -len(suffix)]) * factor)
    return int(float(value))
