"""The startup LIST that tells when the watch-fed index holds every store and ExternalSecret.

The pod webhook answers from the index alone, so until the watch has delivered every existing
ExternalSecret, a pod could be given a default mount for an ExternalSecret that has another
path. One LIST per kind at startup names what exists (metadata only, in pages); the index is
complete once the watch has delivered all of it (the operator's readiness waits for that). An
object deleted between this LIST and the watch's own would be awaited forever, so the LIST is
repeated when the watch stops making progress before the index is complete.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from tmpfs_secrets.kube.index import ObjectIndex
from tmpfs_secrets.kube.names import CLUSTER_SECRET_STORE, EXTERNAL_SECRET, GROUP, SECRET_STORE, VERSION
from tmpfs_secrets.kube.rest import KubeApiError, Rest, group_path

log = logging.getLogger(__name__)

Key = tuple[str, str | None, str]


async def existing(rest: Rest, namespaces: Sequence[str]) -> list[Key]:
    """(kind, namespace, name) of every store and ExternalSecret the operator watches."""
    keys: list[Key] = []
    paths = [(CLUSTER_SECRET_STORE.kind, group_path(GROUP, VERSION, CLUSTER_SECRET_STORE.plural))]
    for kind in (EXTERNAL_SECRET, SECRET_STORE):
        scopes: Sequence[str | None] = namespaces or [None]
        paths += [(kind.kind, group_path(GROUP, VERSION, kind.plural, ns)) for ns in scopes]
    for kind_name, path in paths:
        async for items, _ in rest.list_pages(path, metadata_only=True):
            for item in items:
                meta = item.get("metadata") or {}
                keys.append((kind_name, meta.get("namespace"), str(meta.get("name"))))
    return keys


async def await_existing(
    rest: Rest, index: ObjectIndex, namespaces: Sequence[str], *, every: float = 10.0
) -> None:
    """Mark what exists as awaited in the index; LIST again only when the watch has delivered
    nothing awaited for `every` seconds (an awaited object may have been deleted meanwhile).

    While thousands of objects are still being handled the watch keeps delivering them, and a
    LIST of them all every few seconds would only load the API server that is slow already.
    """
    while not index.complete:
        try:
            index.await_listed(await existing(rest, namespaces))
        except KubeApiError as e:
            log.warning("could not list stores and ExternalSecrets, retrying in %gs: %s", every, e)
        left = index.awaiting
        while not index.complete:
            await asyncio.sleep(every)
            if index.awaiting >= left:
                break  # no progress: list again
            left = index.awaiting
    log.info("every store and ExternalSecret has been read")
