"""One LIST and one WATCH of the target Secrets, by label, feeding `TargetIndex`.

The operator's own Secrets carry `tmpfs-secrets.io/target=true`; the API server applies the label
selector, so no one else's Secret is ever listed. This is a plain watch on the async client, not a
kopf handler: kopf would start a task per Secret and, as an index, hold every ExternalSecret back
until each Secret had its own turn, which at 10,000 Secrets takes longer than a refresh interval.
Here the listing comes in pages of 500, each parsed once and let go before the next;
`TargetIndex.listed` tells the writer when the index is complete. Changes made by others (a
deletion, an edit, the label removed) are reported to `on_news`, which the handlers turn into a
redelivery of the ExternalSecret's key set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from tmpfs_secrets.kube.rest import KubeApiError, Rest, core_path
from tmpfs_secrets.kube.targets import TargetIndex
from tmpfs_secrets.vocabulary import TARGET_LABEL, TARGET_LABEL_VALUE

log = logging.getLogger(__name__)

SELECTOR = f"{TARGET_LABEL}={TARGET_LABEL_VALUE}"
WATCH_SECONDS = 300  # the API server ends each watch after this; the next one resumes from its version
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
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        await asyncio.gather(*(self._follow(ns) for ns in self.namespaces))

    async def _follow(self, namespace: str | None) -> None:
        path = core_path("secrets", namespace)
        version: str | None = None
        delay = 1.0
        while True:
            try:
                if version is None:
                    version = await self._list(path, namespace)
                version = await self._watch(path, version)
                delay = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the API server restarting, say: resume after a pause
                log.warning("watching target Secrets failed (%s); retrying in %gs", _describe(exc), delay)
                await asyncio.sleep(delay)
                delay = min(30.0, delay * 2)

    async def _list(self, path: str, namespace: str | None) -> str:
        seen: set[tuple[str, str]] = set()
        version = ""
        async for items, page_version in self.rest.list_pages(path, query=[("labelSelector", SELECTOR)]):
            version = page_version  # the same on every page: the list's snapshot
            for item in items:
                meta = item.get("metadata") or {}
                key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
                seen.add(key)
                if self.targets.observe(item):
                    self._news(*key, "changed")
        # A relist after the watch fell behind: what is gone was deleted meanwhile.
        for key in self.targets.keys(namespace) - seen:
            if self.targets.forget(*key) is not None:
                self._news(*key, "deleted")
        self._pending.discard(namespace)
        if not self._pending:
            self.targets.mark_listed()
        return version

    async def _watch(self, path: str, version: str) -> str | None:
        """Follow the watch until the server ends it; the version to resume from, or None to relist."""
        query = [
            ("labelSelector", SELECTOR),
            ("watch", "true"),
            ("resourceVersion", version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(WATCH_SECONDS)),
        ]
        async for event in self.rest.stream("GET", path, query=query, deadline=WATCH_SECONDS + 60):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:  # our version is too old: list again
                    return None
                raise KubeApiError(
                    int(obj.get("code") or 0), str(obj.get("reason") or ""), str(obj.get("message"))
                )
            meta = obj.get("metadata") or {}
            version = str(meta.get("resourceVersion") or version)
            if kind == "BOOKMARK":
                continue
            key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
            if kind == "DELETED":
                if self.targets.forget(*key) is not None:
                    self._news(*key, "deleted")
            elif self.targets.observe(obj):
                self._news(*key, "changed")
        return version

    def _news(self, namespace: str, name: str, what: str) -> None:
        if self.on_news is not None:
            self.on_news(namespace, name, what)


def _describe(exc: Exception) -> str:
    if isinstance(exc, KubeApiError):
        return f"{exc.status} {exc.reason}"
    return type(exc).__name__
