"""Exponential backoff with jitter for a failing source.

Jitter spreads the retries of keys that failed together (an outage, a throttling burst), so
they do not come back as one burst either.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    base: float = 5.0
    factor: float = 2.0
    cap: float = 300.0
    random: Callable[[], float] = field(default=random.random)

    def delay(self, failures: int, interval: float) -> float:
        """Seconds until retry number `failures` (1 = first retry), jittered within [50%, 100%].

        Never later than the source's own refresh interval, so an error does not delay a key beyond
        when it would have been fetched anyway.
        """
        raw = min(self.cap, self.base * self.factor ** max(0, failures - 1))
        if interval > 0:
            raw = min(raw, interval)
        return raw * (0.5 + 0.5 * self.random())
