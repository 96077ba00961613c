"""Keep the chart's CRDs byte-identical to manifests/crds/ (the one source of truth).

    python scripts/sync_crd.py          # copy manifests/crds/*.yaml -> charts/receipt-sync/crds/
    python scripts/sync_crd.py --check  # exit 1 and name the files when they differ

Helm installs charts/receipt-sync/crds/ before the templates and never upgrades or deletes them;
`kubectl apply -k manifests/` applies manifests/crds/. Both must be the same file.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "manifests" / "crds"
TARGET = ROOT / "charts" / "receipt-sync" / "crds"


def differences(source: Path = SOURCE, target: Path = TARGET) -> list[str]:
    """Names of CRD files missing from, differing in, or extra in the chart."""
    wanted = {p.name: p.read_bytes() for p in sorted(source.glob("*.yaml"))}
    present = {p.name: p.read_bytes() for p in sorted(target.glob("*.yaml"))} if target.is_dir() else {}
    problems = [f"{name}: missing in {target}" for name in wanted if name not in present]
    problems += [f"{name}: differs" for name in wanted if name in present and present[name] != wanted[name]]
    problems += [f"{name}: not in {source}" for name in present if name not in wanted]
    return problems


def sync(source: Path = SOURCE, target: Path = TARGET) -> list[str]:
    target.mkdir(parents=True, exist_ok=True)
    changed = differences(source, target)
    for stale in target.glob("*.yaml"):
        if not (source / stale.name).exists():
            stale.unlink()
    for crd in source.glob("*.yaml"):
        shutil.copyfile(crd, target / crd.name)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on any difference")
    args = parser.parse_args(argv)
    if not any(SOURCE.glob("*.yaml")):
        print(f"no CRD files in {SOURCE}", file=sys.stderr)
        return 1
    if args.check:
        problems = differences()
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("run: python scripts/sync_crd.py", file=sys.stderr)
        return 1 if problems else 0
    for line in sync():
        print(f"synced {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
