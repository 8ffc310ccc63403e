"""The provider interface: fetch many remote keys at once, or every parameter under a path.

Results are per key: one missing secret is an error for that key only, never for its batch.
`Source` is the identity-qualified name of one remote value, shared by the cache, the
scheduler and the engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from tmpfs_secrets.errors import SyncError

Identity = tuple[str, ...]

SECRETS_MANAGER = "SecretsManager"
PARAMETER_STORE = "ParameterStore"
GET = "get"
FIND = "find"


@dataclass(frozen=True, slots=True)
class SourceRef:
    """One remote value: a secret or parameter name (or ARN), and an optional version."""

    key: str
    version: str | None = None


@dataclass(frozen=True, slots=True)
class Source:
    """A remote value as seen with one credential identity; the unit of caching and scheduling."""

    identity: Identity
    service: str
    region: str
    kind: str  # GET (one value) or FIND (every parameter under a path)
    key: str
    version: str | None = None

    @property
    def group(self) -> tuple[Identity, str, str, str]:
        """Sources of one group can share an AWS call."""
        return (self.identity, self.service, self.region, self.kind)

    @property
    def ref(self) -> SourceRef:
        return SourceRef(self.key, self.version)

    def describe(self) -> str:
        noun = "secret" if self.service == SECRETS_MANAGER else "parameter"
        if self.kind == FIND:
            if self.service == SECRETS_MANAGER:
                return f"secrets found by {self.key}"
            return f"parameters under {self.key}"
        return f"{noun} {self.key}" + (f" (version {self.version})" if self.version else "")


@dataclass(frozen=True, slots=True)
class Fetched:
    """One value. `binary` marks Secrets Manager SecretBinary; text values are UTF-8 bytes."""

    value: bytes
    version: str
    binary: bool = False

    def __repr__(self) -> str:  # never print the value
        return f"Fetched(<{len(self.value)} bytes>, version={self.version!r}, binary={self.binary})"


@dataclass(frozen=True, slots=True)
class Found:
    """The parameters found under a path, by full parameter name."""

    path: str
    parameters: Mapping[str, Fetched]

    def __repr__(self) -> str:
        return f"Found({self.path!r}, <{len(self.parameters)} parameters>)"


Value = Fetched | Found


class Provider(Protocol):
    """One (identity, service, region). Implementations never raise for a single key's failure."""

    batch_size: int

    async def fetch(self, refs: Sequence[SourceRef]) -> dict[SourceRef, Fetched | SyncError]:
        """A result or an error for every ref; any number of refs (split into calls as needed)."""
        ...

    async def find(self, query: str) -> Found:
        """Parameter Store: every parameter under the path `query`, recursively. Secrets Manager:
        every secret `query` (a `Find.query`) selects. Raises SyncError."""
        ...
