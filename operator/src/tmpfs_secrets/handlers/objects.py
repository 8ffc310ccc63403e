"""Handlers for SecretStores, ClusterSecretStores, ExternalSecrets and Namespaces.

create/update/resume feed the spec to the engine. Deletion is seen through the raw watch event
(DELETED), not through kopf's deletion handlers: those need a finalizer on every object, and none
is needed here (the target Secret is garbage-collected through its ownerReference). Every event
also refreshes the index the sink compares against, so the sink never re-reads an object.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from tmpfs_secrets.errors import Reason, SpecError
from tmpfs_secrets.handlers.registry import GROUP, VERSION, registry
from tmpfs_secrets.handlers.state import Runtime, runtime
from tmpfs_secrets.kube.names import CLUSTER_SECRET_STORE, EXTERNAL_SECRET, REFRESH_ANNOTATION, SECRET_STORE
from tmpfs_secrets.kube.rest import KubeApiError
from tmpfs_secrets.ports import ObjectRef, SyncFailure

log = logging.getLogger(__name__)

ES = (GROUP, VERSION, EXTERNAL_SECRET.plural)
STORE = (GROUP, VERSION, SECRET_STORE.plural)
CLUSTER_STORE = (GROUP, VERSION, CLUSTER_SECRET_STORE.plural)


def _plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """A detached plain-dict copy of kopf's live body view, safe to keep."""
    return {k: _copy(v) for k, v in body.items()}


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _retry_on_transient(error: KubeApiError) -> kopf.TemporaryError:
    return kopf.TemporaryError(f"Kubernetes API error, retrying: {error}", delay=5)


# --- ExternalSecret -------------------------------------------------------------------------------


@kopf.on.event(*ES, registry=registry, id="external-secret-event")
async def external_secret_event(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    rt = runtime(memo)
    ref = ObjectRef(str(body.metadata.namespace), str(body.metadata.name))
    if type == "DELETED":
        rt.kube.index.forget(EXTERNAL_SECRET.kind, ref.namespace, ref.name)
        rt.kube.sink.forget(ref)
        await rt.engine.remove_external_secret(ref)
        return
    rt.kube.index.observe(EXTERNAL_SECRET.kind, body)


@kopf.on.resume(*ES, registry=registry, id="external-secret")
@kopf.on.create(*ES, registry=registry, id="external-secret")
@kopf.on.update(*ES, registry=registry, id="external-secret", field="spec")
async def external_secret_changed(body: kopf.Body, memo: Any, **_: Any) -> None:
    rt = runtime(memo)
    plain = _plain(body)
    rt.kube.index.observe(EXTERNAL_SECRET.kind, plain)
    try:
        await rt.engine.upsert_external_secret(plain)
    except SpecError as e:
        await _report_invalid(rt, body, e)
        raise kopf.PermanentError(e.message) from e
    except KubeApiError as e:
        if e.transient:
            raise _retry_on_transient(e) from e
        raise


@kopf.on.field(
    *ES, registry=registry, id="refresh-requested", field=("metadata", "annotations", REFRESH_ANNOTATION)
)
async def refresh_requested(body: kopf.Body, old: Any, new: Any, memo: Any, reason: str, **_: Any) -> None:
    """Any new value of the annotation refreshes at once; removing it does nothing."""
    if new is None or new == old or reason == "create":
        return
    rt = runtime(memo)
    ref = ObjectRef(str(body.metadata.namespace), str(body.metadata.name))
    tracked = rt.kube.index.external_secret(ref)
    if tracked is not None and tracked.target is not None:
        # Re-read the target on this refresh, so a Secret deleted by hand comes back.
        rt.kube.writer.invalidate(ref.namespace, tracked.target.name)
    await rt.engine.request_refresh(ref)


async def _report_invalid(rt: Runtime, body: kopf.Body, error: SpecError) -> None:
    """Normally the engine reports an invalid spec itself; this covers it if the error escapes."""
    ref = ObjectRef(str(body.metadata.namespace), str(body.metadata.name))
    await rt.kube.sink.failed(ref, SyncFailure(Reason.INVALID_SPEC.value, error.message))


# --- SecretStore and ClusterSecretStore -----------------------------------------------------------


async def _store_event(kind: str, type: str | None, body: kopf.Body, memo: Any) -> None:
    rt = runtime(memo)
    namespace = body.metadata.namespace
    name = str(body.metadata.name)
    if type == "DELETED":
        rt.kube.index.forget(kind, namespace, name)
        await rt.engine.remove_store(kind, namespace, name)
        return
    rt.kube.index.observe(kind, body)


async def _store_changed(kind: str, body: kopf.Body, memo: Any) -> None:
    rt = runtime(memo)
    plain = _plain(body)
    plain.setdefault("kind", kind)
    rt.kube.index.observe(kind, plain)
    try:
        await rt.engine.upsert_store(plain)
    except SpecError as e:
        await rt.kube.sink.store_status(
            kind,
            body.metadata.namespace,
            str(body.metadata.name),
            False,
            Reason.INVALID_SPEC.value,
            e.message,
        )
        raise kopf.PermanentError(e.message) from e
    except KubeApiError as e:
        if e.transient:
            raise _retry_on_transient(e) from e
        raise


@kopf.on.event(*STORE, registry=registry, id="secret-store-event")
async def secret_store_event(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    await _store_event(SECRET_STORE.kind, type, body, memo)


@kopf.on.resume(*STORE, registry=registry, id="secret-store")
@kopf.on.create(*STORE, registry=registry, id="secret-store")
@kopf.on.update(*STORE, registry=registry, id="secret-store", field="spec")
async def secret_store_changed(body: kopf.Body, memo: Any, **_: Any) -> None:
    await _store_changed(SECRET_STORE.kind, body, memo)


@kopf.on.event(*CLUSTER_STORE, registry=registry, id="cluster-secret-store-event")
async def cluster_secret_store_event(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    await _store_event(CLUSTER_SECRET_STORE.kind, type, body, memo)


@kopf.on.resume(*CLUSTER_STORE, registry=registry, id="cluster-secret-store")
@kopf.on.create(*CLUSTER_STORE, registry=registry, id="cluster-secret-store")
@kopf.on.update(*CLUSTER_STORE, registry=registry, id="cluster-secret-store", field="spec")
async def cluster_secret_store_changed(body: kopf.Body, memo: Any, **_: Any) -> None:
    await _store_changed(CLUSTER_SECRET_STORE.kind, body, memo)


# --- Namespaces (labels decide which ClusterSecretStores admit them) ------------------------------


@kopf.on.event("", "v1", "namespaces", registry=registry, id="namespace-labels")
async def namespace_event(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    rt = runtime(memo)
    name = str(body.metadata.name)
    if type == "DELETED":
        rt.kube.reads.forget_namespace(name)
        return
    known = rt.kube.reads.is_known_namespace(name)
    if rt.kube.reads.observe_namespace(name, dict(body.metadata.labels)) and known:
        # The namespace's labels changed: a ClusterSecretStore may now admit or refuse it.
        for ref in rt.kube.index.external_secrets_in(name):
            await rt.engine.request_refresh(ref)
