from typing import Any

import pytest

from tmpfs_secrets.api import (
    Extract,
    Find,
    LabelSelector,
    Requirement,
    parse_external_secret,
    parse_store,
)
from tmpfs_secrets.errors import Reason, SpecError


def es(spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "shop-db", "namespace": "shop", "generation": 3, **meta}, "spec": spec}


BASE: dict[str, Any] = {
    "secretStoreRef": {"name": "aws"},
    "data": [{"secretKey": "K", "remoteRef": {"key": "prod/db"}}],
}


def test_external_secret_defaults() -> None:
    spec = parse_external_secret(es(BASE))
    assert spec.refresh_interval == 3600
    assert spec.store_ref.kind == "SecretStore"
    assert spec.target.name == "shop-db" and spec.target.deletion_policy == "Retain"
    assert spec.generation == 3 and not spec.synced_before


def test_external_secret_full() -> None:
    spec = parse_external_secret(
        es(
            {
                **BASE,
                "refreshInterval": "5m",
                "dataFrom": [{"extract": {"key": "prod/supabase"}}, {"find": {"path": "/shop/prod/"}}],
                "target": {"name": "t", "deletionPolicy": "Delete", "creationPolicy": "Merge"},
            },
            annotations={"tmpfs-secrets.io/refresh-requested": "2026-01-01T00:00:00Z"},
        )
    )
    assert spec.refresh_interval == 300
    assert spec.data_from == (Extract("prod/supabase"), Find("/shop/prod/"))
    assert spec.target.deletion_policy == "Delete" and spec.target.creation_policy == "Merge"
    assert spec.refresh_request == "2026-01-01T00:00:00Z"


def test_synced_before_needs_the_same_generation_and_a_hash() -> None:
    status = {"contentHash": "sha256:x", "conditions": [{"type": "Ready", "observedGeneration": 3}]}
    assert parse_external_secret({**es(BASE), "status": status}).synced_before
    old = {**status, "conditions": [{"type": "Ready", "observedGeneration": 2}]}
    assert not parse_external_secret({**es(BASE), "status": old}).synced_before


def test_a_direct_object_is_never_synced_before_a_restart() -> None:
    # Its values lived in the previous run's memory only: the new run must fetch them at once.
    status = {"contentHash": "sha256:x", "conditions": [{"type": "Ready", "observedGeneration": 3}]}
    direct = {**BASE, "target": {"delivery": "Direct"}}
    assert not parse_external_secret({**es(direct), "status": status}).synced_before


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"data": BASE["data"]}, "spec.secretStoreRef"),
        ({"secretStoreRef": {"name": "aws"}}, "spec.data or spec.dataFrom"),
        ({**BASE, "refreshInterval": "soon"}, "refreshInterval"),
        ({**BASE, "data": [{"secretKey": "bad key", "remoteRef": {"key": "k"}}]}, "spec.data[0].secretKey"),
        ({**BASE, "data": [{"secretKey": "K"}]}, "spec.data[0].remoteRef"),
        ({**BASE, "data": BASE["data"] * 2}, "appears twice"),
        ({**BASE, "dataFrom": [{"find": {}}]}, "spec.dataFrom[0].find needs path, name or tags"),
        ({**BASE, "dataFrom": [{"find": {"name": {"regexp": "("}}}]}, "spec.dataFrom[0].find.name.regexp"),
        ({**BASE, "dataFrom": [{"find": {"path": "/p", "rewrite": []}}]}, "supports path, name and tags"),
        ({**BASE, "dataFrom": [{}]}, "exactly one of extract or find"),
        ({**BASE, "target": {"deletionPolicy": "Merge"}}, "spec.target.deletionPolicy"),
        ({**BASE, "secretStoreRef": {"name": "aws", "kind": "Vault"}}, "spec.secretStoreRef.kind"),
    ],
)
def test_external_secret_errors_name_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_external_secret(es(spec))
    assert err.value.reason is Reason.INVALID_SPEC
    assert field in err.value.message


def store(kind: str = "SecretStore", **aws: Any) -> dict[str, Any]:
    meta = {"name": "aws", **({"namespace": "shop"} if kind == "SecretStore" else {})}
    return {"kind": kind, "metadata": meta, "spec": {"provider": {"aws": {"region": "us-east-1", **aws}}}}


