"""Fixtures for the tests on pods that run: the bubble cluster and small helpers over kubectl.

Every test here is marked `node`; they need the whole cluster, so they run inside the bubble
(`make test`, or `python -m tests.cluster.bubble -- python -m pytest tests/node`).
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.aws import MotoServer
from tests.cluster.cluster import Cluster
from tests.cluster.operator import Operator, operator_env
from tests.cluster.polling import wait_until
from tests.cluster.webhook import OperatorWebhook

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
class Injecting:
    """The operator with its webhooks enabled and routed through a Service, for one test."""

    operator: Operator
    hook: OperatorWebhook

    def requests(self, route: str = "/mutate-pods") -> int:
        """How many admission requests the operator's webhook has received on `route`."""
        with urllib.request.urlopen(f"{self.hook.health_url}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        for line in text.splitlines():
            if line.startswith(f'tmpfs_secrets_webhook_requests_total{{route="{route}"}}'):
                return int(line.split()[-1])
        return 0

    def probe(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"{self.hook.health_url}{path}", timeout=10) as answer:
                return int(answer.status), answer.read().decode()
        except urllib.error.HTTPError as e:
            return int(e.code), e.read().decode()


@pytest.fixture
def injecting(
    cluster: Cluster,
    aws: MotoServer,
    crds: Path,
    namespace: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Injecting]:
    """The operator watching this test's namespace, serving its webhooks; configurations removed after."""
    hook = OperatorWebhook.create(cluster.control_plane, tmp_path)
    op = Operator(
        env=operator_env(cluster.control_plane, aws),
        log=tmp_path / "operator.log",
        args=[*hook.operator_args(), "--namespace", namespace],
    )
    op.start()
    try:
        hook.install()
        hook.wait_effective(namespace)
        yield Injecting(op, hook)
    finally:
        hook.uninstall()
        op.stop()
        if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
            print(f"\n--- operator log ({op.log}):\n" + "\n".join(op.log_text().splitlines()[-60:]))
