"""The agent's log lines: one per line on standard error, with a UTC time and a level.

`logging` would cost the agent more memory than everything it does; it needs only this.
Nothing logged here ever contains a value or the token.
"""

from __future__ import annotations

import sys
import time


def say(level: str, message: str) -> None:
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    sys.stderr.write(f"{stamp} {level} {message}\n")
    sys.stderr.flush()
