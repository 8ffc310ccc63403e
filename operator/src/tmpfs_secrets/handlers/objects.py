"""Handlers for SecretStores, ClusterSecretStores, ExternalSecrets and Namespaces.

ExternalSecrets come from the operator's own watch (`kube.external_secret_watch`, started with
the operator), their events one by one to `external_secret_event`; stores come through kopf's
create/update/resume handlers, which feed the spec to the engine. Deletion is seen through the
raw watch event (DELETED), not through kopf's deletion handlers: those need a finalizer on every
object, and none is needed here (the target Secret is garbage-collected through its
ownerReference). Every event also refreshes the index the sink compares against, so the sink never
re-reads an object.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from tmpfs_secrets.errors import Reason, SpecError
from tmpfs_secrets.handlers.registry import GROUP, VERSION, registry
from tmpfs_secrets.handlers.state import Runtime, runtime
from tmpfs_secrets.kube.rest import KubeApiError
from tmpfs_secrets.ports import ObjectRef, SyncFailure
from tmpfs_secrets.vocabulary import CLUSTER_SECRET_STORE, EXTERNAL_SECRET, SECRET_STORE

log = logging.getLogger(__name__)

STORE = (GROUP, VERSION, SECRET_STORE.plural)
CLUSTER_STORE = (GROUP, VERSION, CLUSTER_SECRET_STORE.plural)


def _plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """A detached plain-dict copy of kopf's live body view, safe to keep, without managedFields
    (the largest part of most bodies, and never read)."""
    plain = {k: _copy(v) for k, v in body.items()}
    meta = plain.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return plain


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _retry_on_transient(error: KubeApiError) -> kopf.TemporaryError:
    return kopf.TemporaryError(f"Kubernetes API error, retrying: {error}", delay=5)


# --- ExternalSecret -------------------------------------------------------------------------------


async def external_secret_event(rt: Runtime, type: str | None, body: dict[str, Any]) -> None:
    """Every ExternalSecret event (from `kube.external_secret_watch`) goes to the engine, which tells
    new, changed, refresh-requested and restarted objects apart itself (generation, status and the
    refresh annotation). `body` is the handler's own (nothing else keeps it)."""
    meta = body.get("metadata") or {}
    ref = ObjectRef(str(meta.get("namespace") or ""), str(meta.get("name") or ""))
    following = rt.following
    if type == "DELETED":
        rt.kube.index.forget(EXTERNAL_SECRET.kind, ref.namespace, ref.name)
        following.external_secrets.pop(ref, None)
        if following.leading:
            rt.kube.sink.forget(ref)
            await rt.engine.remove_external_secret(ref)
        return
    before = rt.kube.index.external_secret(ref)
    tracked = rt.kube.index.observe(EXTERNAL_SECRET.kind, body)
    if not following.leading:
        following.external_secrets[ref] = body
        return
    if following.external_secrets.pop(ref, None) is not None:
        before = None  # not handed to the engine yet: the takeover replay is still on its way
    if (
        before is not None
        and before.uid == tracked.uid
        and before.generation == tracked.generation
        and before.refresh_request == tracked.refresh_request
    ):
        return  # a status or metadata change (often our own status write): nothing for the engine
    if (
        before is not None
        and before.uid == tracked.uid
        and tracked.refresh_request is not None
        and tracked.refresh_request != before.refresh_request
        and tracked.target is not None
    ):
        # Re-read the target on this refresh, so a Secret deleted by hand comes back.
        rt.kube.writer.invalidate(ref.namespace, tracked.target.name)
    await upsert_external_secret(rt, ref, body)


async def upsert_external_secret(rt: Runtime, ref: ObjectRef, plain: dict[str, Any]) -> None:
    try:
        await rt.engine.upsert_external_secret(plain)
    except SpecError as e:
        await rt.kube.sink.failed(ref, SyncFailure(Reason.INVALID_SPEC.value, e.message))
    except KubeApiError as e:
        # E.g. a namespace's labels could not be read: resolve the object again a little later.
        _retry_later(rt, ref, e)


RETRY_DELAY = 5.0
_retries: set[asyncio.Task[None]] = set()  # strong references, so pending retries are not collected


def _retry_later(rt: Runtime, ref: ObjectRef, error: KubeApiError) -> None:
    log.warning(
        "ExternalSecret %s/%s: Kubernetes API error, retrying in %gs: %s",
        ref.namespace,
        ref.name,
        RETRY_DELAY,
        error,
    )

    async def retry() -> None:
        await asyncio.sleep(RETRY_DELAY)
        try:
            await rt.engine.request_refresh(ref)
        except KubeApiError as e:
            _retry_later(rt, ref, e)

    task = asyncio.create_task(retry())
    _retries.add(task)
    task.add_done_callback(_retries.discard)


# --- SecretStore and ClusterSecretStore -----------------------------------------------------------


async def _store_event(kind: str, type: str | None, body: kopf.Body, memo: Any) -> None:
    rt = runtime(memo)
    namespace = body.metadata.namespace
    name = str(body.metadata.name)
    if type == "DELETED":
        rt.kube.index.forget(kind, namespace, name)
        rt.following.stores.pop((kind, namespace, name), None)
        if rt.following.leading:
            await rt.engine.remove_store(kind, namespace, name)
        return
    rt.kube.index.observe(kind, body)


async def _store_changed(kind: str, body: kopf.Body, memo: Any) -> None:
    rt = runtime(memo)
    plain = _plain(body)
    plain.setdefault("kind", kind)
    rt.kube.index.observe(kind, plain)
    key = (kind, body.metadata.namespace, str(body.metadata.name))
    if not rt.following.leading:
        rt.following.stores[key] = plain
        return
    rt.following.stores.pop(key, None)
    await upsert_store(rt, kind, plain)


async def upsert_store(rt: Runtime, kind: str, plain: dict[str, Any]) -> None:
    """Hand a store to the engine; a bad spec becomes its Ready=False status."""
    meta = plain.get("metadata") or {}
    try:
        await rt.engine.upsert_store(plain)
    except SpecError as e:
        await rt.kube.sink.store_status(
            kind,
            meta.get("namespace"),
            str(meta.get("name")),
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
    if rt.kube.reads.observe_namespace(name, dict(body.metadata.labels)) and known and rt.following.leading:
        # The namespace's labels changed: a ClusterSecretStore may now admit or refuse it.
        for ref in rt.kube.index.external_secrets_in(name):
            await rt.engine.request_refresh(ref)
