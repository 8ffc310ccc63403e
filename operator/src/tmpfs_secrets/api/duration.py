"""Go-style durations ("1h", "5m30s", "1.5h", "0") as used by `refreshInterval`.

Users migrate from ESO, whose durations are Go's `time.ParseDuration`; accepting the same syntax
means their manifests work unchanged.
"""

from __future__ import annotations

import re

from tmpfs_secrets.errors import SpecError

DEFAULT_REFRESH_INTERVAL = 3600.0
DEFAULT_MIN_REFRESH_INTERVAL = 10.0  # the operator's default floor (--min-refresh-interval)
# The ceiling: ten years. Any longer and "now + interval" stops being a timestamp worth writing
# (nextRefreshTime); the CRD checks the same bound with CEL's duration().
MAX_REFRESH_INTERVAL = 87600 * 3600.0
MAX_REFRESH_INTERVAL_TEXT = "87600h"

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: object, field: str = "refreshInterval") -> float:
    """Seconds for a Go duration string; "0" (or the integer 0) means zero."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise SpecError(f"{field} must be a duration string such as '1h' or '5m30s'")
    if isinstance(text, int | float):
        if text == 0:
            return 0.0
        raise SpecError(f"{field} {text!r} has no unit; write it as a duration such as '{text}s' or '1h'")
    raw = text.strip()
    if raw in {"0", "+0", "-0"}:
        return 0.0
    body = raw[1:] if raw[:1] in "+-" else raw
    if raw.startswith("-"):
        raise SpecError(
            f"{field} {raw!r} is negative; use a positive duration such as '1h', or '0' to fetch once"
        )
    total = 0.0
    pos = 0
    for match in _PART.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not body or pos != len(body):
        raise SpecError(
            f"{field} {raw!r} is not a duration; use numbers with units h, m, s, ms "
            "(for example '1h', '5m30s', '90s'), or '0' to fetch once"
        )
    return total


def format_seconds(seconds: float) -> str:
    """A short Go-style duration for messages: 10s, 1m30s, 2h."""
    whole = int(seconds)
    if whole != seconds or whole < 60:
        return f"{seconds:g}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if n)


def check_refresh_interval(
    seconds: float,
    raw: object,
    floor: float = DEFAULT_MIN_REFRESH_INTERVAL,
    field: str = "spec.refreshInterval",
) -> float:
    """`seconds` if it is 0 or within [floor, ceiling]; otherwise SpecError naming the range."""
    if seconds == 0 or floor <= seconds <= MAX_REFRESH_INTERVAL:
        return seconds
    allowed = (
        f"use a duration from {format_seconds(floor)} to {MAX_REFRESH_INTERVAL_TEXT}, or 0 to fetch once"
    )
    if seconds < floor:
        raise SpecError(f"{field} {raw!r} is shorter than this operator allows; {allowed}")
    raise SpecError(f"{field} {raw!r} is too long; {allowed}")
