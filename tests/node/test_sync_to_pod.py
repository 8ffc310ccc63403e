"""The whole path on a pod that runs: AWS value -> operator -> Secret -> kubelet -> the container's file.

The Secret the operator writes is mounted as an ordinary Secret volume (no `subPath`, which would
freeze the file) at the path the API documents. A rotation in moto must reach the running
container's file in place: same container, restart count 0. The delays from the change in AWS to
the new Secret and to the new file are printed, never asserted.
"""

from __future__ import annotations

import base64
import json
import time
import uuid

from tests.cluster.aws import MotoServer
from tests.cluster.cluster import Cluster
from tests.node.conftest import Charted, Pods, pod_manifest, wait_until

NAME = "app-db"
MOUNT = f"/var/run/secrets/tmpfs-secrets.io/{NAME}"
REMOTE_KEY = "prod/app/db"
REFRESH = "2s"

STORE = """apiVersion: tmpfs-secrets.io/v1alpha1
kind: SecretStore
metadata: {name: aws}
spec:
  provider:
    aws: {service: SecretsManager, region: us-east-1}
"""
EXTERNAL_SECRET = f"""apiVersion: tmpfs-secrets.io/v1alpha1
kind: ExternalSecret
metadata: {{name: {NAME}}}
spec:
  secretStoreRef: {{name: aws}}
  refreshInterval: {REFRESH}
  data:
  - secretKey: password
    remoteRef: {{key: {REMOTE_KEY}, property: password}}
"""
VOLUMES = f"""  volumes:
  - name: secrets
    secret: {{secretName: {NAME}}}
"""
MOUNTS = f"""    volumeMounts:
    - {{name: secrets, mountPath: {MOUNT}, readOnly: true}}
"""


def _file(pods: Pods) -> str:
    return pods.exec("reader", "cat", f"{MOUNT}/password", check=False).stdout


def _secret_value(pods: Pods) -> str | None:
    found = pods.kubectl("get", "secret", NAME, "-o", "json", check=False)
    if found.returncode != 0:
        return None
    data = json.loads(found.stdout).get("data") or {}
    return base64.b64decode(data["password"]).decode() if "password" in data else None


def _container_id(pods: Pods) -> str:
    statuses = pods.get("pod", "reader")["status"]["containerStatuses"]
    return str(statuses[0]["containerID"])


def test_a_rotation_in_aws_reaches_the_file_in_a_running_pod_in_place(
    pods: Pods, cluster: Cluster, aws: MotoServer, operator: Charted
) -> None:
    sm = aws.client("secretsmanager")
    first = f"pw-{uuid.uuid4().hex}"
    sm.create_secret(Name=REMOTE_KEY, SecretString=json.dumps({"password": first}))
    pods.apply(STORE)
    pods.apply(EXTERNAL_SECRET)
    pods.kubectl("wait", "--for=condition=Ready", "--timeout=60s", f"externalsecrets.tmpfs-secrets.io/{NAME}")
    assert _secret_value(pods) == first

    pods.apply(pod_manifest("reader", pods.image, "sleep 3600", VOLUMES, MOUNTS))
    pods.wait_running("reader")
    assert pods.mount_type("reader", MOUNT) == "tmpfs"
    assert _file(pods) == first
    container = _container_id(pods)

    rotated = f"pw-{uuid.uuid4().hex}"
    started = time.monotonic()
    sm.put_secret_value(SecretId=REMOTE_KEY, SecretString=json.dumps({"password": rotated}))
    wait_until("the rotated value in the Secret", lambda: _secret_value(pods) == rotated, 60, 0.2)
    to_secret = time.monotonic() - started
    wait_until("the rotated value in the container's file", lambda: _file(pods) == rotated, 120, 0.2)
    to_file = time.monotonic() - started

    assert pods.restart_count("reader") == 0
    assert _container_id(pods) == container, "the container was replaced, not updated in place"
    assert pods.mount_type("reader", MOUNT) == "tmpfs"
    assert cluster.node is not None
    print(
        f"\nAWS rotation -> Secret {to_secret:.1f}s, -> file in the running container {to_file:.1f}s "
        f"(refreshInterval {REFRESH}, kubelet syncFrequency {cluster.node.sync_frequency}); restarts: 0"
    )
