"""The seams between the sync engine and the Kubernetes side.

The engine (registry, scheduler, cache, providers) never talks to the Kubernetes API itself:
it is handed the few Kubernetes reads it needs through `KubeReads`, and it reports every
outcome through `Sink`. The Kubernetes side implements both. Keeping these seams narrow lets
the engine be tested against moto alone and the Kubernetes side against a real API server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """Names one ExternalSecret."""

    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class ServiceAccountToken:
    """A TokenRequest result plus the IRSA annotations of the ServiceAccount it was issued for."""

    token: str
    role_arn: str | None
    expires_at: float  # unix time


@dataclass(frozen=True, slots=True)
class SyncSuccess:
    """A refresh that produced a complete key set for a target."""

    data: Mapping[str, bytes] = field(repr=False)  # secretKey -> value; never logged (nor in repr)
    versions: Mapping[str, str]  # secretKey -> AWS VersionId or SSM version
    content_hash: str  # "sha256:..." over the sorted keys and values; safe to show
    sources: int  # how many remote sources contributed
    refresh_time: float  # unix time of the fetch
    next_refresh_time: float | None  # None when refreshInterval is 0
    removed_keys: frozenset[str] = field(default_factory=frozenset)  # gone at source, deletionPolicy Delete


@dataclass(frozen=True, slots=True)
class SyncFailure:
    """A refresh that failed; the target keeps its last good values."""

    reason: str  # one of tmpfs_secrets.errors.Reason values
    message: str  # tells the user what to change; never contains a value
    next_refresh_time: float | None = None


class ReadError(Exception):
    """A Kubernetes read failed for a reason the reader expects (the API server refused or is
    unreachable); any other exception from a `KubeReads` method is a bug."""


class KubeReads(Protocol):
    """The Kubernetes reads the engine needs, done asynchronously by the Kubernetes side.

    A missing object or key raises KeyError; other expected failures raise `ReadError`.
    """

    async def namespace_labels(self, namespace: str) -> Mapping[str, str]: ...

    async def secret_value(self, namespace: str, name: str, key: str) -> str:
        """Read one key of a Secret (static AWS keys for `auth.secretRef`); raises KeyError if absent."""
        ...

    async def service_account_token(self, namespace: str, name: str) -> ServiceAccountToken:
        """TokenRequest for the ServiceAccount, audience from `eks.amazonaws.com/audience`.

        The audience defaults to sts.amazonaws.com, as EKS does it.
        """
        ...


class SinkError(Exception):
    """A sink could not take an outcome for a reason it expects (the target Secret belongs to
    someone else, RBAC, the API server refused the write) and has told the user itself. The
    engine offers the key set again on the next refresh; any other exception is a bug."""

    reason: str = ""  # a Reason value, shown in the engine's log line


class Sink(Protocol):
    """Where the engine reports outcomes; the Kubernetes side writes Secrets, status and events.

    Expected failures raise `SinkError`.
    """

    async def synced(self, ref: ObjectRef, result: SyncSuccess) -> None: ...

    async def failed(self, ref: ObjectRef, result: SyncFailure) -> None: ...

    async def store_status(
        self, kind: str, namespace: str | None, name: str, ready: bool, reason: str, message: str
    ) -> None: ...
