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


def _secret(
    namespace: str,
    name: str,
    data: dict[str, str],
    *,
    annotations: dict[str, str] | None = None,
    kind: str = "Opaque",
    labels: dict[str, str] | None = None,
) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": kind,
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations, "labels": labels},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


MERGE_OK = {"tmpfs-secrets.io/allow-merge": "true"}


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

    kube.core.create_namespaced_secret(
        namespace, _secret(namespace, "app-config", {"LOG_LEVEL": "debug"}, annotations=MERGE_OK)
    )
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
    assert "not managed by this ExternalSecret" in cond["message"] and "Merge" not in cond["message"]
    after = kube.secret("shop-db", namespace)
    assert after is not None and before is not None
    assert after.metadata.resource_version == before.metadata.resource_version
    assert kube.secret_data("shop-db", namespace) == {"HANDMADE": "yes"}


def test_merge_writes_only_into_secrets_that_opt_in(
    operator: Operator, shop: Shop, namespace: str, kube: Kube, apply_yaml: Callable[..., str]
) -> None:
    helm = {"owner": "helm", "name": "shop", "status": "deployed"}
    targets = {
        # name: (Secret, the words the refusal must contain)
        "plain": (_secret(namespace, "plain", {"A": "1"}), "allow-merge"),
        "token": (
            _secret(
                namespace,
                "token",
                {"A": "1"},
                annotations={"kubernetes.io/service-account.name": "default", **MERGE_OK},
                kind="kubernetes.io/service-account-token",
            ),
            "kubernetes.io/service-account-token",
        ),
        "release": (
            _secret(
                namespace, "release", {"A": "1"}, annotations=MERGE_OK, kind="helm.sh/release.v1", labels=helm
            ),
            "helm.sh/release.v1",
        ),
        "taken": (
            _secret(
                namespace,
                "taken",
                {"A": "1"},
                annotations={**MERGE_OK, "tmpfs-secrets.io/external-secret": "someone-else"},
            ),
            "another ExternalSecret",
        ),
    }
    for secret, _ in targets.values():
        kube.core.create_namespaced_secret(namespace, secret)
    # kube-controller-manager fills a service-account-token Secret after its creation: wait for
    # that write, so only the operator's could change a resourceVersion below.
    wait_until(
        "the token controller to fill Secret token",
        lambda: "token" in (((s := kube.secret("token", namespace)) and s.data) or {}),
        60,
    )
    before = {name: kube.secret(name, namespace) for name in targets}
    apply_examples(apply_yaml, namespace, "secretstore-secretsmanager.yaml")
    for name in targets:
        apply_yaml(_es(f"m-{name}", name, "Merge"), namespace=namespace)
    for name, (_, words) in targets.items():
        cond = kube.wait_ready(f"m-{name}", namespace, status="False", reason="TargetConflict")
        assert words in cond["message"], cond["message"]
    for name, old in before.items():
        now = kube.secret(name, namespace)
        assert now is not None and old is not None
        assert now.metadata.resource_version == old.metadata.resource_version, name


def test_template_type_labels_and_immutable_secrets(
    operator: Operator, shop: Shop, namespace: str, kube: Kube, apply_yaml: Callable[..., str]
) -> None:
    apply_examples(apply_yaml, namespace, "secretstore-secretsmanager.yaml")
    text = _es("shaped", "shaped", "Owner") + (
        "    immutable: true\n"
        "    template:\n"
        "      type: kubernetes.io/basic-auth\n"
        "      metadata:\n        labels: {app: shop}\n        annotations: {team: payments}\n"
        "      data:\n"
        "        username: admin\n"
        '        password: "{{ .RDS_PASSWORD }}"\n'
    )
    apply_yaml(text, namespace=namespace)
    kube.wait_ready("shaped", namespace, reason="Synced")
    secret = kube.secret("shaped", namespace)
    assert secret is not None and secret.type == "kubernetes.io/basic-auth" and secret.immutable
    assert secret.metadata.labels["app"] == "shop" and secret.metadata.annotations["team"] == "payments"
    assert kube.secret_data("shaped", namespace) == {
        "username": "admin",
        "password": shop.values["RDS_PASSWORD"],
    }

    # Immutable: a rotation is not written into it, and the status says so.
    shop.rotate_password()
    cond = kube.wait_ready("shaped", namespace, status="False", reason="TargetConflict", timeout=60)
    assert "immutable" in cond["message"]
    assert kube.secret_data("shaped", namespace)["password"] == shop.values["RDS_PASSWORD"]


def test_direct_delivery_is_never_synced_and_writes_no_secret(
    operator: Operator, shop: Shop, namespace: str, kube: Kube, apply_yaml: Callable[..., str]
) -> None:
    apply_examples(apply_yaml, namespace, "secretstore-secretsmanager.yaml")
    apply_yaml(_es("direct", "direct", "Owner", delivery="Direct"), namespace=namespace)
    # Fetched, but no pod holds it: never Ready, never Synced.
    cond = kube.wait_ready("direct", namespace, status="False", reason="AwaitingPods")
    assert "no pod streams it yet" in cond["message"]
    assert (kube.get("ExternalSecret", "direct", namespace) or {})["status"]["direct"] == {
        "podsCurrent": 0,
        "podsStale": 0,
    }
    # A rotation is fetched again, and still not reported as delivered.
    shop.rotate_password()
    apply_yaml(_es("control", "control", "Owner"), namespace=namespace)
    kube.wait_ready("control", namespace)
    assert kube.ready("ExternalSecret", "direct", namespace)["reason"] == "AwaitingPods"  # type: ignore[index]
    kube.wait_events(namespace, "control", "Synced")  # events are posted in order: direct's came first
    assert "Synced" not in kube.event_reasons(namespace, "direct")
    assert kube.secret("direct", namespace) is None
    managed = kube.core.list_namespaced_secret(namespace, label_selector="app.kubernetes.io/managed-by").items
    assert [s.metadata.name for s in managed] == ["control"]
