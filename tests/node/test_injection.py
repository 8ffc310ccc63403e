"""Pods that opt in get their ExternalSecrets' volumes from the webhook, called by the API server
through a Service; pods that don't are never sent to it, and still start when the operator is down.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from typing import Any

from tests.cluster.aws import MotoServer
from tests.cluster.webhook import INJECT
from tests.node.conftest import Charted, Pods, pod_manifest, wait_until

REMOTE_KEY = "prod/app/db"
MOUNT = "/secrets/db"
STORE = """apiVersion: tmpfs-secrets.io/v1alpha1
kind: SecretStore
metadata: {name: aws}
spec:
  provider:
    aws: {service: SecretsManager, region: us-east-1}
"""


def external_secret(name: str, extra: str = "") -> str:
    return f"""apiVersion: tmpfs-secrets.io/v1alpha1
kind: ExternalSecret
metadata: {{name: {name}}}
spec:
  secretStoreRef: {{name: aws}}
  refreshInterval: 2s
  data:
  - secretKey: password
    remoteRef: {{key: {REMOTE_KEY}, property: password}}
{extra}"""


def deployment(name: str, image: str, secrets: str, command: str = "sleep 3600") -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata:
      labels: {{app: {name}, tmpfs-secrets.io/inject: "true"}}
      annotations: {{tmpfs-secrets.io/secrets: "{secrets}"}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {image}
        imagePullPolicy: Never
        command: [sh, -c, {json.dumps(command)}]
"""


def running_pod(pods: Pods, app: str, timeout: float = 120.0) -> str:
    def ready() -> str | None:
        listing = json.loads(pods.kubectl("get", "pods", "-l", f"app={app}", "-o", "json").stdout)
        for pod in listing["items"]:
            if pod["metadata"].get("deletionTimestamp"):
                continue
            conditions = pod.get("status", {}).get("conditions") or []
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                return str(pod["metadata"]["name"])
        return None

    return str(wait_until(f"a Ready pod of {app}", ready, timeout))


def seed(aws: MotoServer, pods: Pods, value: str) -> Any:
    sm = aws.client("secretsmanager")
    sm.create_secret(Name=REMOTE_KEY, SecretString=json.dumps({"password": value}))
    pods.apply(STORE)
    return sm


def test_a_deployments_pods_get_the_volume_tmpfs_with_its_mode_and_rotation_in_place(
    pods: Pods, aws: MotoServer, injecting: Charted
) -> None:
    first = f"pw-{uuid.uuid4().hex}"
    sm = seed(aws, pods, first)
    pods.apply(external_secret("app-db", f"  mount: {{path: {MOUNT}, defaultMode: 0400}}\n"))
    pods.kubectl("wait", "--for=condition=Ready", "--timeout=60s", "externalsecrets.tmpfs-secrets.io/app-db")

    pods.apply(deployment("web", pods.image, "app-db"))
    name = running_pod(pods, "web")
    pod = pods.get("pod", name)
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"  # made by kube-controller-manager
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["tmpfs-secrets-app-db"]["secret"] == {"secretName": "app-db", "defaultMode": 0o400}
    (container,) = pod["spec"]["containers"]
    mounts = [m for m in container["volumeMounts"] if m["name"] == "tmpfs-secrets-app-db"]
    assert mounts == [{"name": "tmpfs-secrets-app-db", "mountPath": MOUNT, "readOnly": True}]

    assert pods.mount_type(name, MOUNT) == "tmpfs"
    assert pods.exec(name, "stat", "-L", "-c", "%a", f"{MOUNT}/password").stdout.strip() == "400"
    assert pods.exec(name, "cat", f"{MOUNT}/password").stdout == first

    rotated = f"pw-{uuid.uuid4().hex}"
    sm.put_secret_value(SecretId=REMOTE_KEY, SecretString=json.dumps({"password": rotated}))
    wait_until(
        "the rotated value in the running container",
        lambda: pods.exec(name, "cat", f"{MOUNT}/password", check=False).stdout == rotated,
        120,
        0.5,
    )
    assert pods.restart_count(name) == 0
    assert running_pod(pods, "web") == name  # the same pod, updated in place


def _create(pods: Pods, manifest: str) -> subprocess.CompletedProcess[str]:
    return pods.kubectl("create", "-f", "-", input=manifest, check=False)


def opted_in_pod(name: str, image: str, secrets: str) -> str:
    return pod_manifest(name, image, "sleep 3600").replace(
        f"  labels: {{app: {name}}}\n",
        f'  labels: {{app: {name}, tmpfs-secrets.io/inject: "true"}}\n'
        f'  annotations: {{tmpfs-secrets.io/secrets: "{secrets}"}}\n',
    )


def test_unlabelled_pods_never_reach_the_webhook_and_start_while_the_operator_is_down(
    pods: Pods, injecting: Charted
) -> None:
    before = injecting.requests()
    # The annotation alone does not opt in: only the label does.
    plain = pod_manifest("plain", pods.image, "sleep 3600").replace(
        "  labels: {app: plain}\n",
        '  labels: {app: plain}\n  annotations: {tmpfs-secrets.io/secrets: "later"}\n',
    )
    assert _create(pods, plain).returncode == 0
    pods.wait_running("plain")
    assert injecting.requests() == before, "an unlabelled pod was sent to the webhook"
    plain_volumes = pods.get("pod", "plain")["spec"].get("volumes") or []
    assert not [v for v in plain_volumes if v["name"].startswith("tmpfs-secrets-")]

    created = _create(pods, opted_in_pod("waiting", pods.image, "later"))
    assert created.returncode == 0, created.stderr
    # kubectl prints admission warnings on stderr; the Secret does not exist yet, so the pod waits.
    assert "no ExternalSecret" in created.stderr and "later" in created.stderr
    assert injecting.requests() == before + 1
    assert pods.get("pod", "waiting")["spec"]["volumes"][-1]["secret"]["secretName"] == "later"

    injecting.stop()
    refused = _create(pods, opted_in_pod("refused", pods.image, "later"))
    assert refused.returncode != 0
    assert f'failed calling webhook "{INJECT}"' in refused.stderr, refused.stderr
    assert pods.kubectl("get", "pod", "refused", check=False).returncode != 0

    later = pod_manifest("still-starts", pods.image, "sleep 3600")
    assert _create(pods, later).returncode == 0
    pods.wait_running("still-starts")
    # The pod created while the operator was up is still waiting for its Secret, not started without it.
    assert pods.get("pod", "waiting")["status"].get("phase") == "Pending"


def test_probes_report_ready_and_alive(injecting: Charted) -> None:
    assert injecting.probe("/healthz") == (200, "ok\n")
    assert injecting.probe("/readyz") == (200, "ok\n")
