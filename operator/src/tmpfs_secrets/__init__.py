"""tmpfs-secrets: AWS secrets and parameters delivered into in-memory volumes that change in place.

Kept light: applications import `tmpfs_secrets.client` (standard library only) through this
package, so nothing is imported here, and `__version__` is looked up only when asked for.
"""

from __future__ import annotations


def __getattr__(name: str) -> str:
    if name != "__version__":
        raise AttributeError(f"module 'tmpfs_secrets' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tmpfs-secrets")
    except PackageNotFoundError:  # running from a source tree without an install
        return "0.0.0+unknown"
