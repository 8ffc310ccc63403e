"""The whole local cluster in the bubble: the control plane plus a real node, for tests and people.

    from tests.cluster.cluster import Cluster

    with Cluster() as cluster:            # inside the bubble (python -m tests.cluster.bubble -- ...)
        cluster.kubeconfig                 # admin kubeconfig (server https://127.0.0.1:<port>)
        cluster.kubectl("get", "nodes")    # subprocess.CompletedProcess
        cluster.image                      # workload image: busybox (sh, grep, cat, sleep, wget, httpd)
        cluster.control_plane              # ControlPlane: .ca, .kubeconfig_for(user, groups), .api_url
        cluster.node                       # Node (None with with_node=False): .import_images(archive),
                                           # .restart_kubelet(sync_frequency), .ctr(...)

Pods use `imagePullPolicy: Never`. The API server runs with the normal (lease) endpoint
reconciler, advertises the node's address and resolves `service` references of webhooks to
ClusterIPs, which kube-proxy's rules answer inside the bubble. It must run inside a bubble:
outside one, the node would take the machine's own addresses and Services would dial private
ranges, so `start()` refuses.

Everything of the run lives under the run's folder (`runs.current()`); `stop(keep_logs)` deletes
the pods first, stops every component, scrubs the rest and copies the logs to
`.cache/test-logs/` when asked.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import yaml

from tests.cluster import bubble, forward, runs
from tests.cluster.bubble import NODE_IP, SERVICE_CIDR
from tests.cluster.control_plane import ControlPlane, Options
from tests.cluster.node import DEFAULT_SYNC_FREQUENCY, NODE_NAME, Node

__all__ = ["DEFAULT_SYNC_FREQUENCY", "NODE_NAME", "Cluster"]


def bubble_options() -> Options:
    return Options(
        bind_address="0.0.0.0",
        advertise_address=NODE_IP,
        endpoint_reconciler="lease",
        service_cidr=SERVICE_CIDR,
        authorization_modes="Node,RBAC",
        serving_ips=[NODE_IP],
        apiserver_args=["--kubelet-preferred-address-types=InternalIP"],
    )


class Cluster:
    """Control plane + node in the current bubble."""

    def __init__(self, with_node: bool = True, sync_frequency: str = "10s") -> None:
        self.run = runs.current()
        self.with_node = with_node
        self.control_plane = ControlPlane(workdir=self.run.dir / "control-plane", options=bubble_options())
        self.node: Node | None = None
        self._sync_frequency = sync_frequency

    @property
    def kubeconfig(self) -> Path:
        return self.control_plane.kubeconfig

    def serve_host_port(self) -> Path:
        """Relay the host port the bubble wrapper handed over (`--forward`) to the API server.

        Returns the kubeconfig to print for a host shell: one whose server is that host port, or
        the admin kubeconfig when the wrapper forwarded nothing.
        """
        fd = os.environ.get(bubble.FORWARD_FD_ENV)
        if fd is None:
            return self.kubeconfig
        forward.serve(int(fd), ("127.0.0.1", self.control_plane.api_port))
        config = yaml.safe_load(self.kubeconfig.read_text())
        config["clusters"][0]["cluster"]["server"] = (
            f"https://127.0.0.1:{os.environ[bubble.FORWARD_PORT_ENV]}"
        )
        path = self.control_plane.workdir / "host.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    @property
    def image(self) -> str:
        """The busybox workload image's name (use it with imagePullPolicy: Never)."""
        assert self.node is not None and self.node.images is not None, "the cluster has no node"
        return self.node.images.workload

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.control_plane.kubectl(*args, input=input, check=check)

    def start(self) -> Cluster:
        if not bubble.inside():
            raise RuntimeError(
                "the cluster runs only inside the bubble: run through `make test` / `make cluster`, or "
                "`python -m tests.cluster.bubble -- <command>`"
            )
        started = time.monotonic()
        plane = self.control_plane
        client = plane.ca.issue(
            "kube-apiserver-kubelet-client", organizations=["system:masters"], client=True
        )
        crt, key = client.write(plane.pki, "kubelet-client")
        (plane.pki / "ca.crt").parent.mkdir(parents=True, exist_ok=True)
        (plane.pki / "ca.crt").write_bytes(plane.ca.cert)
        plane.options.apiserver_args += [
            f"--kubelet-client-certificate={crt}",
            f"--kubelet-client-key={key}",
            f"--kubelet-certificate-authority={plane.pki / 'ca.crt'}",
        ]
        print("[cluster] starting the control plane ...", flush=True)
        plane.start()
        print(f"[cluster] control plane ready in {time.monotonic() - started:.0f}s", flush=True)
        if self.with_node:
            try:
                self.node = Node(plane, self.run, self._sync_frequency).start()
            except BaseException:
                self.stop(keep_logs=True)
                raise
        return self

    def stop(self, keep_logs: bool = False) -> Path | None:
        if self.node is not None:
            self.node.stop()
        kept = self.control_plane.stop(keep_logs=keep_logs)
        runs.scrub(self.run, self.control_plane.workdir)
        return kept

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, exc_type: object, *_: object) -> None:
        kept = self.stop(keep_logs=exc_type is not None)
        if kept:
            print(f"cluster logs kept in {kept}")
