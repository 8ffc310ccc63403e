"""The operator's Prometheus metrics: one registry every layer records into, rendered on /metrics.

It knows nothing of Kubernetes, kopf or AWS, so the providers, the engine and the handlers can
all import it. Labels carry only names the operator chose (AWS service and operation, an outcome
or error code, a Ready reason, a webhook route): never a value, a secret's name or a key name.

- `tmpfs_secrets_aws_calls_total{service,operation,outcome}`: every AWS request, by botocore's
  own events (outcome `success`, the AWS error code, or `connection_error`).
- `tmpfs_secrets_cache_hits_total`, `tmpfs_secrets_cache_misses_total`: lookups of fetched
  values in memory (a refresh that joins a fetch already in flight counts as a hit).
- `tmpfs_secrets_sync_duration_seconds{service}`: one batch, from the AWS call to the last
  target written.
- `tmpfs_secrets_events_dropped_total{reason}`: Events (Synced, Rotated, ...) not posted because
  more were waiting than the queue holds (the API server slower than a mass creation).
- `tmpfs_secrets_webhook_admission_duration_seconds{route}`: admission answer times (the
  webhook server also counts requests and refusals per route).
- `tmpfs_secrets_external_secrets{ready,reason}`, `tmpfs_secrets_refresh_lag_seconds` (now minus
  the oldest due time not yet started) and `tmpfs_secrets_leader`: read when scraped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REGISTRY = CollectorRegistry(auto_describe=False)

AWS_CALLS = Counter(
    "tmpfs_secrets_aws_calls",
    "AWS requests by service, operation and outcome (success, an AWS error code, connection_error).",
    ["service", "operation", "outcome"],
    registry=REGISTRY,
)
CACHE_HITS = Counter(
    "tmpfs_secrets_cache_hits", "Fetched values found in memory (or joined in flight).", registry=REGISTRY
)
CACHE_MISSES = Counter("tmpfs_secrets_cache_misses", "Fetched values not in memory.", registry=REGISTRY)
SYNC_DURATION = Histogram(
    "tmpfs_secrets_sync_duration_seconds",
    "One refresh batch: the AWS call, then every target of its sources written.",
    ["service"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)

EVENTS_DROPPED = Counter(
    "tmpfs_secrets_events_dropped",
    "Kubernetes Events not posted because the queue of events to post was full, by event reason.",
    ["reason"],
    registry=REGISTRY,
)

WEBHOOK_DURATION = Histogram(
    "tmpfs_secrets_webhook_admission_duration_seconds",
    "Time to answer one admission request, by webhook route.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)

_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9._]{0,63}$")


def outcome(code: str | None) -> str:
    """An AWS error code as a label value; anything that doesn't look like a code is `error`."""
    if not code:
        return "success"
    return code if _CODE.match(code) else "error"


def count_aws_call(service: str, operation: str, code: str | None) -> None:
    AWS_CALLS.labels(service, operation, outcome(code)).inc()


def instrument(events: Any) -> None:
    """Count every request of a boto3 session or client (its `events` emitter)."""
    events.register("after-call", _after_call, unique_id="tmpfs-secrets-metrics")
    events.register("after-call-error", _after_call_error, unique_id="tmpfs-secrets-metrics-error")


def _after_call(http_response: Any, parsed: Mapping[str, Any], model: Any, **_: Any) -> None:
    code = None
    if getattr(http_response, "status_code", 200) >= 300:
        code = str((parsed.get("Error") or {}).get("Code") or "error")
    count_aws_call(model.service_model.service_name, model.name, code)


def _after_call_error(model: Any, **_: Any) -> None:
    count_aws_call(model.service_model.service_name, model.name, "connection_error")


GaugeReader = Callable[[], Iterable[tuple[Mapping[str, str], float]]]


class _Gauges(Collector):
    """Gauges computed when scraped, from readers the running operator registers."""

    def __init__(self) -> None:
        self.readers: dict[str, tuple[str, tuple[str, ...], GaugeReader]] = {}

    def collect(self) -> Iterable[Metric]:
        for name, (doc, labels, reader) in sorted(self.readers.items()):
            family = GaugeMetricFamily(name, doc, labels=list(labels))
            for values, value in reader():
                family.add_metric([values[label] for label in labels], value)
            yield family


_GAUGES = _Gauges()
REGISTRY.register(_GAUGES)


def gauge(name: str, doc: str, labels: Iterable[str], reader: GaugeReader) -> None:
    """Register (or replace) a gauge read at scrape time."""
    _GAUGES.readers[name] = (doc, tuple(labels), reader)


def render() -> bytes:
    """Every metric in Prometheus' text format."""
    return generate_latest(REGISTRY)
