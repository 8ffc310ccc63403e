"""The operator's metrics against moto: AWS calls counted by service, operation and outcome as
botocore sees them, and nothing secret in the rendered text (no value, no secret name, no key)."""

from __future__ import annotations

from typing import Any

from tests.cluster.aws import MotoServer
from tmpfs_secrets import metrics
from tmpfs_secrets.providers.aws.clients import AwsRuntime
from tmpfs_secrets.providers.aws.credentials import DefaultAuth
from tmpfs_secrets.providers.aws.secretsmanager import SecretsManagerProvider
from tmpfs_secrets.providers.base import Fetched, SourceRef


def _sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def test_aws_calls_are_counted_by_outcome_and_nothing_secret_is_rendered(
    aws: MotoServer, sm: Any
) -> None:
    sm.create_secret(Name="metrics/app-db", SecretString="value-that-must-not-leak")
    runtime = AwsRuntime(threads=2)
    try:
        batch = dict(service="secretsmanager", operation="BatchGetSecretValue", outcome="success")
        before = _sample("tmpfs_secrets_aws_calls_total", **batch)
        provider = SecretsManagerProvider(runtime, DefaultAuth(), "us-east-1")
        out = await provider.fetch([SourceRef("metrics/app-db"), SourceRef("metrics/missing-name")])
    finally:
        runtime.close()
    assert isinstance(out[SourceRef("metrics/app-db")], Fetched)
    calls = aws.call_counts()
    assert _sample("tmpfs_secrets_aws_calls_total", **batch) - before == calls["BatchGetSecretValue"] >= 1
    text = metrics.render().decode()
    assert (
        'tmpfs_secrets_aws_calls_total{operation="BatchGetSecretValue",outcome="success",service="secretsmanager"}'
        in text
    )
    for secret in ("value-that-must-not-leak", "app-db", "missing-name", "metrics/"):
        assert secret not in text


def test_outcome_labels_are_codes_only() -> None:
    assert metrics.outcome(None) == "success"
    assert metrics.outcome("ThrottlingException") == "ThrottlingException"
    assert metrics.outcome("not a code: prod/db") == "error"


def test_gauges_are_read_when_scraped() -> None:
    seen = {"n": 0.0}
    metrics.gauge(
        "tmpfs_secrets_test_gauge", "a test gauge", ("reason",), lambda: [({"reason": "Synced"}, seen["n"])]
    )
    seen["n"] = 3
    assert 'tmpfs_secrets_test_gauge{reason="Synced"} 3.0' in metrics.render().decode()
