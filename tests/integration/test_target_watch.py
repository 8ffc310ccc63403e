"""The target Secrets through one watch, counted in the API server's audit log: an idle interval
costs no request, a restart one LIST of Secrets and no GET, and a Secret deleted or edited by
hand is restored (for Merge targets, only the keys the operator owns)."""

from __future__ import annotations

import base64
import collections
import json
from collections.abc import Callable

import boto3

from tests.cluster.aws import MotoServer
from tests.cluster.control_plane import ControlPlane
from tests.cluster.operator import Operator
from tests.integration.conftest import Kube, apply_examples, wait_until

N = 12
FETCHES = ("BatchGetSecretValue", "GetSecretValue")


def requests(plane: ControlPlane, since: int) -> collections.Counter[str]:
    """`VERB resource[/subresource]` of the operator's requests since an audit offset."""
    return collections.Counter(
        f"{r['verb']} {r['resource']}{'/' + r['subresource'] if r['subresource'] else ''}"
        for r in plane.operator_requests(since)
    )


def fetches(aws: MotoServer) -> int:
    return sum(aws.call_counts()[op] for op in FETCHES)


def external_secret(name: str, key: str, target: str, policy: str = "Owner") -> str:
    return json.dumps(
        {
            "apiVersion": "tmpfs-secrets.io/v1alpha1",
            "kind": "ExternalSecret",
            "metadata": {"name": name},
            "spec": {
                "refreshInterval": "2s",
                "secretStoreRef": {"name": "aws-secrets"},
                "target": {"name": target, "creationPolicy": policy},
                "data": [{"secretKey": "VALUE", "remoteRef": {"key": key}}],
            },
        }
    )


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_idle_restart_and_drift_through_one_watch(
    counted: Operator,
    control_plane: ControlPlane,
    aws: MotoServer,
    namespace: str,
    kube: Kube,
    apply_yaml: Callable[..., str],
) -> None:
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    for i in range(N):
        sm.create_secret(Name=f"watch/{namespace}/{i}", SecretString=f"value-{i}")
    apply_examples(apply_yaml, namespace, "secretstore-secretsmanager.yaml")
    kube.core.create_namespaced_secret(
        namespace,
        {
            "metadata": {
                "name": "merged",
                "namespace": namespace,
                "annotations": {"tmpfs-secrets.io/allow-merge": "true"},  # opts in to Merge
            },
            "data": {"THEIRS": b64("theirs")},
        },
    )
    for i in range(N):
        apply_yaml(external_secret(f"es-{i}", f"watch/{namespace}/{i}", f"target-{i}"), namespace=namespace)
    apply_yaml(external_secret("merger", f"watch/{namespace}/0", "merged", "Merge"), namespace=namespace)
    for i in range(N):
        kube.wait_ready(f"es-{i}", namespace)
    kube.wait_ready("merger", namespace)

    # An idle stretch with several refreshes of every source: not one request.
    offset = control_plane.audit_offset()
    calls = fetches(aws)
    wait_until("three refreshes", lambda: fetches(aws) >= calls + 3, timeout=30)
    assert requests(control_plane, offset) == collections.Counter()

    # A restart: one LIST of the target Secrets, no GET of any, nothing written.
    counted.stop()
    offset = control_plane.audit_offset()
    versions = {
        s.metadata.name: s.metadata.resource_version
        for s in kube.core.list_namespaced_secret(namespace).items
    }
    counted.start()
    calls = fetches(aws)
    wait_until("every source refreshed by the new process", lambda: fetches(aws) >= calls + 3, timeout=30)
    seen = requests(control_plane, offset)
    assert seen["list secrets"] == 1, seen
    assert seen["get secrets"] == 0, seen
    written = {k: v for k, v in seen.items() if k.split()[0] in ("create", "patch", "update", "delete")}
    assert written == {}, seen
    after = {
        s.metadata.name: s.metadata.resource_version
        for s in kube.core.list_namespaced_secret(namespace).items
    }
    assert after == versions

    # Deleted by hand: back within seconds, with the same value.
    kube.core.delete_namespaced_secret("target-3", namespace)
    wait_until(
        "target-3 restored",
        lambda: kube.secret_data("target-3", namespace) == {"VALUE": "value-3"},
        timeout=15,
    )

    # Edited by hand (a value changed, a key added): the operator's key is restored.
    kube.core.patch_namespaced_secret("target-5", namespace, {"data": {"VALUE": b64("tampered")}})
    wait_until(
        "target-5 restored",
        lambda: (kube.secret_data("target-5", namespace) or {}).get("VALUE") == "value-5",
        timeout=15,
    )

    # Its label removed: the watch no longer selects it; it is labelled and restored again.
    kube.core.patch_namespaced_secret(
        "target-6",
        namespace,
        {"metadata": {"labels": {"tmpfs-secrets.io/target": None}}, "data": {"VALUE": b64("x")}},
    )
    wait_until(
        "target-6 restored",
        lambda: (kube.secret_data("target-6", namespace) or {}).get("VALUE") == "value-6",
        timeout=15,
    )

    # A Merge target: the operator's key is restored, someone else's keys are theirs to change.
    offset = control_plane.audit_offset()
    kube.core.patch_namespaced_secret("merged", namespace, {"data": {"THEIRS": b64("changed by them")}})
    wait_until(
        "the owner's change seen",
        lambda: (kube.secret_data("merged", namespace) or {}).get("THEIRS") == "changed by them",
        timeout=15,
    )
    calls = fetches(aws)
    wait_until("a refresh", lambda: fetches(aws) >= calls + 2, timeout=30)
    assert not [r for r in control_plane.operator_requests(offset) if r["resource"] == "secrets"]
    kube.core.patch_namespaced_secret("merged", namespace, {"data": {"VALUE": b64("tampered")}})
    wait_until(
        "the Merge target's own key restored",
        lambda: kube.secret_data("merged", namespace) == {"THEIRS": "changed by them", "VALUE": "value-0"},
        timeout=15,
    )
