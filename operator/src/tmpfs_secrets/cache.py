"""The value cache: values by source (identity, service, region, key, version), TTL-bound, single-flight.

Each entry carries its own expiry (cachetools' TLRUCache), so a value refreshed every 5 minutes
and one fetched once can live side by side. Single-flight: while keys are being loaded, other
callers asking for the same keys wait for that load instead of starting their own, so N
ExternalSecrets sharing a source cost one AWS call, not N.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from cachetools import TLRUCache

from tmpfs_secrets import metrics

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class Entry(Generic[V]):
    value: V
    fetched_at: float
    expires_at: float


class ValueCache(Generic[K, V]):
    """Loaded results are `V` (cached) or anything else (an error: returned to waiters, not cached)."""

    def __init__(self, maxsize: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._entries: TLRUCache[K, Entry[V]] = TLRUCache(maxsize, ttu=self._expiry, timer=clock)
        self._inflight: dict[K, asyncio.Future[object]] = {}

    @staticmethod
    def _expiry(_key: K, entry: Entry[V], _now: float) -> float:
        return entry.expires_at

    def get(self, key: K) -> Entry[V] | None:
        entry = self._entries.get(key)
        (metrics.CACHE_HITS if entry is not None else metrics.CACHE_MISSES).inc()
        return entry

    def put(self, key: K, value: V, ttl: float) -> None:
        now = self._clock()
        self._entries[key] = Entry(value, now, now + ttl if ttl > 0 else math.inf)

    def discard(self, key: K) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        self._entries.expire()
        return len(self._entries)

    async def load_many(
        self,
        keys: Iterable[K],
        loader: Callable[[list[K]], Awaitable[Mapping[K, object]]],
        is_value: Callable[[object], bool],
        ttl: Callable[[K], float],
    ) -> dict[K, object]:
        """Load `keys` now (a refresh: cached entries are replaced), joining loads already in flight."""
        wanted = list(dict.fromkeys(keys))
        joined = {k: self._inflight[k] for k in wanted if k in self._inflight}
        metrics.CACHE_HITS.inc(len(joined))
        mine = [k for k in wanted if k not in joined]
        loop = asyncio.get_running_loop()
        futures = {k: loop.create_future() for k in mine}
        self._inflight.update(futures)
        try:
            results: Mapping[K, object] = await loader(mine) if mine else {}
        except BaseException as exc:
            for fut in futures.values():
                if fut.done():
                    continue
                if isinstance(exc, Exception):
                    fut.set_exception(exc)
                    fut.exception()  # waiters re-raise it; mark it retrieved so the loop stays quiet
                else:
                    fut.cancel()
            raise
        finally:
            for k in mine:
                if self._inflight.get(k) is futures[k]:
                    del self._inflight[k]
        out: dict[K, object] = {}
        for k in mine:
            result = results.get(k, LookupError(k))
            if is_value(result):
                self.put(k, result, ttl(k))  # type: ignore[arg-type]
            futures[k].set_result(result)
            out[k] = result
        for k, fut in joined.items():
            out[k] = await fut
        return out
