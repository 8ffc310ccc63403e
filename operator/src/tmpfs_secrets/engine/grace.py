"""Store grace: right after a start, watch events of stores and ExternalSecrets arrive in any
order, so an ExternalSecret whose store is not known yet waits quietly for a while instead of
reporting StoreNotFound; when the grace ends, the waiting ones are resolved again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tmpfs_secrets.ports import ObjectRef
from tmpfs_secrets.scheduler import Clock


class StoreGrace:
    def __init__(self, clock: Clock, seconds: float) -> None:
        self._clock = clock
        self._seconds = seconds
        self._started_at: float | None = None
        self._waiting: set[ObjectRef] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self, on_end: Callable[[ObjectRef], Awaitable[None]]) -> None:
        self._started_at = self._clock.now()
        self._task = asyncio.create_task(self._end(on_end))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def active(self) -> bool:
        return self._started_at is None or self._clock.now() < self._started_at + self._seconds

    def wait(self, ref: ObjectRef) -> None:
        self._waiting.add(ref)

    def discard(self, ref: ObjectRef) -> None:
        self._waiting.discard(ref)

    async def _end(self, on_end: Callable[[ObjectRef], Awaitable[None]]) -> None:
        await asyncio.sleep(self._seconds)
        for ref in list(self._waiting):
            await on_end(ref)
        self._waiting.clear()
