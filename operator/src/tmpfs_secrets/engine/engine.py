"""The engine: the registry of ExternalSecrets and stores, and everything between a watch event
and a `Sink` call.

The Kubernetes side calls the async methods below from its handlers; the engine resolves
stores, subscribes each ExternalSecret's sources with the scheduler, fans fetched values out to
every ExternalSecret that uses them, and reports through the `Sink` only what changed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tmpfs_secrets.api.external_secret import ExternalSecretSpec, Extract, Find, parse_external_secret
from tmpfs_secrets.cache import ValueCache
from tmpfs_secrets.config import Settings
from tmpfs_secrets.engine.assemble import Item, ItemKeys, Outcome, assemble, item_keys
from tmpfs_secrets.engine.keys import content_hash
from tmpfs_secrets.engine.settings import EngineSettings
from tmpfs_secrets.engine.stores import StoreKey, Stores, store_key
from tmpfs_secrets.errors import Reason, SpecError, SyncError
from tmpfs_secrets.ports import KubeReads, ObjectRef, Sink, SyncFailure, SyncSuccess
from tmpfs_secrets.providers.aws.clients import AwsRuntime
from tmpfs_secrets.providers.aws.factory import batch_size, is_pinned, make_provider
from tmpfs_secrets.providers.base import FIND, GET, PARAMETER_STORE, Fetched, Found, Provider, Source, Value
from tmpfs_secrets.scheduler import Backoff, Clock, Plan, Scheduler, SystemClock

log = logging.getLogger(__name__)


@dataclass
class _Es:
    spec: ExternalSecretSpec | None
    items: list[Item] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    store: StoreKey | None = None
    last_good: dict[int, ItemKeys] = field(default_factory=dict)
    delivered_hash: str | None = None
    delivered_versions: dict[str, str] = field(default_factory=dict)
    delivered_keys: frozenset[str] = frozenset()
    last_report: str | None = None  # "synced" | "failed"
    last_failure: tuple[str, str] | None = None
    reported_generation: int | None = None
    once_done: bool = False
    redeliver: bool = False  # a refresh was requested: offer the next key set even if unchanged
    sink_trouble: tuple[str, str] | None = None  # (action, cause) of the last sink failure logged
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


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
        self._kube = kube
        self._sink = sink
        self._clock = clock or SystemClock()
        self._aws = aws or AwsRuntime(self.settings.aws_threads, self.settings.credential_refresh_margin)
        self._stores = Stores(kube)
        self._cache: ValueCache[Source, Value] = ValueCache(self.settings.cache_size, self._clock.now)
        self._es: dict[ObjectRef, _Es] = {}
        self._users: dict[Source, set[ObjectRef]] = {}
        self._errors: dict[Source, SyncError] = {}
        self._providers: dict[tuple[Any, ...], Provider] = {}
        self._auths: dict[tuple[str, ...], Any] = {}
        backoff = Backoff(self.settings.backoff_base, cap=self.settings.backoff_cap)
        self._plan = Plan(
            lambda s: 1 if s.kind == FIND else batch_size(s.service),
            lambda s: is_pinned(s.service, s.version),
            backoff,
            self.settings.once_spread,
            self.settings.coalesce_window,
        )
        self._scheduler = Scheduler(
            self._plan, self._clock, self._run_batch, self._after_batch, self.settings.max_concurrent_batches
        )
        self._started_at: float | None = None
        self._waiting_for_store: set[ObjectRef] = set()
        self._grace_task: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the scheduler task. Call once, before or after the first upserts."""
        self._started_at = self._clock.now()
        self._scheduler.start()
        self._grace_task = asyncio.create_task(self._end_grace())

    async def stop(self) -> None:
        """Stop the scheduler and running fetches, and release the AWS thread pool."""
        if self._grace_task is not None:
            self._grace_task.cancel()
            await asyncio.gather(self._grace_task, return_exceptions=True)
        await self._scheduler.stop()
        self._aws.close()

    def health(self, stuck_after: float = 60.0) -> str | None:
        """A problem for the liveness probe (the refresh loop stopped or stuck), or None."""
        return self._scheduler.problem(self._clock.now(), stuck_after)

    async def idle(self) -> None:
        """Wait until no fetch is running (tests use it to observe a settled state)."""
        await asyncio.sleep(0)
        await self._scheduler.idle()

    # --- stores ------------------------------------------------------------------------------

    async def upsert_store(self, body: Mapping[str, Any]) -> None:
        """A SecretStore or ClusterSecretStore was created or changed (pass the whole object).

        Reports the store's readiness through `sink.store_status` and re-resolves every
        ExternalSecret that references it. Never raises for a bad spec.
        """
        key, runtime, changed = await self._stores.upsert(body)
        if runtime.error is not None:
            await self._store_status(key, False, runtime.error.reason, runtime.error.message)
        else:
            spec = runtime.spec
            await self._store_status(
                key, True, Reason.VALID, f"{spec.service} in {spec.region} is ready to use"
            )
        if changed:
            if runtime.auth is not None:
                self._auths[runtime.auth.identity] = runtime.auth
            await self._reresolve(key)

    async def remove_store(self, kind: str, namespace: str | None, name: str) -> None:
        """A store was deleted; its ExternalSecrets fail with StoreNotFound and keep their values."""
        key = store_key(kind, namespace, name)
        old = self._stores.remove(key)
        if old is not None and old.auth is not None and old.auth.identity not in self._stores.identities():
            self._aws.forget(old.auth.identity)
        await self._reresolve(key)

    # --- ExternalSecrets ---------------------------------------------------------------------

    async def upsert_external_secret(self, body: Mapping[str, Any]) -> None:
        """An ExternalSecret was created or changed (pass the whole object, status included).

        New, changed (spec) or refresh-requested objects are fetched at once; objects already
        synced at this generation (seen again after an operator restart) join the spread
        schedule. A bad spec is reported with `sink.failed(InvalidSpec)`; this never raises.
        """
        meta = body.get("metadata") or {}
        ref = ObjectRef(str(meta.get("namespace", "")), str(meta.get("name", "")))
        state = self._es.get(ref)
        try:
            spec = parse_external_secret(body)
        except SpecError as exc:
            state = state or self._es.setdefault(ref, _Es(None))
            self._unsubscribe(ref, state)
            state.spec = None
            generation = int(meta.get("generation") or 0)
            await self._fail(ref, state, exc, generation)
            return
        if state is None or state.spec is None:
            state = self._es.setdefault(ref, _Es(spec))
            state.spec = spec
            await self._resolve(ref, state, "restart" if spec.synced_before else "new")
            return
        old = state.spec
        changed = _essence(old) != _essence(spec) or old.generation != spec.generation
        requested = spec.refresh_request is not None and spec.refresh_request != old.refresh_request
        state.spec = spec
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
        self._waiting_for_store.discard(ref)
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

    def next_refresh_time(self, ref: ObjectRef) -> float | None:
        """When this ExternalSecret's sources are next due (None: fetched once, or unknown)."""
        state = self._es.get(ref)
        if state is None or not state.sources or (state.spec and state.spec.refresh_interval == 0):
            return None
        dues = [d for s in state.sources if (d := self._plan.due(s)) is not None]
        return min(dues) if dues else None

    # --- resolution --------------------------------------------------------------------------

    async def _resolve(self, ref: ObjectRef, state: _Es, mode: str) -> None:
        spec = state.spec
        assert spec is not None
        try:
            runtime = await self._stores.resolve(spec)
            items: list[Item] = [*spec.data_from, *spec.data]
            store = runtime.spec
            if store.service != PARAMETER_STORE and any(isinstance(i, Find) for i in items):
                raise SpecError(
                    "dataFrom.find works only with a ParameterStore store; use dataFrom.extract or "
                    "spec.data for Secrets Manager"
                )
        except SyncError as exc:
            self._unsubscribe(ref, state)
            state.store = store_key(spec.store_ref.kind, spec.namespace, spec.store_ref.name)
            if exc.reason is Reason.STORE_NOT_FOUND and self._in_grace():
                self._waiting_for_store.add(ref)
                return
            await self._fail(ref, state, exc, spec.generation)
            return
        self._waiting_for_store.discard(ref)
        assert runtime.auth is not None
        self._auths[runtime.auth.identity] = runtime.auth
        identity = runtime.auth.identity
        sources = [_source(item, identity, store.service, store.region) for item in items]
        self._unsubscribe(ref, state, keep_plan=True)  # set_owner below replaces the plan's view
        state.items, state.sources = items, sources
        state.store = store_key(store.kind, store.namespace, store.name)
        for src in sources:
            self._users.setdefault(src, set()).add(ref)
        if mode == "restart":
            run_now: list[Source] = []
        elif mode == "refresh":
            run_now = list(sources)
        else:
            # A source already being fetched is not fetched again: that batch reports to every
            # user of the source when it completes, this object included.
            run_now = [
                s
                for s in sources
                if (self._cache.get(s) is None or s in self._errors) and not self._plan.in_flight(s)
            ]
        self._plan.set_owner(ref, dict.fromkeys(sources, spec.refresh_interval), self._clock.now(), run_now)
        self._scheduler.wake()
        await self._evaluate(ref)

    async def _reresolve(self, key: StoreKey) -> None:
        for ref, state in list(self._es.items()):
            spec = state.spec
            if (
                spec is not None
                and store_key(spec.store_ref.kind, spec.namespace, spec.store_ref.name) == key
            ):
                if state.store != key:
                    state.last_good.clear()
                await self._resolve(ref, state, "changed")

    def _unsubscribe(self, ref: ObjectRef, state: _Es, keep_plan: bool = False) -> None:
        if not keep_plan:
            self._plan.remove_owner(ref)
        for src in state.sources:
            users = self._users.get(src)
            if users is not None:
                users.discard(ref)
                if not users:
                    del self._users[src]
                    self._errors.pop(src, None)
        state.sources = []

    def _in_grace(self) -> bool:
        return self._started_at is None or self._clock.now() < self._started_at + self.settings.store_grace

    async def _end_grace(self) -> None:
        await asyncio.sleep(self.settings.store_grace)
        for ref in list(self._waiting_for_store):
            state = self._es.get(ref)
            if state is not None and state.spec is not None and not state.sources:
                await self._resolve(ref, state, "changed")
        self._waiting_for_store.clear()

    # --- fetching ----------------------------------------------------------------------------

    def _provider(self, src: Source) -> Provider:
        key = (src.identity, src.service, src.region)
        provider = self._providers.get(key)
        if provider is None:
            provider = self._providers[key] = make_provider(
                self._aws, self._auths[src.identity], src.service, src.region
            )
        return provider

    async def _run_batch(self, batch: list[Source]) -> Mapping[Source, bool]:
        provider = self._provider(batch[0])

        async def load(keys: list[Source]) -> Mapping[Source, object]:
            if keys and keys[0].kind == FIND:
                out: dict[Source, object] = {}
                for k in keys:
                    try:
                        out[k] = await provider.find(k.key)
                    except SyncError as exc:
                        out[k] = exc
                return out
            fetched = await provider.fetch([k.ref for k in keys])
            return {k: fetched[k.ref] for k in keys}

        results = await self._cache.load_many(
            batch, load, lambda v: isinstance(v, Fetched | Found), self._ttl
        )
        ok: dict[Source, bool] = {}
        for src, result in results.items():
            if isinstance(result, Fetched | Found):
                self._errors.pop(src, None)
                ok[src] = True
            else:
                err = (
                    result if isinstance(result, SyncError) else SyncError(f"no result for {src.describe()}")
                )
                self._errors[src] = err
                log.info("refresh of %s failed: %s: %s", src.describe(), err.reason.value, err.message)
                ok[src] = False
        return ok

    def _ttl(self, src: Source) -> float:
        interval = self._plan.interval(src) or 0.0
        return max(self.settings.cache_ttl, 2 * interval)

    async def _after_batch(self, batch: list[Source]) -> None:
        refs: set[ObjectRef] = set()
        for src in batch:
            refs.update(self._users.get(src, ()))
        # Concurrently: each report is a few round trips to the API server, and one batch can
        # serve thousands of objects. The sink bounds how many of its writes run at once.
        ordered = sorted(refs, key=lambda r: (r.namespace, r.name))
        results = await asyncio.gather(*(self._evaluate(ref) for ref in ordered), return_exceptions=True)
        for ref, result in zip(ordered, results, strict=True):
            if isinstance(result, Exception):
                log.error("reporting %s/%s failed unexpectedly", ref.namespace, ref.name, exc_info=result)

    # --- evaluation and reporting ------------------------------------------------------------

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
            outcomes: list[Outcome] = []
            for item, src in zip(state.items, state.sources, strict=True):
                entry = self._cache.get(src)
                if src in self._errors:
                    outcomes.append(self._errors[src])
                elif entry is None:
                    outcomes.append(None)
                else:
                    try:
                        outcomes.append(item_keys(item, src, entry.value))
                    except SyncError as exc:
                        outcomes.append(exc)
            asm = assemble(state.items, outcomes, state.last_good, spec.target.deletion_policy == "Delete")
            state.last_good = asm.last_good
            delivered = False
            if asm.complete and asm.data:
                delivered = await self._deliver(ref, state, spec, asm.data, asm.versions, not asm.errors)
            elif asm.complete and not asm.errors:
                asm.errors.append(
                    SyncError(
                        "the sources produced no keys; nothing was delivered and the target "
                        "is left as it is; check spec.data and spec.dataFrom",
                        Reason.SOURCE_NOT_FOUND,
                    )
                )
            if asm.errors:
                await self._fail(ref, state, _combine(asm.errors), spec.generation)
            elif asm.complete:
                state.last_failure = None
                if spec.refresh_interval == 0 and delivered:
                    state.once_done = True

    async def _deliver(
        self,
        ref: ObjectRef,
        state: _Es,
        spec: ExternalSecretSpec,
        data: dict[str, bytes],
        versions: dict[str, str],
        healthy: bool,
    ) -> bool:
        """False if the sink refused the key set (it is offered again on the next evaluation)."""
        digest = content_hash(data)
        unchanged = (
            digest == state.delivered_hash
            and versions == state.delivered_versions
            and state.reported_generation == spec.generation
            and (state.last_report == "synced" or not healthy)
            # A refresh request re-delivers, but not the last good values of a failing refresh:
            # that would flip the status to Synced and back to the failure.
            and not (state.redeliver and healthy)
        )
        if unchanged:
            return True
        removed = state.delivered_keys - data.keys() if state.delivered_hash is not None else frozenset()
        now = self._clock.now()
        result = SyncSuccess(
            data=dict(data),
            versions=dict(versions),
            content_hash=digest,
            sources=len(set(state.sources)),
            refresh_time=now,
            next_refresh_time=self.next_refresh_time(ref),
            removed_keys=frozenset(removed),
        )
        try:
            await self._sink.synced(ref, result)
        except Exception as exc:
            # Not marked delivered, so the next refresh offers the key set again.
            _sink_trouble(state, "delivering", ref, exc)
            return False
        log.info("synced %s/%s: %d keys, %s", ref.namespace, ref.name, len(data), digest)
        state.delivered_hash, state.delivered_versions = digest, dict(versions)
        state.delivered_keys = frozenset(data)
        state.reported_generation = spec.generation
        state.last_report = "synced"
        state.redeliver = False
        state.sink_trouble = None
        return True

    async def _fail(self, ref: ObjectRef, state: _Es, error: SyncError, generation: int) -> None:
        key = (error.reason.value, error.message)
        if (
            state.last_report == "failed"
            and state.last_failure == key
            and state.reported_generation == generation
        ):
            return
        try:
            await self._sink.failed(
                ref, SyncFailure(error.reason.value, error.message, self.next_refresh_time(ref))
            )
        except Exception as exc:
            _sink_trouble(state, "reporting the failure of", ref, exc)
            return
        log.info("sync of %s/%s failed: %s: %s", ref.namespace, ref.name, error.reason.value, error.message)
        state.last_report, state.last_failure = "failed", key
        state.reported_generation = generation
        state.sink_trouble = None

    async def _store_status(self, key: StoreKey, ready: bool, reason: Reason, message: str) -> None:
        try:
            await self._sink.store_status(key[0], key[1], key[2], ready, reason.value, message)
        except Exception as exc:
            log.warning("reporting the status of store %s failed (%s)", key[2], _describe(exc))


