"""Which AWS identity a store's calls run as, and the credentials for it.

- default: botocore's own chain (env, IRSA web identity file, EKS Pod Identity), refreshed by
  botocore itself;
- static: keys from a Kubernetes Secret (read through a callable, for local development);
- web identity: a tenant ServiceAccount's token exchanged with AssumeRoleWithWebIdentity;
- role: sts:AssumeRole on top of any of those, session name `<namespace>.<store>`.

Every auth has an `identity`, a hashable key that names exactly whose permissions a value was
read with; caches are keyed by it so one tenant's values are never served to another.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tmpfs_secrets.providers.base import Identity

if TYPE_CHECKING:
    from tmpfs_secrets.providers.aws.clients import AwsRuntime

MAX_SESSION_NAME = 64
TokenSource = Callable[[], Awaitable[str]]
SecretSource = Callable[[], Awaitable[str]]


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    expires_at: float | None = None  # unix time; None: does not expire


def session_name(namespace: str | None, store: str) -> str:
    """`<namespace>.<store>` (just the store for a ClusterSecretStore), cut to STS's 64 characters."""
    name = f"{namespace}.{store}" if namespace else store
    return name[:MAX_SESSION_NAME]


class Auth(ABC):
    """How to get credentials for one identity."""

    identity: Identity

    @abstractmethod
    async def credentials(self, aws: AwsRuntime) -> Credentials | None:
        """Fresh credentials, or None to let botocore's default chain find them."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Auth) and other.identity == self.identity

    def __hash__(self) -> int:
        return hash(self.identity)


class DefaultAuth(Auth):
    identity: Identity = ("default",)

    async def credentials(self, aws: AwsRuntime) -> Credentials | None:
        return None


class StaticAuth(Auth):
    def __init__(self, namespace: str, secret_name: str, access_key_id: str, secret: SecretSource) -> None:
        self.identity = ("static", namespace, secret_name, access_key_id)
        self._access_key_id = access_key_id
        self._secret = secret

    async def credentials(self, aws: AwsRuntime) -> Credentials | None:
        return Credentials(self._access_key_id, await self._secret())


class WebIdentityAuth(Auth):
    def __init__(
        self, namespace: str, service_account: str, role_arn: str, session: str, token: TokenSource
    ) -> None:
        self.identity = ("sa", namespace, service_account, role_arn, session)
        self.role_arn = role_arn
        self.session = session
        self._token = token

    async def credentials(self, aws: AwsRuntime) -> Credentials | None:
        token = await self._token()
        sts = await aws.unsigned_sts()
        response = await aws.call(
            sts.assume_role_with_web_identity,
            RoleArn=self.role_arn,
            RoleSessionName=self.session,
            WebIdentityToken=token,
        )
        return _from_sts(response)


class AssumeRoleAuth(Auth):
    def __init__(self, base: Auth, role_arn: str, external_id: str | None, session: str, region: str) -> None:
        self.identity = ("role", *base.identity, role_arn, external_id or "", session)
        self.base = base
        self.role_arn = role_arn
        self.external_id = external_id
        self.session = session
        self.region = region

    async def credentials(self, aws: AwsRuntime) -> Credentials | None:
        sts = await aws.client(self.base, "sts", self.region)
        kwargs: dict[str, Any] = {"RoleArn": self.role_arn, "RoleSessionName": self.session}
        if self.external_id:
            kwargs["ExternalId"] = self.external_id
        return _from_sts(await aws.call(sts.assume_role, **kwargs))


def _from_sts(response: Any) -> Credentials:
    creds = response["Credentials"]
    return Credentials(
        creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"], creds["Expiration"].timestamp()
    )
