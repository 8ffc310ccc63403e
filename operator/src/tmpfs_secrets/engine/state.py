"""What the engine remembers about one ExternalSecret between events: its spec and sources, the
last good keys of each item, and what was last reported (so only changes are reported)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from tmpfs_secrets.api.external_secret import ExternalSecretSpec
from tmpfs_secrets.engine.assemble import Item, ItemKeys
from tmpfs_secrets.engine.stores import StoreKey
from tmpfs_secrets.providers.base import Source


@dataclass(slots=True)
class ObjectState:
    spec: ExternalSecretSpec | None
    items: list[Item] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    store: StoreKey | None = None
    last_good: dict[int, ItemKeys] = field(default_factory=dict)
    delivered_hash: str | None = None
    delivered_versions: dict[str, str] = field(default_factory=dict)
    delivered_keys: frozenset[str] = frozenset()
    last_report: str | None = None  # "synced" | "failed"
    last_failure: tuple[str, str] | None = None
    reported_generation: int | None = None
    once_done: bool = False
    redeliver: bool = False  # a refresh was requested: offer the next key set even if unchanged
    sink_trouble: tuple[str, str] | None = None  # (action, cause) of the last sink failure logged
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
