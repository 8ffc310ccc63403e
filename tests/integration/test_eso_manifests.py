"""ESO's documented AWS manifests against the real API server: with only apiVersion changed they
are accepted or refused with a message naming the field; converted by migrate they are accepted.
`kubectl explain` describes the fields ESO users look up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.cluster.control_plane import ControlPlane

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "eso"
DOCUMENTED = sorted(FIXTURES.glob("aws-*.yaml"))


def eso_objects(path: Path) -> list[dict[str, object]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return [d for d in docs if str(d["apiVersion"]).startswith("external-secrets.io/")]


@pytest.mark.parametrize("path", DOCUMENTED, ids=[p.name for p in DOCUMENTED])
def test_only_the_api_version_changed_is_accepted_or_refused_naming_the_field(
    path: Path, crds: Path, namespace: str, control_plane: ControlPlane
) -> None:
    for doc in eso_objects(path):
        doc = {**doc, "apiVersion": "tmpfs-secrets.io/v1alpha1"}
        meta = dict(doc["metadata"])  # type: ignore[arg-type]
        if doc["kind"] != "ClusterSecretStore":
            meta["namespace"] = namespace
        else:
            meta["name"] = f"{meta['name']}-{namespace}"
        doc["metadata"] = meta
        result = control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc), check=False)
        if result.returncode != 0:
            # Refused: the message names a field of the spec.
            assert "spec." in result.stderr, result.stderr
        if doc["kind"] == "ClusterSecretStore":
            control_plane.kubectl("delete", "--ignore-not-found", "clustersecretstore", str(meta["name"]))


def test_migrated_manifests_are_accepted(crds: Path, namespace: str, control_plane: ControlPlane) -> None:
    files = [str(p) for p in DOCUMENTED if p.name != "aws-clustersecretstore-jwt.yaml"]
    converted = subprocess.run(
        [sys.executable, "-m", "tmpfs_secrets", "migrate", *files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert converted.returncode == 1  # some documented stores name roles without an ARN
    docs = [d for d in yaml.safe_load_all(converted.stdout) if d]
    accepted = 0
    for doc in docs:
        if doc["apiVersion"] != "tmpfs-secrets.io/v1alpha1":
            continue
        role = doc.get("spec", {}).get("provider", {}).get("aws", {}).get("role", "arn:")
        doc["metadata"]["namespace"] = namespace
        result = control_plane.kubectl(
            "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc), check=False
        )
        if role.startswith("arn:"):
            assert result.returncode == 0, result.stderr
            accepted += 1
        else:  # listed by migrate as not converted: the API server agrees
            assert "spec.provider.aws.role" in result.stderr
            assert "spec.provider.aws.role" in converted.stderr
    assert accepted >= 6


def test_kubectl_explain_describes_the_fields(crds: Path, control_plane: ControlPlane) -> None:
    for path, words in [
        ("externalsecrets.spec.target.template.data", "template"),
        ("externalsecrets.spec.data.remoteRef.decodingStrategy", "Base64"),
        ("externalsecrets.spec.refreshPolicy", "CreatedOnce"),
        ("secretstores.spec.provider.aws.auth.jwt", "serviceAccountRef"),
        ("externalsecrets.status.conditions.reason", "CamelCase"),
    ]:
        out = control_plane.kubectl("explain", path).stdout
        assert words in out, out
