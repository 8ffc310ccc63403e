"""The reader helpers in running pods: Python's `tmpfs_secrets.client` and the Node.js module.

Each runs in its own image built from Debian packages (`python3`, `nodejs`; see
`tests/cluster/app_images.py`) in a namespace that enforces the `restricted` Pod Security profile,
as user 65532 with a read-only root. The pod mounts the Secret the operator syncs from moto as an
ordinary Secret volume at the default `mount.path` and prints the value it reads; a rotation in
moto must show up in the same container's output (restart count 0). The Python program polls
through the helper's TTL cache; the Node.js one reads once and then only acts on `watch()`
(inotify on `..data`), so its new line proves the watch fired. Without the folder, both fall back
to the environment variable of the same name.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator

import pytest

from tests.cluster import debian_image
from tests.cluster.app_images import NODE_READER, PYTHON_READER
from tests.cluster.aws import MotoServer
from tests.cluster.cluster import Cluster
from tests.node.conftest import Charted, Pods, wait_until

NAME = "app-db"
KEY = "RDS_PASSWORD"
MOUNT = f"/var/run/secrets/tmpfs-secrets.io/{NAME}"
REMOTE_KEY = "prod/app/db"  # with a suffix per test: the tests of a module share one operator
REFRESH = "2s"

STORE = """apiVersion: tmpfs-secrets.io/v1alpha1
kind: SecretStore
metadata: {name: aws}
spec:
  provider:
    aws: {service: SecretsManager, region: us-east-1}
"""
EXTERNAL_SECRET = """apiVersion: tmpfs-secrets.io/v1alpha1
kind: ExternalSecret
metadata: {{name: {name}}}
spec:
  secretStoreRef: {{name: aws}}
  refreshInterval: {refresh}
  data:
  - secretKey: {secret_key}
    remoteRef: {{key: {remote_key}, property: password}}
"""

PYTHON_PROGRAM = f"""
import os, time
from tmpfs_secrets.client import Secrets
print("uid", os.getuid(), flush=True)
secrets = Secrets({NAME!r}, ttl=1)
last = None
while True:
    value = secrets.get({KEY!r})
    if value != last:
        print("value", value, "version", secrets.version(), flush=True)
        last = value
    time.sleep(0.5)
"""

# A long TTL: only watch() (inotify on ..data) can bring the rotated value within the test's wait.
NODE_PROGRAM = f"""
const {{ Secrets }} = require('/app/tmpfs-secrets');
console.log('uid ' + process.getuid());
const secrets = new Secrets({json.dumps(NAME)}, {{ ttlMs: 3600 * 1000 }});
const show = () => console.log('value ' + secrets.get({json.dumps(KEY)}) + ' version ' + secrets.version());
show();
secrets.watch(show);
"""

FALLBACK_PROGRAMS = {
    "python": [
        "python3",
        "-c",
        f"from tmpfs_secrets.client import Secrets; print('value', Secrets({NAME!r}).get({KEY!r}))",
    ],
    "node": [
        "node",
        "-e",
        f"const {{ Secrets }} = require('/app/tmpfs-secrets'); "
        f"console.log('value ' + new Secrets({json.dumps(NAME)}).get({json.dumps(KEY)}))",
    ],
}


@pytest.fixture(scope="session")
def reader_images(cluster: Cluster) -> dict[str, str]:
    """The two reader images, imported into the node once per run (built by `make images`)."""
    assert cluster.node is not None, "the cluster has no node"
    names = {}
    for lang, recipe in (("python", PYTHON_READER), ("node", NODE_READER)):
        built = debian_image.require(recipe)
        cluster.node.import_images(built.archive)
        names[lang] = built.image
    return names


@pytest.fixture
def restricted(pods: Pods) -> Iterator[Pods]:
    """This test's namespace, enforcing the `restricted` Pod Security profile."""
    pods.kubectl("label", "namespace", pods.namespace, "pod-security.kubernetes.io/enforce=restricted")
    yield pods


def restricted_pod(
    name: str,
    image: str,
    command: list[str],
    *,
    mount: bool = True,
    env: dict[str, str] | None = None,
    restart: str = "Always",
) -> str:
    """A pod that meets `restricted`: non-root (the image's 65532), no escalation, no capabilities,
    RuntimeDefault seccomp, read-only root (an in-memory /tmp for whatever wants one)."""
    container: dict[str, object] = {
        "name": "main",
        "image": image,
        "imagePullPolicy": "Never",
        "command": command,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
    }
    volumes: list[dict[str, object]] = [{"name": "tmp", "emptyDir": {"medium": "Memory"}}]
    if mount:
        volumes.append({"name": "secrets", "secret": {"secretName": NAME}})
        container["volumeMounts"].append(  # type: ignore[attr-defined]
            {"name": "secrets", "mountPath": MOUNT, "readOnly": True}
        )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "restartPolicy": restart,
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container],
            "volumes": volumes,
        },
    }
    return json.dumps(pod)


