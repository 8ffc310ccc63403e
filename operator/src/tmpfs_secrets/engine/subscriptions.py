"""Subscriptions: which ExternalSecrets use each source, so one fetch fans out to all of them,
and the source each item of an ExternalSecret reads."""

from __future__ import annotations

from collections.abc import Iterable

from tmpfs_secrets.api.external_secret import Extract, Find
from tmpfs_secrets.engine.assemble import Item
from tmpfs_secrets.errors import SpecError
from tmpfs_secrets.ports import ObjectRef
from tmpfs_secrets.providers.base import FIND, GET, PARAMETER_STORE, Identity, Source


class Subscriptions:
    def __init__(self) -> None:
        self._users: dict[Source, set[ObjectRef]] = {}

    def add(self, ref: ObjectRef, sources: Iterable[Source]) -> None:
        for src in sources:
            self._users.setdefault(src, set()).add(ref)

    def remove(self, ref: ObjectRef, sources: Iterable[Source]) -> list[Source]:
        """Unsubscribe `ref`; returns the sources nobody uses any more."""
        unused = []
        for src in sources:
            users = self._users.get(src)
            if users is not None:
                users.discard(ref)
                if not users:
                    del self._users[src]
                    unused.append(src)
        return unused

    def users(self, sources: Iterable[Source]) -> set[ObjectRef]:
        out: set[ObjectRef] = set()
        for src in sources:
            out.update(self._users.get(src, ()))
        return out

    def sources(self) -> list[Source]:
        return list(self._users)


def source_for(item: Item, identity: Identity, service: str, region: str) -> Source:
    if isinstance(item, Find):
        return Source(identity, service, region, FIND, item.query)
    if isinstance(item, Extract):
        return Source(identity, service, region, GET, item.key, item.version)
    return Source(identity, service, region, GET, item.remote.key, item.remote.version)


def check_find(items: list[Item], service: str) -> None:
    """What each service can search by: SSM a path, Secrets Manager a name prefix, regexp, tags."""
    for item in items:
        if not isinstance(item, Find):
            continue
        if service == PARAMETER_STORE and not item.by_path_only:
            raise SpecError(
                "dataFrom.find.name and find.tags work only with a SecretsManager store; use "
                "find.path for Parameter Store"
            )
        if service == PARAMETER_STORE and not str(item.path).startswith("/"):
            raise SpecError(f"dataFrom.find.path {item.path!r} must start with '/' (a Parameter Store path)")
