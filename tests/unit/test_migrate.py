"""`tmpfs-secrets migrate` on ESO's documented AWS examples: each object converts into one our
parsers accept, and every field that can't be converted (or means something else) is listed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tmpfs_secrets import cli
from tmpfs_secrets.api import parse_external_secret, parse_store
from tmpfs_secrets.errors import SpecError
from tmpfs_secrets.migrate import migrate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "eso"
DOCUMENTED = sorted(p for p in FIXTURES.glob("aws-*.yaml"))


def load(name: str) -> list[Any]:
    return list(yaml.safe_load_all((FIXTURES / name).read_text()))


def with_namespace(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] != "ClusterSecretStore":
        doc = {**doc, "metadata": {"namespace": "shop", **doc["metadata"]}}
    return doc


def notes_of(result: Any) -> dict[str, str]:
    return {f"{n.obj}: {n.field}": ("dropped: " if n.dropped else "review: ") + n.text for n in result.notes}


@pytest.mark.parametrize("path", DOCUMENTED, ids=[p.name for p in DOCUMENTED])
def test_every_documented_example_converts_or_says_why_not(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    result = migrate(docs)
    eso = [d for d in docs if d["apiVersion"].startswith("external-secrets.io/")]
    ours = [d for d in result.documents if d["apiVersion"] == "tmpfs-secrets.io/v1alpha1"]
    assert len(ours) == len(eso)  # every documented AWS object has a counterpart
    dropped = {(n.obj, n.field) for n in result.notes if n.dropped}
    for doc in ours:
        body = with_namespace(doc)
        name = f"{doc['kind']} {doc['metadata'].get('namespace', '')}".rstrip()
        obj_dropped = [
            f for o, f in dropped if o.startswith(doc["kind"]) and o.endswith(doc["metadata"]["name"])
        ]
        try:
            if doc["kind"] == "ExternalSecret":
                parse_external_secret(body)
            else:
                parse_store(body, allow_operator_identity=True)
        except SpecError as exc:
            # Only a field migrate already listed as not converted may stop it.
            assert obj_dropped, f"{name} {doc['metadata']['name']} refused but not listed: {exc.message}"


def test_stores_keep_role_keys_and_irsa() -> None:
    (store,) = migrate(load("aws-sm-store.yaml")).documents
    aws = store["spec"]["provider"]["aws"]
    assert aws["role"] == "arn:aws:iam::123456789012:role/external-secrets"
    assert aws["auth"]["secretRef"]["accessKeyIDSecretRef"] == {"name": "awssm-secret", "key": "access-key"}

    result = migrate(load("aws-access.yaml"))
    kinds = [d["kind"] for d in result.documents]
    assert kinds == ["SecretStore", "ServiceAccount", "SecretStore", "SecretStore", "SecretStore"]
    assert result.documents[1]["apiVersion"] == "v1"  # passed through unchanged
    assert result.documents[2]["spec"]["provider"]["aws"]["auth"] == {
        "serviceAccountRef": {"name": "my-serviceaccount"}
    }
    notes = notes_of(result)
    assert "not a role ARN" in notes["SecretStore team-b-store: spec.provider.aws.role"]
    assert notes["SecretStore team-b/team-b-store: spec.provider.aws.customSessionTags"].startswith("dropped")
    assert (
        "kubernetes-namespace"
        in notes["SecretStore team-b/team-b-store: spec.provider.aws.sessionTagsPolicy"]
    )
    assert "--allow-operator-identity-for-secretstores" in notes["SecretStore store: spec.provider.aws.auth"]
    assert not result.complete

    (cluster,) = migrate(load("aws-clustersecretstore-jwt.yaml")).documents
    assert cluster["spec"]["provider"]["aws"]["auth"]["serviceAccountRef"] == {
        "name": "external-secret-sa",
        "namespace": "external-secrets",
    }


def test_external_secrets_keep_properties_and_versions() -> None:
    result = migrate(load("aws-sm-versions.yaml"))
    assert result.complete and result.notes == []
    first, second = result.documents
    assert first["spec"]["data"][0]["remoteRef"] == {"key": "production/api-key", "version": "AWSPREVIOUS"}
    assert second["spec"]["data"][0]["remoteRef"]["version"] == "uuid/123e4567-e89b-12d3-a456-426614174000"
    (example,) = migrate(load("aws-sm-external-secret.yaml")).documents
    assert example["spec"]["data"][1]["remoteRef"]["property"] == "friends.1.first"
    assert parse_external_secret(with_namespace(example)).refresh_interval == 60


def test_features_convert_and_the_rest_is_listed() -> None:
    result = migrate(load("features.yaml"))
    (es,) = result.documents
    assert "resourceVersion" not in es["metadata"] and "status" not in es
    assert es["metadata"] == {"name": "shop-db", "namespace": "shop", "labels": {"team": "shop"}}
    spec = es["spec"]
    assert spec["target"]["deletionPolicy"] == "Delete"  # ESO's Merge
    template = spec["target"]["template"]
    assert set(template["data"]) == {"username", "password", "url"}
    assert template["metadata"] == {"labels": {"app": "shop"}}
    assert spec["data"][0]["remoteRef"]["decodingStrategy"] == "Base64"
    assert spec["dataFrom"] == [
        {"extract": {"key": "shop/db", "property": "credentials"}},
        {"find": {"name": {"regexp": "^shop/"}, "tags": {"env": "prod"}}},
        {"extract": {"key": "shop/other"}},
    ]
    parse_external_secret(es)
    notes = notes_of(result)
    for field in (
        "spec.target.template.data.broken",
        "spec.target.template.templateFrom",
        "spec.target.template.metadata.annotations.checksum",
        "spec.dataFrom[2].rewrite",
    ):
        assert notes[f"ExternalSecret shop/shop-db: {field}"].startswith("dropped"), field
    assert notes["ExternalSecret shop/shop-db: spec.dataFrom[1].find"].startswith("review")
    assert notes["ExternalSecret shop/shop-db: spec.target.creationPolicy"].startswith("review")
    assert notes["ExternalSecret shop/shop-db: spec.target.deletionPolicy"].startswith("review")
    assert notes["ClusterExternalSecret fanout: kind"].startswith("dropped")
    assert notes["ClusterSecretStore vault: spec.provider"].startswith("dropped")


def test_the_command_prints_yaml_and_lists_the_rest(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["migrate", str(FIXTURES / "aws-sm-versions.yaml")]) == 0
    out = capsys.readouterr()
    assert [d["kind"] for d in yaml.safe_load_all(out.out)] == ["ExternalSecret", "ExternalSecret"]
    assert "converted 2 object(s); 0 field(s) not converted" in out.err
    assert cli.main(["migrate", str(FIXTURES / "features.yaml")]) == 1
    err = capsys.readouterr().err
    assert "spec.dataFrom[2].rewrite: not converted" in err
