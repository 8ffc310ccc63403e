"""`tmpfs-secrets iam-policy`: the policies name exactly what the manifests read, per identity, and
the forecast batches calls the way the scheduler does (20 secrets, 10 parameters a call)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tmpfs_secrets import cli, iam

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FILES = [
    "secretstore-secretsmanager.yaml",
    "secretstore-parameterstore.yaml",
    "externalsecret-shop-db.yaml",
    "externalsecret-shop-config.yaml",
]


def _docs() -> list[dict[str, object]]:
    return [d for name in FILES for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


def _statements(document: dict[str, object]) -> dict[str, dict[str, object]]:
    return {s["Sid"]: s for s in document["Statement"]}  # type: ignore[attr-defined,index]


def test_the_examples_need_their_secrets_and_their_path_only() -> None:
    uses, problems = iam.usage(_docs(), namespace="shop")
    assert problems == []
    assert list(uses) == [iam.OPERATOR]
    statements = _statements(iam.policy(uses[iam.OPERATOR], account="111122223333"))
    assert statements["BatchReads"]["Resource"] == "*"
    assert statements["Secrets"]["Resource"] == [
        "arn:aws:secretsmanager:us-east-1:111122223333:secret:prod/shop/db-??????",
        "arn:aws:secretsmanager:us-east-1:111122223333:secret:prod/shop/supabase-??????",
    ]
    assert statements["Parameters"]["Resource"] == [
        "arn:aws:ssm:us-east-1:111122223333:parameter/shop/prod",
        "arn:aws:ssm:us-east-1:111122223333:parameter/shop/prod/*",
    ]
    assert statements["DecryptThroughTheseServices"]["Condition"] == {
        "StringEquals": {
            "kms:ViaService": ["secretsmanager.us-east-1.amazonaws.com", "ssm.us-east-1.amazonaws.com"]
        }
    }
    assert "StoreRoles" not in statements and "FindSecrets" not in statements


def test_forecast_batches_like_the_scheduler() -> None:
    uses, _ = iam.usage(_docs(), namespace="shop")
    by_service = {f.service: f for f in iam.forecast(uses[iam.OPERATOR])}
    # Two secrets every 5 minutes share one BatchGetSecretValue call: 8,640 calls in 30 days.
    assert by_service["SecretsManager"].calls_per_month == 8640
    assert by_service["SecretsManager"].usd_per_month == pytest.approx(8640 / 10_000 * 0.05)
    # One path every 15 minutes.
    assert by_service["ParameterStore"].calls_per_month == 2880
    assert by_service["ParameterStore"].usd_per_month == 0

    many = iam.Usage()
    for i in range(45):
        many.read(many.keys, ("SecretsManager", "eu-west-1", f"app/s{i}"), 60.0)
    (only,) = iam.forecast(many)
    assert only.calls_per_month == 3 * 30 * 24 * 60  # ceil(45 / 20) calls a minute


def test_a_store_role_gets_its_own_policy_and_the_operator_may_assume_it() -> None:
    role = "arn:aws:iam::111122223333:role/shop-secrets"
    docs = [
        {
            "apiVersion": "tmpfs-secrets.io/v1alpha1",
            "kind": "SecretStore",
            "metadata": {"name": "tenant", "namespace": "shop"},
            "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "eu-west-1", "role": role}}},
        },
        {
            "apiVersion": "tmpfs-secrets.io/v1alpha1",
            "kind": "ExternalSecret",
            "metadata": {"name": "db", "namespace": "shop"},
            "spec": {
                "secretStoreRef": {"name": "tenant"},
                "data": [{"secretKey": "P", "remoteRef": {"key": "shop/db"}}],
            },
        },
        {"kind": "ExternalSecret", "metadata": {"name": "broken", "namespace": "shop"}, "spec": {}},
    ]
    uses, problems = iam.usage(docs)
    assert sorted(uses) == sorted([iam.OPERATOR, role])
    operator = _statements(iam.policy(uses[iam.OPERATOR]))
    assert operator == {"StoreRoles": operator["StoreRoles"]}
    assert operator["StoreRoles"]["Resource"] == [role]
    tenant = _statements(iam.policy(uses[role], account="111122223333"))
    assert tenant["Secrets"]["Resource"] == [
        "arn:aws:secretsmanager:eu-west-1:111122223333:secret:shop/db-??????"
    ]
    assert len(problems) == 1 and problems[0].startswith("ExternalSecret shop/broken: skipped:")


def test_a_secrets_manager_find_may_read_every_secret_under_its_path_besides_the_named_ones() -> None:
    store = {
        "apiVersion": "tmpfs-secrets.io/v1alpha1",
        "kind": "SecretStore",
        "metadata": {"name": "sm", "namespace": "shop"},
        "spec": {"provider": {"aws": {"service": "SecretsManager", "region": "eu-west-1"}}},
    }

    def external(name: str, spec: dict[str, object]) -> dict[str, object]:
        return {
            "apiVersion": "tmpfs-secrets.io/v1alpha1",
            "kind": "ExternalSecret",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"secretStoreRef": {"name": "sm"}, **spec},
        }

    docs = [
        store,
        external("db", {"data": [{"secretKey": "P", "remoteRef": {"key": "shop/db"}}]}),
        external("keys", {"dataFrom": [{"find": {"path": "shop/keys/"}}]}),
        external("tagged", {"dataFrom": [{"find": {"tags": {"team": "shop"}}}]}),
    ]
    uses, problems = iam.usage(docs)
    assert problems == []
    statements = _statements(iam.policy(uses[iam.OPERATOR], account="111122223333"))
    assert statements["FindSecrets"]["Action"] == "secretsmanager:ListSecrets"
    arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:"
    # A find by tags alone may find any secret: nothing narrower than every secret of the region.
    assert statements["Secrets"]["Resource"] == [f"{arn}*", f"{arn}shop/db-??????", f"{arn}shop/keys/*"]

    # Each find lists at every refresh (the default hour) besides the batch of named secrets.
    (only,) = iam.forecast(uses[iam.OPERATOR])
    assert only.finds
    assert only.calls_per_month == 3 * 30 * 24  # one BatchGetSecretValue and two ListSecrets an hour
    _, stderr = iam.report(docs)
    assert "plus the reads of what its finds find" in stderr


def test_the_command_prints_the_policies_and_the_forecast(
    capsys: pytest.CaptureFixture[str],
) -> None:
    files = [str(EXAMPLES / n) for n in FILES]
    assert cli.main(["iam-policy", "--account", "111122223333", "-n", "shop", *files]) == 0
    out, err = capsys.readouterr()
    policies = json.loads(out)
    assert list(policies) == [iam.OPERATOR]
    assert "SecretsManager in us-east-1: about 8,640 calls a month, $0.04 at list price" in err
