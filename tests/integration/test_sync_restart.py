"""A restarted operator rewrites nothing that is unchanged: Secrets, statuses and stores keep
their resourceVersions, and no event is posted, although every source is fetched again."""

from __future__ import annotations

from collections.abc import Callable

from tests.cluster.aws import MotoServer
from tests.integration.conftest import (
    Kube,
    Operator,
    Shop,
    sync_shop_examples,
    wait_until,
)

FETCHES = ("BatchGetSecretValue", "GetSecretValue", "GetParametersByPath", "GetParameters")


def _versions(kube: Kube, namespace: str) -> dict[str, str]:
    out = {}
    for name in ("shop-db", "shop-config"):
        out[f"Secret/{name}"] = kube.secret(name, namespace).metadata.resource_version  # type: ignore[union-attr]
        out[f"ExternalSecret/{name}"] = kube.get("ExternalSecret", name, namespace)["metadata"][
            "resourceVersion"
        ]  # type: ignore[index]
    for name in ("aws-secrets", "aws-parameters"):
        out[f"SecretStore/{name}"] = kube.get("SecretStore", name, namespace)["metadata"]["resourceVersion"]  # type: ignore[index]
    return out


def test_restart_rewrites_nothing_unchanged(
    operator: Operator,
    shop: Shop,
    aws: MotoServer,
    namespace: str,
    kube: Kube,
    apply_yaml: Callable[..., str],
) -> None:
    sync_shop_examples(apply_yaml, namespace, kube)
    # Let a few refreshes pass first: steady state writes nothing either.
    calls = sum(aws.call_counts()[op] for op in FETCHES)
    wait_until(
        "two more refreshes", lambda: sum(aws.call_counts()[op] for op in FETCHES) >= calls + 4, timeout=60
    )
    before = _versions(kube, namespace)
    events = sorted(e.metadata.name for e in kube.events(namespace))

    operator.restart()
    calls = sum(aws.call_counts()[op] for op in FETCHES)
    # Both ExternalSecrets' sources fetched at least twice by the new process.
    wait_until(
        "the restarted operator to refresh every source twice",
        lambda: sum(aws.call_counts()[op] for op in FETCHES) >= calls + 6,
        timeout=60,
    )
    assert _versions(kube, namespace) == before
    assert sorted(e.metadata.name for e in kube.events(namespace)) == events
    assert kube.secret_data("shop-db", namespace)["RDS_PASSWORD"] == shop.values["RDS_PASSWORD"]  # type: ignore[index]

    # The restarted operator still acts on change.
    new = shop.rotate_password()
    wait_until(
        "the rotation after the restart",
        lambda: kube.secret_data("shop-db", namespace)["RDS_PASSWORD"] == new,  # type: ignore[index]
        timeout=30,
    )
