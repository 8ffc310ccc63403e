"""The examples, applied as a user would, become Secrets with the seed's values; status, events
and printer columns say so, and none of it carries a value."""

from __future__ import annotations

from collections.abc import Callable

from tests.cluster.control_plane import ControlPlane
from tests.integration.conftest import (
    EXAMPLES,
    Emitted,
    Kube,
    Operator,
    Shop,
    apply_examples,
)

ALL = (
    "secretstore-secretsmanager.yaml",
    "secretstore-parameterstore.yaml",
    "externalsecret-shop-db.yaml",
    "externalsecret-shop-config.yaml",
)


def test_examples_sync_into_secrets(
    operator: Operator,
    shop: Shop,
    namespace: str,
    kube: Kube,
    apply_yaml: Callable[..., str],
    control_plane: ControlPlane,
    emitted: Emitted,
) -> None:
    apply_examples(apply_yaml, namespace, *ALL)

    for store in ("aws-secrets", "aws-parameters"):
        cond = kube.wait_ready(store, namespace, kind="SecretStore")
        assert cond["reason"] == "Valid"
    db = kube.wait_ready("shop-db", namespace)
    config = kube.wait_ready("shop-config", namespace)
    assert db["reason"] == "Synced" and db["observedGeneration"] == 1
    assert db["message"] == "2 keys from 2 sources"
    assert config["message"] == "6 keys from 1 source"

    assert kube.secret_data("shop-db", namespace) == {
        "RDS_PASSWORD": shop.values["RDS_PASSWORD"],
        "SUPABASE_SERVICE_ROLE_KEY": shop.values["SUPABASE_SERVICE_ROLE_KEY"],
    }
    assert kube.secret_data("shop-config", namespace) == {
        k: shop.values[k]
        for k in ("RDS_HOST", "RDS_PORT", "RDS_USER", "RDS_DB", "COGNITO_CLIENT_ID", "COGNITO_USER_POOL_ID")
    }

    secret = kube.secret("shop-db", namespace)
    assert secret is not None
    es = kube.get("ExternalSecret", "shop-db", namespace)
    assert es is not None
    assert secret.metadata.labels["app.kubernetes.io/managed-by"] == "tmpfs-secrets"
    owners = secret.metadata.owner_references
    assert [(o.kind, o.name, o.uid, o.controller) for o in owners] == [
        ("ExternalSecret", "shop-db", es["metadata"]["uid"], True)
    ]
    status = es["status"]
    assert secret.metadata.annotations["tmpfs-secrets.io/content-hash"] == status["contentHash"]
    assert status["contentHash"].startswith("sha256:")
    assert set(status["syncedVersions"]) == {"RDS_PASSWORD", "SUPABASE_SERVICE_ROLE_KEY"}
    assert status["refreshTime"].endswith("Z") and status["nextRefreshTime"].endswith("Z")

    # The printer columns: Store, Refresh, Ready, Reason, Age; and the short name.
    table = control_plane.kubectl("get", "tes", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "STORE", "REFRESH", "READY", "REASON", "AGE"]
    row = next(line.split() for line in table if line.startswith("shop-db "))
    assert row[1:5] == ["aws-secrets", "5m", "True", "Synced"]
    stores = control_plane.kubectl("get", "tss", "-n", namespace).stdout
    assert "SecretsManager" in stores and "ParameterStore" in stores

    kube.wait_events(namespace, "shop-db", "Synced")
    reasons = kube.event_reasons(namespace, "shop-db")
    assert reasons == ["Synced"]
    event = kube.events(namespace, "shop-db")[0]
    assert event.type == "Normal"
    assert "RDS_PASSWORD" in event.message and "SUPABASE_SERVICE_ROLE_KEY" in event.message

    emitted.assert_free_of(shop.searchable)


def test_examples_are_valid_yaml_for_the_crds(
    kube: Kube, crds: object, namespace: str, control_plane: ControlPlane
) -> None:
    """Server-side dry run of every example (the ClusterSecretStore included) passes the schema."""
    for path in sorted(EXAMPLES.glob("*.yaml")):
        out = control_plane.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(path)).stdout
        assert "(server dry run)" in out, path.name
