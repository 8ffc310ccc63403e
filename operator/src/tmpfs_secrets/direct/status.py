"""Turns the hub's count changes into at most one status write per ExternalSecret per interval.

Fifty pods acknowledging a rotation within a second make one status write, not fifty: a change
marks the ExternalSecret, and one delayed task per marked object writes whatever the counts are
when it runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from tmpfs_secrets.ports import ObjectRef

log = logging.getLogger(__name__)


class CountsDebounce:
    def __init__(self, write: Callable[[ObjectRef], Awaitable[None]], delay: float = 1.0) -> None:
        self.write = write
        self.delay = delay
        self._pending: dict[ObjectRef, asyncio.Task[None]] = {}

    def changed(self, ref: ObjectRef) -> None:
        if ref in self._pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a unit test of the hub alone): nothing to write
        self._pending[ref] = loop.create_task(
            self._later(ref), name=f"direct-status-{ref.namespace}/{ref.name}"
        )

    async def _later(self, ref: ObjectRef) -> None:
        try:
            await asyncio.sleep(self.delay)
        finally:
            self._pending.pop(ref, None)
        try:
            await self.write(ref)
        except Exception:
            log.exception("writing the Direct delivery status of %s/%s failed", ref.namespace, ref.name)

    async def stop(self) -> None:
        tasks = list(self._pending.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
