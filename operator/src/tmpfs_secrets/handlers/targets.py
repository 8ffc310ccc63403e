"""Handlers for the target Secrets: the watch that replaces a GET per Secret, and drift repair.

The watch selects the operator's Secrets by label on the API server (see `lifecycle`). It is a
kopf index, so kopf lists every target Secret before it hands any ExternalSecret to a handler:
by the time the engine writes, the writer knows every Secret without reading it. A Secret
deleted or changed by someone else is news: its ExternalSecrets get their current key set
offered again from the cache, and the writer restores only what differs (for Merge targets,
only the keys the operator owns). Our own writes are recognised by their resourceVersion and
cost nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from tmpfs_secrets.handlers.registry import registry
from tmpfs_secrets.handlers.state import Runtime, runtime
from tmpfs_secrets.ports import ObjectRef
from tmpfs_secrets.vocabulary import TARGET_LABEL, TARGET_LABEL_VALUE

log = logging.getLogger(__name__)

SECRETS = ("", "v1", "secrets")
_repairs: set[asyncio.Task[None]] = set()  # strong references to running repairs


@kopf.index(*SECRETS, registry=registry, id="target-secrets", labels={TARGET_LABEL: TARGET_LABEL_VALUE})
async def target_secret_seen(body: kopf.Body, memo: Any, **_: Any) -> None:
    """Added or modified. Returns nothing: kopf keeps no copy; our own slim index does."""
    rt = runtime(memo)
    meta = body.get("metadata") or {}
    if rt.kube.targets.observe(body):
        _repair(rt, str(meta.get("namespace")), str(meta.get("name")), "changed")


@kopf.on.event(
    *SECRETS, registry=registry, id="target-secret-deleted", labels={TARGET_LABEL: TARGET_LABEL_VALUE}
)
async def target_secret_event(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    if type != "DELETED":
        return
    rt = runtime(memo)
    meta = body.get("metadata") or {}
    namespace, name = str(meta.get("namespace")), str(meta.get("name"))
    if rt.kube.targets.forget(namespace, name) is not None:
        _repair(rt, namespace, name, "deleted")


def _users(rt: Runtime, namespace: str, name: str) -> list[ObjectRef]:
    """The ExternalSecrets that write this Secret (several may Merge into one)."""
    out = []
    for ref in rt.kube.index.external_secrets_in(namespace):
        tracked = rt.kube.index.external_secret(ref)
        if tracked is not None and tracked.target is not None and tracked.target.name == name:
            out.append(ref)
    return out


def _repair(rt: Runtime, namespace: str, name: str, what: str) -> None:
    users = _users(rt, namespace, name)
    if not users:
        return  # e.g. garbage-collected after its ExternalSecret was deleted
    log.info("Secret %s/%s was %s by someone else; restoring what the operator owns", namespace, name, what)
    rt.kube.writer.invalidate(namespace, name)

    async def repair() -> None:
        for ref in users:
            try:
                await rt.engine.redeliver(ref)
            except Exception:
                log.exception("restoring Secret %s/%s for %s failed", namespace, name, ref.name)

    # Not awaited here: the watch's handler stays quick, and writes go through the sink's limits.
    task = asyncio.create_task(repair())
    _repairs.add(task)
    task.add_done_callback(_repairs.discard)
