"""A real node inside the bubble: containerd, runc, the bridge CNI, kubelet, kube-scheduler, kube-proxy.

Everything of the node lives under one folder of the run (containerd's root and state, kubelet's
root, pod logs, CNI config and IPAM data) and under the run's own cgroup root, so runs never
collide and teardown (or a later run's scrub, see `runs.py`) finds all of it. The settings follow
what this kind of machine needs: no negative oom_score_adj (`restrict_oom_score_adj`), cgroup v1
(`failCgroupV1: false`), no registry (images imported with `ctr`, the sandbox image pinned),
pod network namespaces under containerd's state folder instead of /run/netns.

kube-proxy exits once when the node's addresses first appear ("NodeIPs changed"), so it is
started after the node is Ready and restarted by a watchdog whenever it exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.cluster import binaries, runs
from tests.cluster.bubble import BRIDGE, NODE_IP, POD_CIDR
from tests.cluster.control_plane import ControlPlane, http_ok
from tests.cluster.images import Images, busybox_images
from tests.cluster.processes import Process, free_port, wait_for

NODE_NAME = "tmpfs-secrets-node"
READY_TIMEOUT = 180.0
DEFAULT_SYNC_FREQUENCY = "1m"  # kubelet's own default, what users get
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")


def _say(message: str) -> None:
    print(f"[node] {message}", flush=True)


class Node:
    """One node registered with `control_plane`; its files under `folder`, its cgroups under `run.cgroup`."""

    def __init__(self, control_plane: ControlPlane, run: runs.Run, sync_frequency: str = "10s") -> None:
        self.control_plane = control_plane
        self.run = run
        self.folder = run.dir / "node"
        self.logs = control_plane.logs  # kept with the control plane's when a test fails
        self.sync_frequency = sync_frequency
        self.socket = self.folder / "containerd" / "containerd.sock"
        self.images: Images | None = None
        self.containerd: Process | None = None
        self.kubelet: Process | None = None
        self.scheduler: Process | None = None
        self.proxy: Process | None = None
        self.proxy_restarts = 0
        self._stopping = threading.Event()
        self._watchdog: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Node:
        started = time.monotonic()
        self.images = busybox_images()
        self._make_cgroup_root()
        self._write_cni()
        self._start_containerd()
        self._import(self.images.archive)
        self._start_scheduler()
        self._start_kubelet()
        self.wait_ready()
        _say(f"node Ready in {time.monotonic() - started:.0f}s")
        self._start_proxy()
        self._wait_proxy_rules()
        self._watchdog = threading.Thread(target=self._watch_proxy, name="kube-proxy-watchdog", daemon=True)
        self._watchdog.start()
        _say(f"node and kube-proxy ready in {time.monotonic() - started:.0f}s")
        return self

    def stop(self) -> None:
        """Delete the pods, stop the components, end the shims, unmount and remove everything."""
        self._stopping.set()
        if self.kubelet is not None and self.kubelet.alive():
            with contextlib.suppress(Exception):
                self._delete_pods()
        for proc in (self.proxy, self.scheduler, self.kubelet, self.containerd):
            if proc is not None:
                proc.stop()
        # Shims and containers outlive containerd; they are ended by pid, then the mounts go.
        runs.scrub(self.run, self.folder)

    # --- parts -----------------------------------------------------------------------------------

    def _make_cgroup_root(self) -> None:
        """kubelet wants its cgroup root to exist in every hierarchy; cpuset needs its cpus and mems."""
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split()
            if fields[fields.index("-") + 1] != "cgroup":
                continue
            mount = Path(fields[4])
            group = mount / self.run.cgroup
            group.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (mount / name).exists():
                    (group / name).write_text((mount / name).read_text())

    def _write_cni(self) -> None:
        bin_dir = self.folder / "cni" / "bin"
        conf_dir = self.folder / "cni" / "conf"
        bin_dir.mkdir(parents=True, exist_ok=True)
        conf_dir.mkdir(parents=True, exist_ok=True)
        for name in CNI_PLUGINS:
            (bin_dir / name).symlink_to(binaries.path(name))
        subnet_range = {
            "subnet": POD_CIDR,
            "rangeStart": "10.244.1.2",
            "rangeEnd": "10.244.1.254",
            "gateway": NODE_IP,
        }
        config = {
            "cniVersion": "1.0.0",
            "name": "bubble",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[subnet_range]],
                        # Pods reach ClusterIPs (and nothing else) through the node.
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.folder / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (conf_dir / "10-bubble.conflist").write_text(json.dumps(config, indent=2))

    def _containerd_config(self) -> str:
        assert self.images is not None
        base = self.folder / "containerd"
        cri_runtime = "plugins.'io.containerd.cri.v1.runtime'"
        runc_opts = f"{cri_runtime}.containerd.runtimes.runc.options"
        return f"""version = 3
