"""`make bench`: N ExternalSecrets over M shared sources, and what they cost in AWS and Kubernetes.

Runs the operator as a subprocess (`tmpfs-secrets run`, without the `kubernetes` package, as in
its image) against the local control plane and moto, creates N ExternalSecrets that read M shared
Secrets Manager secrets or SSM parameters, and prints the figures issue 3 sets targets for, beside
the ones measured for ESO in DESIGN.md:

- seconds until all N are Ready, counted from the first create, and how long the creates took;
- the seconds from each ExternalSecret's creation to its Ready condition (median and longest);
- AWS calls by operation during the first sync, and in one steady refresh interval (the second
  interval after all are Ready, when the creation burst has been spread out);
- Kubernetes writes in that same interval (nothing changed in AWS, so the target is zero),
  counted from the API server's own `apiserver_request_total`, which sees every write by anyone,
  failed ones included;
- the most AWS calls in any one second of the steady interval (at most 2 is the target when the
  calls per interval are fewer than its seconds);
- the Kubernetes requests the operator itself made in the steady interval (target: none) and in
  the interval after a restart (target: one LIST per watched kind, no GET of Secrets, no write),
  counted from the API server's audit log, which records the operator's user only;
- the operator's peak RSS (VmHWM);
- after a restart of the operator: how the AWS calls spread over the interval. The most calls
  in one second and the average per second are printed, but below one call per second their
  ratio says nothing; the honest figure is the most calls in any window of interval / lower bound
  seconds (the gap between calls of a perfectly even schedule), which should be at most 2, and
  the offset of every call from the restart;
- with `--throttle FRACTION`: that fraction of the fetch calls answered `ThrottlingException` for
  `--fault-seconds`; AWS calls (HTTP attempts) per minute while throttled, against the healthy
  rate, and the seconds from the end of throttling until all are Ready again;
- with `--outage SECONDS`: every fetch call answered 503 for that long; connection attempts per
  minute during the outage, and the seconds from its end until all are Ready again.

The last line is one JSON object with the figures. Not a test: it asserts nothing and runs for
a few refresh intervals.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch

from tests.cluster.aws import Fault, MotoServer
from tests.cluster.control_plane import ControlPlane
from tests.cluster.operator import Operator, operator_env

REPO = Path(__file__).resolve().parents[1]
GROUP, VERSION = "tmpfs-secrets.io", "v1alpha1"
NAMESPACE = "bench"
BATCH = {"SecretsManager": 20, "ParameterStore": 10}  # ids per BatchGetSecretValue / GetParameters
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "APPLY")
_METRIC = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def log(text: str) -> None:
    print(text, flush=True)


# --- set-up ---------------------------------------------------------------------------------------


def seed(aws: MotoServer, service: str, m: int) -> list[str]:
    """M sources, each a small JSON value; returns their keys."""
    keys = []
    if service == "SecretsManager":
        sm = aws.client("secretsmanager")
        for i in range(m):
            key = f"bench/source-{i:05d}"
            sm.create_secret(Name=key, SecretString=json.dumps({"value": f"v-{i}"}))
            keys.append(key)
    else:
        ssm = aws.client("ssm")
        for i in range(m):
            key = f"/bench/source-{i:05d}"
            ssm.put_parameter(Name=key, Value=f"v-{i}", Type="SecureString")
            keys.append(key)
    return keys


def store(service: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SecretStore",
        "metadata": {"name": "aws", "namespace": NAMESPACE},
        "spec": {"provider": {"aws": {"service": service, "region": "us-east-1"}}},
    }


def external_secret(i: int, key: str, interval: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ExternalSecret",
        "metadata": {"name": f"es-{i:05d}", "namespace": NAMESPACE},
        "spec": {
            "secretStoreRef": {"name": "aws"},
            "refreshInterval": interval,
            "data": [{"secretKey": "VALUE", "remoteRef": {"key": key}}],
        },
    }


# --- measurements ---------------------------------------------------------------------------------


def request_totals(plane: ControlPlane) -> collections.Counter[tuple[str, str, str]]:
    """apiserver_request_total summed by (verb, resource, subresource), from the API server itself."""
    totals: collections.Counter[tuple[str, str, str]] = collections.Counter()
    for line in plane.kubectl("get", "--raw", "/metrics").stdout.splitlines():
        match = _METRIC.match(line)
        if match:
            labels = dict(_LABEL.findall(match["labels"]))
            key = (labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", ""))
            totals[key] += int(float(match["value"]))
    return totals


def writes_between(
    before: collections.Counter[tuple[str, str, str]],
    after: collections.Counter[tuple[str, str, str]],
    verbs: Sequence[str] = WRITE_VERBS,
) -> dict[str, int]:
    """Requests per `VERB resource[/subresource]` between two snapshots (writes by default)."""
    out: dict[str, int] = {}
    for key in after:
        verb, resource, sub = key
        delta = after[key] - before.get(key, 0)
        if verb in verbs and delta:
            out[f"{verb} {resource}{'/' + sub if sub else ''}"] = delta
    return dict(sorted(out.items()))


def by_operation(calls: Iterable[tuple[float, str]]) -> dict[str, int]:
    return dict(sorted(collections.Counter(op for _, op in calls).items()))


def per_second_peak(calls: Sequence[tuple[float, str]], start: float, seconds: float) -> tuple[int, float]:
    """The most calls in any one-second bucket of [start, start + seconds), and the average."""
    buckets = collections.Counter(int(t - start) for t, _ in calls if start <= t < start + seconds)
    return max(buckets.values(), default=0), sum(buckets.values()) / seconds


def window_peak(calls: Sequence[tuple[float, str]], start: float, seconds: float, window: float) -> int:
    """The most calls in any sliding window of `window` seconds within [start, start + seconds)."""
    times = sorted(t for t, _ in calls if start <= t < start + seconds)
    peak, first = 0, 0
    for last, t in enumerate(times):
        while times[first] <= t - window:
            first += 1
        peak = max(peak, last - first + 1)
    return peak


def wait_all_ready(custom: k8s.CustomObjectsApi, n: int, operator: Operator, timeout: float) -> None:
    """Follow a watch until n ExternalSecrets are Ready; a watch, because listing 1,000 objects
    every half second would load the API server the benchmark is measuring."""
    ready: set[str] = set()
    deadline = time.monotonic() + timeout
    version = ""
    while len(ready) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(ready)} of {n} ExternalSecrets Ready after {timeout:.0f}s")
        if operator.process is not None:
            operator.process.check_alive()
        stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            NAMESPACE,
            "externalsecrets",
            resource_version=version,
            timeout_seconds=5,
            # The API server drops a watcher that falls behind a burst of status writes; without a
            # read timeout the client would wait on that connection forever.
            _request_timeout=(10, 30),
        )
        try:
            for event in stream:
                if event["type"] == "ERROR":  # the resourceVersion expired: start over from a list
                    version = ""
                    ready.clear()
                    break
                obj = event["object"]
                version = obj["metadata"]["resourceVersion"]
                conditions = (obj.get("status") or {}).get("conditions") or []
                if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
                    ready.add(obj["metadata"]["name"])
                else:
                    ready.discard(obj["metadata"]["name"])
                if len(ready) >= n:
                    break
        except (urllib3.exceptions.HTTPError, OSError):
            continue  # resume from the last version seen


def ready_lags(custom: k8s.CustomObjectsApi) -> list[float]:
    """Seconds from each ExternalSecret's creation to its Ready condition (both stamped to the
    second, by the API server and by the operator on the same machine)."""
    lags = []
    listing = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "externalsecrets")
    for item in listing["items"]:
        created = _timestamp(item["metadata"]["creationTimestamp"])
        for cond in (item.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready" and cond.get("status") == "True":
                lags.append(_timestamp(cond["lastTransitionTime"]) - created)
    return sorted(lags)


def _timestamp(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def secret_versions(core: k8s.CoreV1Api) -> dict[str, str]:
    return {
        str(s.metadata.name): str(s.metadata.resource_version)
        for s in core.list_namespaced_secret(NAMESPACE).items
        if s.metadata is not None
    }


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_process(plane: ControlPlane, operator: Operator) -> dict[str, float]:
    pids = {proc.name: proc.pid for proc in plane.processes}
    pids["operator"] = operator.pid
    pids["bench+moto"] = os.getpid()
    return {name: cpu_seconds(pid) for name, pid in pids.items() if Path(f"/proc/{pid}").exists()}


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before[name], 1) for name in after if name in before}


def sleep_until(deadline: float, operator: Operator) -> None:
    while time.monotonic() < deadline:
        if operator.process is not None:
            operator.process.check_alive()
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def operator_requests(plane: ControlPlane, since: int) -> dict[str, int]:
    """The operator's own Kubernetes requests (`verb resource[/subresource]`) since an audit offset."""
    counts = collections.Counter(
        f"{r['verb']} {r['resource']}{'/' + r['subresource'] if r['subresource'] else ''}"
        for r in plane.operator_requests(since)
    )
    return dict(sorted(counts.items()))


