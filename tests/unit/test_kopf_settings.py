"""kopf's settings: progress kept off ExternalSecrets, and no diff base built for them (it would be a
deep copy of every body on every event, never read), while the stores keep theirs."""

from __future__ import annotations

import kopf

from tmpfs_secrets.handlers.lifecycle import StoresDiffBase, configure_kopf

SPEC = {"provider": {"aws": {"service": "SecretsManager", "region": "us-east-1"}}}


def body(kind: str) -> kopf.Body:
    return kopf.Body(
        {
            "apiVersion": "tmpfs-secrets.io/v1alpha1",
            "kind": kind,
            "metadata": {"name": "x", "namespace": "shop", "labels": {"team": "a"}},
            "spec": SPEC,
            "status": {"conditions": []},
        }
    )


def test_no_diff_base_for_external_secrets_and_a_full_one_for_stores() -> None:
    settings = kopf.OperatorSettings()
    configure_kopf(settings)
    storage = settings.persistence.diffbase_storage
    assert isinstance(storage, StoresDiffBase)
    assert storage.build(body=body("ExternalSecret")) == {}
    store = storage.build(body=body("SecretStore"))
    assert store["spec"] == SPEC
    assert store["metadata"]["labels"] == {"team": "a"}
    assert "status" not in store
    assert settings.posting.enabled is False
