"""`make bench-rotation`: how fast, and how cleanly, a rotation in AWS reaches a running pod's files.

Starts the whole bubble cluster (control plane and a real node), moto and the operator, then
rotates one Secrets Manager secret K times. The secret holds two values that must always match,
`{"user": "app-v<N>", "password": "pw-v<N>"}`; one ExternalSecret extracts them into the keys
`user` and `password` of one Secret, which a busybox pod mounts as a Secret volume (no `subPath`)
and reads in a loop, as an application reading its files at runtime would:

- on every change it prints `SEEN <uptime> <user> <password> <torn> <reads>`;
- when the two files carry different versions it prints `TORN <uptime> <user> <password>`;
- when a file can't be read it prints `MISS <uptime> <reads>`.

Timestamps are comparable because the pod and the benchmark share the machine's kernel: the pod
reads `/proc/uptime` (a shell builtin, no fork, 10 ms resolution) and the benchmark reads the same
clock as `CLOCK_BOOTTIME`; the offset is checked once and printed. A rotation's delay runs from
just before `put_secret_value` is sent to moto to the pod's first read of the new version.

Reported: p50 and max of that delay, and of the delay to the new Secret in the API server; torn
and failed reads; container restarts; the kubelet `syncFrequency` and the `refreshInterval` used.
kubelet's default syncFrequency is 1m; a Secret volume update waits for the pod's next sync, so
the default here is 10s to keep the run short (`--sync-frequency 1m` measures what users get).
The last line is one JSON object. Not a test: it asserts nothing.

With `--delivery Direct` the ExternalSecret uses Direct delivery instead: the webhook injects the
agent (the operator image, `make image`) into the reader pod, and the operator streams each new
key set to it. The delay is then also split at the operator's fetch (its log line for the new
content): AWS -> fetch, and fetch -> file. The pod also reports the agent's resident memory, and
`--pods N` runs N reader pods (a Deployment) for one rotation: the time until the last pod's agent
wrote it (from the ExternalSecret's status counts), AWS calls, and the operator's CPU and memory.

It must run inside the bubble: `make bench-rotation BENCH_ARGS=...`, or
`python -m tests.cluster.bubble -- python -m bench.rotation ...`.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch

from tests.cluster import binaries, bubble
from tests.cluster import direct as direct_setup
from tests.cluster.aws import MotoServer
from tests.cluster.cluster import Cluster
from tests.cluster.operator import Operator, operator_env
from tmpfs_secrets.api.duration import parse_duration

REPO = Path(__file__).resolve().parents[1]
GROUP, VERSION = "tmpfs-secrets.io", "v1alpha1"
NAMESPACE = "bench-rotation"
NAME = "app-db"
REMOTE_KEY = "bench/rotation/app-db"
POD = "reader"
MOUNT = f"/var/run/secrets/tmpfs-secrets.io/{NAME}"

# Reads both files with shell builtins only, so a read costs no fork; the pause keeps the loop
# from taking a whole core of a machine it shares with the cluster it measures.
READER = """D=%(mount)s
prev=; torn=0; reads=0
while :; do
  u=; p=
  read -r u 2>/dev/null < "$D/user"
  read -r p 2>/dev/null < "$D/password"
  read -r now _ < /proc/uptime
  reads=$((reads + 1))
  if [ -z "$u" ] || [ -z "$p" ]; then
    echo "MISS $now $reads"
  elif [ "${u#app-v}" != "${p#pw-v}" ]; then
    torn=$((torn + 1)); echo "TORN $now $u $p"
  fi
  if [ -n "$u" ] && [ "$u" != "$prev" ]; then echo "SEEN $now $u $p $torn $reads"; prev=$u; fi
  %(pause)s
done
"""


def log(text: str) -> None:
    print(text, flush=True)


def boottime() -> float:
    """The clock the pod reads as /proc/uptime (no pod runs in a time namespace here)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def version_value(n: int) -> str:
    return json.dumps({"user": f"app-v{n}", "password": f"pw-v{n}"})


# --- manifests -------------------------------------------------------------------------------------