def _values(pods: Pods, pod: str) -> list[str]:
    return re.findall(r"^value (\S+)", pods.logs(pod), flags=re.MULTILINE)


def _sync(pods: Pods, aws: MotoServer) -> tuple[object, str, str]:
    """The synced ExternalSecret: its AWS client, first value and remote key (unique per test, so
    no other test's cached value of the shared operator can answer for it)."""
    sm = aws.client("secretsmanager")
    first = f"pw-{uuid.uuid4().hex}"
    key = f"{REMOTE_KEY}-{uuid.uuid4().hex[:8]}"
    sm.create_secret(Name=key, SecretString=json.dumps({"password": first}))
    pods.apply(STORE)
    pods.apply(EXTERNAL_SECRET.format(name=NAME, refresh=REFRESH, secret_key=KEY, remote_key=key))
    pods.kubectl("wait", "--for=condition=Ready", "--timeout=60s", f"externalsecrets.tmpfs-secrets.io/{NAME}")
    return sm, first, key


def _container_id(pods: Pods, pod: str) -> str:
    return str(pods.get("pod", pod)["status"]["containerStatuses"][0]["containerID"])


@pytest.mark.parametrize(
    ("lang", "program"),
    [("python", ["python3", "-c", PYTHON_PROGRAM]), ("node", ["node", "-e", NODE_PROGRAM])],
)
def test_the_reader_in_a_running_pod_prints_the_rotated_value_without_a_restart(
    restricted: Pods,
    aws: MotoServer,
    operator: Charted,
    reader_images: dict[str, str],
    lang: str,
    program: list[str],
) -> None:
    pods = restricted
    sm, first, key = _sync(pods, aws)
    pod = f"{lang}-reader"
    pods.apply(restricted_pod(pod, reader_images[lang], program))
    pods.wait_running(pod)
    wait_until(f"{pod} printing the first value", lambda: _values(pods, pod) == [first], 60)
    logs = pods.logs(pod)
    assert re.search(r"^uid 65532$", logs, flags=re.MULTILINE), logs
    assert re.search(r"version \.\.\d{4}_", logs), "the reader did not go through kubelet's ..data link"
    container = _container_id(pods, pod)

    rotated = f"pw-{uuid.uuid4().hex}"
    sm.put_secret_value(SecretId=key, SecretString=json.dumps({"password": rotated}))
    wait_until(f"{pod} printing the rotated value", lambda: _values(pods, pod) == [first, rotated], 120, 0.5)

    assert pods.restart_count(pod) == 0
    assert _container_id(pods, pod) == container, "the container was replaced, not updated in place"
    versions = re.findall(r"version (\S+)", pods.logs(pod))
    assert len(set(versions)) == 2, versions


@pytest.mark.parametrize("lang", ["python", "node"])
def test_without_the_folder_the_reader_falls_back_to_the_environment(
    restricted: Pods, reader_images: dict[str, str], lang: str
) -> None:
    pods = restricted
    local = f"local-{uuid.uuid4().hex}"
    pod = f"{lang}-fallback"
    command = FALLBACK_PROGRAMS[lang]
    pods.apply(
        restricted_pod(pod, reader_images[lang], command, mount=False, env={KEY: local}, restart="Never")
    )
    phase = wait_until(
        f"{pod} to finish",
        lambda: (p := pods.get("pod", pod)["status"].get("phase")) in ("Succeeded", "Failed") and p,
        120,
        0.5,
    )
    assert phase == "Succeeded", pods.logs(pod)
    assert _values(pods, pod) == [local]


def test_the_node_module_tests_pass_on_debians_nodejs_in_a_restricted_pod(
    restricted: Pods, reader_images: dict[str, str]
) -> None:
    pods = restricted
    pod = "node-module-tests"
    pods.apply(
        restricted_pod(
            pod, reader_images["node"], ["node", "--test", "/app/test/"], mount=False, restart="Never"
        )
    )
    phase = wait_until(
        f"{pod} to finish",
        lambda: (p := pods.get("pod", pod)["status"].get("phase")) in ("Succeeded", "Failed") and p,
        180,
        0.5,
    )
    logs = pods.logs(pod)
    assert phase == "Succeeded", logs
    assert re.search(r"^# fail 0$", logs, flags=re.MULTILINE), logs
    passed = int(re.search(r"^# pass (\d+)$", logs, flags=re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert passed >= 9, logs
