"""Status of ExternalSecrets and stores: computed from an outcome, patched only when it changed.

`refreshTime` and `nextRefreshTime` are deliberately not part of the comparison. Writing them on
every refresh would make an idle operator write once per object per interval; instead they are
written together with any other change, so `refreshTime` is the time of the refresh that produced
the current status (the last change), and `nextRefreshTime` the refresh planned at that moment.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from tmpfs_secrets.kube import conditions
from tmpfs_secrets.kube.index import ObjectIndex, Tracked
from tmpfs_secrets.kube.rest import Rest, group_path
from tmpfs_secrets.ports import SyncFailure, SyncSuccess
from tmpfs_secrets.vocabulary import GROUP, KINDS, VERSION, Reason

SYNCED = Reason.SYNCED.value
STORE_VALID = Reason.VALID.value
_TIMES = ("refreshTime", "nextRefreshTime")


def success_message(result: SyncSuccess) -> str:
    keys = len(result.data)
    return (
        f"{keys} key{'s' if keys != 1 else ''} from {result.sources} "
        f"source{'s' if result.sources != 1 else ''}"
    )


def synced_status(tracked: Tracked, result: SyncSuccess, *, now: float | None = None) -> dict[str, Any]:
    current = tracked.status
    return {
        "conditions": conditions.with_condition(
            current.get("conditions"),
            type_=conditions.READY,
            status=True,
            reason=SYNCED,
            message=success_message(result),
            observed_generation=tracked.generation,
            now=now if now is not None else time.time(),
        ),
        "refreshTime": conditions.rfc3339(result.refresh_time),
        "nextRefreshTime": (
            conditions.rfc3339(result.next_refresh_time) if result.next_refresh_time is not None else None
        ),
        "syncedVersions": dict(sorted(result.versions.items())),
        "contentHash": result.content_hash,
    }


def direct_status(
    tracked: Tracked,
    current: int,
    stale: int,
    content_hash: str,
    result: SyncSuccess | None = None,
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """A Direct ExternalSecret: Ready only once every connected pod wrote the current content.

    `result` is the fetch being delivered (None for a change in the pods' acknowledgements).
    """
    pods = current + stale
    short = content_hash[:19]
    if current and not stale:
        reason = Reason.DELIVERED.value
        message = f"content {short} written by all {pods} connected pod{'s' if pods != 1 else ''}"
    elif not pods:
        reason = Reason.AWAITING_PODS.value
        message = (
            f"content {short} fetched; no pod streams it yet (pods name it in their "
            "tmpfs-secrets.io/secrets annotation)"
        )
    else:
        reason = Reason.AWAITING_PODS.value
        message = f"content {short} written by {current} of {pods} connected pods; waiting for {stale}"
    status: dict[str, Any] = {
        "conditions": conditions.with_condition(
            tracked.status.get("conditions"),
            type_=conditions.READY,
            status=bool(current and not stale),
            reason=reason,
            message=message,
            observed_generation=tracked.generation,
            now=now if now is not None else time.time(),
        ),
        "contentHash": content_hash,
        "direct": {"podsCurrent": current, "podsStale": stale},
    }
    if result is not None:
        status["refreshTime"] = conditions.rfc3339(result.refresh_time)
        status["nextRefreshTime"] = (
            conditions.rfc3339(result.next_refresh_time) if result.next_refresh_time is not None else None
        )
        status["syncedVersions"] = dict(sorted(result.versions.items()))
    return status


def failed_status(tracked: Tracked, result: SyncFailure, *, now: float | None = None) -> dict[str, Any]:
    """The last good `syncedVersions`, `contentHash` and `refreshTime` stay: so do the values."""
    current = tracked.status
    status: dict[str, Any] = {
        "conditions": conditions.with_condition(
            current.get("conditions"),
            type_=conditions.READY,
            status=False,
            reason=result.reason,
            message=result.message,
            observed_generation=tracked.generation,
            now=now if now is not None else time.time(),
        ),
    }
    if result.next_refresh_time is not None:
        status["nextRefreshTime"] = conditions.rfc3339(result.next_refresh_time)
    return status


def store_status(
    tracked: Tracked, ready: bool, reason: str, message: str, *, now: float | None = None
) -> dict[str, Any]:
    return {
        "conditions": conditions.with_condition(
            tracked.status.get("conditions"),
            type_=conditions.READY,
            status=ready,
            reason=reason,
            message=message,
            observed_generation=tracked.generation,
            now=now if now is not None else time.time(),
        )
    }


def status_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any] | None:
    """The merge patch from `current` to `desired`, or None when nothing but the times differ."""
    substantive = {k: v for k, v in desired.items() if k not in _TIMES}
    if all(_same(current.get(k), v) for k, v in substantive.items()):
        return None
    patch: dict[str, Any] = {}
    for key, value in desired.items():
        if key == "syncedVersions" and isinstance(value, dict):
            old = current.get(key) or {}
            # A merge patch merges maps: keys that are gone must be removed explicitly.
            patch[key] = {**{k: None for k in old if k not in value}, **value}
        elif not _same(current.get(key), value):
            patch[key] = value
    return patch


def _same(a: object, b: object) -> bool:
    if a is None and b in ({}, []):
        return True
    return a == b


class StatusWriter:
    """Patches the status subresource and feeds the answer back into the index."""

    def __init__(self, rest: Rest, index: ObjectIndex) -> None:
        self.rest = rest
        self.index = index

    async def apply(self, tracked: Tracked, desired: Mapping[str, Any]) -> bool:
        """Patch the status if it differs in substance from the last seen one; True if written."""
        patch = status_patch(tracked.status, desired)
        if patch is None:
            return False
        kind = KINDS[tracked.kind]
        path = group_path(
            GROUP,
            VERSION,
            kind.plural,
            tracked.namespace if kind.namespaced else None,
            tracked.name,
            "status",
        )
        answer = await self.rest.merge_patch(path, {"status": patch})
        self.index.observe_status(tracked.kind, answer)
        return True
