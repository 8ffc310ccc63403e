"""One LIST and one WATCH of the target Secrets, by label, feeding `TargetIndex`.

The operator's own Secrets carry `tmpfs-secrets.io/target=true`; the API server applies the label
selector, so no one else's Secret is ever listed. This is a plain watch on the async client, not a
kopf handler: kopf would start a task per Secret and, as an index, hold every ExternalSecret back
until each Secret had its own turn, which at 10,000 Secrets takes longer than a refresh interval.
The listing comes in pages (`kube.list_watch`); `TargetIndex.listed` tells the writer when the
index is complete. Changes made by others (a deletion, an edit, the label removed) are reported to
`on_news`, which the handlers turn into a redelivery of the ExternalSecret's key set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from tmpfs_secrets.kube.list_watch import Key, ListWatch, key_of
from tmpfs_secrets.kube.rest import JSON, Rest, core_path
from tmpfs_secrets.kube.targets import TargetIndex
from tmpfs_secrets.tasks import cancel
from tmpfs_secrets.vocabulary import TARGET_LABEL, TARGET_LABEL_VALUE

SELECTOR = f"{TARGET_LABEL}={TARGET_LABEL_VALUE}"
News = Callable[[str, str, str], None]  # (namespace, name, "changed" | "deleted")


class TargetWatch:
    def __init__(self, rest: Rest, targets: TargetIndex, namespaces: Sequence[str] = ()) -> None:
        """`namespaces`: watch these (one LIST and WATCH each); empty: the whole cluster."""
        self.rest = rest
        self.targets = targets
        self.namespaces: list[str | None] = list(namespaces) or [None]
        self.on_news: News | None = None
        self._pending = set(self.namespaces)
        self._task: asyncio.Task[None] | None = None

    def start(self, on_news: News | None = None) -> None:
        self.on_news = on_news
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tmpfs-secrets-target-watch")

    async def stop(self) -> None:
        await cancel([self._task])
        self._task = None

    async def _run(self) -> None:
        await asyncio.gather(*(self._watcher(ns).run() for ns in self.namespaces))

    def _watcher(self, namespace: str | None) -> ListWatch:
        async def on_event(kind: str | None, obj: JSON) -> None:
            key = key_of(obj)
            if kind == "DELETED":
                if self.targets.forget(*key) is not None:
                    self._news(*key, "deleted")
            elif self.targets.observe(obj):
                self._news(*key, "changed")

        async def on_listed(seen: set[Key]) -> None:
            # A relist after the watch fell behind: what is gone was deleted meanwhile.
            for key in self.targets.keys(namespace) - seen:
                if self.targets.forget(*key) is not None:
                    self._news(*key, "deleted")
            self._pending.discard(namespace)
            if not self._pending:
                self.targets.mark_listed()

        return ListWatch(
            self.rest,
            core_path("secrets", namespace),
            on_event=on_event,
            on_listed=on_listed,
            what="target Secrets",
            query=[("labelSelector", SELECTOR)],
        )

    def _news(self, namespace: str, name: str, what: str) -> None:
        if self.on_news is not None:
            self.on_news(namespace, name, what)
