"""The vocabulary under its older name: the Kubernetes side's imports of it still work.

New code imports `tmpfs_secrets.vocabulary` directly.
"""

from tmpfs_secrets.vocabulary import (
    API_VERSION,
    CLUSTER_SECRET_STORE,
    COMPONENT,
    CONTENT_HASH_ANNOTATION,
    DEFAULT_AUDIENCE,
    EXTERNAL_SECRET,
    EXTERNAL_SECRET_ANNOTATION,
    GROUP,
    IRSA_AUDIENCE_ANNOTATION,
    IRSA_ROLE_ANNOTATION,
    KINDS,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    MERGE_ANNOTATION,
    REFRESH_ANNOTATION,
    SECRET_STORE,
    VERSION,
    Kind,
)

__all__ = [
    "API_VERSION",
    "CLUSTER_SECRET_STORE",
    "COMPONENT",
    "CONTENT_HASH_ANNOTATION",
    "DEFAULT_AUDIENCE",
    "EXTERNAL_SECRET",
    "EXTERNAL_SECRET_ANNOTATION",
    "GROUP",
    "IRSA_AUDIENCE_ANNOTATION",
    "IRSA_ROLE_ANNOTATION",
    "KINDS",
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "MERGE_ANNOTATION",
    "REFRESH_ANNOTATION",
    "SECRET_STORE",
    "VERSION",
    "Kind",
]
