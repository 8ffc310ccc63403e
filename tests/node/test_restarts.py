"""`rotation.restartWorkloads`: a content change restarts exactly the workloads that ask for the
ExternalSecret, once, and their new pods read the new value; other workloads are untouched."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from tests.cluster.aws import MotoServer
from tests.node.conftest import Charted, Pods, wait_until
from tests.node.test_injection import REMOTE_KEY, deployment, external_secret, running_pod, seed

MOUNT = "/var/run/secrets/tmpfs-secrets.io/rw"
PRINT = f"cat {MOUNT}/password; echo; sleep 3600"


def statefulset(name: str, image: str) -> str:
    return f"""apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: {name}}}
spec:
  serviceName: {name}
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata:
      labels: {{app: {name}, tmpfs-secrets.io/inject: "true"}}
      annotations: {{tmpfs-secrets.io/secrets: rw}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {image}
        imagePullPolicy: Never
        command: [sh, -c, {json.dumps(PRINT)}]
"""


def bystander(image: str) -> str:
    """A workload that uses nothing of the ExternalSecret (and does not opt in)."""
    return (
        deployment("bystander", image, "x", "sleep 3600")
        .replace(
            '      labels: {app: bystander, tmpfs-secrets.io/inject: "true"}\n',
            "      labels: {app: bystander}\n",
        )
        .replace('      annotations: {tmpfs-secrets.io/secrets: "x"}\n', "")
    )


def generation(pods: Pods, kind: str, name: str) -> int:
    return int(pods.get(kind, name)["metadata"]["generation"])


def restart_events(pods: Pods) -> list[dict[str, Any]]:
    out = pods.kubectl(
        "get", "events", "--field-selector", "involvedObject.name=rw,reason=WorkloadsRestarted", "-o", "json"
    )
    return list(json.loads(out.stdout)["items"])


def fetches(aws: MotoServer) -> int:
    counts = aws.call_counts()
    return counts["BatchGetSecretValue"] + counts["GetSecretValue"]


def test_restart_workloads_restarts_exactly_the_users_once_with_the_new_value(
    pods: Pods, aws: MotoServer, injecting: Charted
) -> None:
    first = f"pw-{uuid.uuid4().hex}"
    sm = seed(aws, pods, first)
    pods.apply(external_secret("rw", "  rotation: {restartWorkloads: true}\n"))
    pods.kubectl("wait", "--for=condition=Ready", "--timeout=60s", "externalsecrets.tmpfs-secrets.io/rw")
    pods.apply(deployment("user", pods.image, "rw", PRINT))
    pods.apply(statefulset("user-sts", pods.image))
    pods.apply(bystander(pods.image))
    before = {name: running_pod(pods, name) for name in ("user", "user-sts", "bystander")}
    assert pods.logs(before["user"]).strip() == first
    generations = {
        ("deployment", "user"): generation(pods, "deployment", "user"),
        ("statefulset", "user-sts"): generation(pods, "statefulset", "user-sts"),
        ("deployment", "bystander"): generation(pods, "deployment", "bystander"),
    }

    rotated = f"pw-{uuid.uuid4().hex}"
    sm.put_secret_value(SecretId=REMOTE_KEY, SecretString=json.dumps({"password": rotated}))
    (event,) = wait_until("a WorkloadsRestarted event", lambda: restart_events(pods), 60, 0.5)
    assert "Deployment/user" in event["message"] and "StatefulSet/user-sts" in event["message"]
    assert "bystander" not in event["message"]

    uids = {app: pods.get("pod", name)["metadata"]["uid"] for app, name in before.items()}

    def new_pod(app: str) -> str | None:
        # A StatefulSet's new pod has the old one's name: tell them apart by uid.
        name = running_pod(pods, app, 180)
        found = pods.kubectl("get", "pod", name, "-o", "jsonpath={.metadata.uid}", check=False).stdout
        return name if found and found != uids[app] else None

    for app in ("user", "user-sts"):
        fresh = wait_until(f"a new pod of {app}", lambda app=app: new_pod(app), 180, 1)
        assert (
            wait_until(f"{app}'s new pod printing", lambda fresh=fresh: pods.logs(fresh).strip(), 60)
            == rotated
        )
    bystander_pod = running_pod(pods, "bystander")
    assert bystander_pod == before["bystander"]
    assert pods.get("pod", bystander_pod)["metadata"]["uid"] == uids["bystander"]

    # The same content, refreshed again several times, restarts nothing more.
    seen = fetches(aws)
    wait_until("three more refreshes", lambda: fetches(aws) >= seen + 3, 60, 0.5)
    time.sleep(1)  # let the sink finish the last delivery before reading the objects
    after = {key: generation(pods, *key) for key in generations}
    assert after[("deployment", "user")] == generations[("deployment", "user")] + 1
    assert after[("statefulset", "user-sts")] == generations[("statefulset", "user-sts")] + 1
    assert after[("deployment", "bystander")] == generations[("deployment", "bystander")]
    assert len(restart_events(pods)) == 1
