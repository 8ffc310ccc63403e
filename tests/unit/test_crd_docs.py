"""`kubectl explain` has something to say about every field: each property of each CRD schema
carries a description (and the chart's copy is the same file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRDS = sorted((ROOT / "crds").glob("*.yaml"))


# The API server forbids anything but `type` on the root's metadata; kubectl explain shows
# ObjectMeta's own descriptions there.
EXEMPT = {"ExternalSecret.metadata", "SecretStore.metadata", "ClusterSecretStore.metadata"}


def undocumented(node: dict[str, Any], path: str) -> list[str]:
    out = []
    for name, prop in (node.get("properties") or {}).items():
        where = f"{path}.{name}"
        if where not in EXEMPT and not str(prop.get("description") or "").strip():
            out.append(where)
        out += undocumented(prop, where)
    if isinstance(node.get("items"), dict):
        out += undocumented(node["items"], path + "[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += undocumented(node["additionalProperties"], path + "{}")
    return out


@pytest.mark.parametrize("crd", CRDS, ids=[p.name for p in CRDS])
def test_every_field_has_a_description(crd: Path) -> None:
    doc = yaml.safe_load(crd.read_text())
    assert doc["spec"]["versions"], crd
    for version in doc["spec"]["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        assert schema.get("description"), f"{crd.name}: the kind itself"
        missing = undocumented(schema, doc["spec"]["names"]["kind"])
        assert not missing, f"{crd.name}: no description for {missing}"


def test_the_walk_finds_a_missing_description() -> None:
    schema = {"properties": {"spec": {"description": "x", "properties": {"a": {"type": "string"}}}}}
    assert undocumented(schema, "K") == ["K.spec.a"]


def test_the_charts_crds_are_the_same_files() -> None:
    for crd in CRDS:
        assert (ROOT / "charts/tmpfs-secrets/files/crds" / crd.name).read_bytes() == crd.read_bytes()