def _describe(exc: Exception) -> str:
    """The exception's type and reason, never its message: a sink's message may quote a request."""
    reason = getattr(exc, "reason", None)
    return type(exc).__name__ + (f" {reason}" if isinstance(reason, str) and reason else "")


def _sink_trouble(state: _Es, action: str, ref: ObjectRef, exc: Exception) -> None:
    """One line per sink failure, at warning level only when it differs from the last one: a
    target that stays unwritable (owned by someone else, say) would otherwise log every interval.
    The sink reports the details to the object's status itself."""
    cause = _describe(exc)
    level = logging.DEBUG if (action, cause) == state.sink_trouble else logging.WARNING
    state.sink_trouble = (action, cause)
    log.log(
        level, "%s %s/%s failed (%s); retried on the next refresh", action, ref.namespace, ref.name, cause
    )


def _source(item: Item, identity: tuple[str, ...], service: str, region: str) -> Source:
    if isinstance(item, Find):
        return Source(identity, service, region, FIND, item.path)
    if isinstance(item, Extract):
        return Source(identity, service, region, GET, item.key, item.version)
    return Source(identity, service, region, GET, item.remote.key, item.remote.version)


def _essence(spec: ExternalSecretSpec) -> ExternalSecretSpec:
    """What a change of needs a new resolution (annotations and status do not)."""
    return dataclasses.replace(spec, refresh_request=None, synced_before=False)


def _combine(errors: list[SyncError]) -> SyncError:
    """The first error's reason; the messages of up to three errors."""
    messages = list(dict.fromkeys(e.message for e in errors))
    text = "; ".join(messages[:3]) + (f"; and {len(messages) - 3} more" if len(messages) > 3 else "")
    return SyncError(text, errors[0].reason)
