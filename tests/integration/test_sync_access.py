"""Stores are tenancy boundaries: an ExternalSecret can't use another namespace's SecretStore,
nor a ClusterSecretStore whose conditions exclude its namespace; namespace labels count live."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.cluster.control_plane import ControlPlane
from tests.integration.conftest import EXAMPLES, Kube, Operator, Shop, apply_examples, with_interval

SHOP_DB = EXAMPLES / "externalsecret-shop-db.yaml"
LABEL = "tmpfs-secrets.io/aws-access"


def _es_using(store: str, kind: str, interval: str = "2s") -> str:
    text = with_interval(SHOP_DB, interval)
    return text.replace(
        "    name: aws-secrets\n    kind: SecretStore\n", f"    name: {store}\n    kind: {kind}\n"
    )


@pytest.fixture
def cluster_store(control_plane: ControlPlane, other_namespace: str) -> Iterator[str]:
    """A ClusterSecretStore that admits `other_namespace` by name and namespaces labelled shared."""
    name = f"shared-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl(
        "apply",
        "-f",
        "-",
        input=f"""
apiVersion: tmpfs-secrets.io/v1alpha1
kind: ClusterSecretStore
metadata: {{name: {name}}}
spec:
  provider: {{aws: {{service: SecretsManager, region: us-east-1}}}}
  conditions:
    - namespaces: [{other_namespace}]
    - namespaceSelector: {{matchLabels: {{{LABEL}: shared}}}}
""",
    )
    yield name
    control_plane.kubectl("delete", "clustersecretstore", name, "--wait=false")


def test_a_secret_store_of_another_namespace_is_not_found(
    operator: Operator,
    shop: Shop,
    namespace: str,
    other_namespace: str,
    kube: Kube,
    apply_yaml: Callable[..., str],
) -> None:
    apply_examples(apply_yaml, other_namespace, "secretstore-secretsmanager.yaml")
    kube.wait_ready("aws-secrets", other_namespace, kind="SecretStore")
    apply_yaml(with_interval(SHOP_DB, "2s"), namespace=namespace)

    cond = kube.wait_ready("shop-db", namespace, status="False", reason="StoreNotFound", timeout=90)
    assert "aws-secrets" in cond["message"]
    assert kube.secret("shop-db", namespace) is None


def test_cluster_store_conditions_decide_who_may_use_it(
    operator: Operator,
    shop: Shop,
    namespace: str,
    other_namespace: str,
    cluster_store: str,
    kube: Kube,
    apply_yaml: Callable[..., str],
) -> None:
    kube.wait_ready(cluster_store, "", kind="ClusterSecretStore")
    es = _es_using(cluster_store, "ClusterSecretStore")
    apply_yaml(es, namespace=other_namespace)
    apply_yaml(es, namespace=namespace)

    kube.wait_ready("shop-db", other_namespace, reason="Synced")
    assert kube.secret_data("shop-db", other_namespace)["RDS_PASSWORD"] == shop.values["RDS_PASSWORD"]  # type: ignore[index]
    cond = kube.wait_ready("shop-db", namespace, status="False", reason="StoreNotAllowed")
    assert cluster_store in cond["message"]
    assert kube.secret("shop-db", namespace) is None

    # Labelling the namespace admits it through namespaceSelector, without touching the ExternalSecret.
    kube.core.patch_namespace(namespace, {"metadata": {"labels": {LABEL: "shared"}}})
    kube.wait_ready("shop-db", namespace, reason="Synced")
    good = kube.secret_data("shop-db", namespace)
    assert good is not None and good["RDS_PASSWORD"] == shop.values["RDS_PASSWORD"]

    # Taking the label away refuses it again, and the values it had are kept.
    kube.core.patch_namespace(namespace, {"metadata": {"labels": {LABEL: None}}})
    kube.wait_ready("shop-db", namespace, status="False", reason="StoreNotAllowed")
    assert kube.secret_data("shop-db", namespace) == good
