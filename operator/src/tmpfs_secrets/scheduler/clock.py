"""Time as a dependency, so scheduling decisions can be tested without sleeping."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Unix time in seconds (status fields such as nextRefreshTime use it directly)."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()
