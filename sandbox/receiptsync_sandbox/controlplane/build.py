"""Build (once per machine) and find the upstream control-plane binary.

`controlplane/` at the repo root is a Go module holding only a main: one multi-call binary with
etcd, kube-apiserver, kube-controller-manager and kube-scheduler from the official modules. A cold
build takes minutes, so the result is cached outside the repo under a hash of everything that goes
into it (Go version, go.mod, go.sum, main.go, flags): only the first build on a machine pays, and
a test run never even relinks.

    python -m receiptsync_sandbox.controlplane.build      # build if needed, print the binary's path
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..nodeagent.images import REPO_ROOT

MODULE_DIR = REPO_ROOT / "controlplane"
INPUTS = ("go.mod", "go.sum", "main.go")
CACHE_ENV = "RECEIPTSYNC_CACHE_DIR"
VERSION_PACKAGE = "k8s.io/component-base/version"


class BuildError(RuntimeError):
    pass


def cache_root() -> Path:
    base = os.environ.get(CACHE_ENV) or os.path.join(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache",
                                                     "receiptsync")
    return Path(base) / "controlplane"


def go_env() -> dict[str, str]:
    # Upstream builds these statically; GOTOOLCHAIN=local keeps the machine's Go (no download).
    return {**os.environ, "GOTOOLCHAIN": "local", "GOWORK": "off", "CGO_ENABLED": "0",
            "GOFLAGS": "-mod=readonly -buildvcs=false"}


def kubernetes_release(go_mod: str) -> str:
    match = re.search(r"^\s*(?:require\s+)?k8s\.io/kubernetes (v\d+\.\d+\.\d+)\s*$", go_mod, re.M)
    if not match:
        raise BuildError(f"{MODULE_DIR / 'go.mod'} does not require a k8s.io/kubernetes release")
    return match.group(1)


def ldflags(release: str) -> str:
    major, minor, _ = release.lstrip("v").split(".")
    stamp = {"gitVersion": release, "gitMajor": major, "gitMinor": minor, "gitTreeState": "clean"}
    # Without the stamp /version reports v0.0.0-master and kubectl warns about skew.
    return "-s -w " + " ".join(f"-X {VERSION_PACKAGE}.{key}={value}" for key, value in stamp.items())


def go_version() -> str:
    try:
        done = subprocess.run(["go", "version"], env=go_env(), check=True, capture_output=True, text=True)
        return done.stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BuildError(f"the Go toolchain is needed to build the control plane: {exc}") from exc


def input_hash(go: str) -> str:
    digest = hashlib.sha256(go.encode())
    for name in INPUTS:
        digest.update(name.encode() + b"\0" + (MODULE_DIR / name).read_bytes() + b"\0")
    digest.update(ldflags(kubernetes_release((MODULE_DIR / "go.mod").read_text())).encode())
    return digest.hexdigest()[:16]


def binary_path() -> Path:
    """Where the binary for the current inputs lives (it may not be built yet)."""
    return cache_root() / input_hash(go_version()) / "kube"


def ensure_built(say=print) -> Path:
    target = binary_path()
    if target.exists():
        return target
    release = kubernetes_release((MODULE_DIR / "go.mod").read_text())
    say(f"building the Kubernetes {release} control plane (etcd, kube-apiserver, kube-controller-manager, "
        f"kube-scheduler) from Go modules into {target.parent}")
    say("a cold build takes about 10 minutes on 2 cores (3 GB of RAM, ~5 GB of disk); it happens once per machine")
    download(say)
    build(target, release, say)
    return target


def download(say) -> None:
    began = time.monotonic()
    say("downloading modules (go mod download) ...")
    result = subprocess.run(["go", "mod", "download"], cwd=MODULE_DIR, env=go_env(), capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"go mod download failed:\n{result.stderr[-4000:]}")
    say(f"modules ready in {time.monotonic() - began:.0f}s")


def package_count() -> int:
    result = subprocess.run(["go", "list", "-deps", "."], cwd=MODULE_DIR, env=go_env(), capture_output=True, text=True)
    return max(1, len(result.stdout.split())) if result.returncode == 0 else 0


def build(target: Path, release: str, say) -> None:
    total = package_count()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=target.parent)) / "kube"
    argv = ["go", "build", "-v", "-trimpath", "-ldflags", ldflags(release), "-o", str(partial), "."]
    began = time.monotonic()
    built, last_said = 0, 0.0
    # `go build -v` names each package as it is compiled (cached ones are skipped): that is progress.
    process = subprocess.Popen(argv, cwd=MODULE_DIR, env=go_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    tail: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        built += 1
        tail = (tail + [line.rstrip()])[-40:]
        elapsed = time.monotonic() - began
        if elapsed - last_said >= 30:
            last_said = elapsed
            say(progress_line(built, total, elapsed))
    if process.wait() != 0:
        shutil.rmtree(partial.parent, ignore_errors=True)
        raise BuildError("go build failed:\n" + "\n".join(tail))
    partial.replace(target)
    shutil.rmtree(partial.parent, ignore_errors=True)
    say(f"control plane built in {time.monotonic() - began:.0f}s: {target} ({target.stat().st_size >> 20} MiB)")


def progress_line(built: int, total: int, elapsed: float) -> str:
    if not total:
        return f"  ... {built} packages compiled, {elapsed / 60:.1f} min"
    share = min(built / total, 0.99)
    left = elapsed / share * (1 - share) if share > 0.02 else None
    eta = f", about {left / 60:.0f} min left" if left is not None else ""
    return f"  ... {built}/{total} packages ({share:.0%}), {elapsed / 60:.1f} min{eta}"


def main() -> None:
    try:
        print(ensure_built(say=lambda text: print(text, file=sys.stderr, flush=True)))
    except BuildError as exc:
        sys.exit(f"control plane: {exc}")


if __name__ == "__main__":
    main()
