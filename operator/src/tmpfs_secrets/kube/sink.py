"""The engine's sink (`ports.Sink`): Secret, status and events for each outcome, in that order.

The Secret is written before the status says Synced, so a Ready=True status never points at
values that were not delivered. A Secret that can't be written turns into a Ready=False status
with a reason from the Target* family. Outcomes of one ExternalSecret are applied one at a time;
a semaphore bounds the concurrent writes to the API server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from tmpfs_secrets.errors import Reason
from tmpfs_secrets.kube import conditions, status
from tmpfs_secrets.kube.events import ROTATED, SYNCED, EventRecorder
from tmpfs_secrets.kube.index import ObjectIndex, Tracked
from tmpfs_secrets.kube.rest import KubeApiError
from tmpfs_secrets.kube.restarts import WorkloadRestarter
from tmpfs_secrets.kube.secrets import SecretWriter, TargetError
from tmpfs_secrets.ports import ObjectRef, SyncFailure, SyncSuccess

log = logging.getLogger(__name__)

_RETRY_DELAYS = (0.5, 2.0, 5.0)
WORKLOADS_RESTARTED = "WorkloadsRestarted"
RESTART_FAILED = "RestartFailed"
_DIRECT_REASONS = (Reason.DELIVERED.value, Reason.AWAITING_PODS.value)


class DirectTargets(Protocol):
    """Where Direct key sets go instead of a Secret (`tmpfs_secrets.direct.hub.Hub`)."""

    def publish(self, ref: ObjectRef, data: Mapping[str, bytes], content_hash: str, mode: int) -> None: ...

    def counts(self, ref: ObjectRef) -> tuple[int, int]:
        """Connected pods that wrote the current content, and those that have not."""
        ...

    def content_hash(self, ref: ObjectRef) -> str | None: ...

    def forget(self, ref: ObjectRef) -> None: ...


class KubeSink:
    """Implements `tmpfs_secrets.ports.Sink`."""

    def __init__(
        self,
        index: ObjectIndex,
        writer: SecretWriter,
        statuses: status.StatusWriter,
        events: EventRecorder,
        *,
        concurrency: int = 8,
        restarter: WorkloadRestarter | None = None,
        direct: DirectTargets | None = None,
    ) -> None:
        self.restarter = restarter
        self.index = index
        self.direct = direct
        self.writer = writer
        self.statuses = statuses
        self.events = events
        self._slots = asyncio.Semaphore(concurrency)
        self._locks: dict[ObjectRef, asyncio.Lock] = {}

    def forget(self, ref: ObjectRef) -> None:
        self._locks.pop(ref, None)
        if self.direct is not None:
            self.direct.forget(ref)

    def _lock(self, ref: ObjectRef) -> asyncio.Lock:
        return self._locks.setdefault(ref, asyncio.Lock())

    async def synced(self, ref: ObjectRef, result: SyncSuccess) -> None:
        async with self._lock(ref), self._slots:
            es = self.index.external_secret(ref)
            if es is None:  # deleted meanwhile; its Secret goes with it (or stays, if orphaned)
                return
            last = es.status  # decoded once: the index keeps it as JSON
            previous_hash = last.get("contentHash")
            previous_versions: Mapping[str, str] = last.get("syncedVersions") or {}
            was_ready = conditions.is_true(last.get("conditions"))
            was_observed = _observed_generation(es) == es.generation
            if es.target is not None and es.target.delivery == "Secret":
                try:
                    await self._with_retries(
                        lambda: self.writer.write(es, result.data, result.content_hash, result.removed_keys)
                    )
                except TargetError as e:
                    await self._failed(es, SyncFailure(e.reason, e.message, result.next_refresh_time))
                    # Raising tells the engine the values were not delivered, so it offers them again.
                    raise
            direct = es.target is not None and es.target.delivery == "Direct"
            if es.target is not None and direct:
                # The value goes to the agents only: never into a Secret, and the status says how
                # many connected pods wrote it, not that it was delivered.
                current, stale = (0, 0)
                if self.direct is not None:
                    self.direct.publish(ref, result.data, result.content_hash, es.target.default_mode)
                    current, stale = self.direct.counts(ref)
                desired = status.direct_status(es, current, stale, result.content_hash, result)
            else:
                desired = status.synced_status(es, result)
            try:
                await self.statuses.apply(es, desired)
            except KubeApiError as e:
                log.warning(
                    "could not write the status of ExternalSecret %s/%s: %s", ref.namespace, ref.name, e
                )
            if previous_hash and previous_hash != result.content_hash:
                await self.events.normal(es, ROTATED, _rotated_message(es, previous_versions, result))
                if es.target is not None and es.target.restart_workloads:
                    await self._restart_workloads(es, result.content_hash)
            elif not (was_ready and was_observed and previous_hash == result.content_hash) and not direct:
                # Direct: the status says which pods wrote it; "Synced" would claim a delivery.
                await self.events.normal(es, SYNCED, _synced_message(es, result))

    async def _restart_workloads(self, es: Tracked, content_hash: str) -> None:
        if self.restarter is None:
            return
        done = await self.restarter.restart_for(es, content_hash)
        short = content_hash[:19]
        if done.restarted:
            await self.events.normal(
                es,
                WORKLOADS_RESTARTED,
                f"restarted {_keys(list(done.restarted))} for content {short} (rotation.restartWorkloads)",
            )
        if done.failed:
            await self.events.failure(
                es, RESTART_FAILED, f"could not restart {_keys(list(done.failed), 5)} for content {short}"
            )

    async def direct_counts_changed(self, ref: ObjectRef) -> None:
        """Agents connected, left or acknowledged: the status of a Direct ExternalSecret follows."""
        if self.direct is None:
            return
        async with self._lock(ref), self._slots:
            es = self.index.external_secret(ref)
            content_hash = self.direct.content_hash(ref)
            if es is None or es.target is None or es.target.delivery != "Direct" or content_hash is None:
                return
            ready = conditions.find(es.status.get("conditions"), conditions.READY) or {}
            if ready.get("reason") not in _DIRECT_REASONS or es.status.get("contentHash") != content_hash:
                return  # the last refresh failed (that status stays), or its report is on its way
            current, stale = self.direct.counts(ref)
            try:
                await self.statuses.apply(es, status.direct_status(es, current, stale, content_hash))
            except KubeApiError as e:
                log.warning(
                    "could not write the status of ExternalSecret %s/%s: %s", ref.namespace, ref.name, e
                )

    async def failed(self, ref: ObjectRef, result: SyncFailure) -> None:
        async with self._lock(ref), self._slots:
            es = self.index.external_secret(ref)
            if es is None:
                return
            await self._failed(es, result)

    async def _failed(self, es: Tracked, result: SyncFailure) -> None:
        try:
            await self.statuses.apply(es, status.failed_status(es, result))
        except KubeApiError as e:
            log.warning("could not write the status of ExternalSecret %s/%s: %s", es.namespace, es.name, e)
        if await self.events.failure(es, result.reason, result.message):
            log.warning(
                "ExternalSecret %s/%s failed to sync: %s: %s",
                es.namespace,
                es.name,
                result.reason,
                result.message,
            )

    async def store_status(
        self, kind: str, namespace: str | None, name: str, ready: bool, reason: str, message: str
    ) -> None:
        async with self._slots:
            store = self.index.get(kind, namespace, name)
            if store is None:
                return
            try:
                await self.statuses.apply(store, status.store_status(store, ready, reason, message))
            except KubeApiError as e:
                log.warning("could not write the status of %s %s: %s", kind, name, e)

    @staticmethod
    async def _with_retries(write: Callable[[], Awaitable[object]]) -> None:
        for delay in (*_RETRY_DELAYS, None):
            try:
                await write()
                return
            except TargetError as e:
                if not e.transient or delay is None:
                    raise
                await asyncio.sleep(delay)


def _observed_generation(es: Tracked) -> int | None:
    ready = conditions.find(es.status.get("conditions"), conditions.READY)
    value = ready.get("observedGeneration") if ready else None
    return int(value) if isinstance(value, int) else None


def _keys(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _target(es: Tracked) -> str:
    if es.target is None or es.target.delivery != "Secret":
        return "direct delivery"
    return f"Secret {es.namespace}/{es.target.name}"


def _synced_message(es: Tracked, result: SyncSuccess) -> str:
    return (
        f"synced {status.success_message(result)} into {_target(es)}: "
        f"{_keys(sorted(result.data))} (content {result.content_hash[:19]})"
    )


def _rotated_message(es: Tracked, previous: Mapping[str, str], result: SyncSuccess) -> str:
    changed = sorted(k for k in result.data if previous.get(k) != result.versions.get(k))
    gone = sorted(k for k in previous if k not in result.data)
    parts = []
    if changed:
        parts.append(f"changed: {_keys(changed)}")
    if gone:
        parts.append(f"removed: {_keys(gone)}")
    what = "; ".join(parts) if parts else "values changed"
    return f"content of {_target(es)} rotated ({what}); now {result.content_hash[:19]}"
