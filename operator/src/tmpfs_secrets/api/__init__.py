"""Typed views of the custom objects (SecretStore, ClusterSecretStore, ExternalSecret).

The Kubernetes side hands the engine raw object dicts; everything here turns them into frozen
dataclasses, or a `SpecError` whose message says which field to change. Nothing here talks to
Kubernetes or AWS.
"""

from tmpfs_secrets.api.duration import DEFAULT_REFRESH_INTERVAL, parse_duration
from tmpfs_secrets.api.external_secret import (
    DataItem,
    ExternalSecretSpec,
    Extract,
    Find,
    RemoteRef,
    StoreRef,
    Target,
    parse_external_secret,
)
from tmpfs_secrets.api.selectors import LabelSelector, Requirement
from tmpfs_secrets.api.store import (
    AuthSpec,
    KeyRef,
    NamespaceCondition,
    StoreSpec,
    parse_store,
)

__all__ = [
    "DEFAULT_REFRESH_INTERVAL",
    "AuthSpec",
    "DataItem",
    "ExternalSecretSpec",
    "Extract",
    "Find",
    "KeyRef",
    "LabelSelector",
    "NamespaceCondition",
    "RemoteRef",
    "Requirement",
    "StoreRef",
    "StoreSpec",
    "Target",
    "parse_duration",
    "parse_external_secret",
    "parse_store",
]
