"""A value rotated in AWS reaches the Secret in place on the next refresh; `refreshInterval: 0`
fetches once, and the refresh-requested annotation fetches again on demand."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.cluster.aws import MotoServer
from tests.integration.conftest import (
    EXAMPLES,
    Emitted,
    Kube,
    Operator,
    Shop,
    apply_examples,
    wait_until,
    with_interval,
)

SHOP_DB = EXAMPLES / "externalsecret-shop-db.yaml"


def test_rotation_reaches_the_secret_in_place(
    operator: Operator,
    shop: Shop,
    namespace: str,
    kube: Kube,
    apply_yaml: Callable[..., str],
    emitted: Emitted,
) -> None:
    apply_examples(apply_yaml, namespace, "secretstore-secretsmanager.yaml")
    apply_yaml(with_interval(SHOP_DB, "2s"), namespace=namespace)
    kube.wait_ready("shop-db", namespace)
    before = kube.secret("shop-db", namespace)
    assert before is not None
    versions_before = kube.get("ExternalSecret", "shop-db", namespace)["status"]["syncedVersions"]  # type: ignore[index]

    new = shop.rotate_password()
    # Nothing but the schedule triggers this: no annotation, no spec change.
    data = wait_until(
        "the rotated password in the Secret",
        lambda: (d := kube.secret_data("shop-db", namespace)) and d["RDS_PASSWORD"] == new and d,
        timeout=30,
    )
    assert data["SUPABASE_SERVICE_ROLE_KEY"] == shop.values["SUPABASE_SERVICE_ROLE_KEY"]
    after = kube.secret("shop-db", namespace)
    assert after is not None
    assert after.metadata.uid == before.metadata.uid  # updated in place, not recreated

    status = wait_until(
        "the status to show the new version",
        lambda: (
            (s := kube.get("ExternalSecret", "shop-db", namespace)["status"])  # type: ignore[index]
            and s["syncedVersions"]["RDS_PASSWORD"] != versions_before["RDS_PASSWORD"]
            and s
        ),
    )
    assert (
        status["syncedVersions"]["SUPABASE_SERVICE_ROLE_KEY"] == versions_before["SUPABASE_SERVICE_ROLE_KEY"]
    )
    assert after.metadata.annotations["tmpfs-secrets.io/content-hash"] == status["contentHash"]

    rotated = wait_until(
        "a Rotated event", lambda: [e for e in kube.events(namespace, "shop-db") if e.reason == "Rotated"]
    )
    assert len(rotated) == 1
    assert "changed: RDS_PASSWORD" in rotated[0].message
    assert "SUPABASE_SERVICE_ROLE_KEY" not in rotated[0].message
    emitted.assert_free_of(shop.searchable)


def test_interval_zero_fetches_once_until_a_refresh_is_requested(
    operator: Operator,
    shop: Shop,
    aws: MotoServer,
    namespace: str,
    kube: Kube,
    apply_yaml: Callable[..., str],
    control_plane: object,
) -> None:
    apply_examples(apply_yaml, namespace, "secretstore-secretsmanager.yaml")
    apply_yaml(with_interval(SHOP_DB, '"0"'), namespace=namespace)
    kube.wait_ready("shop-db", namespace)
    fetches = sum(aws.call_counts()[op] for op in ("BatchGetSecretValue", "GetSecretValue"))
    assert fetches >= 1

    new = shop.rotate_password()
    time.sleep(5)  # several of the short intervals other tests use: a scheduled refresh would have run
    assert kube.secret_data("shop-db", namespace)["RDS_PASSWORD"] == shop.values["RDS_PASSWORD"]  # type: ignore[index]
    assert sum(aws.call_counts()[op] for op in ("BatchGetSecretValue", "GetSecretValue")) == fetches

    kube.custom.patch_namespaced_custom_object(
        "tmpfs-secrets.io",
        "v1alpha1",
        namespace,
        "externalsecrets",
        "shop-db",
        {"metadata": {"annotations": {"tmpfs-secrets.io/refresh-requested": "first"}}},
    )
    wait_until(
        "the refresh-requested annotation to cause an AWS fetch",
        lambda: sum(aws.call_counts()[op] for op in ("BatchGetSecretValue", "GetSecretValue")) > fetches,
        timeout=30,
    )
    wait_until(
        "the refresh-requested annotation to deliver the new password",
        lambda: kube.secret_data("shop-db", namespace)["RDS_PASSWORD"] == new,  # type: ignore[index]
        timeout=30,
    )
