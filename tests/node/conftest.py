"""Fixtures for the tests on pods that run: the bubble cluster and small helpers over kubectl.

Every test here is marked `node`; they need the whole cluster, so they run inside the bubble
(`make test`, or `python -m tests.cluster.bubble -- python -m pytest tests/node`). The operator
they need runs as admins run it: installed from the chart with the image `make image` built
(`charted`, `injecting`, `operator`); tests/integration runs it as a process instead.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import operator_image
from tests.cluster.aws import MotoServer
from tests.cluster.bubble import NODE_IP
from tests.cluster.chart import CRD_NAMES, Release, local_values, merge
from tests.cluster.cluster import Cluster
from tests.cluster.polling import wait_until
from tests.cluster.webhook import wait_injecting

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.node)


@dataclass
class Pods:
    """kubectl helpers for one namespace of the bubble cluster."""

    cluster: Cluster
    namespace: str

    @property
    def image(self) -> str:
        return self.cluster.image

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl("-n", self.namespace, *args, input=input, check=check)

    def apply(self, manifest: str) -> None:
        self.kubectl("apply", "-f", "-", input=manifest)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", kind, name, "-o", "json").stdout))

    def wait_running(self, name: str, timeout: float = 120.0) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            pod = self.get("pod", name)
            conditions = pod.get("status", {}).get("conditions") or []
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                return pod
            return None

        try:
            return dict(wait_until(f"pod {self.namespace}/{name} Running and Ready", ready, timeout))
        except AssertionError:
            described = self.kubectl("describe", "pod", name, check=False).stdout
            raise AssertionError(f"pod {name} did not become Ready:\n{described[-3000:]}") from None

    def exec(self, pod: str, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.kubectl("exec", pod, "--", *command, check=check)

    def logs(self, pod: str) -> str:
        return self.kubectl("logs", pod).stdout

    def restart_count(self, pod: str) -> int:
        statuses = self.get("pod", pod)["status"].get("containerStatuses") or []
        return sum(int(s["restartCount"]) for s in statuses)

    def mount_type(self, pod: str, path: str) -> str | None:
        """The filesystem type of `path` as the container sees it in its own /proc/mounts."""
        mounts = self.exec(pod, "cat", "/proc/mounts").stdout
        for line in mounts.splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[1] == path:
                return fields[2]
        return None


@pytest.fixture
def pods(cluster: Cluster, namespace: str) -> Pods:
    return Pods(cluster, namespace)


def pod_manifest(name: str, image: str, command: str, extra_spec: str = "", container_extra: str = "") -> str:
    """A busybox pod running `command` with `sh -c`; the extras are YAML indented for their place."""
    return f"""apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    imagePullPolicy: Never
    command: [sh, -c, {json.dumps(command)}]
{container_extra}{extra_spec}"""


@dataclass
class Charted:
    """The operator installed from its chart (one replica, every namespace), as admins run it.

    One release serves a test module; stopping it goes through Kubernetes (scale to 0), and the
    next test that asks for it gets it back. The module's tests share its cache too: moto is
    emptied between tests, so each test reads remote keys of its own. Its health and metrics
    port is read on the pod's address, as Prometheus and kubelet read it.
    """

    release: Release

    def requests(self, route: str = "/mutate-pods") -> int:
        """How many admission requests the operator's webhook has received on `route`."""
        return sum(webhook_requests(text, route) for _, text in self.release.http_get("/metrics").values())

    def probe(self, path: str) -> tuple[int, str]:
        (answer,) = self.release.http_get(path).values()
        return answer

    def stop(self) -> None:
        self.release.scale(0)

    def running(self, namespace: str) -> Charted:
        """Back up if a test stopped it, and its webhook injecting pods of `namespace`."""
        if len(self.release.ready_pods()) != 1:
            self.release.scale(1)
        wait_injecting(self.release.cluster, namespace)
        return self

    def log_text(self) -> str:
        return self.release.logs()


def webhook_requests(metrics: str, route: str = "/mutate-pods") -> int:
    for line in metrics.splitlines():
        if line.startswith(f'tmpfs_secrets_webhook_requests_total{{route="{route}"}}'):
            return int(float(line.split()[-1]))
    return 0


@pytest.fixture(scope="module")
def charted(cluster: Cluster, crds: Path, moto_session: MotoServer) -> Iterator[Charted]:
    image = operator_image.import_into(cluster.node)
    pod_aws = MotoServer(host=NODE_IP).start()  # the node's address: the operator's pod reaches it
    system = f"tmpfs-secrets-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", system)
    cluster.kubectl("label", "namespace", system, "pod-security.kubernetes.io/enforce=restricted")
    values = merge(
        local_values(image, pod_aws.endpoint),
        # The tests' SecretStores read AWS with the operator's identity (one tenant per test).
        {"operator": {"allowOperatorIdentityForSecretStores": True, "minRefreshInterval": 1}},
    )
    release = Release(cluster, "tsn", system, values)
    try:
        release.adopt_crds(CRD_NAMES)
        release.install()
        yield Charted(release)
    finally:
        print("\n--- operator log:\n" + "\n".join(release.logs().splitlines()[-60:]))
        release.helm("uninstall", release.name, "-n", system, "--ignore-not-found")
        cluster.kubectl("delete", "namespace", system, "--wait=false", check=False)
        pod_aws.stop()


@pytest.fixture
def injecting(charted: Charted, aws: MotoServer, namespace: str) -> Charted:
    """The chart's operator, running and injecting pods of this test's namespace."""
    return charted.running(namespace)


@pytest.fixture
def operator(charted: Charted, aws: MotoServer, namespace: str) -> Charted:
    """On pods that run, the operator is the chart's (tests/conftest.py runs it as a process)."""
    return charted.running(namespace)
