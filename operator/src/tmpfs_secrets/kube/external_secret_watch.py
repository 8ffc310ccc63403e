"""The ExternalSecrets' LIST and WATCH, handed to a handler through a bounded work queue.

Not a kopf handler: kopf queues every event of every object as it arrives, so a restart at 10,000
ExternalSecrets held all 10,000 listed bodies at once (tens of MiB) while its per-object tasks
worked through them. Here a LIST page or WATCH event waits for room in a `WorkQueue` of
`QUEUE_LIMIT` events; `WORKERS` tasks hand them to the handler, one object per task, an object's
events in order. `managedFields` (the largest part of a body, never read) is dropped on arrival.
A relist (after the WATCH fell too far behind) reports what it no longer holds as DELETED.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from tmpfs_secrets.kube.index import ObjectIndex
from tmpfs_secrets.kube.list_watch import Key, ListWatch, key_of
from tmpfs_secrets.kube.rest import JSON, Rest, group_path
from tmpfs_secrets.kube.work_queue import WorkQueue
from tmpfs_secrets.tasks import cancel
from tmpfs_secrets.vocabulary import EXTERNAL_SECRET, GROUP, VERSION

WORKERS = 16
QUEUE_LIMIT = 256
Handle = Callable[[str | None, JSON], Awaitable[None]]  # (event type, body), as `ListWatch` gives them


class ExternalSecretWatch:
    def __init__(
        self,
        rest: Rest,
        index: ObjectIndex,
        namespaces: Sequence[str] = (),
        *,
        workers: int = WORKERS,
        limit: int = QUEUE_LIMIT,
    ) -> None:
        """`namespaces`: watch these (one LIST and WATCH each); empty: the whole cluster."""
        self.workers = workers
        self.limit = limit
        self.rest = rest
        self.index = index
        self.namespaces: list[str | None] = list(namespaces) or [None]
        self._queue: WorkQueue[tuple[str | None, JSON]] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, handle: Handle) -> None:
        if self._task is not None:
            return

        async def handle_event(event: tuple[str | None, JSON]) -> None:
            await handle(*event)

        self._queue = WorkQueue(
            handle_event, workers=self.workers, limit=self.limit, name="tmpfs-secrets-external-secret"
        )
        watches = [self._watcher(self._queue, ns) for ns in self.namespaces]
        self._task = asyncio.create_task(
            _gather(*(w.run() for w in watches)), name="tmpfs-secrets-external-secret-watch"
        )

    async def drained(self) -> None:
        """Wait until every event read so far has been handled."""
        if self._queue is not None:
            await self._queue.drained()

    async def stop(self) -> None:
        await cancel([self._task])
        self._task = None
        if self._queue is not None:
            await self._queue.stop()
            self._queue = None

    def _watcher(self, queue: WorkQueue[tuple[str | None, JSON]], namespace: str | None) -> ListWatch:
        async def on_event(kind: str | None, obj: JSON) -> None:
            (obj.get("metadata") or {}).pop("managedFields", None)
            await queue.put(key_of(obj), (kind, obj))

        async def on_listed(seen: set[Key]) -> None:
            await queue.drained()  # what is still queued may be what the list no longer holds
            indexed = (
                self.index.external_secrets_in(namespace) if namespace else self.index.external_secrets()
            )
            known = {(ref.namespace, ref.name) for ref in indexed}
            for ns, name in known - seen:
                await queue.put((ns, name), ("DELETED", {"metadata": {"namespace": ns, "name": name}}))

        return ListWatch(
            self.rest,
            group_path(GROUP, VERSION, EXTERNAL_SECRET.plural, namespace),
            on_event=on_event,
            on_listed=on_listed,
            what="ExternalSecrets",
        )


async def _gather(*runs: Awaitable[None]) -> None:
    await asyncio.gather(*runs)
