"""A paged LIST and then a WATCH from the list's version, for as long as the operator runs.

client-go's reflector, in small: the LIST comes in pages of 500, each handed over item by item
and let go before the next is read; the WATCH resumes from the last version it saw when the API
server ends it (every few minutes) and lists again when that version is too old (410 Gone), when
deletions may have been missed. Failures (the API server restarting) are retried with a backoff.
Handing over is awaited, so a slow consumer pauses the reading instead of piling up bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from tmpfs_secrets.kube.rest import JSON, KubeApiError, Rest

log = logging.getLogger(__name__)

WATCH_SECONDS = 300  # the API server ends each watch after this; the next one resumes from its version
Key = tuple[str, str]  # namespace ("" for cluster-scoped objects), name
# (event type, object): None for an object of a LIST, else ADDED, MODIFIED or DELETED.
OnEvent = Callable[[str | None, JSON], Awaitable[None]]
OnListed = Callable[[set[Key]], Awaitable[None]]  # every key a complete LIST held


def key_of(obj: JSON) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class ListWatch:
    def __init__(
        self,
        rest: Rest,
        path: str,
        *,
        on_event: OnEvent,
        on_listed: OnListed,
        what: str,
        query: Sequence[tuple[str, str]] = (),
    ) -> None:
        """`what` names the objects in log lines ("target Secrets"); `query` filters (a selector)."""
        self.rest = rest
        self.path = path
        self.on_event = on_event
        self.on_listed = on_listed
        self.what = what
        self.query = list(query)
        self.version: str | None = None  # where the next WATCH resumes; None: LIST first

    async def run(self) -> None:
        delay = 1.0
        while True:
            try:
                if self.version is None:
                    await self._list()
                await self._watch()
                delay = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the API server restarting, say: resume after a pause
                log.warning("watching %s failed (%s); retrying in %gs", self.what, _describe(exc), delay)
                await asyncio.sleep(delay)
                delay = min(30.0, delay * 2)

    async def _list(self) -> None:
        seen: set[Key] = set()
        version = ""
        async for items, page_version in self.rest.list_pages(self.path, query=self.query):
            version = page_version  # the same on every page: the list's snapshot
            items.reverse()
            while items:  # popped, so a handled object is not held until the page's end
                item = items.pop()
                seen.add(key_of(item))
                await self.on_event(None, item)
        await self.on_listed(seen)
        self.version = version

    async def _watch(self) -> None:
        """Follow one WATCH until the server ends it; a 410 clears the version (list again)."""
        assert self.version is not None
        query = [
            *self.query,
            ("watch", "true"),
            ("resourceVersion", self.version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(WATCH_SECONDS)),
        ]
        # Closed at once when cancelled (the operator stopping), so the connection is released.
        events = self.rest.stream("GET", self.path, query=query, deadline=WATCH_SECONDS + 60)
        async with contextlib.aclosing(events):
            async for event in events:
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:  # our version is too old: list again
                        self.version = None
                        return
                    raise KubeApiError(
                        int(obj.get("code") or 0), str(obj.get("reason") or ""), str(obj.get("message"))
                    )
                version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
                if kind != "BOOKMARK":
                    await self.on_event(str(kind), obj)
                if version:
                    self.version = version


def _describe(exc: Exception) -> str:
    if isinstance(exc, KubeApiError):
        return f"{exc.status} {exc.reason}"
    return type(exc).__name__
