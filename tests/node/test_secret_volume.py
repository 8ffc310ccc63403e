"""A Secret volume is tmpfs in the container, and a change of the Secret reaches the running container.

The delay from the Secret's update to the new value in the container's file is printed for
kubelet's default `syncFrequency` (1m, what users get) and for a short one (10s); tests never
assert on it.
"""

from __future__ import annotations

import base64
import json
import time
import uuid

from tests.cluster.cluster import DEFAULT_SYNC_FREQUENCY, Cluster
from tests.node.conftest import Pods, pod_manifest, wait_until

VOLUMES = """  volumes:
  - name: creds
    secret: {secretName: creds}
"""
MOUNTS = """    volumeMounts:
    - {name: creds, mountPath: /creds, readOnly: true}
"""


def _set_secret(pods: Pods, value: str) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds"},
        "data": {"password": base64.b64encode(value.encode()).decode()},
    }
    pods.apply(json.dumps(secret))


def _read(pods: Pods, pod: str) -> str:
    return pods.exec(pod, "cat", "/creds/password", check=False).stdout


def _rotation_delay(pods: Pods, pod: str, timeout: float) -> float:
    new = f"v2-{uuid.uuid4().hex}"
    started = time.monotonic()
    _set_secret(pods, new)
    wait_until("the new value in the container's file", lambda: _read(pods, pod) == new, timeout, 0.2)
    return time.monotonic() - started


def test_a_secret_volume_is_tmpfs_and_changes_in_place(pods: Pods, cluster: Cluster) -> None:
    first = f"v1-{uuid.uuid4().hex}"
    _set_secret(pods, first)
    pods.apply(pod_manifest("reader", pods.image, "sleep 3600", VOLUMES, MOUNTS))
    pods.wait_running("reader")
    assert pods.mount_type("reader", "/creds") == "tmpfs"
    assert _read(pods, "reader") == first

    assert cluster.node is not None
    short = cluster.node.sync_frequency
    delay_short = _rotation_delay(pods, "reader", 120)
    assert pods.restart_count("reader") == 0

    cluster.node.restart_kubelet(DEFAULT_SYNC_FREQUENCY)
    try:
        delay_default = _rotation_delay(pods, "reader", 240)
        assert pods.restart_count("reader") == 0
    finally:
        cluster.node.restart_kubelet(short)
    assert pods.mount_type("reader", "/creds") == "tmpfs"
    print(
        f"\nSecret update to the file in a running container: {delay_short:.1f}s with syncFrequency "
        f"{short}, {delay_default:.1f}s with the default {DEFAULT_SYNC_FREQUENCY}; restarts: 0"
    )