root = '{base / "root"}'
state = '{base / "state"}'
# NRI and the opt plugin would use fixed host paths shared by every run.
disabled_plugins = ['io.containerd.nri.v1.nri', 'io.containerd.internal.v1.opt',
                    'io.containerd.tracing.processor.v1.otlp', 'io.containerd.image-verifier.v1.bindir']

[grpc]
  address = '{self.socket}'

[ttrpc]
  address = '{self.socket}.ttrpc'

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = '{self.images.sandbox}'

[{cri_runtime}]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [{cri_runtime}.containerd]
    default_runtime_name = 'runc'
  [{cri_runtime}.containerd.runtimes.runc]
    runtime_type = 'io.containerd.runc.v2'
  [{runc_opts}]
    BinaryName = '{binaries.path("runc")}'
    SystemdCgroup = false
    Root = '{base / "state" / "runc"}'
  [{cri_runtime}.cni]
    bin_dirs = ['{self.folder / "cni" / "bin"}']
    conf_dir = '{self.folder / "cni" / "conf"}'
"""

    def _env(self) -> dict[str, str]:
        shim_dir = binaries.path("containerd-shim-runc-v2").parent
        return dict(os.environ, PATH=f"{shim_dir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}")

    def _start_containerd(self) -> None:
        config = self.folder / "containerd" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(self._containerd_config())
        self.containerd = Process(
            "containerd",
            [binaries.path("containerd"), "--config", config, "--log-level", "warn"],
            self.logs / "containerd.log",
            env=self._env(),
        ).start()
        wait_for("containerd", lambda: self.ctr("version").returncode == 0, 60, 0.3, self.containerd)

    def ctr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run `ctr` against this node's containerd, in the namespace kubelet uses."""
        return subprocess.run(
            [str(binaries.path("ctr")), "--address", str(self.socket), "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _import(self, archive: Path) -> None:
        started = time.monotonic()
        result = self.ctr("images", "import", "--local", str(archive))
        if result.returncode != 0:
            raise RuntimeError(f"ctr images import {archive} failed: {result.stderr.strip()}")
        _say(f"imported {archive.name} in {time.monotonic() - started:.1f}s")

    def import_images(self, archive: Path) -> None:
        """Import another OCI archive (for example an image built by another harness)."""
        self._import(archive)

    def _start_scheduler(self) -> None:
        kubeconfig = self.control_plane.kubeconfig_for("system:kube-scheduler")
        port = free_port()
        self.scheduler = Process(
            "kube-scheduler",
            [
                binaries.path("kube-scheduler"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                "--profiling=false",
                "--v=1",
            ],
            self.logs / "kube-scheduler.log",
        ).start()

    def _kubelet_config(self, port: int, healthz: int) -> dict[str, Any]:
        pki = self.folder / "pki"
        serving = self.control_plane.ca.issue(NODE_NAME, ip_addresses=[NODE_IP, "127.0.0.1"], server=True)
        crt, key = serving.write(pki, "kubelet")
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{self.run.cgroup}",
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": NODE_IP,
            "port": port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.control_plane.pki / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(crt),
            "tlsPrivateKeyFile": str(key),
            "evictionHard": {},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "resolvConf": "",
            "podLogsDir": str(self.folder / "pod-logs"),
            "syncFrequency": self.sync_frequency,
            "serializeImagePulls": False,
            "staticPodPath": "",
        }

    def _start_kubelet(self) -> None:
        root = self.folder / "kubelet"
        root.mkdir(parents=True, exist_ok=True)
        config = self.folder / "kubelet.yaml"
        self._kubelet_port = getattr(self, "_kubelet_port", free_port())
        self._kubelet_healthz = free_port()
        config.write_text(yaml.safe_dump(self._kubelet_config(self._kubelet_port, self._kubelet_healthz)))
        kubeconfig = self.control_plane.kubeconfig_for(f"system:node:{NODE_NAME}", ["system:nodes"])
        self.kubelet = Process(
            "kubelet",
            [
                binaries.path("kubelet"),
                f"--config={config}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={root}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                "--v=2",
            ],
            self.logs / "kubelet.log",
            env=self._env(),
        ).start()

    def node_ready(self) -> bool:
        """The node is Ready and this kubelet serves (after a restart the old status is still Ready)."""
        if not http_ok(f"http://127.0.0.1:{self._kubelet_healthz}/healthz"):
            return False
        with socket.create_connection((NODE_IP, self._kubelet_port), timeout=2):
            pass
        found = self.control_plane.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if found.returncode != 0:
            return False
        conditions = json.loads(found.stdout).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def wait_ready(self) -> None:
        assert self.kubelet is not None
        _say("waiting for the node to register and become Ready ...")
        wait_for(f"node {NODE_NAME} Ready", self.node_ready, READY_TIMEOUT, 1.0, self.kubelet)

    def restart_kubelet(self, sync_frequency: str) -> None:
        """Restart kubelet with another `syncFrequency`; running pods keep running."""
        assert self.kubelet is not None
        self.kubelet.stop()
        self.sync_frequency = sync_frequency
        self._start_kubelet()
        self.wait_ready()
        wait_for("kubelet to take over the running pods", self._kubelet_knows_pods, 60, 0.5, self.kubelet)

    def _kubelet_knows_pods(self) -> bool:
        """Every pod the API shows Running on this node is known to the (restarted) kubelet."""
        kubectl = self.control_plane.kubectl
        listed = kubectl(
            "get",
            "pods",
            "-A",
            "-o",
            "json",
            f"--field-selector=spec.nodeName={NODE_NAME},status.phase=Running",
        )
        expected = {
            (p["metadata"]["namespace"], p["metadata"]["name"]) for p in json.loads(listed.stdout)["items"]
        }
        served = kubectl("get", "--raw", f"/api/v1/nodes/{NODE_NAME}/proxy/pods", check=False)
        if served.returncode != 0:
            return False
        known = {
            (p["metadata"]["namespace"], p["metadata"]["name"]) for p in json.loads(served.stdout)["items"]
        }
        return expected <= known

    def _proxy_config(self) -> Path:
        kubeconfig = self.control_plane.kubeconfig_for("system:kube-proxy")
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "mode": "iptables",
            "clusterCIDR": POD_CIDR,
            "hostnameOverride": NODE_NAME,
            "healthzBindAddress": f"127.0.0.1:{free_port()}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            # Conntrack sysctls are host-wide here and not ours to set.
            "conntrack": {"maxPerCore": 0, "min": 0},
        }
        path = self.folder / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def _start_proxy(self) -> None:
        if not hasattr(self, "_proxy_config_path"):
            self._proxy_config_path = self._proxy_config()
        self.proxy = Process(
            "kube-proxy",
            [binaries.path("kube-proxy"), f"--config={self._proxy_config_path}", "--v=1"],
            self.logs / "kube-proxy.log",
        ).start()

    def _nat_rules(self) -> str:
        return subprocess.run(
            ["iptables-save", "-t", "nat"], capture_output=True, text=True, check=False, timeout=30
        ).stdout

    def _wait_proxy_rules(self) -> None:
        def programmed() -> bool:
            assert self.proxy is not None
            if not self.proxy.alive():
                self.proxy_restarts += 1
                self._start_proxy()
            return "default/kubernetes:https" in self._nat_rules()

        wait_for("kube-proxy rules for the kubernetes Service", programmed, 90, 0.5)

    def _watch_proxy(self) -> None:
        while not self._stopping.wait(1.0):
            if self.proxy is not None and not self.proxy.alive() and self.proxy_restarts < 50:
                self.proxy_restarts += 1
                with self.proxy.log.open("a") as log:
                    log.write(f"--- restarted by the harness (restart {self.proxy_restarts})\n")
                self._start_proxy()

    def _delete_pods(self) -> None:
        kubectl: Callable[..., subprocess.CompletedProcess[str]] = self.control_plane.kubectl
        kubectl(
            "delete", "pods", "--all", "--all-namespaces", "--grace-period=1", "--wait=false", check=False
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            listed = kubectl("get", "pods", "-A", "-o", "name", check=False)
            if listed.returncode == 0 and not listed.stdout.strip():
                break
            time.sleep(0.5)
        # kubelet stops the sandboxes (CNI DEL, unmounts) shortly after the pods are gone.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            tasks = self.ctr("tasks", "ls", "-q", timeout=30)
            if tasks.returncode != 0 or not tasks.stdout.strip():
                break
            time.sleep(0.5)
