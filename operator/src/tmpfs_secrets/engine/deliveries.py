"""ExternalSecrets whose values are ready to be reported, worked off by a few tasks.

A new or changed ExternalSecret whose sources are already in the cache is delivered without an AWS
call, but delivering still costs a few writes to the API server. Done inside the watch handler,
those writes would hold the handler, so at a mass creation the watch's events (whole bodies) would
pile up waiting for handlers. Here the handler only names the object and returns; a pending
object is one entry, in arrival order, and an object named twice before its turn is reported
once, with its latest state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from tmpfs_secrets.errors import traceback_text
from tmpfs_secrets.ports import ObjectRef
from tmpfs_secrets.tasks import cancel

log = logging.getLogger(__name__)


class Deliveries:
    def __init__(self, report: Callable[[ObjectRef], Awaitable[None]], workers: int) -> None:
        self._report = report
        self._workers = workers
        self._pending: dict[ObjectRef, None] = {}  # insertion-ordered: the oldest goes first
        self._active = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: list[asyncio.Task[None]] = []

    def submit(self, ref: ObjectRef) -> None:
        """Report this object soon (once, however often it is named before its turn)."""
        self._pending[ref] = None
        self._idle.clear()
        self._wake.set()
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._work(), name=f"tmpfs-secrets-delivery-{i}")
                for i in range(self._workers)
            ]

    def discard(self, ref: ObjectRef) -> None:
        self._pending.pop(ref, None)
        self._settle()

    @property
    def busy(self) -> bool:
        return bool(self._pending) or self._active > 0

    async def idle(self) -> None:
        """Wait until nothing is pending or being reported."""
        await self._idle.wait()

    async def stop(self) -> None:
        await cancel(self._tasks)
        self._tasks = []

    async def _work(self) -> None:
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            ref = next(iter(self._pending))
            del self._pending[ref]
            self._active += 1
            try:
                await self._report(ref)
            except Exception as e:
                log.error(
                    "reporting %s/%s failed unexpectedly:\n%s", ref.namespace, ref.name, traceback_text(e)
                )
            finally:
                self._active -= 1
                self._settle()

    def _settle(self) -> None:
        if not self.busy:
            self._idle.set()
