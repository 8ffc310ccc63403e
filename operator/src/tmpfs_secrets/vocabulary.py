"""The words of tmpfs-secrets, named once: API group and version, kinds, labels, annotations and
the condition reasons.

Every layer (the API parser, the engine, the providers, the Kubernetes side, the CLI) imports
them from here instead of repeating literals: a typo in one copy would otherwise split the
operator's view of the world silently. This module imports nothing of the project.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

GROUP = "tmpfs-secrets.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    namespaced: bool


EXTERNAL_SECRET = Kind("ExternalSecret", "externalsecrets", namespaced=True)
SECRET_STORE = Kind("SecretStore", "secretstores", namespaced=True)
CLUSTER_SECRET_STORE = Kind("ClusterSecretStore", "clustersecretstores", namespaced=False)
KINDS = {k.kind: k for k in (EXTERNAL_SECRET, SECRET_STORE, CLUSTER_SECRET_STORE)}
STORE_KINDS = (SECRET_STORE.kind, CLUSTER_SECRET_STORE.kind)

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "tmpfs-secrets"
CONTENT_HASH_ANNOTATION = f"{GROUP}/content-hash"
EXTERNAL_SECRET_ANNOTATION = f"{GROUP}/external-secret"  # which ExternalSecret writes this Secret
REFRESH_ANNOTATION = f"{GROUP}/refresh-requested"
# A Secret opts in to `creationPolicy: Merge` with this annotation set to "true".
MERGE_ANNOTATION = f"{GROUP}/allow-merge"
# On every Secret the operator writes (Merge targets too): the watch of target Secrets selects it.
TARGET_LABEL = f"{GROUP}/target"
TARGET_LABEL_VALUE = "true"
# On the operator pod that leads: the chart's Direct Service sends agents to that pod only.
LEADER_POD_LABEL = f"{GROUP}/leader"
COMPONENT = "tmpfs-secrets"

# Where opted-in pods see an ExternalSecret's keys unless `spec.mount` says otherwise.
MOUNT_ROOT = f"/var/run/secrets/{GROUP}"
DEFAULT_MODE = 0o440


def default_mount_path(external_secret: str) -> str:
    return f"{MOUNT_ROOT}/{external_secret}"


# How a pod (or pod template) asks for its ExternalSecrets' volumes.
INJECT_LABEL = f"{GROUP}/inject"
SECRETS_ANNOTATION = f"{GROUP}/secrets"
CONTAINERS_ANNOTATION = f"{GROUP}/containers"
# On a workload's pod template: the content (hash) of an ExternalSecret that last restarted it.
RESTART_ANNOTATION_PREFIX = f"restart.{GROUP}"

READY_CONDITION = "Ready"  # the one condition type of every object
# Event reasons (the failure events carry `SyncFailed`; the reason of the failure is in the message).
EVENT_SYNCED = "Synced"
EVENT_ROTATED = "Rotated"
EVENT_SYNC_FAILED = "SyncFailed"

IRSA_ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
IRSA_AUDIENCE_ANNOTATION = "eks.amazonaws.com/audience"
DEFAULT_AUDIENCE = "sts.amazonaws.com"


class Reason(StrEnum):
    """Condition reasons; docs/engine.md says what each one means to a user."""

    SYNCED = "Synced"  # ExternalSecret: every key delivered
    VALID = "Valid"  # store: spec and auth inputs are usable
    STORE_NOT_FOUND = "StoreNotFound"  # the referenced store does not exist
    STORE_NOT_READY = "StoreNotReady"  # the store exists but its auth cannot be built
    STORE_NOT_ALLOWED = "StoreNotAllowed"  # a ClusterSecretStore whose conditions exclude the namespace
    ACCESS_DENIED = "AccessDenied"  # AWS refused the store's identity
    SOURCE_NOT_FOUND = "SourceNotFound"  # the secret, parameter or version does not exist
    INVALID_PROPERTY = "InvalidProperty"  # property/extract/find cannot be applied to the value
    INVALID_SPEC = "InvalidSpec"  # the object's spec is invalid
    THROTTLED = "Throttled"  # AWS throttled the operator; it backs off and retries
    PROVIDER_ERROR = "ProviderError"  # AWS unreachable or another AWS error
    INTERNAL_ERROR = "InternalError"  # an unexpected failure in the operator; its log has the traceback
    # The target Secret (reported by the Kubernetes side; the engine never sees the target):
    TARGET_NOT_FOUND = "TargetNotFound"  # creationPolicy Merge and the Secret does not exist
    TARGET_CONFLICT = "TargetConflict"  # the Secret exists but is not this ExternalSecret's, or immutable
    TARGET_WRITE_FAILED = "TargetWriteFailed"  # RBAC or API server errors while writing it
    # Direct delivery (reported by the Kubernetes side from the agents' acknowledgements):
    DELIVERED = "Delivered"  # every connected pod wrote the current content (at least one pod)
    AWAITING_PODS = "AwaitingPods"  # fetched, but no pod is connected or some hold older content
