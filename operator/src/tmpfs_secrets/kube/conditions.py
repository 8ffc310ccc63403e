"""Status conditions the Kubernetes way (type, status, reason, message, observedGeneration, time).

`lastTransitionTime` moves only when the condition's status flips, as the API conventions say,
so a repeated identical outcome computes the very same condition and causes no write.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from tmpfs_secrets.vocabulary import READY_CONDITION

READY = READY_CONDITION


def rfc3339(unix_time: float) -> str:
    """metav1.Time format: UTC, whole seconds, `Z` suffix."""
    moment = datetime.datetime.fromtimestamp(unix_time, datetime.UTC).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


def find(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    for condition in conditions or ():
        if condition.get("type") == type_:
            return condition
    return None


def is_true(conditions: Sequence[Mapping[str, Any]] | None, type_: str = READY) -> bool:
    found = find(conditions, type_)
    return found is not None and found.get("status") == "True"


MAX_MESSAGE = 1024  # a condition message is a sentence or three, never a dump


def capped(message: str, limit: int = MAX_MESSAGE) -> str:
    """`message`, cut to `limit` characters with a marker when longer."""
    marker = " … (cut)"
    return message if len(message) <= limit else message[: limit - len(marker)] + marker


def with_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    *,
    type_: str,
    status: bool,
    reason: str,
    message: str,
    observed_generation: int,
    now: float,
) -> list[dict[str, Any]]:
    """The condition list with `type_` set; other condition types are kept as they are."""
    status_text = "True" if status else "False"
    previous = find(conditions, type_)
    transition = (
        str(previous["lastTransitionTime"])
        if previous is not None
        and previous.get("status") == status_text
        and previous.get("lastTransitionTime")
        else rfc3339(now)
    )
    condition = {
        "type": type_,
        "status": status_text,
        "reason": reason,
        "message": capped(message),
        "observedGeneration": observed_generation,
        "lastTransitionTime": transition,
    }
    others = [dict(c) for c in conditions or () if c.get("type") != type_]
    return [condition, *others]
