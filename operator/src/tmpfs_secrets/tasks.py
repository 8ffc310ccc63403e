"""Stopping the operator's background tasks: cancel, then wait until each has really ended.

Every long-lived task (a watch, a queue's workers, a certificate reloader) is stopped the same way,
so no task outlives the client or the event loop it uses.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any


async def cancel(tasks: Iterable[asyncio.Task[Any] | None]) -> None:
    """Cancel every task (None is skipped) and wait for each to end; their cancellation is not re-raised."""
    pending = [task for task in tasks if task is not None]
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task
