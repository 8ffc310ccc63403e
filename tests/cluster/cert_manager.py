"""cert-manager next to the test cluster: its CRDs, its controller and its cainjector, as processes.

For the chart's `certManager.enabled` mode. The binaries come from tools/cert-manager (built like
the cluster's other binaries, `make tools`); the CRDs from the same cert-manager module's source,
`deploy/crds/`, which `go mod download -json` places in the Go module cache (no download from a
web site). Like kube-controller-manager, both run on the host of the API server with a kubeconfig:

    with CertManager(kubeconfig, logs).start() as cm:   # applies the CRDs, starts both, waits
        ...
    # stopped (the CRDs stay: objects of other tests may still use them)

cert-manager's own webhook (defaulting and validation of its objects) is not run: the objects the
chart renders are complete, and the API server's CRD schemas validate them.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from tests.cluster import binaries
from tests.cluster.processes import Process, wait_for

MODULE = "github.com/cert-manager/cert-manager"
# Secrets that ClusterIssuers refer to live here (cert-manager's --cluster-resource-namespace).
NAMESPACE = "cert-manager"
CRD_GROUPS = ("cert-manager.io", "acme.cert-manager.io")


def module_dir() -> Path:
    """The cert-manager module's source in the Go module cache, downloaded through the Go proxy
    when it is not there yet (`make tools` does that outside the network bubble)."""
    env = dict(os.environ, GOTOOLCHAIN="local", GOFLAGS="-mod=mod")
    result = subprocess.run(
        [binaries._go(), "mod", "download", "-json", f"{MODULE}@{binaries.CERT_MANAGER_VERSION}"],
        cwd=binaries.REPO / "tools" / "cert-manager",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    info = json.loads(result.stdout) if result.stdout.strip() else {}
    if result.returncode != 0 or not info.get("Dir"):
        why = info.get("Error") or result.stderr.strip()
        raise RuntimeError(
            f"could not get {MODULE}@{binaries.CERT_MANAGER_VERSION} into the Go module cache "
            f"(run `make tools` where the Go proxy is reachable): {why}"
        )
    return Path(info["Dir"])


def crd_documents() -> list[dict[str, Any]]:
    """cert-manager's CRDs, as its release's deploy/crds/ holds them (plain YAML)."""
    folder = module_dir() / "deploy" / "crds"
    docs = []
    for path in sorted(folder.glob("*.yaml")):
        text = path.read_text()
        if "{{" in text:
            # Older releases templated labels into these files; this version's are plain YAML.
            raise RuntimeError(f"{path} holds Helm templating; render it before applying")
        docs += [d for d in yaml.safe_load_all(text) if d and d.get("kind") == "CustomResourceDefinition"]
    groups = {d["spec"]["group"] for d in docs}
    if groups != set(CRD_GROUPS):
        raise RuntimeError(f"unexpected CRD groups in {folder}: {sorted(groups)}")
    return docs


class CertManager:
    """cert-manager's controller and cainjector against the cluster of `kubeconfig`."""

    def __init__(self, kubeconfig: Path, logs: Path) -> None:
        self.kubeconfig = kubeconfig
        self.logs = logs
        self.processes: list[Process] = []

    def kubectl(self, *args: str, input: str | None = None) -> str:
        result = subprocess.run(
            [str(binaries.path("kubectl")), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args[:3])} failed: {result.stderr.strip()}")
        return result.stdout

    def install_crds(self) -> list[str]:
        docs = crd_documents()
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump_all(docs))
        names = [d["metadata"]["name"] for d in docs]
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in names))
        return names

    def start(self) -> CertManager:
        try:
            self.install_crds()
            if self.kubectl("get", "namespace", NAMESPACE, "--ignore-not-found", "-o", "name").strip() == "":
                self.kubectl("create", "namespace", NAMESPACE)
            self._spawn(
                "cert-manager-controller",
                [
                    binaries.path("cert-manager-controller"),
                    f"--kubeconfig={self.kubeconfig}",
                    f"--cluster-resource-namespace={NAMESPACE}",
                ],
            )
            self._spawn(
                "cert-manager-cainjector",
                # Webhook configurations only, one instance, no metrics (tools/cert-manager).
                [binaries.path("cert-manager-cainjector"), f"--kubeconfig={self.kubeconfig}"],
            )
            # Both log once their informers have synced and their controllers run.
            wait_for("cert-manager's controllers", self._started, 60, 0.3, *self.processes)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, argv: list[str | os.PathLike[str]]) -> None:
        self.processes.append(Process(name, argv, self.logs / f"{name}.log").start())

    def _started(self) -> bool:
        controller, cainjector = self.processes
        return "starting controllers" in controller.tail(200) and "Starting workers" in cainjector.tail(200)

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(f"--- {p.name} ({p.log}):\n{p.tail(lines)}" for p in self.processes)

    def __enter__(self) -> CertManager:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
