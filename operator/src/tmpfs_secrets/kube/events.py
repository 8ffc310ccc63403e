"""Kubernetes Events on ExternalSecrets: Synced, Rotated, and rate-limited SyncFailed warnings.

Events are the user's audit trail of which keys an ExternalSecret received and when they
changed; they name keys and content hashes, never values. A failing refresh repeats on every
backoff step, so SyncFailed is posted at most once per object and reason per interval, to keep
a persistent AWS outage from flooding the API server. Keying on the reason (not the message) and
remembering every reason posted in the window means an outage whose reason flaps (Throttled,
ProviderError, Throttled, ...) still posts at most one event per reason per window.

Events are posted by a few background senders from a bounded queue, not on the sync's path: a
value reaches its Secret and its status without waiting for the event's round trip, and when
thousands of objects sync at once (a mass creation) the events wait their turn. When more are
waiting than the queue holds, new ones are dropped and counted
(`tmpfs_secrets_events_dropped_total`), as client-go's event broadcaster does: an event is an
audit aid, the status carries the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from tmpfs_secrets import metrics
from tmpfs_secrets.errors import traceback_text
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
QUEUE_SIZE = 1000  # events waiting to be posted; client-go's broadcaster holds as many
SENDERS = 2  # events posted at once: a trickle beside the writes that deliver values
DROP_LOG_INTERVAL = 60.0  # seconds between warnings about dropped events
CLOSE_GRACE = 2.0  # seconds a stopping operator spends posting the events still queued


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
    """Queues Events on watched objects; `close()` posts what is still queued (briefly) and stops."""

    def __init__(
        self,
        rest: Rest,
        *,
        failure_interval: float = 300.0,
        queue_size: int = QUEUE_SIZE,
        senders: int = SENDERS,
    ) -> None:
        self.rest = rest
        self.failure_interval = failure_interval
        self.instance = socket.gethostname()
        self._failures = FailureLimiter(failure_interval)
        self._queue_size = queue_size
        self._sender_count = senders
        self._queue: asyncio.Queue[dict[str, Any]] | None = None
        self._senders: list[asyncio.Task[None]] = []
        self._dropped = 0
        self._drop_logged = 0.0

    async def normal(self, obj: Tracked, reason: str, message: str) -> None:
        self._failures.forget((obj.kind, obj.namespace, obj.name))
        self._enqueue(obj, "Normal", reason, message)

    async def failure(self, obj: Tracked, reason: str, message: str, *, now: float | None = None) -> bool:
        """Queue a SyncFailed warning unless one with the same reason was posted recently."""
        now = time.time() if now is None else now
        if not self._failures.allow((obj.kind, obj.namespace, obj.name), reason, now):
            return False
        self._enqueue(obj, "Warning", SYNC_FAILED, f"{reason}: {message}")
        return True

    def forget(self, obj_key: ObjectKey) -> None:
        self._failures.forget(obj_key)

    async def flush(self) -> None:
        """Wait until every queued event has been posted (or failed to post)."""
        if self._queue is not None:
            await self._queue.join()

    async def close(self) -> None:
        """Post what is queued for up to CLOSE_GRACE seconds, then stop the senders."""
        if self._queue is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), CLOSE_GRACE)
        for task in self._senders:
            task.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        self._senders.clear()
        self._queue = None

    def _enqueue(self, obj: Tracked, type_: str, reason: str, message: str) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue(self._queue_size)
            self._senders = [
                asyncio.create_task(self._send(self._queue), name=f"tmpfs-secrets-events-{i}")
                for i in range(self._sender_count)
            ]
        namespace = obj.namespace or "default"
        try:
            self._queue.put_nowait(self._event(obj, namespace, type_, reason, message))
        except asyncio.QueueFull:
            self._drop(reason)

    def _drop(self, reason: str) -> None:
        metrics.EVENTS_DROPPED.labels(reason).inc()
        self._dropped += 1
        now = time.monotonic()
        if now - self._drop_logged >= DROP_LOG_INTERVAL:
            log.warning(
                "%d events dropped: %d were waiting to be posted (the API server is slower than "
                "the objects being synced; see tmpfs_secrets_events_dropped_total)",
                self._dropped,
                self._queue_size,
            )
            self._drop_logged, self._dropped = now, 0

    def _event(self, obj: Tracked, namespace: str, type_: str, reason: str, message: str) -> dict[str, Any]:
        stamp = rfc3339(time.time())
        return {
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

    async def _send(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            event = await queue.get()
            reason, namespace, involved = (
                event["reason"],
                event["metadata"]["namespace"],
                event["involvedObject"],
            )
            try:
                await self.rest.post(core_path("events", namespace), event)
            except KubeApiError as e:
                # An event is an audit aid, not part of the sync: losing one must not fail the sync.
                log.warning(
                    "could not post %s event on %s %s/%s: %s",
                    reason,
                    involved["kind"],
                    namespace,
                    involved["name"],
                    e,
                )
            except Exception as e:
                log.error("posting a %s event failed unexpectedly:\n%s", reason, traceback_text(e))
            finally:
                queue.task_done()
