"""The one scheduler task: sleep until the next due time, then hand out batches.

Fetches run as short-lived tasks bounded by a semaphore (the AWS thread pool bounds them again);
the loop itself never waits for AWS, so a slow call never delays other groups.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping

from tmpfs_secrets.providers.base import Source
from tmpfs_secrets.scheduler.clock import Clock
from tmpfs_secrets.scheduler.plan import Outcome, Plan

log = logging.getLogger(__name__)

RunBatch = Callable[[list[Source]], Awaitable[Mapping[Source, bool | Outcome]]]
AfterBatch = Callable[[list[Source]], Awaitable[None]]


class Scheduler:
    def __init__(
        self,
        plan: Plan,
        clock: Clock,
        run_batch: RunBatch,
        after: AfterBatch | None = None,
        max_concurrent: int = 8,
    ) -> None:
        """`run_batch` fetches and says how each source fared; `after` runs once the plan knows
        their next due times (the engine fans results out to ExternalSecrets there)."""
        self.plan = plan
        self._clock = clock
        self._run_batch = run_batch
        self._after = after
        self._limit = asyncio.Semaphore(max_concurrent)
        self._event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self.last_tick: float | None = None  # when the loop last looked at the plan

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tmpfs-secrets-scheduler")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._batches) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None

    def wake(self) -> None:
        """Re-read the plan now (call after changing it)."""
        self._event.set()

    def problem(self, now: float, stuck_after: float) -> str | None:
        """Why the loop is not doing its job (stopped, or a refresh overdue by `stuck_after`), or None."""
        if self._task is None:
            return "the refresh loop is not running"
        if self._task.done():
            error = None if self._task.cancelled() else self._task.exception()
            return f"the refresh loop stopped{f': {error!r}' if error else ''}"
        due = self.plan.next_wake()
        if due is not None and now - due > stuck_after and (self.last_tick is None or self.last_tick < due):
            return f"the refresh loop is stuck: a refresh due {now - due:.0f}s ago has not started"
        return None

    async def idle(self) -> None:
        """Wait until no batch is running (for tests and orderly shutdown)."""
        while self._batches:
            await asyncio.gather(*list(self._batches), return_exceptions=True)

    async def _run(self) -> None:
        while True:
            self.last_tick = self._clock.now()
            self._event.clear()
            for batch in self.plan.take_due(self._clock.now()):
                task = asyncio.create_task(self._one(batch))
                self._batches.add(task)
                task.add_done_callback(self._batches.discard)
            wake_at = self.plan.next_wake()
            timeout = None if wake_at is None else max(0.005, wake_at - self._clock.now())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout)

    async def _one(self, batch: list[Source]) -> None:
        results: Mapping[Source, bool | Outcome] = {}
        try:
            async with self._limit:
                results = await self._run_batch(batch)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("refreshing a batch of %d sources failed unexpectedly", len(batch))
        finally:
            self.plan.complete_batch(batch, results, self._clock.now())
            self.wake()
        if self._after is not None:
            try:
                await self._after(batch)
            except Exception:
                log.exception("reporting the results of a batch of %d sources failed", len(batch))
