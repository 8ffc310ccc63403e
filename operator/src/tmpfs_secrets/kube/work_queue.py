"""Watch events handled by a few tasks: in order for one object, side by side for different ones.

A watch must be read about as fast as the API server sends it, yet handling an event may wait on a
request. kopf starts a task per object and queues its events however many arrive: at a restart,
the LIST of 10,000 ExternalSecrets was held in memory whole, body by body, until each had its turn.
Here `put` waits while `limit` events are pending, so the reader (a LIST page, a WATCH) pauses with
at most `limit` bodies waiting; each worker takes one object at a time and handles its events in
the order they came.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from tmpfs_secrets.errors import traceback_text
from tmpfs_secrets.tasks import cancel

log = logging.getLogger(__name__)

Item = TypeVar("Item")


class WorkQueue(Generic[Item]):
    def __init__(
        self, handle: Callable[[Item], Awaitable[None]], *, workers: int, limit: int, name: str
    ) -> None:
        self._handle = handle
        self._workers = workers
        self._name = name
        self._space = asyncio.Semaphore(limit)
        # Objects with events waiting or in hand; an object stays here while a worker has it, so
        # its next events join that worker's line instead of going to another worker.
        self._lines: dict[Hashable, deque[Item]] = {}
        self._ready: asyncio.Queue[Hashable] = asyncio.Queue()  # objects waiting for a worker
        self._pending = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def pending(self) -> int:
        """Events put and not yet handled (those being handled included)."""
        return self._pending

    async def put(self, key: Hashable, item: Item) -> None:
        """Queue `item` for the object `key`; waits while `limit` events are pending."""
        await self._space.acquire()
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._work(), name=f"{self._name}-{i}") for i in range(self._workers)
            ]
        self._pending += 1
        self._drained.clear()
        line = self._lines.get(key)
        if line is None:
            self._lines[key] = deque((item,))
            self._ready.put_nowait(key)
        else:
            line.append(item)

    async def drained(self) -> None:
        """Wait until every event put so far has been handled."""
        await self._drained.wait()

    async def stop(self) -> None:
        await cancel(self._tasks)
        self._tasks = []

    async def _work(self) -> None:
        while True:
            key = await self._ready.get()
            line = self._lines[key]
            while line:
                try:
                    await self._handle(line[0])
                except Exception as e:
                    log.error("handling an event of %s failed unexpectedly:\n%s", key, traceback_text(e))
                finally:
                    line.popleft()
                    self._pending -= 1
                    self._space.release()
                    if not self._pending:
                        self._drained.set()
            del self._lines[key]
