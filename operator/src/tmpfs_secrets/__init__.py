"""tmpfs-secrets: AWS secrets and parameters delivered into in-memory volumes that change in place."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tmpfs-secrets")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"
