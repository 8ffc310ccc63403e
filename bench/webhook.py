"""`make bench-webhook`: what the pod webhook costs a pod, through the real API server.

Starts the whole bubble cluster (control plane and a real node), moto and the operator with its
webhooks, routed through a Service as the chart routes them. One ExternalSecret is synced; then
pods are created at a steady rate, alternating between a pod that opts in (label and
annotation: the API server calls the webhook, which injects the volume) and the same pod without
the label (never sent to the webhook). Each pod is deleted once Running, so the node never holds
more than a few.

Reported:
- admission latency: the webhook's answer time for each opted-in pod, as the operator measured
  it from the request's arrival to its answer (p50, p99), and, for comparison, the CREATE
  request's time as the client saw it for opted-in and plain pods (p50, p99): the difference is
  the webhook's share including the API server's call through the Service and TLS;
- the extra time to Running that injection adds: median time from CREATE to Ready for opted-in
  pods minus that of plain pods (kubelet mounts one more Secret volume);
- errors: CREATE requests that failed.

The last line is one JSON object: pods, rate_per_s, p50_ms, p99_ms (the webhook's answer time),
errors, extra_to_running_ms, plus the CREATE latencies. Not a test: it asserts nothing. Runs only
inside the bubble: `make bench-webhook BENCH_ARGS=...`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch

from tests.cluster import bubble
from tests.cluster.aws import MotoServer
from tests.cluster.cluster import Cluster
from tests.cluster.operator import Operator, operator_env
from tests.cluster.webhook import OperatorWebhook

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "bench-webhook"
SECRET = "bench-db"


def log(text: str) -> None:
    print(f"[bench-webhook] {text}", file=sys.stderr, flush=True)


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def pod(name: str, image: str, opted_in: bool) -> dict[str, Any]:
    labels = {"bench": "webhook", "opted-in": str(opted_in).lower()}
    annotations = {}
    if opted_in:
        labels["tmpfs-secrets.io/inject"] = "true"
        annotations["tmpfs-secrets.io/secrets"] = SECRET
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {"name": "main", "image": image, "imagePullPolicy": "Never", "command": ["sleep", "3600"]}
            ],
        },
    }


class ReadyWatcher:
    """Records when each pod of the namespace first reports Ready, from a watch."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self.core = k8s.CoreV1Api(api)
        self.ready: dict[str, float] = {}
        self.lock = threading.Lock()
        self._watch = watch.Watch()  # type: ignore[no-untyped-call]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self._watch.stream(
                self.core.list_namespaced_pod, NAMESPACE, label_selector="bench=webhook"
            ):
                obj = event["object"]
                conditions = obj.status.conditions or []
                if any(c.type == "Ready" and c.status == "True" for c in conditions):
                    with self.lock:
                        self.ready.setdefault(obj.metadata.name, time.monotonic())
        except Exception:  # the watch ends with the benchmark
            return

    def stop(self) -> None:
        self._watch.stop()  # type: ignore[no-untyped-call]


