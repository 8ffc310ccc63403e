"""The engine's façade: what the Kubernetes side calls for each watch event.

It keeps the registry of ExternalSecrets and wires the parts that do the work, one concern per
module: `stores` (which store and identity), `grace` (waiting for stores after a start),
`changes` (does an event need work), `subscriptions` (who uses each source), `fetching` (batches
into the cache), `evaluation` (values into key sets), `deliveries` (reports from the cache, off
the watch handler's path) and `reporting` (only changes reach the `Sink`). The scheduler decides
when each source is fetched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from tmpfs_secrets import metrics
from tmpfs_secrets.api.external_secret import parse_external_secret
from tmpfs_secrets.cache import ValueCache
from tmpfs_secrets.config import Settings
from tmpfs_secrets.engine.assemble import Item
from tmpfs_secrets.engine.changes import refresh_requested, spec_changed
from tmpfs_secrets.engine.deliveries import Deliveries
from tmpfs_secrets.engine.evaluation import evaluate
from tmpfs_secrets.engine.fetching import Fetcher
from tmpfs_secrets.engine.grace import StoreGrace
from tmpfs_secrets.engine.reporting import Reporter, combine
from tmpfs_secrets.engine.settings import EngineSettings
from tmpfs_secrets.engine.state import ObjectState
from tmpfs_secrets.engine.stores import StoreKey, Stores, store_key
from tmpfs_secrets.engine.subscriptions import Subscriptions, check_find, source_for
from tmpfs_secrets.errors import Reason, SpecError, SyncError, internal_error, traceback_text
from tmpfs_secrets.ports import KubeReads, ObjectRef, Sink
from tmpfs_secrets.providers.aws.clients import AwsRuntime
from tmpfs_secrets.providers.aws.factory import batch_size, is_pinned
from tmpfs_secrets.providers.base import FIND, Source, Value
from tmpfs_secrets.scheduler import Backoff, Clock, Outcome, Plan, Scheduler, SystemClock

log = logging.getLogger(__name__)

# Objects reported at once from the cache (the sink bounds the writes they make): a few more than
# the sink's write slots, so those slots stay busy while one report is between two writes.
DELIVERY_WORKERS = 16


class Engine:
    """Create once, `await start()`, feed it watch events, `await stop()` at shutdown."""

    def __init__(
        self,
        kube: KubeReads,
        sink: Sink,
        settings: EngineSettings | Settings | None = None,
        *,
        clock: Clock | None = None,
        aws: AwsRuntime | None = None,
    ) -> None:
        self.settings = EngineSettings.of(settings)
        self._clock = clock or SystemClock()
        self._stores = Stores(kube, allow_operator_identity=self.settings.allow_operator_identity)
        self._es: dict[ObjectRef, ObjectState] = {}
        self._subscriptions = Subscriptions()
        self._plan = Plan(
            lambda s: 1 if s.kind == FIND else batch_size(s.service),
            lambda s: is_pinned(s.service, s.version),
            Backoff(self.settings.backoff_base, cap=self.settings.backoff_cap),
            self.settings.once_spread,
            self.settings.coalesce_window,
        )
        cache: ValueCache[Source, Value] = ValueCache(self.settings.cache_size, self._clock.now)
        self._fetcher = Fetcher(
            aws or AwsRuntime(self.settings.aws_threads, self.settings.credential_refresh_margin),
            cache,
            self._ttl,
        )
        self._reporter = Reporter(sink, self._clock.now, self.next_refresh_time)
        self._scheduler = Scheduler(
            self._plan,
            self._clock,
            self._run_batch,
            self._after_batch,
            self.settings.max_concurrent_batches,
        )
        self._grace = StoreGrace(self._clock, self.settings.store_grace)
        self._deliveries = Deliveries(self._evaluate, DELIVERY_WORKERS)
        self._batch_started: dict[int, float] = {}  # id(batch) -> time.monotonic(), for metrics

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the scheduler task. Call once, before or after the first upserts."""
        self._scheduler.start()
        self._grace.start(self._after_grace)

    async def stop(self) -> None:
        """Stop the scheduler and running fetches, and release the AWS thread pool."""
        await self._grace.stop()
        await self._deliveries.stop()
        await self._scheduler.stop()
        self._fetcher.aws.close()

    def health(self, stuck_after: float = 60.0) -> str | None:
        """A problem for the liveness probe (the refresh loop stopped or stuck), or None."""
        return self._scheduler.problem(self._clock.now(), stuck_after)

    async def idle(self) -> None:
        """Wait until no fetch or report is running (tests use it to observe a settled state)."""
        await asyncio.sleep(0)
        await self._scheduler.idle()
        while self._deliveries.busy:
            await self._deliveries.idle()
            await self._scheduler.idle()

    # --- stores ------------------------------------------------------------------------------

    async def upsert_store(self, body: Mapping[str, Any]) -> None:
        """A SecretStore or ClusterSecretStore was created or changed (pass the whole object).

        Reports the store's readiness through `sink.store_status` and re-resolves every
        ExternalSecret that references it. Never raises for a bad spec.
        """
        self._grace.first_event()
        key, runtime, changed = await self._stores.upsert(body)
        if runtime.error is not None:
            await self._reporter.store_status(key, False, runtime.error.reason, runtime.error.message)
        else:
            spec = runtime.spec
            message = f"{spec.service} in {spec.region} is ready to use"
            await self._reporter.store_status(key, True, Reason.VALID, message)
        if changed:
            if runtime.auth is not None:
                self._fetcher.know(runtime.auth)
            await self._reresolve(key)

    async def remove_store(self, kind: str, namespace: str | None, name: str) -> None:
        """A store was deleted; its ExternalSecrets fail with StoreNotFound and keep their values."""
        key = store_key(kind, namespace, name)
        old = self._stores.remove(key)
        if old is not None and old.auth is not None and old.auth.identity not in self._stores.identities():
            self._fetcher.forget_identity(old.auth.identity)
        await self._reresolve(key)

    # --- ExternalSecrets ---------------------------------------------------------------------

    async def upsert_external_secret(self, body: Mapping[str, Any]) -> None:
        """An ExternalSecret was created or changed (pass the whole object, status included).

        New, changed (spec) or refresh-requested objects are fetched at once; objects already
        synced at this generation (seen again after an operator restart) join the spread
        schedule. A bad spec is reported with `sink.failed(InvalidSpec)`; this never raises.
        """
        self._grace.first_event()
        meta = body.get("metadata") or {}
        ref = ObjectRef(str(meta.get("namespace", "")), str(meta.get("name", "")))
        state = self._es.get(ref)
        try:
            spec = parse_external_secret(body, min_refresh_interval=self.settings.min_refresh_interval)
        except Exception as exc:
            error = exc if isinstance(exc, SpecError) else internal_error("reading the ExternalSecret's spec")
            if not isinstance(exc, SpecError):
                log.error(
                    "parsing %s/%s failed unexpectedly:\n%s", ref.namespace, ref.name, traceback_text(exc)
                )
            state = state or self._es.setdefault(ref, ObjectState(None))
            self._unsubscribe(ref, state)
            state.spec = None
            await self._reporter.fail(ref, state, error, int(meta.get("generation") or 0))
            return
        if state is None or state.spec is None:
            state = self._es.setdefault(ref, ObjectState(spec))
            state.spec = spec
            if spec.synced_before and spec.refresh_policy == "CreatedOnce":
                state.once_done = True  # synced before this restart: never again
                return
            await self._resolve(ref, state, "restart" if spec.synced_before else "new")
            return
        old = state.spec
        changed = spec_changed(old, spec)
        requested = refresh_requested(old, spec)
        state.spec = spec
        if changed and spec.refresh_policy == "CreatedOnce" and state.delivered_hash is not None:
            changed = False  # ESO's CreatedOnce: the Secret keeps what it was created with
        if changed:
            state.last_good.clear()
            state.once_done = False
            if requested:  # a spec change and a refresh request in one event: honour both
                state.redeliver = True
            await self._resolve(ref, state, "refresh" if requested else "changed")
        elif requested:
            await self.request_refresh(ref)

    async def remove_external_secret(self, ref: ObjectRef) -> None:
        """An ExternalSecret was deleted: forget it; nothing is reported for it afterwards."""
        state = self._es.pop(ref, None)
        self._grace.discard(ref)
        self._deliveries.discard(ref)
        if state is not None:
            self._unsubscribe(ref, state)

    async def request_refresh(self, ref: ObjectRef) -> None:
        """Re-check the store (and namespace admission) and fetch every source of this
        ExternalSecret now: the refresh-requested annotation, or a namespace's labels changed."""
        state = self._es.get(ref)
        if state is None or state.spec is None:
            return
        state.once_done = False
        # The target may have been deleted or edited by hand: the sink decides whether to write.
        state.redeliver = True
        await self._resolve(ref, state, "refresh")

    async def redeliver(self, ref: ObjectRef) -> None:
        """The target was deleted or edited by someone else: offer the current key set to the sink
        again from the cache, without an AWS call (a refresh if the cache no longer has it)."""
        state = self._es.get(ref)
        if state is None or state.spec is None or not state.sources:
            return
        if any(self._fetcher.entry(src) is None for src in state.sources):
            await self.request_refresh(ref)
            return
        state.redeliver = True
        state.once_done = False
        await self._evaluate(ref)

    def next_refresh_time(self, ref: ObjectRef) -> float | None:
        """When this ExternalSecret's sources are next due (None: fetched once, or unknown)."""
        state = self._es.get(ref)
        if state is None or not state.sources or (state.spec and state.spec.refresh_interval == 0):
            return None
        dues = [d for s in state.sources if (d := self._plan.due(s)) is not None]
        return min(dues) if dues else None

    # --- resolution --------------------------------------------------------------------------

    async def _resolve(self, ref: ObjectRef, state: ObjectState, mode: str) -> None:
        spec = state.spec
        assert spec is not None
        try:
            runtime = await self._stores.resolve(spec)
            items: list[Item] = [*spec.data_from, *spec.data]
            store = runtime.spec
            check_find(items, store.service)
        except SyncError as exc:
            self._unsubscribe(ref, state)
            state.store = store_key(spec.store_ref.kind, spec.namespace, spec.store_ref.name)
            if exc.reason is Reason.STORE_NOT_FOUND and self._grace.active():
                self._grace.wait(ref)
                return
            await self._reporter.fail(ref, state, exc, spec.generation)
            return
        self._grace.discard(ref)
        assert runtime.auth is not None
        self._fetcher.know(runtime.auth)
        sources = [source_for(item, runtime.auth.identity, store.service, store.region) for item in items]
        self._unsubscribe(ref, state, keep_plan=True)  # set_owner below replaces the plan's view
        state.items, state.sources = items, sources
        state.store = store_key(store.kind, store.namespace, store.name)
        self._subscriptions.add(ref, sources)
        now = self._clock.now()
        if mode == "restart":
            run_now: list[Source] = []
        elif mode == "refresh":
            run_now = list(sources)
        else:
            # A source already being fetched is not fetched again: that batch reports to every
            # user of the source when it completes, this object included. A cached value is
            # served only if it is younger than this object's own interval: access revoked in
            # AWS shows at once for a new object, not after another object's longer interval.
            oldest = now - spec.refresh_interval
            run_now = [
                s for s in sources if not self._plan.in_flight(s) and not self._fetcher.fresh(s, oldest)
            ]
        self._plan.set_owner(ref, dict.fromkeys(sources, spec.refresh_interval), now, run_now)
        self._scheduler.wake()
        # What the cache holds is reported by the delivery workers; the watch handler returns now.
        self._deliveries.submit(ref)

    async def _reresolve(self, key: StoreKey) -> None:
        for ref, state in list(self._es.items()):
            spec = state.spec
            if (
                spec is not None
                and store_key(spec.store_ref.kind, spec.namespace, spec.store_ref.name) == key
            ):
                if state.store != key:
                    state.last_good.clear()
                # After a restart, the store's event may come after its ExternalSecrets': those
                # synced before join the spread schedule as if the store had come first.
                restarted = spec.synced_before and self._grace.waiting(ref)
                await self._resolve(ref, state, "restart" if restarted else "changed")

    async def _after_grace(self, ref: ObjectRef) -> None:
        state = self._es.get(ref)
        if state is not None and state.spec is not None and not state.sources:
            await self._resolve(ref, state, "changed")

    def _unsubscribe(self, ref: ObjectRef, state: ObjectState, keep_plan: bool = False) -> None:
        if not keep_plan:
            self._plan.remove_owner(ref)
        self._fetcher.drop_errors(self._subscriptions.remove(ref, state.sources))
        state.sources = []

    def _ttl(self, src: Source) -> float:
        interval = self._plan.interval(src) or 0.0
        return max(self.settings.cache_ttl, 2 * interval)

    # --- after each batch: evaluation and reporting --------------------------------------------

    async def _run_batch(self, batch: list[Source]) -> Mapping[Source, bool | Outcome]:
        self._batch_started[id(batch)] = time.monotonic()
        return await self._fetcher.run_batch(batch)

    def refresh_lag(self) -> float:
        """Seconds since the oldest due time of a source whose fetch has not started (0: none late)."""
        now = self._clock.now()
        dues = [
            due
            for src in self._plan.sources()
            if not self._plan.in_flight(src) and (due := self._plan.due(src)) is not None
        ]
        return max(0.0, now - min(dues)) if dues else 0.0

    async def _after_batch(self, batch: list[Source]) -> None:
        try:
            await self._report_batch(batch)
        finally:
            started = self._batch_started.pop(id(batch), None)
            if started is not None and batch:
                metrics.SYNC_DURATION.labels(batch[0].service).observe(time.monotonic() - started)

    async def _report_batch(self, batch: list[Source]) -> None:
        # Concurrently: each report is a few round trips to the API server, and one batch can
        # serve thousands of objects. The sink bounds how many of its writes run at once.
        ordered = sorted(self._subscriptions.users(batch), key=lambda r: (r.namespace, r.name))
        results = await asyncio.gather(*(self._evaluate(ref) for ref in ordered), return_exceptions=True)
        for ref, result in zip(ordered, results, strict=True):
            if isinstance(result, Exception):
                log.error(
                    "reporting %s/%s failed unexpectedly:\n%s",
                    ref.namespace,
                    ref.name,
                    traceback_text(result),
                )

    async def _evaluate(self, ref: ObjectRef) -> None:
        state = self._es.get(ref)
        if state is None or state.spec is None or not state.sources:
            return
        async with state.lock:
            spec = state.spec
            if spec is None or not state.sources or (state.once_done and spec.refresh_interval == 0):
                return
            now = self._clock.now()
            if any(self._plan.pending(src, now) for src in state.sources):
                # The batch running (or due) now reports it when it completes: a report made now
                # would carry values older than that fetch and a next refresh time already past.
                return
            result = evaluate(ref, state, spec, self._fetcher)
            delivered = False
            if result.complete and result.data:
                delivered = await self._reporter.deliver(
                    ref, state, spec.generation, result.data, result.versions, not result.errors
                )
            if result.errors:
                await self._reporter.fail(ref, state, combine(result.errors), spec.generation)
            elif result.complete:
                state.last_failure = None
                if spec.refresh_interval == 0 and delivered:
                    state.once_done = True
