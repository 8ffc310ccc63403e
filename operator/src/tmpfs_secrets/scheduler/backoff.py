"""Exponential backoff with jitter, for a failing source and for a throttled or unreachable group.

Jitter spreads the retries of keys and groups that failed together (an outage, a throttling
burst), so they do not come back as one burst either.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

DEFAULT_CAP = 600.0  # ten minutes: the `--backoff-cap` default


@dataclass
class Backoff:
    base: float = 5.0
    factor: float = 2.0
    cap: float = DEFAULT_CAP
    random: Callable[[], float] = field(default=random.random)

    def delay(self, failures: int) -> float:
        """Seconds until retry number `failures` (1 = first retry), jittered within [50%, 100%].

        It grows past the source's refresh interval up to `cap`: a key that keeps failing costs
        fewer and fewer calls, whatever its interval."""
        raw = min(self.cap, self.base * self.factor ** max(0, failures - 1))
        return raw * (0.5 + 0.5 * self.random())
