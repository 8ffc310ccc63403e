"""A failing refresh keeps the last good values: an AWS outage, throttling and a deleted key
never empty or delete a target; the status says why, and recovery needs no help."""

from __future__ import annotations

from collections.abc import Callable

import pytest

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


def _synced_shop_db(apply_yaml: Callable[..., str], namespace: str, kube: Kube) -> tuple[dict[str, str], str]:
    apply_examples(apply_yaml, namespace, "secretstore-secretsmanager.yaml")
    apply_yaml(with_interval(SHOP_DB, "2s"), namespace=namespace)
    kube.wait_ready("shop-db", namespace)
    secret = kube.secret("shop-db", namespace)
    assert secret is not None
    data = kube.secret_data("shop-db", namespace)
    assert data is not None
    return data, secret.metadata.resource_version


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault("", code="ServiceUnavailable", message="Service is unavailable", status=503), "ProviderError"),
        (Fault("", code="ThrottlingException", message="Rate exceeded", status=400), "Throttled"),
    ],
    ids=["outage", "throttling"],
)
def test_last_good_values_survive_aws_failures(
    fault: Fault,
    reason: str,
    operator: Operator,
    shop: Shop,
    aws: MotoServer,
    namespace: str,
    kube: Kube,
    apply_yaml: Callable[..., str],
) -> None:
    good, version = _synced_shop_db(apply_yaml, namespace, kube)
    for op in AWS_READS:  # every AWS operation fails, as if AWS were unreachable or throttling
        aws.inject(Fault(op, fault.code, fault.message, fault.status))

    cond = kube.wait_ready("shop-db", namespace, status="False", reason=reason, timeout=90)
    assert cond["message"]
    assert kube.secret_data("shop-db", namespace) == good
    secret = kube.secret("shop-db", namespace)
    assert secret is not None and secret.metadata.resource_version == version
    status = kube.get("ExternalSecret", "shop-db", namespace)["status"]  # type: ignore[index]
    assert status["contentHash"] == secret.metadata.annotations["tmpfs-secrets.io/content-hash"]
    failed = kube.wait_events(namespace, "shop-db", "SyncFailed")
    assert all(e.type == "Warning" for e in failed)
    assert reason in failed[0].message

    aws.clear_faults()
    kube.wait_ready("shop-db", namespace, reason="Synced", timeout=90)
    assert kube.secret_data("shop-db", namespace) == good
    secret = kube.secret("shop-db", namespace)
    assert secret is not None and secret.metadata.resource_version == version  # same values: no write


def test_deleted_source_keeps_its_keys_with_retain(
    operator: Operator, shop: Shop, namespace: str, kube: Kube, apply_yaml: Callable[..., str]
) -> None:
    good, version = _synced_shop_db(apply_yaml, namespace, kube)
    shop.sm.delete_secret(SecretId="prod/shop/supabase", ForceDeleteWithoutRecovery=True)

    cond = kube.wait_ready("shop-db", namespace, status="False", reason="SourceNotFound", timeout=60)
    assert "Retain" in cond["message"]
    assert kube.secret_data("shop-db", namespace) == good
    assert kube.secret("shop-db", namespace).metadata.resource_version == version  # type: ignore[union-attr]


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
def test_deletion_policy_for_parameters_gone_from_a_path(
    policy: str, operator: Operator, shop: Shop, namespace: str, kube: Kube, apply_yaml: Callable[..., str]
) -> None:
    apply_examples(apply_yaml, namespace, "secretstore-parameterstore.yaml")
    text = with_interval(EXAMPLES / "externalsecret-shop-config.yaml", "2s")
    apply_yaml(
        text.replace("    name: shop-config\n", f"    name: shop-config\n    deletionPolicy: {policy}\n"),
        namespace=namespace,
    )
    kube.wait_ready("shop-config", namespace)
    assert "COGNITO_CLIENT_ID" in kube.secret_data("shop-config", namespace)  # type: ignore[operator]

    shop.ssm.delete_parameter(Name="/shop/prod/COGNITO_CLIENT_ID")

    if policy == "Delete":
        data = wait_until(
            "the key to leave the Secret",
            lambda: (d := kube.secret_data("shop-config", namespace)) and "COGNITO_CLIENT_ID" not in d and d,
            timeout=60,
        )
        assert data["COGNITO_USER_POOL_ID"] == shop.values["COGNITO_USER_POOL_ID"]
        assert kube.ready("ExternalSecret", "shop-config", namespace)["status"] == "True"  # type: ignore[index]
    else:
        cond = kube.wait_ready("shop-config", namespace, status="False", reason="SourceNotFound", timeout=60)
        assert "COGNITO_CLIENT_ID" in cond["message"]
        assert (
            kube.secret_data("shop-config", namespace)["COGNITO_CLIENT_ID"]
            == shop.values["COGNITO_CLIENT_ID"]
        )  # type: ignore[index]
