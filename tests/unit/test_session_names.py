"""Role session names and tags: valid for STS, naming the store, unique across tenants and kinds."""

from __future__ import annotations

import itertools

import pytest

from tmpfs_secrets.providers.aws.credentials import SESSION_NAME, session_name, session_tags

LONG_NS = "team-" + "n" * 58  # a 63-character namespace, the most Kubernetes allows
STORES = [
    ("SecretStore", "shop", "aws"),
    ("SecretStore", "shop", "aws.prod"),
    ("SecretStore", "cluster", "x"),
    ("ClusterSecretStore", None, "x"),
    ("ClusterSecretStore", None, "a"),
    ("SecretStore", LONG_NS, "aws"),
    ("SecretStore", LONG_NS, "aws-2"),
    ("SecretStore", LONG_NS, "parameters"),
    ("SecretStore", "shop", "s" * 253),
    ("SecretStore", "shop", "s" * 252),
    ("ClusterSecretStore", None, "c" * 253),
    ("ClusterSecretStore", None, "c" * 252),
]


@pytest.mark.parametrize(("kind", "namespace", "store"), STORES)
def test_every_session_name_is_valid_for_sts(kind: str, namespace: str | None, store: str) -> None:
    name = session_name(kind, namespace, store)
    assert SESSION_NAME.match(name), name
    assert 2 <= len(name) <= 64


def test_short_names_read_as_namespace_and_store() -> None:
    assert session_name("SecretStore", "shop", "aws") == "shop.aws"
    assert session_name("ClusterSecretStore", None, "a") == "cluster@a"


def test_no_two_stores_share_a_session_name() -> None:
    names = [session_name(*s) for s in STORES]
    assert len(set(names)) == len(names), names
    for (a, na), (b, nb) in itertools.combinations(zip(STORES, names, strict=True), 2):
        assert na != nb, (a, b)


def test_a_long_namespace_keeps_the_store_apart() -> None:
    # Three stores in one long namespace used to share one session name.
    names = {session_name("SecretStore", LONG_NS, s) for s in ("aws", "aws-2", "parameters")}
    assert len(names) == 3
    assert all(n.startswith("team-") for n in names)


def test_session_tags_name_namespace_and_store() -> None:
    assert dict(session_tags("SecretStore", "shop", "aws")) == {
        "kubernetes-namespace": "shop",
        "secret-store": "aws",
        "secret-store-kind": "SecretStore",
    }
    tags = dict(session_tags("ClusterSecretStore", None, "shared"))
    assert "kubernetes-namespace" not in tags and tags["secret-store"] == "shared"
