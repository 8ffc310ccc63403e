"""Tunables of the engine, with defaults that suit a cluster of a few thousand ExternalSecrets."""

from __future__ import annotations

from dataclasses import dataclass

from tmpfs_secrets.config import Settings


@dataclass(frozen=True)
class EngineSettings:
    aws_threads: int = 8  # the one thread pool all boto3 calls run in
    max_concurrent_batches: int = 8
    cache_ttl: float = 300.0  # how long a value stays reusable after its source loses its last user
    cache_size: int = 100_000
    backoff_base: float = 5.0
    backoff_cap: float = 600.0  # retries of a failing key or group grow past the interval up to this
    credential_refresh_margin: float = 300.0  # renew assumed-role credentials this long before expiry
    once_spread: float = 30.0  # spread of first fetches after a restart for refreshInterval 0
    store_grace: float = 10.0  # after start, wait this long for stores before reporting StoreNotFound
    coalesce_window: float = 0.1  # urgent fetches of one group wait this long after its last batch
    allow_operator_identity: bool = False  # SecretStores without auth and role may use the operator's
    min_refresh_interval: float = 10.0  # refreshIntervals below this (0 aside) are InvalidSpec

    @classmethod
    def of(cls, settings: EngineSettings | Settings | None) -> EngineSettings:
        """Accept the operator's `Settings` (from the CLI) as well as engine settings."""
        if settings is None:
            return cls()
        if isinstance(settings, Settings):
            return cls(
                aws_threads=settings.aws_threads,
                cache_ttl=settings.cache_ttl,
                backoff_cap=settings.backoff_cap,
                max_concurrent_batches=settings.aws_threads,
                allow_operator_identity=settings.allow_operator_identity,
                min_refresh_interval=settings.min_refresh_interval,
            )
        return settings
