"""The validating webhook: the operator's parsers plus mount paths and knowable key collisions."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tmpfs_secrets.webhook.objects import Rules, validate
from tmpfs_secrets.webhook.paths import RESERVED, mount_path_problem
from tmpfs_secrets.webhook.review import Request, Verdict, response


def es(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "tmpfs-secrets.io/v1alpha1",
        "kind": "ExternalSecret",
        "metadata": {"name": "db"},
        "spec": {"secretStoreRef": {"name": "aws"}, "data": [{"secretKey": "PW", "remoteRef": {"key": "k"}}]},
    }
    body["spec"].update(spec)
    return body


def test_a_valid_external_secret_is_allowed() -> None:
    verdict = validate("ExternalSecret", es(mount={"path": "/secrets/db", "defaultMode": 256}), "shop")
    assert verdict.allowed and verdict.warnings == ()


@pytest.mark.parametrize("root", RESERVED)
def test_mount_paths_in_reserved_folders_are_refused(root: str) -> None:
    verdict = validate("ExternalSecret", es(mount={"path": f"{root}/db"}), "shop")
    assert not verdict.allowed
    assert f"spec.mount.path '{root}/db' is under {root}" in verdict.message
    assert "/var/run/secrets/tmpfs-secrets.io/<name>" in verdict.message


def test_paths_next_to_reserved_folders_are_fine() -> None:
    assert mount_path_problem("/etcetera/x", "f") is None
    assert mount_path_problem("/var/run/secrets/other", "f") is None
    assert mount_path_problem("/etc", "f") is not None
    assert "not a normal path" in (mount_path_problem("/x/../etc/y", "f") or "")


def test_parser_errors_are_refused_with_the_parsers_message() -> None:
    body = es(data=[{"secretKey": "bad key!", "remoteRef": {"key": "k"}}])
    verdict = validate("ExternalSecret", body, "shop")
    assert not verdict.allowed
    assert verdict.message.startswith(
        "ExternalSecret shop/db: spec.data[0].secretKey 'bad key!' is not a valid"
    )


def test_an_extract_and_a_data_property_of_the_same_secret_under_its_key_collide() -> None:
    body = es(
        data=[{"secretKey": "password", "remoteRef": {"key": "prod/db", "property": "password"}}],
        dataFrom=[{"extract": {"key": "prod/db"}}],
    )
    verdict = validate("ExternalSecret", body, "shop")
    assert not verdict.allowed
    assert "spec.data[0] and spec.dataFrom[0] both deliver key 'password'" in verdict.message
    other = es(
        data=[{"secretKey": "DB_PASSWORD", "remoteRef": {"key": "prod/db", "property": "password"}}],
        dataFrom=[{"extract": {"key": "prod/db"}}],
    )
    assert validate("ExternalSecret", other, "shop").allowed


def test_a_find_and_a_data_parameter_under_its_path_collide() -> None:
    body = es(
        data=[{"secretKey": "sub_HOST", "remoteRef": {"key": "/shop/prod/sub/HOST"}}],
        dataFrom=[{"find": {"path": "/shop/prod"}}],
    )
    verdict = validate("ExternalSecret", body, "shop")
    assert (
        not verdict.allowed
        and "find under /shop/prod already delivers /shop/prod/sub/HOST" in verdict.message
    )
    elsewhere = es(
        data=[{"secretKey": "sub_HOST", "remoteRef": {"key": "/shop/dev/sub/HOST"}}],
        dataFrom=[{"find": {"path": "/shop/prod"}}],
    )
    assert validate("ExternalSecret", elsewhere, "shop").allowed


def test_direct_delivery_is_admitted() -> None:
    verdict = validate("ExternalSecret", es(target={"delivery": "Direct"}), "shop")
    assert verdict.allowed and verdict.warnings == ()


def test_stores_go_through_the_store_parser() -> None:
    store = {
        "metadata": {"name": "aws"},
        "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "moon-1"}}},
    }
    verdict = validate("SecretStore", store, "shop")
    assert not verdict.allowed and "not an AWS region name" in verdict.message
    store["spec"]["provider"]["aws"]["region"] = "us-east-1"
    allowed = Rules(allow_operator_identity=True)
    assert validate("SecretStore", store, "shop", allowed).allowed
    store["spec"]["conditions"] = [{"namespaces": ["a"]}]
    assert validate("ClusterSecretStore", store, "").allowed
    assert not validate("SecretStore", store, "shop", allowed).allowed


def test_admission_follows_the_operators_settings() -> None:
    store = {
        "metadata": {"name": "aws"},
        "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "us-east-1"}}},
    }
    refused = validate("SecretStore", store, "shop")
    assert not refused.allowed and "serviceAccountRef" in refused.message
    assert validate("SecretStore", store, "shop", Rules(allow_operator_identity=True)).allowed

    fast = es(refreshInterval="5s")
    assert not validate("ExternalSecret", fast, "shop").allowed
    assert validate("ExternalSecret", fast, "shop", Rules(min_refresh_interval=1)).allowed


def test_review_round_trip() -> None:
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u1",
            "kind": {"kind": "Pod"},
            "operation": "CREATE",
            "namespace": "shop",
            "object": {},
        },
    }
    request = Request.parse(review)
    assert (request.uid, request.kind, request.namespace) == ("u1", "Pod", "shop")
    ops = ({"op": "add", "path": "/spec/volumes", "value": []},)
    answer = response("u1", Verdict(warnings=("w",), patch=ops))["response"]
    assert answer["allowed"] and answer["warnings"] == ["w"] and answer["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(answer["patch"])) == list(ops)
    denied = response("u1", Verdict.deny("no"))["response"]
    assert denied == {
        "uid": "u1",
        "allowed": False,
        "status": {"code": 403, "reason": "Forbidden", "message": "no"},
    }
    with pytest.raises(ValueError):
        Request.parse({"kind": "Other"})
