"""Pick the provider for a store's service, and say which versions are immutable."""

from __future__ import annotations

from tmpfs_secrets.providers.aws.clients import AwsRuntime
from tmpfs_secrets.providers.aws.credentials import Auth
from tmpfs_secrets.providers.aws.parameterstore import ParameterStoreProvider, is_version_number
from tmpfs_secrets.providers.aws.secretsmanager import SecretsManagerProvider, is_version_id
from tmpfs_secrets.providers.base import PARAMETER_STORE, Provider


def make_provider(aws: AwsRuntime, auth: Auth, service: str, region: str) -> Provider:
    if service == PARAMETER_STORE:
        return ParameterStoreProvider(aws, auth, region)
    return SecretsManagerProvider(aws, auth, region)


def is_pinned(service: str, version: str | None) -> bool:
    """A value pinned to an immutable version never changes, so it is fetched once."""
    return is_version_number(version) if service == PARAMETER_STORE else is_version_id(version)


def batch_size(service: str) -> int:
    return (
        ParameterStoreProvider.batch_size if service == PARAMETER_STORE else SecretsManagerProvider.batch_size
    )
