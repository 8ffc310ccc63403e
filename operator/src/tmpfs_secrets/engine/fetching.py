"""Fetching: one batch of sources through its provider, into the value cache; the last error
of each failing source; and the providers and identities that make the calls."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from tmpfs_secrets.cache import Entry, ValueCache
from tmpfs_secrets.errors import SyncError, internal_error, traceback_text
from tmpfs_secrets.providers.aws.clients import AwsRuntime, counting_retries
from tmpfs_secrets.providers.aws.credentials import Auth
from tmpfs_secrets.providers.aws.factory import make_provider
from tmpfs_secrets.providers.base import FIND, Fetched, Found, Identity, Provider, Source, Value
from tmpfs_secrets.scheduler import Outcome
from tmpfs_secrets.scheduler.outcomes import outcome_of

log = logging.getLogger(__name__)


class Fetcher:
    def __init__(
        self,
        aws: AwsRuntime,
        cache: ValueCache[Source, Value],
        ttl: Callable[[Source], float],
    ) -> None:
        self.aws = aws
        self.cache = cache
        self._ttl = ttl
        self._errors: dict[Source, SyncError] = {}
        self._providers: dict[tuple[Any, ...], Provider] = {}
        self._auths: dict[Identity, Auth] = {}

    def know(self, auth: Auth) -> None:
        """Remember the auth of an identity, for the providers of its sources."""
        self._auths[auth.identity] = auth

    def forget_identity(self, identity: Identity) -> None:
        self.aws.forget(identity)

    def error(self, src: Source) -> SyncError | None:
        return self._errors.get(src)

    def entry(self, src: Source) -> Entry[Value] | None:
        return self.cache.get(src)

    def fresh(self, src: Source, oldest: float) -> bool:
        """A value fetched after `oldest` is cached (and its source is not failing)."""
        entry = self.cache.get(src)
        return src not in self._errors and entry is not None and entry.fetched_at > oldest

    def drop_errors(self, sources: list[Source]) -> None:
        for src in sources:
            self._errors.pop(src, None)

    def _provider(self, src: Source) -> Provider:
        key = (src.identity, src.service, src.region)
        provider = self._providers.get(key)
        if provider is None:
            provider = self._providers[key] = make_provider(
                self.aws, self._auths[src.identity], src.service, src.region
            )
        return provider

    async def run_batch(self, batch: list[Source]) -> Mapping[Source, bool | Outcome]:
        """Fetch `batch` (one group), cache the values, remember the errors; True per success,
        and for a failure how it bears on scheduling (this key, the whole call, throttling)."""
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

        try:
            with counting_retries() as retried:
                results = await self.cache.load_many(
                    batch, load, lambda v: isinstance(v, Fetched | Found), self._ttl
                )
        except Exception as exc:
            # A bug, not an AWS failure (providers turn those into per-key errors): every source
            # of the batch reports it, so each object's status says so and the others carry on.
            log.error("fetching %d sources failed unexpectedly:\n%s", len(batch), traceback_text(exc))
            results = dict.fromkeys(batch, internal_error("fetching from AWS"))
        # botocore's retries (a throttled first attempt, say) count against the group's rate
        success: bool | Outcome = Outcome(True, attempts=1 + retried[0]) if retried[0] else True
        ok: dict[Source, bool | Outcome] = {}
        for src, result in results.items():
            if isinstance(result, Fetched | Found):
                self._errors.pop(src, None)
                ok[src] = success
            else:
                err = (
                    result if isinstance(result, SyncError) else SyncError(f"no result for {src.describe()}")
                )
                self._errors[src] = err
                log.info("refresh of %s failed: %s: %s", src.describe(), err.reason.value, err.message)
                ok[src] = outcome_of(err)
        return ok
