"""A steady AWS outage against the real API server: the status is written when the failure is
news, not on every backoff retry, and SyncFailed is posted once per reason and window."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.cluster.aws import Fault, MotoServer
from tests.integration.conftest import (
    AWS_READS,
    EXAMPLES,
    Kube,
    Operator,
    Shop,
    apply_examples,
    wait_until,
    with_interval,
)

SHOP_DB = EXAMPLES / "externalsecret-shop-db.yaml"
KEYS = ("prod/shop/db", "prod/shop/supabase")


def test_a_steady_outage_writes_the_status_once_and_posts_one_event(
    operator: Operator,
    shop: Shop,
    aws: MotoServer,
    namespace: str,
    kube: Kube,
    apply_yaml: Callable[..., str],
) -> None:
    apply_examples(apply_yaml, namespace, "secretstore-secretsmanager.yaml")
    apply_yaml(with_interval(SHOP_DB, "2s"), namespace=namespace)
    kube.wait_ready("shop-db", namespace)
    good = kube.secret_data("shop-db", namespace)

    for op in AWS_READS:
        aws.inject(Fault(op, code="InternalFailure", message="Internal failure", status=500))
    # Each failing key is news once (the two keys may fail in different refreshes).
    cond = wait_until(
        "both keys reported failing",
        lambda: (
            (c := kube.ready("ExternalSecret", "shop-db", namespace))
            and c["reason"] == "ProviderError"
            and all(k in c["message"] for k in KEYS)
            and c
        ),
        timeout=90,
    )
    assert "InternalFailure" in cond["message"]
    settled = kube.get("ExternalSecret", "shop-db", namespace)
    assert settled is not None
    version = settled["metadata"]["resourceVersion"]

    # Several more backoff retries of the same outage (interval 2 s caps each delay at 2 s).
    since = time.monotonic()
    wait_until("more retries", lambda: len(aws.timed_calls(since)) >= 6, timeout=60)

    now = kube.get("ExternalSecret", "shop-db", namespace)
    assert now is not None
    assert now["metadata"]["resourceVersion"] == version, now["status"]
    failed = [e for e in kube.events(namespace, "shop-db") if e.reason == "SyncFailed"]
    assert len(failed) == 1, [e.message for e in failed]
    assert kube.secret_data("shop-db", namespace) == good
