"""boto3 clients and the one bounded thread pool every AWS call runs in.

boto3 is synchronous, so each call goes through `loop.run_in_executor` on a single pool whose
size bounds the operator's AWS concurrency. Clients are created once per (identity, service,
region) and reused until the identity's credentials are refreshed. The endpoint comes from
botocore's own AWS_ENDPOINT_URL handling.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import boto3
from botocore import UNSIGNED
from botocore.config import Config

from tmpfs_secrets import metrics
from tmpfs_secrets.errors import Reason, StoreError
from tmpfs_secrets.providers.aws.credentials import Auth, Credentials
from tmpfs_secrets.providers.aws.errors import from_exception

T = TypeVar("T")

# botocore logs whole response bodies (secret values included) at DEBUG on this logger. Keep it
# above DEBUG whatever the operator's log level, so `--verbose` can never print a value.
logging.getLogger("botocore.parsers").setLevel(logging.INFO)

SERVICE_NAMES = {"SecretsManager": "secretsmanager", "ParameterStore": "ssm", "sts": "sts"}

# The scheduler already retries each failing key with exponential backoff and jitter. botocore's
# default retries (several attempts, sleeping inside a pool thread) would hold threads hostage and
# multiply the request rate exactly when AWS throttles; one quick retry absorbs a dropped
# connection, anything longer is the scheduler's job. (`total_max_attempts` counts the first try;
# botocore's `max_attempts` would count retries only.)
RETRIES: Any = {"mode": "standard", "total_max_attempts": 2}


# HTTP retries botocore made inside successful calls, counted for whoever asked (`counting_retries`):
# the scheduler charges them to the group's rate like any other request.
_retries: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("aws_retries", default=None)


@contextlib.contextmanager
def counting_retries() -> Iterator[list[int]]:
    """Count botocore's retries of the successful calls made in this context (tasks it starts too)."""
    counter = [0]
    token = _retries.set(counter)
    try:
        yield counter
    finally:
        _retries.reset(token)


class AwsRuntime:
    """Owns the thread pool, the clients and the credential cache."""

    def __init__(
        self, threads: int = 8, refresh_margin: float = 300.0, clock: Callable[[], float] = time.time
    ) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="aws")
        self._config = Config(
            retries=RETRIES, max_pool_connections=threads, connect_timeout=5, read_timeout=20
        )
        self._clients: dict[tuple[Any, ...], tuple[Credentials | None, Any]] = {}
        self._creds: dict[tuple[str, ...], Credentials | None] = {}
        self._locks: dict[tuple[str, ...], asyncio.Lock] = {}
        self._client_locks: dict[tuple[Any, ...], asyncio.Lock] = {}
        self._margin = refresh_margin
        self._clock = clock

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))
        counter = _retries.get()
        if counter is not None and isinstance(result, dict):
            retried = (result.get("ResponseMetadata") or {}).get("RetryAttempts")
            if isinstance(retried, int) and retried > 0:
                counter[0] += retried
        return result

    async def credentials(self, auth: Auth) -> Credentials | None:
        """Cached per identity until `refresh_margin` seconds before they expire."""
        lock = self._locks.setdefault(auth.identity, asyncio.Lock())
        async with lock:
            if auth.identity in self._creds:
                cached = self._creds[auth.identity]
                if (
                    cached is None
                    or cached.expires_at is None
                    or cached.expires_at - self._margin > self._clock()
                ):
                    return cached
            try:
                fresh = await auth.credentials(self)
            except StoreError:
                raise
            except Exception as exc:
                err = from_exception(exc, "credentials for the store", "sts:AssumeRole*", "sts")
                raise StoreError(
                    f"could not get AWS credentials for the store's identity: {err.message}",
                    err.reason if err.reason is not Reason.SOURCE_NOT_FOUND else Reason.ACCESS_DENIED,
                ) from None
            self._creds[auth.identity] = fresh
            return fresh

    async def client(self, auth: Auth, service: str, region: str) -> Any:
        creds = await self.credentials(auth)
        key = (auth.identity, service, region)
        # One creation per key at a time: concurrent first calls would each build a session and
        # parse the service model (tens of MiB at once for SSM) only to throw all but one away.
        async with self._client_locks.setdefault(key, asyncio.Lock()):
            cached = self._clients.get(key)
            if cached is not None and cached[0] is creds:
                return cached[1]
            client = await self.call(self._make_client, SERVICE_NAMES[service], region, creds)
            self._clients[key] = (creds, client)
            return client

    async def unsigned_sts(self) -> Any:
        """AssumeRoleWithWebIdentity is authenticated by its token, not by a signature."""
        key = (("unsigned",), "sts", "")
        cached = self._clients.get(key)
        if cached is None:
            config = self._config.merge(Config(signature_version=UNSIGNED))
            client = await self.call(lambda: boto3.session.Session().client("sts", config=config))
            metrics.instrument(client.meta.events)
            cached = self._clients[key] = (None, client)
        return cached[1]

    def forget(self, identity: tuple[str, ...]) -> None:
        """Drop cached credentials and clients of an identity (its store changed or went away)."""
        self._creds.pop(identity, None)
        for key in [k for k in self._clients if k[0] == identity]:
            del self._clients[key]

    def _make_client(self, service: str, region: str, creds: Credentials | None) -> Any:
        if creds is None:
            session = boto3.session.Session()
        else:
            session = boto3.session.Session(
                aws_access_key_id=creds.access_key_id,
                aws_secret_access_key=creds.secret_access_key,
                aws_session_token=creds.session_token,
            )
        client = session.client(service, region_name=region, config=self._config)  # type: ignore[call-overload]
        metrics.instrument(client.meta.events)
        return client

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
