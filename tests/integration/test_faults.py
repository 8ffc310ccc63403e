"""Faults under load: the operator SIGKILLed in the middle of syncing, then kube-apiserver
restarted under it. Everything converges, nothing unchanged is written twice, nothing is emptied,
and a change made in AWS while the API server was down is applied once it is back. Counted in the
API server's audit log, which records the operator's requests."""

from __future__ import annotations

import base64
import collections
import os
import signal
import threading
from collections.abc import Callable

import boto3

from tests.cluster.aws import MotoServer
from tests.cluster.control_plane import ControlPlane
from tests.cluster.operator import Operator
from tests.integration.conftest import Kube, apply_examples, wait_until

N = 200  # ExternalSecrets (the benchmark runs 1,000)
M = 20  # shared sources
WRITES = ("create", "patch", "update")


def writes(
    plane: ControlPlane, since: int, resource: str, subresource: str = "", *, succeeded: bool = True
) -> collections.Counter[str]:
    """Writes by the operator per object name: the successful ones, or every attempt.

    A write cut by the SIGKILL can still reach etcd while the API server logs it with an error
    code (its client went away), so "every Secret was written" counts attempts.
    """
    return collections.Counter(
        r["name"]
        for r in plane.operator_requests(since)
        if r["verb"] in WRITES
        and r["resource"] == resource
        and r["subresource"] == subresource
        and (not succeeded or 200 <= int(r["code"] or 0) < 300)
    )


def body(i: int, namespace: str) -> dict[str, object]:
    return {
        "apiVersion": "tmpfs-secrets.io/v1alpha1",
        "kind": "ExternalSecret",
        "metadata": {"name": f"es-{i:03d}", "namespace": namespace},
        "spec": {
            "refreshInterval": "5s",
            "secretStoreRef": {"name": "aws-secrets"},
            "data": [{"secretKey": "VALUE", "remoteRef": {"key": f"faults/{namespace}/{i % M}"}}],
        },
    }


def all_synced(kube: Kube, namespace: str, values: dict[int, str]) -> bool:
    secrets = {s.metadata.name: s.data or {} for s in kube.core.list_namespaced_secret(namespace).items}
    for i in range(N):
        data = secrets.get(f"es-{i:03d}")
        if (
            data is None
            or set(data) != {"VALUE"}
            or base64.b64decode(data["VALUE"]).decode() != values[i % M]
        ):
            return False
    listed = kube.custom.list_namespaced_custom_object(
        "tmpfs-secrets.io", "v1alpha1", namespace, "externalsecrets"
    )
    ready = [
        o
        for o in listed["items"]
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (o.get("status") or {}).get("conditions") or []
        )
    ]
    return len(ready) == N


def test_sigkill_mid_sync_and_an_api_server_restart(
    counted: Operator,
    control_plane: ControlPlane,
    aws: MotoServer,
    namespace: str,
    kube: Kube,
    apply_yaml: Callable[..., str],
) -> None:
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    values = {i: f"value-{i}" for i in range(M)}
    for i in range(M):
        sm.create_secret(Name=f"faults/{namespace}/{i}", SecretString=values[i])
    apply_examples(apply_yaml, namespace, "secretstore-secretsmanager.yaml")
    start = control_plane.audit_offset()

    created = threading.Event()

    def create_all() -> None:  # one at a time, so the operator is surely killed in the middle
        for i in range(N):
            kube.custom.create_namespaced_custom_object(
                "tmpfs-secrets.io", "v1alpha1", namespace, "externalsecrets", body(i, namespace)
            )
        created.set()

    creator = threading.Thread(target=create_all, daemon=True)
    creator.start()
    wait_until(
        "a few Secrets written",
        lambda: len(kube.core.list_namespaced_secret(namespace).items) >= 30,
        timeout=60,
    )
    assert counted.process is not None and counted.process.popen is not None
    os.killpg(counted.pid, signal.SIGKILL)
    counted.process.popen.wait(10)
    killed_with = len(kube.core.list_namespaced_secret(namespace).items)
    assert killed_with < N  # really in the middle
    counted.start()
    creator.join(120)
    assert created.is_set()
    wait_until("all synced after the SIGKILL", lambda: all_synced(kube, namespace, values), timeout=180)

    # Nothing written twice: one create per Secret, at most one status write per object.
    secret_writes = writes(control_plane, start, "secrets")
    assert set(writes(control_plane, start, "secrets", succeeded=False)) == {f"es-{i:03d}" for i in range(N)}
    assert max(secret_writes.values()) == 1, secret_writes.most_common(3)
    status_writes = writes(control_plane, start, "externalsecrets", "status")
    assert max(status_writes.values()) == 1, status_writes.most_common(3)

    # kube-apiserver goes away; meanwhile one source changes in AWS.
    offset = control_plane.audit_offset()
    control_plane.stop_apiserver()
    try:
        values[7] = "changed-while-the-api-server-was-down"
        sm.put_secret_value(SecretId=f"faults/{namespace}/7", SecretString=values[7])
        calls = aws.call_counts()["BatchGetSecretValue"]
        wait_until(
            "the operator refreshed meanwhile",
            lambda: aws.call_counts()["BatchGetSecretValue"] >= calls + 3,
            timeout=60,
        )
    finally:
        control_plane.start_apiserver_again()
    wait_until(
        "all synced after the API server's restart", lambda: all_synced(kube, namespace, values), timeout=180
    )
    changed = {f"es-{i:03d}" for i in range(N) if i % M == 7}
    secret_writes = writes(control_plane, offset, "secrets")
    assert set(secret_writes) == changed and max(secret_writes.values()) == 1, secret_writes
    assert counted.alive()
    # No Secret was ever emptied: every write carried the value.
    for i in range(N):
        assert kube.secret_data(f"es-{i:03d}", namespace) == {"VALUE": values[i % M]}
