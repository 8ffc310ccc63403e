"""The operator installed with its Helm chart into the bubble cluster, the way an admin installs it.

    release = Release(cluster, "tmpfs-secrets", "tmpfs-secrets", values)
    release.install()                  # helm install, then waits for the operator pods to be Ready
    release.pods()                     # the operator pods' names
    release.logs()                     # every operator pod's log
    release.scale(0) / release.delete_pod(name) / release.upgrade(values) / release.uninstall()

`local_values()` gives what the local node needs: the image built by `make image` (imported into
the node's containerd, never pulled), the emulated AWS on the node's address (reachable from
pods), and IRSA as on EKS: a role ARN and a projected ServiceAccount token, exchanged with the
emulated STS, so the operator's pod holds no AWS keys.
"""

from __future__ import annotations

import ipaddress
import json
import random
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from tests.cluster import binaries
from tests.cluster.bubble import SERVICE_CIDR
from tests.cluster.polling import wait_until

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tmpfs-secrets"
# The role the operator's pod assumes with its projected token (moto's default account).
OPERATOR_ROLE_ARN = "arn:aws:iam::123456789012:role/tmpfs-secrets-operator"
CRD_NAMES = tuple(
    f"{plural}.tmpfs-secrets.io" for plural in ("externalsecrets", "secretstores", "clustersecretstores")
)


class KubeCluster(Protocol):
    @property
    def kubeconfig(self) -> Path: ...

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]: ...


def helm(kubeconfig: Path, *args: str, timeout: float = 300) -> str:
    """Run the project's helm against `kubeconfig`; raises with helm's stderr on failure."""
    result = subprocess.run(
        [str(binaries.path("helm")), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args[:2])} failed: {result.stderr.strip()}")
    return result.stdout


def image_values(image: str, pull_policy: str = "Never") -> dict[str, Any]:
    """The chart's `image` values for a local image name (`repository:tag`)."""
    repository, _, tag = image.rpartition(":")
    return {"image": {"repository": repository, "tag": tag, "pullPolicy": pull_policy}}


def local_values(image: str, aws_endpoint: str, region: str = "us-east-1") -> dict[str, Any]:
    """Values for the local node: the local image, the emulated AWS, IRSA with the operator's role."""
    values = image_values(image)
    values["irsa"] = {"roleArn": OPERATOR_ROLE_ARN}
    values["operator"] = {
        "awsRegion": region,
        "logFormat": "json",
        # The emulated AWS stands in for AWS's public endpoints; no AWS key is given.
        "extraEnv": [{"name": "AWS_ENDPOINT_URL", "value": aws_endpoint}],
    }
    return values


