"""Drift repair: a target Secret deleted or changed by someone else gets its keys back.

The target watch (`kube.target_watch`) reports such news; the ExternalSecrets that write that
Secret get their current key set offered again from the cache, and the writer restores only what
differs (for Merge targets, only the keys the operator owns). Our own writes are recognised by
their resourceVersion and are not news.
"""

from __future__ import annotations

import asyncio
import logging

from tmpfs_secrets.handlers.state import Runtime
from tmpfs_secrets.ports import ObjectRef

log = logging.getLogger(__name__)

_repairs: set[asyncio.Task[None]] = set()  # strong references to running repairs


def _users(rt: Runtime, namespace: str, name: str) -> list[ObjectRef]:
    """The ExternalSecrets that write this Secret (several may Merge into one)."""
    out = []
    for ref in rt.kube.index.external_secrets_in(namespace):
        tracked = rt.kube.index.external_secret(ref)
        if tracked is not None and tracked.target is not None and tracked.target.name == name:
            out.append(ref)
    return out


def repair(rt: Runtime, namespace: str, name: str, what: str) -> None:
    """Called by the target watch for a Secret `what` ("changed" or "deleted") by someone else."""
    users = _users(rt, namespace, name)
    if not users:
        return  # e.g. garbage-collected after its ExternalSecret was deleted
    log.info("Secret %s/%s was %s by someone else; restoring what the operator owns", namespace, name, what)
    rt.kube.writer.invalidate(namespace, name)

    async def run() -> None:
        for ref in users:
            try:
                await rt.engine.redeliver(ref)
            except Exception:
                log.exception("restoring Secret %s/%s for %s failed", namespace, name, ref.name)

    # Not awaited here: the watch keeps reading, and writes go through the sink's limits.
    task = asyncio.create_task(run())
    _repairs.add(task)
    task.add_done_callback(_repairs.discard)
