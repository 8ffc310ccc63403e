"""When each remote source is fetched: one task, due times per source, batches, backoff.

`plan` holds the pure scheduling state (testable with a fake clock, no sleeping); `loop` is the
single asyncio task that wakes at the next due time and hands batches to the engine.
"""

from tmpfs_secrets.scheduler.backoff import Backoff
from tmpfs_secrets.scheduler.clock import Clock, SystemClock
from tmpfs_secrets.scheduler.loop import Scheduler
from tmpfs_secrets.scheduler.plan import CALL, KEY, THROTTLED, Outcome, Plan

__all__ = ["CALL", "KEY", "THROTTLED", "Backoff", "Clock", "Outcome", "Plan", "Scheduler", "SystemClock"]
