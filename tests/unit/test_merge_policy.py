"""Which existing Secrets `creationPolicy: Merge` may write into."""

from __future__ import annotations

from typing import Any

from tmpfs_secrets.kube.secrets import merge_refusal

OPT_IN = {"tmpfs-secrets.io/allow-merge": "true"}


def secret(kind: str = "Opaque", annotations: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    return {"type": kind, "metadata": {"name": "t", "annotations": annotations or {}, **meta}}


def test_a_secret_that_opts_in_may_be_merged_into() -> None:
    assert merge_refusal(secret(annotations=OPT_IN), "es", "uid-1") is None
    # It names this very ExternalSecret: still fine.
    mine = {**OPT_IN, "tmpfs-secrets.io/external-secret": "es"}
    assert merge_refusal(secret(annotations=mine), "es", "uid-1") is None


def test_a_secret_that_does_not_opt_in_is_refused_with_the_annotation_to_set() -> None:
    for given in ({}, {"tmpfs-secrets.io/allow-merge": "yes"}):
        refusal = merge_refusal(secret(annotations=given), "es", "uid-1")
        assert refusal is not None and "tmpfs-secrets.io/allow-merge" in refusal


def test_tokens_helm_releases_and_other_external_secrets_are_never_merged_into() -> None:
    for kind in ("kubernetes.io/service-account-token", "helm.sh/release.v1"):
        refusal = merge_refusal(secret(kind, OPT_IN), "es", "uid-1")
        assert refusal is not None and kind in refusal
    assert merge_refusal(secret(annotations=OPT_IN, labels={"owner": "helm"}), "es", "uid-1") is not None
    other = {**OPT_IN, "tmpfs-secrets.io/external-secret": "other"}
    assert "another ExternalSecret" in (merge_refusal(secret(annotations=other), "es", "uid-1") or "")
    owned = secret(
        annotations=OPT_IN,
        ownerReferences=[{"kind": "ExternalSecret", "name": "other", "uid": "uid-2"}],
    )
    assert "another ExternalSecret" in (merge_refusal(owned, "es", "uid-1") or "")