def store() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SecretStore",
        "metadata": {"name": "aws", "namespace": NAMESPACE},
        "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "us-east-1"}}},
    }


def external_secret(interval: str, delivery: str = "Secret") -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ExternalSecret",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "secretStoreRef": {"name": "aws"},
            "refreshInterval": interval,
            "data": [
                {"secretKey": key, "remoteRef": {"key": REMOTE_KEY, "property": key}}
                for key in ("user", "password")
            ],
        },
    }
    if delivery == "Direct":
        manifest["spec"]["target"] = {"delivery": "Direct"}
        manifest["spec"]["mount"] = {"path": MOUNT}
    return manifest


def reader_pod(image: str, pause: float, delivery: str = "Secret") -> dict[str, Any]:
    script = READER % {"mount": MOUNT, "pause": f"sleep {pause}" if pause > 0 else ":"}
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD, "namespace": NAMESPACE},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", script],
                    "volumeMounts": [{"name": "secrets", "mountPath": MOUNT, "readOnly": True}],
                }
            ],
            "volumes": [{"name": "secrets", "secret": {"secretName": NAME}}],
        },
    }
    if delivery == "Direct":
        # The webhook adds the memory-backed volume, its read-only mount and the agent.
        pod["metadata"]["labels"] = {"tmpfs-secrets.io/inject": "true", "app": POD}
        pod["metadata"]["annotations"] = {"tmpfs-secrets.io/secrets": NAME}
        spec = pod["spec"]
        del spec["volumes"]
        del spec["containers"][0]["volumeMounts"]
        # The agent writes files of mode 0440 as this user; the reader shares it.
        spec["securityContext"] = {"runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532}
    return pod


def fan_out(image: str, replicas: int) -> dict[str, Any]:
    """N pods that only hold the files (the agent writes them; the app sleeps)."""
    template = reader_pod(image, 0, "Direct")
    template["spec"]["containers"][0]["command"] = ["sleep", "3600"]
    template["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1m", "memory": "4Mi"}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "fan-out", "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "fan-out"}},
            "template": {
                "metadata": {
                    "labels": {"app": "fan-out", "tmpfs-secrets.io/inject": "true"},
                    "annotations": {"tmpfs-secrets.io/secrets": NAME},
                },
                "spec": template["spec"],
            },
        },
    }


# --- observers -------------------------------------------------------------------------------------


