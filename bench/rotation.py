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

It must run inside the bubble: `make bench-rotation BENCH_ARGS=...`, or
`python -m tests.cluster.bubble -- python -m bench.rotation ...`.
"""

from __future__ import annotations

import argparse
import base64
import json
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


def external_secret(interval: str) -> dict[str, Any]:
    return {
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


def reader_pod(image: str, pause: float) -> dict[str, Any]:
    script = READER % {"mount": MOUNT, "pause": f"sleep {pause}" if pause > 0 else ":"}
    return {
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
    parser.add_argument("--keep-log", action="store_true", help="keep the operator's log and print where")
    args = parser.parse_args(argv)
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
        result = run(args, workdir)
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
