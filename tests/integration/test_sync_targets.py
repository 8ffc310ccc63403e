"""Target Secrets: creationPolicy Owner (garbage-collected with its ExternalSecret), Orphan (left
behind), Merge (keys added to someone else's Secret), conflicts, and Direct delivery."""

from __future__ import annotations

import base64
from collections.abc import Callable

from tests.integration.conftest import (
    EXAMPLES,
    Kube,
    Operator,
    Shop,
    apply_examples,
    wait_until,
    with_interval,
)

SHOP_DB = EXAMPLES / "externalsecret-shop-db.yaml"


def _es(name: str, target: str, policy: str, *, delivery: str = "Secret") -> str:
    text = with_interval(SHOP_DB, "2s")
    text = text.replace("  name: shop-db\n", f"  name: {name}\n", 1)
    return text.replace(
        "  target:\n    name: shop-db\n    creationPolicy: Owner\n",
        f"  target:\n    name: {target}\n    creationPolicy: {policy}\n    delivery: {delivery}\n",
    )


def _secret(namespace: str, name: str, data: dict[str, str]) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def test_owner_is_collected_and_orphan_stays(
    operator: Operator, shop: Shop, namespace: str, kube: Kube, apply_yaml: Callable[..., str]
) -> None:
    apply_examples(apply_yaml, namespace, "secretstore-secretsmanager.yaml")
    apply_yaml(_es("owned", "owned-secret", "Owner"), namespace=namespace)
    apply_yaml(_es("orphan", "orphan-secret", "Orphan"), namespace=namespace)
    kube.wait_ready("owned", namespace)
    kube.wait_ready("orphan", namespace)
    orphan = kube.secret("orphan-secret", namespace)
    assert orphan is not None and not orphan.metadata.owner_references
    assert orphan.metadata.labels["app.kubernetes.io/managed-by"] == "tmpfs-secrets"
    owned = kube.secret("owned-secret", namespace)
    assert owned is not None and owned.metadata.owner_references[0].name == "owned"

    for name in ("owned", "orphan"):
        kube.custom.delete_namespaced_custom_object(
            "tmpfs-secrets.io", "v1alpha1", namespace, "externalsecrets", name
        )
    # The garbage collector re-reads discovery every 30 s; a CRD made after it started may take that long.
    wait_until(
        "the owned Secret to be garbage-collected",
        lambda: kube.secret("owned-secret", namespace) is None,
        120,
    )
    assert kube.secret_data("orphan-secret", namespace) == {
        "RDS_PASSWORD": shop.values["RDS_PASSWORD"],
        "SUPABASE_SERVICE_ROLE_KEY": shop.values["SUPABASE_SERVICE_ROLE_KEY"],
    }


def test_merge_adds_keys_to_an_existing_secret_and_waits_for_it(
    operator: Operator, shop: Shop, namespace: str, kube: Kube, apply_yaml: Callable[..., str]
) -> None:
    apply_examples(apply_yaml, namespace, "secretstore-secretsmanager.yaml")
    apply_yaml(_es("merged", "app-config", "Merge"), namespace=namespace)
    cond = kube.wait_ready("merged", namespace, status="False", reason="TargetNotFound")
    assert "creationPolicy Merge" in cond["message"]
    assert kube.secret("app-config", namespace) is None  # Merge never creates

    kube.core.create_namespaced_secret(namespace, _secret(namespace, "app-config", {"LOG_LEVEL": "debug"}))
    kube.wait_ready("merged", namespace, reason="Synced", timeout=60)
    assert kube.secret_data("app-config", namespace) == {
        "LOG_LEVEL": "debug",
        "RDS_PASSWORD": shop.values["RDS_PASSWORD"],
        "SUPABASE_SERVICE_ROLE_KEY": shop.values["SUPABASE_SERVICE_ROLE_KEY"],
    }
    merged = kube.secret("app-config", namespace)
    assert merged is not None and not merged.metadata.owner_references
    assert "app.kubernetes.io/managed-by" not in (merged.metadata.labels or {})

    new = shop.rotate_password()
    data = wait_until(
        "the rotation merged in",
        lambda: (d := kube.secret_data("app-config", namespace)) and d["RDS_PASSWORD"] == new and d,
        timeout=30,
    )
    assert data["LOG_LEVEL"] == "debug"


def test_owner_refuses_a_secret_it_does_not_manage(
    operator: Operator, shop: Shop, namespace: str, kube: Kube, apply_yaml: Callable[..., str]
) -> None:
    kube.core.create_namespaced_secret(namespace, _secret(namespace, "shop-db", {"HANDMADE": "yes"}))
    before = kube.secret("shop-db", namespace)
    apply_examples(apply_yaml, namespace, "secretstore-secretsmanager.yaml")
    apply_yaml(with_interval(SHOP_DB, "2s"), namespace=namespace)

    cond = kube.wait_ready("shop-db", namespace, status="False", reason="TargetConflict")
    assert "not managed by this ExternalSecret" in cond["message"] and "Merge" in cond["message"]
    after = kube.secret("shop-db", namespace)
    assert after is not None and before is not None
    assert after.metadata.resource_version == before.metadata.resource_version
    assert kube.secret_data("shop-db", namespace) == {"HANDMADE": "yes"}


def test_direct_delivery_is_never_synced_and_writes_no_secret(
    operator: Operator, shop: Shop, namespace: str, kube: Kube, apply_yaml: Callable[..., str]
) -> None:
    apply_examples(apply_yaml, namespace, "secretstore-secretsmanager.yaml")
    apply_yaml(_es("direct", "direct", "Owner", delivery="Direct"), namespace=namespace)
    cond = kube.wait_ready("direct", namespace, status="False", reason="DeliveryNotAvailable")
    assert "Direct is not available yet" in cond["message"] and "delivery: Secret" in cond["message"]
    # A rotation is fetched again, and still reported as not delivered.
    shop.rotate_password()
    apply_yaml(_es("control", "control", "Owner"), namespace=namespace)
    kube.wait_ready("control", namespace)
    es = kube.get("ExternalSecret", "direct", namespace) or {}
    assert "contentHash" not in (es.get("status") or {})
    assert kube.ready("ExternalSecret", "direct", namespace)["reason"] == "DeliveryNotAvailable"  # type: ignore[index]
    assert "Synced" not in kube.event_reasons(namespace, "direct")
    assert kube.secret("direct", namespace) is None
    managed = kube.core.list_namespaced_secret(namespace, label_selector="app.kubernetes.io/managed-by").items
    assert [s.metadata.name for s in managed] == ["control"]