@dataclass
class Seen:
    """First sighting of each version: by version number, the boottime it was seen at."""

    times: dict[int, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    def note(self, version: int, at: float) -> None:
        with self.changed:
            self.times.setdefault(version, at)
            self.changed.notify_all()

    def wait(self, version: int, timeout: float) -> float | None:
        with self.changed:
            self.changed.wait_for(lambda: version in self.times, timeout)
            return self.times.get(version)


def version_of(user: str) -> int | None:
    return int(user[len("app-v") :]) if user.startswith("app-v") and user[5:].isdigit() else None


class PodFollower:
    """`kubectl logs -f` of the reader pod: notes when each version was first seen in its files."""

    def __init__(self, cluster: Cluster) -> None:
        self.seen = Seen()
        argv = [str(binaries.path("kubectl")), f"--kubeconfig={cluster.kubeconfig}"]
        argv += ["logs", "-f", "-n", NAMESPACE, POD]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            fields = line.split()
            if len(fields) >= 3 and fields[0] == "SEEN":
                version = version_of(fields[2])
                if version is not None:
                    self.seen.note(version, float(fields[1]))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


class SecretWatcher:
    """A watch on the target Secret: notes when each version reached the API server."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self.seen = Seen()
        self.core = k8s.CoreV1Api(api)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        # Short watches, so stop() is prompt; each resumes where the last ended, so no update is
        # first noticed late by a re-list.
        resume = ""
        while not self.stopping.is_set():
            stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                self.core.list_namespaced_secret,
                NAMESPACE,
                field_selector=f"metadata.name={NAME}",
                resource_version=resume or None,
                timeout_seconds=2,
            )
            for event in stream:
                at = boottime()
                if event["type"] == "ERROR":  # the resourceVersion expired: start over from a list
                    resume = ""
                    break
                resume = event["object"].metadata.resource_version
                data = event["object"].data or {}
                if "user" in data:
                    version = version_of(base64.b64decode(data["user"]).decode())
                    if version is not None:
                        self.seen.note(version, at)
                if self.stopping.is_set():
                    break

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)


# --- the run ---------------------------------------------------------------------------------------


@dataclass
class Rotation:
    version: int
    to_secret_s: float | None
    to_pod_s: float


def pod_status(cluster: Cluster) -> dict[str, Any]:
    pod = json.loads(cluster.kubectl("get", "pod", POD, "-n", NAMESPACE, "-o", "json").stdout)
    return dict(pod["status"]["containerStatuses"][0])


def clock_check(cluster: Cluster) -> tuple[bool, float]:
    """Whether the pod's /proc/uptime, read by `kubectl exec`, falls inside the window this process
    saw around that call on CLOCK_BOOTTIME (true when both read one clock), and the window's width."""
    before = boottime()
    out = cluster.kubectl("exec", "-n", NAMESPACE, POD, "--", "cat", "/proc/uptime").stdout
    after = boottime()
    pod = float(out.split()[0])
    # /proc/uptime is truncated to 10 ms.
    return before - 0.01 <= pod <= after, after - before


def apply(cluster: Cluster, manifest: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def percentile50(values: Sequence[float]) -> float:
    return round(statistics.median(values), 2) if values else float("nan")


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    sync_s = parse_duration(args.sync_frequency, "--sync-frequency")
    refresh_s = parse_duration(args.refresh_interval, "--refresh-interval")
    timeout = 2 * sync_s + 2 * refresh_s + 60
    cluster = Cluster(sync_frequency=args.sync_frequency)
    aws: MotoServer | None = None
    operator: Operator | None = None
    follower: PodFollower | None = None
    watcher: SecretWatcher | None = None
    api: k8s.ApiClient | None = None
    failed = True
    try:
        cluster.start()
        aws = MotoServer().start()
        sm = aws.client("secretsmanager")
        sm.create_secret(Name=REMOTE_KEY, SecretString=version_value(1))
        cluster.kubectl("apply", "-f", str(REPO / "crds"))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(REPO / "crds"))
        cluster.kubectl("create", "namespace", NAMESPACE)
        operator = Operator(
            env=operator_env(cluster.control_plane, aws),
            log=workdir / "operator.log",
            args=["--namespace", NAMESPACE],
        ).start()
        apply(cluster, store())
        apply(cluster, external_secret(args.refresh_interval))
        cluster.kubectl(
            "wait", "-n", NAMESPACE, "--for=condition=Ready", "--timeout=60s",
            f"externalsecrets.{GROUP}/{NAME}",
        )  # fmt: skip
        assert cluster.node is not None
        apply(cluster, reader_pod(cluster.image, args.read_pause))
        cluster.kubectl("wait", "-n", NAMESPACE, "--for=condition=Ready", "--timeout=120s", f"pod/{POD}")
        container = pod_status(cluster)["containerID"]
        same_clock, window = clock_check(cluster)
        if not same_clock:
            raise RuntimeError(
                "the pod's /proc/uptime is not this machine's CLOCK_BOOTTIME; delays would be wrong"
            )
        log(
            f"cluster, moto and operator up; pod {POD} reads {MOUNT}/{{user,password}}; "
            f"kubelet syncFrequency {args.sync_frequency}, refreshInterval {args.refresh_interval}; "
            f"the pod's clock fell inside a {window * 1000:.0f} ms window of ours (one clock)"
        )

        api = k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
        follower = PodFollower(cluster)
        watcher = SecretWatcher(api)
        if follower.seen.wait(1, 60) is None:
            raise TimeoutError("the reader pod never printed the first version")

        rotations: list[Rotation] = []
        for version in range(2, args.rotations + 2):
            # A random pause, so rotations land at every phase of the refresh and kubelet cycles.
            time.sleep(random.uniform(0, refresh_s))
            sent = boottime()
            sm.put_secret_value(SecretId=REMOTE_KEY, SecretString=version_value(version))
            seen = follower.seen.wait(version, timeout)
            if seen is None:
                raise TimeoutError(f"version {version} never reached the pod's files within {timeout:.0f}s")
            in_secret = watcher.seen.wait(version, 5)
            rotation = Rotation(version, None if in_secret is None else in_secret - sent, seen - sent)
            rotations.append(rotation)
            to_secret = "?" if rotation.to_secret_s is None else f"{rotation.to_secret_s:.2f}s"
            log(
                f"rotation {version - 1}/{args.rotations} (v{version}): AWS -> Secret {to_secret}, "
                f"AWS -> pod's files {rotation.to_pod_s:.2f}s"
            )

        time.sleep(1)  # the reads of the last rotation reach the pod's log
        lines = cluster.kubectl("logs", "-n", NAMESPACE, POD).stdout.splitlines()
        torn = sum(1 for line in lines if line.startswith("TORN "))
        missing = sum(1 for line in lines if line.startswith("MISS "))
        last_seen = [line.split() for line in lines if line.startswith("SEEN ")][-1]
        reads = int(last_seen[5])
        status = pod_status(cluster)
        restarts = int(status["restartCount"])
        same_container = status["containerID"] == container
        to_pod = [r.to_pod_s for r in rotations]
        to_secret_all = [r.to_secret_s for r in rotations if r.to_secret_s is not None]
        log(
            f"AWS -> pod's files: p50 {percentile50(to_pod):.2f}s, max {max(to_pod):.2f}s; "
            f"AWS -> Secret: p50 {percentile50(to_secret_all):.2f}s, "
            f"max {max(to_secret_all, default=float('nan')):.2f}s"
        )
        log(
            f"torn reads {torn}, failed reads {missing}, of {reads} reads of both files "
            f"(counted in the pod up to the last change); container restarts {restarts}, "
            f"same container throughout: {same_container}"
        )
        failed = False
        return {
            "delivery": "Secret",
            "rotations": len(rotations),
            "p50_s": percentile50(to_pod),
            "max_s": round(max(to_pod), 2),
            "torn_reads": torn,
            "restarts": restarts,
            "kubelet_sync_s": sync_s,
            "refresh_interval_s": refresh_s,
            "secret_p50_s": percentile50(to_secret_all),
            "secret_max_s": round(max(to_secret_all, default=float("nan")), 2),
            "failed_reads": missing,
            "reads": reads,
        }
    finally:
        if watcher is not None:
            watcher.stop()
        if follower is not None:
            follower.stop()
        if api is not None:
            api.close()  # type: ignore[no-untyped-call]
        if operator is not None:
            operator.stop()
        if aws is not None:
            aws.stop()
        kept = cluster.stop(keep_logs=failed)
        if kept:
            log(f"cluster logs kept in {kept}")


# --- Direct delivery ----------------------------------------------------------------------------


def fetch_times(operator: Operator) -> list[float]:
    """CLOCK_BOOTTIME of each new key set of the ExternalSecret handed to the agents' streams (the
    operator logs it once per change, right after the fetch)."""
    offset = time.time() - boottime()
    times = []
    for line in operator.log_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if str(record.get("message", "")).startswith(f"new content of {NAMESPACE}/{NAME} "):
            times.append(datetime.datetime.fromisoformat(record["time"]).timestamp() - offset)
    return times


def agent_memory_kib() -> list[tuple[int, int]]:
    """(VmRSS, VmHWM) in KiB of every running agent process on the node (probes excluded)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"tmpfs_secrets.agent" not in cmdline or b"--check" in cmdline:
                continue
            fields = dict(
                line.split(":", 1)
                for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if ":" in line
            )
            found.append((int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])))
        except (OSError, KeyError, ValueError):
            continue
    return found


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def es_direct_status(cluster: Cluster) -> dict[str, Any]:
    es = json.loads(
        cluster.kubectl("get", "-n", NAMESPACE, f"externalsecrets.{GROUP}", NAME, "-o", "json").stdout
    )
    return dict(es.get("status") or {})


def run_direct(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    refresh_s = parse_duration(args.refresh_interval, "--refresh-interval")
    timeout = 2 * refresh_s + 60
    cluster = Cluster(sync_frequency=args.sync_frequency)
    aws: MotoServer | None = None
    setup: direct_setup.DirectSetup | None = None
    follower: PodFollower | None = None
    failed = True
    try:
        cluster.start()
        aws = MotoServer().start()
        sm = aws.client("secretsmanager")
        sm.create_secret(Name=REMOTE_KEY, SecretString=version_value(1))
        cluster.kubectl("apply", "-f", str(REPO / "crds"))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(REPO / "crds"))
        cluster.kubectl("create", "namespace", NAMESPACE)
        image = direct_setup.agent_image(cluster)
        setup = direct_setup.DirectSetup.start(
            cluster, aws, workdir, [NAMESPACE], image, workdir / "operator.log"
        )
        operator = setup.operator
        apply(cluster, store())
        apply(cluster, external_secret(args.refresh_interval, "Direct"))
        if args.pods:
            result = fan_out_run(args, cluster, aws, operator, sm, refresh_s, timeout)
            failed = False
            return result
        apply(cluster, reader_pod(cluster.image, args.read_pause, "Direct"))
        cluster.kubectl("wait", "-n", NAMESPACE, "--for=condition=Ready", "--timeout=180s", f"pod/{POD}")
        container = pod_status(cluster)["containerID"]
        same_clock, window = clock_check(cluster)
        if not same_clock:
            raise RuntimeError("the pod's /proc/uptime is not this machine's CLOCK_BOOTTIME")
        log(
            f"cluster, moto, operator and agent up; pod {POD} reads {MOUNT}/{{user,password}} written "
            f"by its agent; refreshInterval {args.refresh_interval}; "
            f"one clock ({window * 1000:.0f} ms window)"
        )
        follower = PodFollower(cluster)
        if follower.seen.wait(1, 60) is None:
            raise TimeoutError("the reader pod never printed the first version")
        sends: list[tuple[int, float, float]] = []  # version, sent, seen
        for version in range(2, args.rotations + 2):
            time.sleep(random.uniform(0, refresh_s))
            sent = boottime()
            sm.put_secret_value(SecretId=REMOTE_KEY, SecretString=version_value(version))
            seen = follower.seen.wait(version, timeout)
            if seen is None:
                raise TimeoutError(f"version {version} never reached the pod's files within {timeout:.0f}s")
            sends.append((version, sent, seen))
            if (version - 1) % 20 == 0 or version - 1 == args.rotations:
                log(f"rotation {version - 1}/{args.rotations}: AWS -> pod's files {seen - sent:.2f}s")
        time.sleep(1)
        fetches = fetch_times(operator)
        to_pod, aws_to_fetch, fetch_to_file = [], [], []
        for _version, sent, seen in sends:
            # The operator's first fetch of the new content after the change was sent.
            # /proc/uptime has 10 ms steps and log times 1 ms: a fetch may look up to 10 ms "after" the read.
            fetch = next((f for f in fetches if sent - 0.005 <= f <= seen + 0.015), None)
            to_pod.append(seen - sent)
            if fetch is not None:
                aws_to_fetch.append(max(0.0, fetch - sent))
                fetch_to_file.append(max(0.0, seen - fetch))
        lines = cluster.kubectl("logs", "-n", NAMESPACE, POD, "-c", "main").stdout.splitlines()
        torn = sum(1 for line in lines if line.startswith("TORN "))
        missing = sum(1 for line in lines if line.startswith("MISS "))
        reads = int([line.split() for line in lines if line.startswith("SEEN ")][-1][5])
        pod = json.loads(cluster.kubectl("get", "pod", POD, "-n", NAMESPACE, "-o", "json").stdout)["status"]
        statuses = [*pod.get("initContainerStatuses", []), *pod["containerStatuses"]]
        restarts = sum(int(s["restartCount"]) for s in statuses)
        same_container = pod["containerStatuses"][0]["containerID"] == container
        memory = agent_memory_kib()
        log(
            f"AWS -> pod's files: p50 {percentile50(to_pod):.2f}s, max {max(to_pod):.2f}s; "
            f"AWS -> fetch p50 {percentile50(aws_to_fetch):.2f}s; fetch -> file p50 "
            f"{percentile(fetch_to_file, 0.5):.3f}s, p99 {percentile(fetch_to_file, 0.99):.3f}s, "
            f"max {max(fetch_to_file, default=float('nan')):.3f}s ({len(fetch_to_file)} matched to a fetch)"
        )
        log(
            f"torn reads {torn}, failed reads {missing}, of {reads} reads of both files; restarts {restarts} "
            f"(agent and app), same container throughout: {same_container}; agent RSS "
            f"{[round(r / 1024, 1) for r, _ in memory]} MiB, "
            f"peak {[round(h / 1024, 1) for _, h in memory]} MiB"
        )
        failed = False
        return {
            "delivery": "Direct",
            "rotations": len(sends),
            "p50_s": percentile50(to_pod),
            "max_s": round(max(to_pod), 2),
            "fetch_to_file_p50_s": percentile(fetch_to_file, 0.5),
            "fetch_to_file_p99_s": percentile(fetch_to_file, 0.99),
            "torn_reads": torn,
            "restarts": restarts,
            "aws_to_fetch_p50_s": percentile50(aws_to_fetch),
            "fetch_to_file_max_s": round(max(fetch_to_file, default=float("nan")), 3),
            "matched_fetches": len(fetch_to_file),
            "failed_reads": missing,
            "reads": reads,
            "refresh_interval_s": refresh_s,
            "agent_rss_mib": round(max((r for r, _ in memory), default=0) / 1024, 1),
            "agent_peak_rss_mib": round(max((h for _, h in memory), default=0) / 1024, 1),
        }
    finally:
        if follower is not None:
            follower.stop()
        if setup is not None:
            setup.stop()
        if aws is not None:
            aws.stop()
        kept = cluster.stop(keep_logs=failed)
        if kept:
            log(f"cluster logs kept in {kept}")


def fan_out_run(
    args: argparse.Namespace,
    cluster: Cluster,
    aws: MotoServer,
    operator: Operator,
    sm: Any,
    refresh_s: float,
    timeout: float,
) -> dict[str, Any]:
    """One ExternalSecret, N pods, one rotation: until the last pod's agent wrote it."""
    apply(cluster, fan_out(cluster.image, args.pods))
    started = time.monotonic()

    def counted() -> dict[str, Any]:
        return dict(es_direct_status(cluster).get("direct") or {})

    while counted().get("podsCurrent") != args.pods:
        if time.monotonic() - started > 600:
            raise TimeoutError(f"{args.pods} pods did not all hold the first version within 600s")
        time.sleep(2)
    log(f"{args.pods} pods running with their files after {time.monotonic() - started:.0f}s")
    time.sleep(refresh_s + 1)
    before_hash = es_direct_status(cluster)["contentHash"]
    cpu_before = cpu_seconds(operator.pid)
    aws.reset_calls()
    sent_wall = time.time()
    sm.put_secret_value(SecretId=REMOTE_KEY, SecretString=version_value(2))
    deadline = time.monotonic() + timeout
    while True:
        status = es_direct_status(cluster)
        if (
            status.get("contentHash") != before_hash
            and (status.get("direct") or {}).get("podsCurrent") == args.pods
        ):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"not every pod acknowledged the rotation: {status.get('direct')}")
        time.sleep(0.2)
    window = time.time() - sent_wall
    calls = aws.calls()
    cpu = cpu_seconds(operator.pid) - cpu_before
    logs = cluster.kubectl(
        "logs", "-n", NAMESPACE, "-l", "app=fan-out", "-c", "tmpfs-secrets-agent", "--timestamps",
        "--tail=3", f"--max-log-requests={args.pods + 10}",
    ).stdout  # fmt: skip
    written = [
        datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")[:26] + "+00:00").timestamp()
        for line in logs.splitlines()
        if "wrote" in line
    ]
    fetch = next(f for f in fetch_times(operator)[::-1]) + (time.time() - boottime())
    last_written = max(w for w in written if w >= sent_wall)
    pods_with_it = sum(1 for w in written if w >= sent_wall)
    memory = agent_memory_kib()
    operator_rss = int(
        next(
            line.split()[1]
            for line in Path(f"/proc/{operator.pid}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        )
    )
    aws_reads = [c for c in calls if c in ("BatchGetSecretValue", "GetSecretValue")]
    result = {
        "delivery": "Direct",
        "pods": args.pods,
        "pods_with_new_value": pods_with_it,
        "aws_change_to_last_pod_s": round(last_written - sent_wall, 3),
        "fetch_to_last_pod_s": round(last_written - fetch, 3),
        "window_s": round(window, 2),
        "aws_reads_in_window": len(aws_reads),
        "refresh_interval_s": refresh_s,
        "operator_cpu_s_in_window": round(cpu, 2),
        "operator_rss_mib": round(operator_rss / 1024, 1),
        "operator_peak_rss_mib": round(operator.peak_rss_mib(), 1),
        "agent_rss_mib_max": round(max((r for r, _ in memory), default=0) / 1024, 1),
        "agent_rss_mib_median": round(statistics.median([r for r, _ in memory]) / 1024, 1) if memory else 0,
    }
    log(
        f"{pods_with_it}/{args.pods} pods wrote the rotation; last "
        f"{result['aws_change_to_last_pod_s']}s after the AWS change, "
        f"{result['fetch_to_last_pod_s']}s after the fetch; {len(aws_reads)} AWS reads in "
        f"the {window:.1f}s window (refreshInterval {refresh_s:g}s); operator CPU {cpu:.2f}s, RSS "
        f"{result['operator_rss_mib']} MiB; agent RSS max {result['agent_rss_mib_max']} MiB"
    )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rotation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rotations", type=int, default=10, help="rotations in AWS (default: %(default)s)")
    parser.add_argument(
        "--sync-frequency",
        default="10s",
        help="kubelet syncFrequency (default: %(default)s; kubelet's own default is 1m)",
    )
    parser.add_argument(
        "--refresh-interval", default="2s", help="the ExternalSecret's refreshInterval (default: %(default)s)"
    )
    parser.add_argument(
        "--read-pause",
        type=float,
        default=0.01,
        help="seconds the pod sleeps between two reads of both files; 0 spins (default: %(default)s)",
    )
    parser.add_argument(
        "--delivery",
        choices=("Secret", "Direct"),
        default="Secret",
        help="Secret: a Secret volume kubelet updates; Direct: the injected agent (default: %(default)s)",
    )
    parser.add_argument(
        "--pods",
        type=int,
        default=0,
        help="with --delivery Direct: N pods read one ExternalSecret, one rotation (fan-out)",
    )
    parser.add_argument("--keep-log", action="store_true", help="keep the operator's log and print where")
    args = parser.parse_args(argv)
    if args.pods and args.delivery != "Direct":
        parser.error("--pods measures Direct delivery's fan-out: add --delivery Direct")
    if args.rotations < 1:
        parser.error("--rotations must be at least 1")
    if not bubble.inside():
        print(
            "bench/rotation.py needs the whole cluster, which runs only inside the network bubble.\n"
            "Run it with `make bench-rotation BENCH_ARGS='--rotations 5'`, or\n"
            "  python -m tests.cluster.bubble -- python -m bench.rotation --rotations 5",
            file=sys.stderr,
        )
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="tmpfs-secrets-bench-rotation-"))
    keep = args.keep_log
    try:
        result = run_direct(args, workdir) if args.delivery == "Direct" else run(args, workdir)
    except BaseException:
        keep = True
        raise
    finally:
        if keep:
            log(f"operator log: {workdir / 'operator.log'}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