def test_store_parsing() -> None:
    spec = parse_store(
        store(role="arn:aws:iam::111122223333:role/r", externalID="shop-ext", service="ParameterStore")
    )
    assert (spec.service, spec.role, spec.external_id, spec.namespace) == (
        "ParameterStore",
        "arn:aws:iam::111122223333:role/r",
        "shop-ext",
        "shop",
    )
    sa = parse_store(store(auth={"serviceAccountRef": {"name": "reader"}}))
    assert sa.auth is not None and sa.auth.service_account == ("shop", "reader")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (store(region="nowhere"), "region"),
        (store(service="Vault"), "service"),
        (store(role="not-an-arn"), "role"),
        (store(externalID="shop-ext"), "externalID"),
        (store(role="arn:aws:iam::111122223333:role/r", externalID="x"), "externalID"),
        (store(role="arn:aws:iam::111122223333:role/r", externalID="a b"), "externalID"),
        (store(auth={}), None),
        (store(auth={"serviceAccountRef": {"name": "a"}, "secretRef": {}}), "exactly one"),
        (store("ClusterSecretStore", auth={"serviceAccountRef": {"name": "a"}}), "namespace is required"),
        (store(auth={"serviceAccountRef": {"name": "a", "namespace": "other"}}), "own namespace"),
    ],
)
def test_store_errors(body: dict[str, Any], field: str | None) -> None:
    if field is None:  # an empty auth is the default identity
        assert parse_store(body, allow_operator_identity=True).auth is None
        return
    with pytest.raises(SpecError, match=field):
        parse_store(body)


def test_cluster_store_conditions() -> None:
    body = store("ClusterSecretStore")
    body["spec"]["conditions"] = [
        {"namespaces": ["shop"]},
        {
            "namespaceSelector": {
                "matchLabels": {"team": "a"},
                "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}],
            }
        },
    ]
    spec = parse_store(body)
    assert spec.admits("shop", {})
    assert spec.admits("x", {"team": "a", "env": "prod"})
    assert not spec.admits("x", {"team": "a", "env": "dev"})
    assert not spec.admits("x", {})
    assert parse_store(store("ClusterSecretStore")).admits("anything", {})
    assert not parse_store(store(), allow_operator_identity=True).admits("other", {})


def test_conditions_only_on_cluster_store() -> None:
    body = store()
    body["spec"]["conditions"] = [{"namespaces": ["shop"]}]
    with pytest.raises(SpecError, match="only for ClusterSecretStore"):
        parse_store(body)


def test_selector_operators() -> None:
    sel = LabelSelector(
        (("a", "1"),),
        (Requirement("b", "NotIn", ("x",)), Requirement("c", "Exists"), Requirement("d", "DoesNotExist")),
    )
    assert sel.matches({"a": "1", "b": "y", "c": ""})
    assert not sel.matches({"a": "1", "b": "x", "c": ""})
    assert not sel.matches({"a": "1", "c": "", "d": "z"})
    assert not sel.matches({"a": "2", "c": ""})
    assert LabelSelector().matches({})


def test_operator_identity_is_only_for_secretstores_when_allowed() -> None:
    with pytest.raises(SpecError) as err:
        parse_store(store())
    assert "serviceAccountRef" in err.value.message and "role" in err.value.message
    assert err.value.reason is Reason.INVALID_SPEC
    with pytest.raises(SpecError, match="operator's own identity"):
        parse_store(store(auth={}))
    assert parse_store(store(), allow_operator_identity=True).auth is None
    # A role on top, a tenant ServiceAccount or static keys: not the operator's identity alone.
    assert parse_store(store(role="arn:aws:iam::111122223333:role/r")).role is not None
    assert parse_store(store(auth={"serviceAccountRef": {"name": "a"}})).auth is not None
    # ClusterSecretStores are made by admins: they may always use it.
    assert parse_store(store("ClusterSecretStore")).auth is None


@pytest.mark.parametrize(
    ("interval", "floor", "ok"),
    [
        ("5s", 10.0, False),
        ("10s", 10.0, True),
        ("5s", 1.0, True),
        ("0", 10.0, True),
        (0, 10.0, True),
        ("87600h", 10.0, True),
        ("87600h1s", 10.0, False),
        ("9999999h", 10.0, False),
    ],
)
def test_refresh_interval_floor_and_ceiling(interval: object, floor: float, ok: bool) -> None:
    body = es({**BASE, "refreshInterval": interval})
    if ok:
        parse_external_secret(body, min_refresh_interval=floor)
        return
    with pytest.raises(SpecError) as err:
        parse_external_secret(body, min_refresh_interval=floor)
    assert "spec.refreshInterval" in err.value.message
    assert f"from {int(floor)}s to 87600h, or 0 to fetch once" in err.value.message


def test_the_default_floor_is_ten_seconds() -> None:
    with pytest.raises(SpecError, match="from 10s to 87600h"):
        parse_external_secret(es({**BASE, "refreshInterval": "1s"}))
