"""Kubernetes Events on ExternalSecrets: Synced, Rotated, and rate-limited SyncFailed warnings.

Events are the user's audit trail of which keys an ExternalSecret received and when they
changed; they name keys and content hashes, never values. A failing refresh repeats on every
backoff step, so SyncFailed is posted at most once per object and reason per interval, to keep
a persistent AWS outage from flooding the API server. Keying on the reason (not the message) and
remembering every reason posted in the window means an outage whose reason flaps (Throttled,
ProviderError, Throttled, ...) still posts at most one event per reason per window.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field

from tmpfs_secrets.kube.conditions import capped, rfc3339
from tmpfs_secrets.kube.index import Tracked
from tmpfs_secrets.kube.rest import KubeApiError, Rest, core_path
from tmpfs_secrets.vocabulary import (
    API_VERSION,
    COMPONENT,
    EVENT_ROTATED,
    EVENT_SYNC_FAILED,
    EVENT_SYNCED,
)

log = logging.getLogger(__name__)

SYNCED = EVENT_SYNCED
ROTATED = EVENT_ROTATED
SYNC_FAILED = EVENT_SYNC_FAILED
MAX_MESSAGE = 1024  # the API server rejects longer event messages


ObjectKey = tuple[str, str | None, str]


@dataclass
class FailureLimiter:
    """Decides whether a SyncFailed event is due: once per object and reason per `interval`."""

    interval: float
    _posted: dict[ObjectKey, dict[str, float]] = field(default_factory=dict)

    def allow(self, key: ObjectKey, reason: str, now: float) -> bool:
        posted = self._posted.setdefault(key, {})
        for old, at in list(posted.items()):
            if now - at >= self.interval:
                del posted[old]
        if reason in posted:
            return False
        posted[reason] = now
        return True

    def forget(self, key: ObjectKey) -> None:
        """A success ends the failure: the next failure is news again."""
        self._posted.pop(key, None)


class EventRecorder:
    def __init__(self, rest: Rest, *, failure_interval: float = 300.0) -> None:
        self.rest = rest
        self.failure_interval = failure_interval
        self.instance = socket.gethostname()
        self._failures = FailureLimiter(failure_interval)

    async def normal(self, obj: Tracked, reason: str, message: str) -> None:
        self._failures.forget((obj.kind, obj.namespace, obj.name))
        await self._post(obj, "Normal", reason, message)

    async def failure(self, obj: Tracked, reason: str, message: str, *, now: float | None = None) -> bool:
        """Post a SyncFailed warning unless one with the same reason was posted recently."""
        now = time.time() if now is None else now
        if not self._failures.allow((obj.kind, obj.namespace, obj.name), reason, now):
            return False
        await self._post(obj, "Warning", SYNC_FAILED, f"{reason}: {message}")
        return True

    def forget(self, obj_key: ObjectKey) -> None:
        self._failures.forget(obj_key)

    async def _post(self, obj: Tracked, type_: str, reason: str, message: str) -> None:
        namespace = obj.namespace or "default"
        stamp = rfc3339(time.time())
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{obj.name}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": obj.kind,
                "name": obj.name,
                "namespace": obj.namespace,
                "uid": obj.uid,
            },
            "type": type_,
            "reason": reason,
            "message": capped(message, MAX_MESSAGE),
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.instance[:128],
        }
        try:
            await self.rest.post(core_path("events", namespace), event)
        except KubeApiError as e:
            # An event is an audit aid, not part of the sync: losing one must not fail the sync.
            log.warning("could not post %s event on %s %s/%s: %s", reason, obj.kind, namespace, obj.name, e)
