"""kopf's settings: no events, progress in annotations under kopf's own prefix, paged LISTs, and a
full diff base for the stores' change handlers; and kopf does not watch ExternalSecrets at all (the
operator's own watch does: kopf would queue every body of a LIST at once)."""

from __future__ import annotations

import kopf

from tmpfs_secrets.handlers.lifecycle import KOPF_PREFIX, configure_kopf
from tmpfs_secrets.handlers.run import registry
from tmpfs_secrets.kube.rest import LIST_PAGE
from tmpfs_secrets.vocabulary import CLUSTER_SECRET_STORE, EXTERNAL_SECRET, SECRET_STORE

SPEC = {"provider": {"aws": {"service": "SecretsManager", "region": "us-east-1"}}}


def test_no_events_paged_lists_and_a_full_diff_base_for_stores() -> None:
    settings = kopf.OperatorSettings()
    configure_kopf(settings)
    assert settings.posting.enabled is False
    assert settings.watching.chunk_size == LIST_PAGE
    progress = settings.persistence.progress_storage
    assert isinstance(progress, kopf.AnnotationsProgressStorage)
    assert progress.prefix == KOPF_PREFIX
    store = settings.persistence.diffbase_storage.build(
        body=kopf.Body(
            {
                "apiVersion": "tmpfs-secrets.io/v1alpha1",
                "kind": SECRET_STORE.kind,
                "metadata": {"name": "x", "namespace": "shop", "labels": {"team": "a"}},
                "spec": SPEC,
                "status": {"conditions": []},
            }
        )
    )
    assert store["spec"] == SPEC
    assert store["metadata"]["labels"] == {"team": "a"}
    assert "status" not in store


def test_kopf_watches_stores_and_namespaces_but_not_external_secrets() -> None:
    watched = {
        handler.selector.any_name
        for handlers in (registry._watching, registry._changing, registry._indexing, registry._spawning)
        for handler in handlers.get_all_handlers()
        if handler.selector is not None
    }
    assert watched == {SECRET_STORE.plural, CLUSTER_SECRET_STORE.plural, "namespaces"}
    assert EXTERNAL_SECRET.plural not in watched