def new_namespace(cluster: KubeCluster, prefix: str, *labels: str) -> str:
    """A namespace of its own for a release or its apps, with `labels` (KEY=VALUE)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    if labels:
        cluster.kubectl("label", "namespace", name, *labels)
    return name


def direct_values(cluster: KubeCluster, port: int = 8443) -> dict[str, Any]:
    """Direct delivery on a node without cluster DNS: the Direct Service gets a fixed, free
    ClusterIP, which the chart's certificate names and the injected agents dial."""
    listed = json.loads(cluster.kubectl("get", "services", "-A", "-o", "json").stdout)["items"]
    used = {s["spec"].get("clusterIP") for s in listed}
    # The range's first addresses are the band Kubernetes keeps for static ClusterIPs (KEP-3070).
    band = list(ipaddress.ip_network(SERVICE_CIDR).hosts())[16:250]
    address = str(random.choice([a for a in band if str(a) not in used]))
    return {"direct": {"url": f"https://{address}:{port}", "port": port, "service": {"clusterIP": address}}}


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` over `base`, recursively for mappings (as helm merges values files)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class Release:
    """One Helm release of the chart in `namespace`."""

    cluster: KubeCluster
    name: str
    namespace: str
    values: dict[str, Any] = field(default_factory=dict)

    def helm(self, *args: str, timeout: float = 300) -> str:
        return helm(self.cluster.kubeconfig, *args, timeout=timeout)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return self.cluster.kubectl("-n", self.namespace, *args, input=input, check=check).stdout

    def _with_values(self, command: str, *extra: str) -> str:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="values-") as f:
            yaml.safe_dump(self.values, f)
            f.flush()
            return self.helm(
                command, self.name, str(CHART), "--namespace", self.namespace, "--values", f.name, *extra
            )

    def adopt_crds(self, names: Sequence[str]) -> None:
        """Hand CRDs that already exist (applied with kubectl) to this release, as Helm documents
        for adopting resources; the chart then owns and upgrades them (and keeps them on uninstall)."""
        for crd in names:
            if self.cluster.kubectl("get", "crd", crd, check=False).returncode != 0:
                continue
            self.cluster.kubectl("label", "crd", crd, "--overwrite", "app.kubernetes.io/managed-by=Helm")
            self.cluster.kubectl(
                "annotate",
                "crd",
                crd,
                "--overwrite",
                f"meta.helm.sh/release-name={self.name}",
                f"meta.helm.sh/release-namespace={self.namespace}",
            )

    def install(self, wait: bool = True, replicas: int | None = None) -> Release:
        self._with_values("install", "--create-namespace")
        if wait:
            self.wait_ready(replicas if replicas is not None else int(self.values.get("replicaCount", 1)))
        return self

    def upgrade(self, values: dict[str, Any] | None = None, wait: bool = True) -> str:
        if values is not None:
            self.values = values
        out = self._with_values("upgrade")
        if wait:
            self.wait_ready(int(self.values.get("replicaCount", 1)))
        return out

    def uninstall(self) -> None:
        self.helm("uninstall", self.name, "--namespace", self.namespace, "--wait")

    def manifest(self) -> list[dict[str, Any]]:
        text = self.helm("get", "manifest", self.name, "--namespace", self.namespace)
        return [doc for doc in yaml.safe_load_all(text) if doc]

    # --- the operator's pods ---------------------------------------------------------------------

    def pod_objects(self, terminating: bool = False) -> list[dict[str, Any]]:
        out = self.kubectl("get", "pods", "-l", f"app.kubernetes.io/instance={self.name}", "-o", "json")
        items = json.loads(out)["items"]
        return [p for p in items if terminating or not p["metadata"].get("deletionTimestamp")]

    def pods(self) -> list[str]:
        return [p["metadata"]["name"] for p in self.pod_objects()]

    def ready_pods(self) -> list[str]:
        def ready(pod: dict[str, Any]) -> bool:
            conditions = pod.get("status", {}).get("conditions") or []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        return [p["metadata"]["name"] for p in self.pod_objects() if ready(p)]

    def wait_ready(self, replicas: int = 1, timeout: float = 180) -> list[str]:
        def enough() -> list[str] | None:
            pods = self.pod_objects()
            ready = self.ready_pods()
            return ready if len(ready) == replicas and len(pods) == replicas else None

        try:
            return list(wait_until(f"{replicas} Ready operator pod(s) of {self.name}", enough, timeout))
        except AssertionError:
            described = self.kubectl("describe", "pods", "-l", f"app.kubernetes.io/instance={self.name}")
            events = self.kubectl("get", "events", "--sort-by=.lastTimestamp")
            raise AssertionError(
                f"the operator pods did not become Ready:\n{described[-4000:]}\n{events[-2000:]}"
            ) from None

    def deployment(self) -> str:
        (name,) = [d["metadata"]["name"] for d in self.manifest() if d["kind"] == "Deployment"]
        return str(name)

    def scale(self, replicas: int) -> None:
        self.kubectl("scale", "deployment", self.deployment(), f"--replicas={replicas}")
        if replicas == 0:
            # Gone, not only terminating: a terminating pod still serves (kube-proxy sends a
            # Service's traffic to terminating endpoints when no other is left).
            wait_until(
                f"no operator pod of {self.name}", lambda: not self.pod_objects(terminating=True) or None, 120
            )
        else:
            self.wait_ready(replicas)

    def delete_pod(self, pod: str) -> None:
        self.kubectl("delete", "pod", pod, "--wait=true")

    def http_get(self, path: str, port: int = 8080) -> dict[str, tuple[int, str]]:
        """GET `path` on each operator pod's address (the health and metrics port by default), as
        kubelet's probes and Prometheus do: {pod: (status, body)}."""
        out = {}
        for pod in self.pod_objects():
            url = f"http://{pod['status']['podIP']}:{port}{path}"
            try:
                with urllib.request.urlopen(url, timeout=10) as answer:
                    out[pod["metadata"]["name"]] = (int(answer.status), answer.read().decode())
            except urllib.error.HTTPError as e:
                out[pod["metadata"]["name"]] = (int(e.code), e.read().decode())
        return out

    def logs(self) -> str:
        """The log of every operator pod there is now (previous containers included when they exist)."""
        out = []
        for pod in self.pods():
            out.append(self.kubectl("logs", pod, "--all-containers", check=False))
            out.append(self.kubectl("logs", pod, "--all-containers", "--previous", check=False))
        return "\n".join(out)


def wait_seconds(what: str, check: Any, timeout: float = 120) -> float:
    """Wait until `check()` is truthy; return how long it took (for figures, never for asserts)."""
    started = time.monotonic()
    wait_until(what, check, timeout)
    return time.monotonic() - started
