"""The central copy of each Direct ExternalSecret and the agents subscribed to it.

A change is encoded once and offered to every subscriber. A subscriber keeps at most one pending
line per ExternalSecret (a newer key set replaces one not yet sent), so the hub never waits for an
agent and a slow agent costs bounded memory: the sender task of each connection drains its own
subscriber. Acknowledgements say which content hash each pod wrote; the counts per ExternalSecret
(connected pods holding the current hash, and not) feed the status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from tmpfs_secrets.agent import protocol
from tmpfs_secrets.ports import ObjectRef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Content:
    hash: str
    mode: int
    line: bytes = field(repr=False)  # the encoded message, values included


class Counts(NamedTuple):
    current: int  # connected pods that wrote the current content
    stale: int  # connected pods that have not (yet)


class Subscriber:
    """One agent connection: the ExternalSecrets it asked for and the lines waiting to be sent."""

    def __init__(self, pod_uid: str, refs: Iterable[ObjectRef]) -> None:
        self.pod_uid = pod_uid
        self.refs = frozenset(refs)
        self.pending: dict[ObjectRef, bytes] = {}
        self.acked: dict[ObjectRef, str] = {}
        self.wakeup = asyncio.Event()

    def offer(self, ref: ObjectRef, line: bytes) -> None:
        self.pending[ref] = line
        self.wakeup.set()

    def take(self) -> list[bytes]:
        lines = list(self.pending.values())
        self.pending.clear()
        self.wakeup.clear()
        return lines


class Hub:
    def __init__(self, on_counts: Callable[[ObjectRef], None] = lambda _ref: None) -> None:
        self._contents: dict[ObjectRef, Content] = {}
        self._subscribers: dict[ObjectRef, set[Subscriber]] = {}
        self.on_counts = on_counts
        self.published = 0  # key sets encoded (one per change, whatever the number of pods)

    def publish(self, ref: ObjectRef, data: Mapping[str, bytes], content_hash: str, mode: int) -> None:
        """A new key set for `ref`: kept as the central copy and offered to its subscribers."""
        current = self._contents.get(ref)
        if current is not None and (current.hash, current.mode) == (content_hash, mode):
            return
        content = Content(content_hash, mode, protocol.encode_secret(ref.name, content_hash, mode, data))
        self._contents[ref] = content
        self.published += 1
        subscribers = self._subscribers.get(ref, ())
        for subscriber in subscribers:
            subscriber.offer(ref, content.line)
        # One line per change, not per pod: the benchmark times "fetch -> file" from it.
        log.info(
            "new content of %s/%s (%s) offered to %d agent connection(s)",
            ref.namespace,
            ref.name,
            content_hash[:19],
            len(subscribers),
        )
        self.on_counts(ref)

    def content_hash(self, ref: ObjectRef) -> str | None:
        content = self._contents.get(ref)
        return content.hash if content is not None else None

    def forget(self, ref: ObjectRef) -> None:
        """The ExternalSecret is gone: drop its copy (agents keep the files they have)."""
        self._contents.pop(ref, None)

    def subscribe(self, pod_uid: str, refs: Iterable[ObjectRef]) -> Subscriber:
        subscriber = Subscriber(pod_uid, refs)
        for ref in subscriber.refs:
            self._subscribers.setdefault(ref, set()).add(subscriber)
            content = self._contents.get(ref)
            if content is not None:
                subscriber.offer(ref, content.line)
            else:
                subscriber.offer(
                    ref, protocol.encode_pending(ref.name, "NotFetched", "no key set has been fetched yet")
                )
            self.on_counts(ref)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        for ref in subscriber.refs:
            subscribers = self._subscribers.get(ref)
            if subscribers is not None:
                subscribers.discard(subscriber)
                if not subscribers:
                    del self._subscribers[ref]
            self.on_counts(ref)

    def ack(self, pod_uid: str, ref: ObjectRef, content_hash: str) -> bool:
        """An agent wrote `content_hash`; False if no connection of that pod streams `ref`."""
        found = False
        for subscriber in self._subscribers.get(ref, ()):
            if subscriber.pod_uid == pod_uid:
                subscriber.acked[ref] = content_hash
                found = True
        if found:
            self.on_counts(ref)
        return found

    def counts(self, ref: ObjectRef) -> Counts:
        """Pods, not connections: a pod whose agent reconnected counts once, by its best connection."""
        current_hash = self.content_hash(ref)
        pods: dict[str, bool] = {}
        for subscriber in self._subscribers.get(ref, ()):
            holds = current_hash is not None and subscriber.acked.get(ref) == current_hash
            pods[subscriber.pod_uid] = pods.get(subscriber.pod_uid, False) or holds
        current = sum(pods.values())
        return Counts(current, len(pods) - current)

    def connections(self) -> int:
        return len({id(s) for subs in self._subscribers.values() for s in subs})
