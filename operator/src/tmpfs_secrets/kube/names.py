"""The API group, kinds, labels and annotations of tmpfs-secrets, named once.

CRDs, handlers, the Secret writer and the tests all refer to these; a typo in one of them would
otherwise split the operator's view of the world silently.
"""

from __future__ import annotations

from dataclasses import dataclass

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

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "tmpfs-secrets"
CONTENT_HASH_ANNOTATION = f"{GROUP}/content-hash"
EXTERNAL_SECRET_ANNOTATION = f"{GROUP}/external-secret"  # which ExternalSecret writes this Secret
REFRESH_ANNOTATION = f"{GROUP}/refresh-requested"
# Where opted-in pods see an ExternalSecret's keys unless `spec.mount` says otherwise.
MOUNT_ROOT = f"/var/run/secrets/{GROUP}"
DEFAULT_MODE = 0o440


def default_mount_path(external_secret: str) -> str:
    return f"{MOUNT_ROOT}/{external_secret}"


COMPONENT = "tmpfs-secrets"

# How a pod (or pod template) asks for its ExternalSecrets' volumes.
INJECT_LABEL = f"{GROUP}/inject"
SECRETS_ANNOTATION = f"{GROUP}/secrets"
CONTAINERS_ANNOTATION = f"{GROUP}/containers"
# On a workload's pod template: the content (hash) of an ExternalSecret that last restarted it.
RESTART_ANNOTATION_PREFIX = f"restart.{GROUP}"

IRSA_ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
IRSA_AUDIENCE_ANNOTATION = "eks.amazonaws.com/audience"
DEFAULT_AUDIENCE = "sts.amazonaws.com"
