"""Which AWS identity a store's calls run as, and the credentials for it.

- default: botocore's own chain (env, IRSA web identity file, EKS Pod Identity), refreshed by
  botocore itself;
- static: keys from a Kubernetes Secret (read through a callable, for local development);
- web identity: a tenant ServiceAccount's token exchanged with AssumeRoleWithWebIdentity;
- role: sts:AssumeRole on top of any of those, with session tags naming the namespace and store
  (dropped, and remembered as such, when the role's trust policy refuses sts:TagSession).

Every AssumeRole* call names its session after the store (`session_name`), so CloudTrail and IAM
conditions (`sts:RoleSessionName`, `aws:RequestTag/kubernetes-namespace`) can tell tenants apart.

Every auth has an `identity`, a hashable key that names exactly whose permissions a value was
read with; caches are keyed by it so one tenant's values are never served to another.
"""

from __future__ import annotations

import hashlib
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from tmpfs_secrets.errors import Reason
from tmpfs_secrets.providers.aws.errors import reason_of
from tmpfs_secrets.providers.base import Identity
from tmpfs_secrets.vocabulary import SECRET_STORE

if TYPE_CHECKING:
    from tmpfs_secrets.providers.aws.clients import AwsRuntime

log = logging.getLogger(__name__)

MAX_SESSION_NAME = 64
SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$", re.ASCII)
_HASH_LEN = 10
NAMESPACE_TAG = "kubernetes-namespace"  # the key EKS Pod Identity uses too, so policies carry over
STORE_TAG = "secret-store"
STORE_KIND_TAG = "secret-store-kind"
TokenSource = Callable[[], Awaitable[str]]
SecretSource = Callable[[], Awaitable[str]]


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    expires_at: float | None = None  # unix time; None: does not expire


def session_name(kind: str, namespace: str | None, store: str) -> str:
    """The role session name of a store: `<namespace>.<store>` for a SecretStore, `cluster@<store>`
    for a ClusterSecretStore.

    Kubernetes names never contain '@' or '=' and namespaces never contain '.', so the two kinds
    never collide and the first '.' splits namespace from store. A name longer than STS's 64
    characters keeps its start and ends with '=' and a hash of the full name, so it stays unique.
    """
    full = f"{namespace}.{store}" if kind == SECRET_STORE.kind else f"cluster@{store}"
    if len(full) <= MAX_SESSION_NAME:
        return full
    digest = hashlib.sha256(f"{kind}/{namespace or ''}/{store}".encode()).hexdigest()[:_HASH_LEN]
    return f"{full[: MAX_SESSION_NAME - _HASH_LEN - 1]}={digest}"


def session_tags(kind: str, namespace: str | None, store: str) -> tuple[tuple[str, str], ...]:
    """Session tags for attribute-based policies: the namespace (SecretStores) and the store."""
    tags = [(STORE_KIND_TAG, kind), (STORE_TAG, store)]
    if kind == SECRET_STORE.kind and namespace:
        tags.insert(0, (NAMESPACE_TAG, namespace))
    return tuple(tags)


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
    def __init__(
        self,
        base: Auth,
        role_arn: str,
        external_id: str | None,
        session: str,
        region: str,
        tags: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.identity = ("role", *base.identity, role_arn, external_id or "", session)
        self.base = base
        self.role_arn = role_arn
        self.external_id = external_id
        self.session = session
        self.region = region
        self.tags = tags
        self.tags_refused = False  # the role's trust policy does not allow sts:TagSession

    async def credentials(self, aws: AwsRuntime) -> Credentials | None:
        sts = await aws.client(self.base, "sts", self.region)
        kwargs: dict[str, Any] = {"RoleArn": self.role_arn, "RoleSessionName": self.session}
        if self.external_id:
            kwargs["ExternalId"] = self.external_id
        if self.tags and not self.tags_refused:
            try:
                tags = [{"Key": k, "Value": v} for k, v in self.tags]
                return _from_sts(await aws.call(sts.assume_role, **kwargs, Tags=tags))
            except ClientError as exc:
                if reason_of(exc) is not Reason.ACCESS_DENIED:
                    raise
            # The role may trust us without allowing sts:TagSession: try once more without tags
            # and remember it, so every later renewal costs one call.
            response = await aws.call(sts.assume_role, **kwargs)
            self.tags_refused = True
            log.info("role %s refused session tags; it is assumed without them", self.role_arn)
            return _from_sts(response)
        return _from_sts(await aws.call(sts.assume_role, **kwargs))


def _from_sts(response: Any) -> Credentials:
    creds = response["Credentials"]
    return Credentials(
        creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"], creds["Expiration"].timestamp()
    )
