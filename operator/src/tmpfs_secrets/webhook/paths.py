"""Which mount paths an ExternalSecret may ask for.

A Secret volume mounted over `/proc`, `/sys`, `/dev` or `/etc` hides what the container needs to
run, and one under `/var/run/secrets/kubernetes.io` shadows or mixes with the ServiceAccount
token. The schema can only say "absolute"; this module says the rest, for the validating
webhook (ExternalSecrets) and the pod webhook (which never injects such a path).
"""

from __future__ import annotations

import posixpath

from tmpfs_secrets.kube.names import MOUNT_ROOT

# /run/secrets/kubernetes.io: /var/run is a link to /run in most images, so the same folder.
RESERVED = ("/proc", "/sys", "/dev", "/etc", "/var/run/secrets/kubernetes.io", "/run/secrets/kubernetes.io")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


def mount_path_problem(path: str, field: str) -> str | None:
    """Why `path` can't be a mount path, phrased as what to change; None when it is fine."""
    if not path.startswith("/"):
        return f"{field} {path!r} must be an absolute path, e.g. {MOUNT_ROOT}/<name>"
    normal = posixpath.normpath(path)
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    if normal != path.rstrip("/") or ".." in path.split("/"):
        return f"{field} {path!r} is not a normal path; write it as {normal!r}"
    if normal == "/":
        return f"{field} must not be '/'; use a folder of its own such as {MOUNT_ROOT}/<name>"
    for root in RESERVED:
        if _inside(normal, root):
            return (
                f"{field} {path!r} is under {root}, which the container runtime or Kubernetes owns; "
                f"use a folder of its own such as {MOUNT_ROOT}/<name>"
            )
    return None