def webhook_quantiles(hook: OperatorWebhook) -> dict[str, float]:
    with urllib.request.urlopen(f"{hook.health_url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith('tmpfs_secrets_webhook_answer_seconds{route="/mutate-pods"'):
            q = line.split('quantile="')[1].split('"')[0]
            found[q] = float(line.split()[-1]) * 1000
    return found


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    cluster = Cluster(sync_frequency="10s").start()
    aws = operator = hook = api = watcher = None
    failed = True
    try:
        aws = MotoServer().start()
        aws.client("secretsmanager").create_secret(Name="bench/db", SecretString='{"password": "bench"}')
        hook = OperatorWebhook.create(cluster.control_plane, workdir)
        operator = Operator(
            env=operator_env(cluster.control_plane, aws),
            log=workdir / "operator.log",
            args=[*hook.operator_args(), "--namespace", NAMESPACE],
        )
        cluster.kubectl("apply", "-f", str(REPO / "crds"))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(REPO / "crds"))
        cluster.kubectl("create", "namespace", NAMESPACE)
        operator.start()
        hook.install()
        hook.wait_effective(NAMESPACE)
        store = {
            "apiVersion": "tmpfs-secrets.io/v1alpha1",
            "kind": "SecretStore",
            "metadata": {"name": "aws"},
            "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "us-east-1"}}},
        }
        es = {
            "apiVersion": "tmpfs-secrets.io/v1alpha1",
            "kind": "ExternalSecret",
            "metadata": {"name": SECRET},
            "spec": {
                "secretStoreRef": {"name": "aws"},
                "data": [{"secretKey": "password", "remoteRef": {"key": "bench/db", "property": "password"}}],
            },
        }
        for doc in (store, es):
            cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=json.dumps(doc))
        cluster.kubectl(
            "wait",
            "-n",
            NAMESPACE,
            "--for=condition=Ready",
            "--timeout=60s",
            f"externalsecrets.tmpfs-secrets.io/{SECRET}",
        )
        # The default ServiceAccount must exist before pods can be created.
        while cluster.kubectl("get", "-n", NAMESPACE, "serviceaccount", "default", check=False).returncode:
            time.sleep(0.2)
        api = k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
        core = k8s.CoreV1Api(api)
        watcher = ReadyWatcher(api)
        log(
            f"cluster, moto and operator up; creating {args.pods} pods at {args.rate}/s, "
            "every other one opted in"
        )

        created: dict[str, tuple[bool, float, float]] = {}  # name -> (opted in, sent, answered)
        errors = 0
        deleted: set[str] = set()
        period = 1.0 / args.rate
        start = time.monotonic()
        for i in range(args.pods):
            time.sleep(max(0.0, start + i * period - time.monotonic()))
            opted_in = i % 2 == 0
            name = f"{'in' if opted_in else 'plain'}-{i}"
            sent = time.monotonic()
            try:
                core.create_namespaced_pod(NAMESPACE, pod(name, cluster.image, opted_in))
            except k8s.ApiException as e:
                errors += 1
                log(f"create {name} failed: {e.status} {e.reason}")
                continue
            created[name] = (opted_in, sent, time.monotonic())
            # Keep the node light (kubelet runs at most 110 pods): delete pods once they are Ready.
            with watcher.lock:
                done = [n for n in created if n in watcher.ready and n not in deleted]
            for gone in done:
                core.delete_namespaced_pod(gone, NAMESPACE, grace_period_seconds=0)
                deleted.add(gone)
        elapsed = time.monotonic() - start
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with watcher.lock:
                if all(n in watcher.ready for n in created):
                    break
            time.sleep(0.5)
        with watcher.lock:
            ready = dict(watcher.ready)
        not_ready = [n for n in created if n not in ready]

        create_in = [(a - s) * 1000 for o, s, a in created.values() if o]
        create_plain = [(a - s) * 1000 for o, s, a in created.values() if not o]
        run_in = [(ready[n] - s) * 1000 for n, (o, s, _) in created.items() if o and n in ready]
        run_plain = [(ready[n] - s) * 1000 for n, (o, s, _) in created.items() if not o and n in ready]
        answer = webhook_quantiles(hook)
        extra = statistics.median(run_in) - statistics.median(run_plain)
        log(
            f"created {len(created)} pods in {elapsed:.1f}s ({len(created) / elapsed:.2f}/s), errors {errors}"
        )
        log(
            f"webhook answer time (operator side) p50 {answer.get('0.5', float('nan')):.2f} ms, "
            f"p99 {answer.get('0.99', float('nan')):.2f} ms"
        )
        log(
            f"CREATE as the client saw it: opted in p50 {quantile(create_in, 0.5):.1f} ms, "
            f"p99 {quantile(create_in, 0.99):.1f} ms; plain p50 {quantile(create_plain, 0.5):.1f} ms, "
            f"p99 {quantile(create_plain, 0.99):.1f} ms"
        )
        log(
            f"CREATE -> Ready median: opted in {statistics.median(run_in):.0f} ms, "
            f"plain {statistics.median(run_plain):.0f} ms; injection adds {extra:.0f} ms"
            + (f"; {len(not_ready)} pods never Ready" if not_ready else "")
        )
        failed = False
        return {
            "pods": len(created),
            "rate_per_s": round(len(created) / elapsed, 2),
            "p50_ms": round(answer.get("0.5", float("nan")), 2),
            "p99_ms": round(answer.get("0.99", float("nan")), 2),
            "errors": errors + len(not_ready),
            "extra_to_running_ms": round(extra),
            "create_opted_in_p50_ms": round(quantile(create_in, 0.5), 1),
            "create_opted_in_p99_ms": round(quantile(create_in, 0.99), 1),
            "create_plain_p50_ms": round(quantile(create_plain, 0.5), 1),
            "create_plain_p99_ms": round(quantile(create_plain, 0.99), 1),
        }
    finally:
        if watcher is not None:
            watcher.stop()
        if api is not None:
            api.close()  # type: ignore[no-untyped-call]
        if hook is not None:
            hook.uninstall()
        if operator is not None:
            operator.stop()
        if aws is not None:
            aws.stop()
        kept = cluster.stop(keep_logs=failed)
        if kept:
            log(f"cluster logs kept in {kept}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhook", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pods", type=int, default=120, help="pods to create, half opted in (default: %(default)s)"
    )
    parser.add_argument(
        "--rate", type=float, default=2.0, help="pods created per second (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.pods < 2 or args.rate <= 0:
        parser.error("--pods must be at least 2 and --rate positive")
    if not bubble.inside():
        print(
            "bench/webhook.py needs the whole cluster, which runs only inside the network bubble.\n"
            "Run it with `make bench-webhook`, or\n"
            "  python -m tests.cluster.bubble -- python -m bench.webhook",
            file=sys.stderr,
        )
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="tmpfs-secrets-bench-webhook-"))
    try:
        result = run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