def per_minute(calls: Sequence[tuple[float, str]], start: float, seconds: float) -> list[int]:
    """AWS requests in each whole minute from `start` (a last partial minute is left out)."""
    minutes = max(1, int(seconds // 60))
    return [sum(1 for t, _ in calls if start + 60 * i <= t < start + 60 * (i + 1)) for i in range(minutes)]


def fault_phase(
    name: str,
    faults: list[Fault],
    seconds: float,
    aws: MotoServer,
    custom: k8s.CustomObjectsApi,
    n: int,
    operator: Operator,
    healthy_per_minute: float,
) -> dict[str, Any]:
    """Inject `faults` for `seconds`, then clear them: calls per minute meanwhile, and the time from
    the end until all are Ready again."""
    log(f"{name}: injecting for {seconds:.0f}s")
    start = time.monotonic()
    for fault in faults:
        aws.inject(fault)
    sleep_until(start + seconds, operator)
    aws.clear_faults()
    end = time.monotonic()
    calls = aws.timed_calls(start)
    minutes = per_minute([c for c in calls if c[0] < end], start, seconds)
    wait_all_ready(custom, n, operator, timeout=1800)
    recovered = time.monotonic() - end
    log(
        f"{name}: AWS requests per minute meanwhile {minutes} (healthy rate {healthy_per_minute:.1f}/min); "
        f"all Ready again {recovered:.1f}s after it ended"
    )
    return {
        "calls_per_minute": minutes,
        "healthy_per_minute": round(healthy_per_minute, 2),
        "ready_again_s": round(recovered, 1),
    }


def parse_interval(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    if text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


# --- the run --------------------------------------------------------------------------------------


def run(
    n: int,
    m: int,
    interval: str,
    service: str,
    workdir: Path,
    throttle: float | None = None,
    outage: float | None = None,
    fault_seconds: float = 180.0,
) -> dict[str, Any]:
    seconds = parse_interval(interval)
    lower_bound = math.ceil(m / BATCH[service])
    plane = ControlPlane().start()
    aws = MotoServer().start()
    operator: Operator | None = None
    api = k8s_config.new_client_from_config(config_file=str(plane.kubeconfig))  # type: ignore[no-untyped-call]
    api.configuration.connection_pool_maxsize = 8
    try:
        core, custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
        keys = seed(aws, service, m)
        plane.kubectl("apply", "-f", str(REPO / "crds"))
        plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        plane.kubectl("create", "namespace", NAMESPACE)
        custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "secretstores", store(service))
        env = operator_env(plane, aws)
        env["KUBECONFIG"] = str(plane.operator_kubeconfig())  # its own user: the audit log counts it
        operator = Operator(env=env, log=workdir / "operator.log", args=["--namespace", NAMESPACE]).start()
        log(
            f"operator running (pid {operator.pid}); {m} {service} sources seeded; "
            f"creating {n} ExternalSecrets"
        )

        aws.reset_calls()
        cpu_before = cpu_by_process(plane, operator)
        requests_before = request_totals(plane)
        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda i: custom.create_namespaced_custom_object(
                        GROUP,
                        VERSION,
                        NAMESPACE,
                        "externalsecrets",
                        external_secret(i, keys[i % m], interval),
                    ),
                    range(n),
                )
            )
        created_s = time.monotonic() - t0
        wait_all_ready(custom, n, operator, timeout=600)
        t_ready = time.monotonic()
        ready_s = t_ready - t0
        cpu_first_sync = cpu_used(cpu_before, cpu_by_process(plane, operator))
        first_sync = by_operation(aws.timed_calls(t0))
        log(
            f"created {n} in {created_s:.1f}s; all Ready after {ready_s:.1f}s; "
            f"first sync AWS calls: {first_sync}"
        )
        log(f"CPU seconds used until all were Ready (2 cores shared): {cpu_first_sync}")
        first_requests = writes_between(
            requests_before, request_totals(plane), ("GET", "LIST", "WATCH", *WRITE_VERBS)
        )
        log(
            "Kubernetes requests until all were Ready (the benchmark's creates and watch included): "
            f"{first_requests}"
        )
        lags = ready_lags(custom)
        lag_p50, lag_max = lags[len(lags) // 2], lags[-1]
        log(
            f"from each ExternalSecret's creation to its Ready condition: median {lag_p50:.0f}s, "
            f"longest {lag_max:.0f}s (to the second)"
        )

        # Interval 1 lets the creation burst settle into the spread schedule; interval 2 is measured.
        sleep_until(t_ready + seconds, operator)
        first_window = by_operation(c for c in aws.timed_calls(t_ready) if c[0] < t_ready + seconds)
        log(f"interval 1 after Ready: AWS calls {first_window}")
        secrets_before = secret_versions(core)
        start = time.monotonic()
        k8s_before, audit_before = request_totals(plane), plane.audit_offset()
        sleep_until(start + seconds, operator)
        k8s_after, steady_requests = request_totals(plane), operator_requests(plane, audit_before)
        secrets_after = secret_versions(core)
        steady_calls = [c for c in aws.timed_calls(start) if c[0] < start + seconds]
        steady = by_operation(steady_calls)
        steady_peak, _ = per_second_peak(steady_calls, start, seconds)
        writes = writes_between(k8s_before, k8s_after)
        secret_writes = sum(v for k, v in writes.items() if k.split()[1].startswith("secrets"))
        changed_rv = sum(1 for k, v in secrets_after.items() if secrets_before.get(k) != v)
        log(
            f"steady interval ({interval}): AWS calls {steady}, lower bound {lower_bound}; "
            f"most in any one second {steady_peak}"
        )
        log(f"steady interval: Kubernetes requests by the operator {steady_requests or 'none'}")
        log(
            f"steady interval: Kubernetes writes {writes or 'none'}; "
            f"Secrets with a new resourceVersion: {changed_rv}"
        )
        rss_first = operator.peak_rss_mib()

        # A restart: synced objects join the spread schedule, so no burst of AWS calls.
        operator.stop()
        aws.reset_calls()
        k8s_before, audit_before = request_totals(plane), plane.audit_offset()
        restart = time.monotonic()
        operator.start()
        sleep_until(restart + seconds, operator)
        after_restart = aws.timed_calls(restart)
        restart_requests = operator_requests(plane, audit_before)
        peak, average = per_second_peak(after_restart, restart, seconds)
        spread_window = seconds / lower_bound
        spread_peak = window_peak(after_restart, restart, seconds, spread_window)
        offsets = [round(t - restart, 2) for t, _ in after_restart if t < restart + seconds]
        restart_writes = writes_between(k8s_before, request_totals(plane))
        calls_per_interval = len(steady_calls)
        faults: dict[str, Any] = {}
        fetch_ops = ("BatchGetSecretValue", "GetSecretValue", "GetParameters", "GetParameter")
        if throttle is not None:
            faults["throttle"] = fault_phase(
                f"throttling {throttle:.0%} of calls",
                [Fault(op, code="ThrottlingException", fraction=throttle) for op in fetch_ops],
                fault_seconds,
                aws,
                custom,
                n,
                operator,
                calls_per_interval * 60 / seconds,
            )
        if outage is not None:
            faults["outage"] = fault_phase(
                "AWS outage (503 on every fetch)",
                [Fault(op, code="ServiceUnavailable", message="down", status=503) for op in fetch_ops],
                outage,
                aws,
                custom,
                n,
                operator,
                calls_per_interval * 60 / seconds,
            )
        rss = max(rss_first, operator.peak_rss_mib())
        log(
            f"interval after a restart: AWS calls {by_operation(after_restart)}; "
            f"most in one second {peak}, average {average:.3f}/s; "
            f"most in any {spread_window:.1f}s window (interval / lower bound) {spread_peak}; "
            f"Kubernetes writes {restart_writes or 'none'}"
        )
        log(f"interval after a restart: Kubernetes requests by the operator {restart_requests}")
        log(f"seconds from the restart to each AWS call: {', '.join(f'{o:.1f}' for o in offsets)}")
        rss_restart = operator.peak_rss_mib()
        log(
            f"operator peak RSS: {rss:.1f} MiB (until all were Ready and one idle interval: "
            f"{rss_first:.1f} MiB; after the restart: {rss_restart:.1f} MiB)"
        )
        result = {
            "n": n,
            "m": m,
            "service": service,
            "interval_s": seconds,
            "ready_s": round(ready_s, 2),
            "created_s": round(created_s, 2),
            "creation_to_ready_p50_s": lag_p50,
            "creation_to_ready_max_s": lag_max,
            "calls_first_sync": sum(first_sync.values()),
            "calls_per_interval": calls_per_interval,
            "lower_bound_per_interval": lower_bound,
            "max_calls_in_one_second_steady": steady_peak,
            "max_calls_in_one_second_after_restart": peak,
            "kube_requests_by_operator_steady": steady_requests,
            "kube_requests_by_operator_after_restart": restart_requests,
            "avg_calls_per_second": round(average, 4),
            "secret_writes_idle_interval": secret_writes,
            "peak_rss_mib": round(rss, 1),
            "peak_rss_mib_first_sync": round(rss_first, 1),
            "peak_rss_mib_after_restart": round(rss_restart, 1),
            "spread_window_s": round(spread_window, 2),
            "max_calls_in_spread_window": spread_peak,
            "restart_call_offsets_s": offsets,
            "kube_requests_first_sync": first_requests,
            **faults,
        }
        targets = {
            "calls_per_interval_within_10pct": calls_per_interval <= math.floor(lower_bound * 1.1),
            "at_most_2_calls_per_spread_window": spread_peak <= 2,
            "at_most_2_calls_in_any_second_steady": steady_peak <= 2,
            "no_kube_requests_steady": not steady_requests,
            "no_secret_get_after_restart": not restart_requests.get("get secrets"),
            "zero_secret_writes_idle": secret_writes == 0,
        }
        log(f"targets: {targets}")
        return result
    finally:
        api.close()
        if operator is not None:
            operator.stop()
        aws.stop()
        plane.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sync_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="ExternalSecrets (default: %(default)s)")
    parser.add_argument("--m", type=int, default=100, help="shared AWS sources (default: %(default)s)")
    parser.add_argument(
        "--interval", default="60s", help="refreshInterval, e.g. 30s, 1m (default: %(default)s)"
    )
    parser.add_argument(
        "--service",
        choices=("SecretsManager", "ParameterStore"),
        default="SecretsManager",
        help="AWS service",
    )
    parser.add_argument(
        "--throttle",
        type=float,
        metavar="FRACTION",
        help="after the restart, throttle this fraction of fetch calls for --fault-seconds",
    )
    parser.add_argument(
        "--outage", type=float, metavar="SECONDS", help="then fail every fetch call with 503 for this long"
    )
    parser.add_argument(
        "--fault-seconds", type=float, default=180.0, help="how long --throttle lasts (default: %(default)s)"
    )
    parser.add_argument("--keep-log", action="store_true", help="keep the operator's log and print where")
    args = parser.parse_args(argv)
    if args.throttle is not None and not 0 < args.throttle <= 1:
        parser.error("--throttle is a fraction of calls: more than 0, at most 1")
    workdir = Path(tempfile.mkdtemp(prefix="tmpfs-secrets-bench-"))
    try:
        result = run(
            args.n,
            args.m,
            args.interval,
            args.service,
            workdir,
            throttle=args.throttle,
            outage=args.outage,
            fault_seconds=args.fault_seconds,
        )
    finally:
        if args.keep_log:
            log(f"operator log: {workdir / 'operator.log'}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
