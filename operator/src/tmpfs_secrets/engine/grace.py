"""Store grace: right after a start, watch events of stores and ExternalSecrets arrive in any
order, so an ExternalSecret whose store is not known yet waits quietly for a while instead of
reporting StoreNotFound; when the grace ends, the waiting ones are resolved again. The grace
counts from the first store or ExternalSecret event, not from the start: kopf may take a while to
list and hand over objects after a restart, which delays stores and ExternalSecrets alike."""

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
        self._first = asyncio.Event()

    def start(self, on_end: Callable[[ObjectRef], Awaitable[None]]) -> None:
        self._task = asyncio.create_task(self._end(on_end))

    def first_event(self) -> None:
        if self._started_at is None:
            self._started_at = self._clock.now()
            self._first.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def active(self) -> bool:
        return self._started_at is None or self._clock.now() < self._started_at + self._seconds

    def wait(self, ref: ObjectRef) -> None:
        self._waiting.add(ref)

    def waiting(self, ref: ObjectRef) -> bool:
        return ref in self._waiting

    def discard(self, ref: ObjectRef) -> None:
        self._waiting.discard(ref)

    async def _end(self, on_end: Callable[[ObjectRef], Awaitable[None]]) -> None:
        await self._first.wait()
        await asyncio.sleep(self._seconds)
        for ref in list(self._waiting):
            await on_end(ref)
        self._waiting.clear()
