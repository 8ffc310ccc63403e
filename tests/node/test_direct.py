"""Direct delivery on pods that run: the webhook injects the agent (the operator image) as a native
sidecar, the agent streams from the operator through a Service, and the values never touch the
Kubernetes API or etcd.

The operator runs in the bubble on the node address (tests/cluster/direct.py).
"""

from __future__ import annotations

import base64
import json
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.cluster import direct as direct_setup
from tests.cluster.aws import MotoServer
from tests.cluster.cluster import Cluster
from tests.cluster.direct import DirectSetup
from tests.node.conftest import Pods, wait_until

REMOTE_KEY = "prod/direct/db"
MOUNT = "/secrets/db"
STORE = """apiVersion: tmpfs-secrets.io/v1alpha1
kind: SecretStore
metadata: {name: aws}
spec:
  provider:
    aws: {service: SecretsManager, region: us-east-1}
"""
EXTERNAL_SECRET = f"""apiVersion: tmpfs-secrets.io/v1alpha1
kind: ExternalSecret
metadata: {{name: db}}
spec:
  secretStoreRef: {{name: aws}}
  refreshInterval: 2s
  data:
  - secretKey: password
    remoteRef: {{key: {REMOTE_KEY}, property: password}}
  target: {{delivery: Direct}}
  mount: {{path: {MOUNT}, defaultMode: 0440}}
"""


def deployment(image: str) -> str:
    # The app refuses to start without its file: a restart would show in restartCount.
    command = f"cat {MOUNT}/password >/dev/null || exit 7; sleep 3600"
    return f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: app}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: app}}}}
  template:
    metadata:
      labels: {{app: app, tmpfs-secrets.io/inject: "true"}}
      annotations: {{tmpfs-secrets.io/secrets: db}}
    spec:
      terminationGracePeriodSeconds: 1
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        fsGroup: 65532
        seccompProfile: {{type: RuntimeDefault}}
      containers:
      - name: main
        image: {image}
        imagePullPolicy: Never
        command: [sh, -c, {json.dumps(command)}]
        securityContext:
          allowPrivilegeEscalation: false
          capabilities: {{drop: [ALL]}}
"""


@pytest.fixture(scope="session")
def agent_image(cluster: Cluster) -> str:
    return direct_setup.agent_image(cluster)


@pytest.fixture
def direct(
    cluster: Cluster,
    aws: MotoServer,
    crds: Path,
    namespace: str,
    agent_image: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[DirectSetup]:
    setup = DirectSetup.start(cluster, aws, tmp_path, [namespace], agent_image, tmp_path / "operator.log")
    try:
        yield setup
    finally:
        setup.stop()
        if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
            agents = cluster.kubectl(
                "logs",
                "-n",
                namespace,
                "-l",
                "app=app",
                "-c",
                "tmpfs-secrets-agent",
                "--tail=40",
                check=False,
            )
            print(f"\n--- agent log:\n{agents.stdout}{agents.stderr}")
            print("\n--- operator log:\n" + "\n".join(setup.operator.log_text().splitlines()[-80:]))


def _seed() -> tuple[object, str]:
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    value = f"direct-{uuid.uuid4().hex}"
    sm.create_secret(Name=REMOTE_KEY, SecretString=json.dumps({"password": value}))
    return sm, value


def _rotate(sm: object) -> str:
    value = f"direct-{uuid.uuid4().hex}"
    sm.put_secret_value(SecretId=REMOTE_KEY, SecretString=json.dumps({"password": value}))  # type: ignore[attr-defined]
    return value


def _app_pod(pods: Pods) -> str:
    def found() -> str | None:
        listed = json.loads(pods.kubectl("get", "pods", "-l", "app=app", "-o", "json").stdout)["items"]
        running = [p for p in listed if not p["metadata"].get("deletionTimestamp")]
        return str(running[0]["metadata"]["name"]) if running else None

    return str(wait_until("the app's pod", found, 60))


def _read(pods: Pods, pod: str) -> str:
    return pods.exec(pod, "cat", f"{MOUNT}/password", check=False).stdout


def _etcd_text(cluster: Cluster) -> str:
    """Every key and value in etcd's keyspace, through etcd's own v3 JSON gateway (a full range)."""
    body = json.dumps(
        {"key": base64.b64encode(b"\0").decode(), "range_end": base64.b64encode(b"\0").decode()}
    )
    request = urllib.request.Request(
        f"http://127.0.0.1:{cluster.control_plane.etcd_port}/v3/kv/range",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        kvs = json.loads(answer.read())["kvs"]
    return "\n".join(
        base64.b64decode(kv["key"]).decode("latin-1")
        + " "
        + base64.b64decode(kv.get("value", "")).decode("latin-1")
        for kv in kvs
    )


def test_direct_values_reach_the_pod_and_nowhere_else(
    direct: DirectSetup, pods: Pods, aws: MotoServer, cluster: Cluster
) -> None:
    pods.kubectl("label", "namespace", pods.namespace, "pod-security.kubernetes.io/enforce=restricted")
    sm, first = _seed()
    pods.apply(STORE)
    pods.apply(EXTERNAL_SECRET)
    pods.apply(deployment(pods.image))
    pod = _app_pod(pods)
    pods.wait_running(pod, timeout=180)

    # The app started once, with its file there; the agent is a native sidecar.
    spec = pods.get("pod", pod)["spec"]
    agent = spec["initContainers"][0]
    assert agent["name"] == "tmpfs-secrets-agent" and agent["restartPolicy"] == "Always"
    assert pods.restart_count(pod) == 0
    assert _read(pods, pod) == first
    assert pods.mount_type(pod, MOUNT) == "tmpfs"
    mode = pods.exec(pod, "stat", "-L", "-c", "%a", f"{MOUNT}/password").stdout.strip()
    assert mode == "440"
    denied = pods.exec(pod, "sh", "-c", f"echo x > {MOUNT}/intruder", check=False)
    assert denied.returncode != 0  # read-only in the app

    # A rotation changes the file in place, without a restart.
    second = _rotate(sm)
    wait_until("the rotated value in the pod", lambda: _read(pods, pod) == second, 60)
    assert pods.restart_count(pod) == 0
    wait_until(
        "the status to count the pod",
        lambda: (
            (pods.get("externalsecret.tmpfs-secrets.io", "db").get("status") or {}).get("direct")
            == {"podsCurrent": 1, "podsStale": 0}
        ),
        60,
    )

    # No value anywhere in the API server, nor in etcd.
    seen = cluster.kubectl("get", "secrets,configmaps,events,pods", "-A", "-o", "json").stdout
    seen += cluster.kubectl(
        "get", "externalsecrets.tmpfs-secrets.io,secretstores.tmpfs-secrets.io", "-A", "-o", "json"
    ).stdout
    seen += direct.operator.log_text()
    stored = _etcd_text(cluster)
    assert f"/{pods.namespace}/db" in stored  # the range did cover our objects
    for value in (first, second):
        assert value not in seen
        assert value not in stored

    # Operator down: the files stay; back up: the next rotation arrives.
    direct.operator.stop()
    third = _rotate(sm)
    assert _read(pods, pod) == second
    direct.operator.start()
    wait_until("the rotation after the operator's restart", lambda: _read(pods, pod) == third, 90)
    assert pods.restart_count(pod) == 0
