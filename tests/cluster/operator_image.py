"""The operator image, built without Docker: Debian's python3, PyPI wheels of the dependencies, the project.

The same content as `operator/Dockerfile` (which stays for Docker users, `make docker-build`):
the `tmpfs_secrets` package and its dependencies on Python 3.11, bytecode compiled, user 65532,
no compiler or package manager, a read-only root (mount an emptyDir at /tmp). Built by
`debian_image.py` (mmdebstrap, pip binary wheels). There is no CA bundle from Debian (no
maintainer script runs), so `SSL_CERT_FILE` points at certifi's, which the Kubernetes client
brings.

`python -m tests.cluster.operator_image` (`make image`) builds it when missing and prints its
name, size and build time; the archive is an OCI layout that `ctr images import` (the local
node) and `kind load image-archive` take.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from tests.cluster import debian_image
from tests.cluster.app_images import describe
from tests.cluster.debian_image import Project, Recipe

REPO = Path(__file__).resolve().parents[2]


def recipe() -> Recipe:
    """The operator's recipe; the project's wheel pulls its dependencies from pyproject.toml."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return Recipe(
        name="tmpfs-secrets",
        packages=("python3",),
        # The dependencies are named so they are part of the cache key; the project's wheel
        # alone would pull them too.
        wheels=tuple(project["dependencies"]),
        projects=(Project(REPO, inputs=("pyproject.toml", "README.md", "operator/src")),),
        env=("SSL_CERT_FILE=/usr/local/lib/python{python}/dist-packages/certifi/cacert.pem",),
        entrypoint=("python3", "-m", "tmpfs_secrets"),
        cmd=("run",),
    )


class Node(Protocol):
    def import_images(self, archive: Path) -> Any: ...


def import_into(node: Node | None) -> str:
    """The image `make image` built, imported into the node's containerd (never pulled); its name."""
    assert node is not None, "the cluster has no node"
    built = debian_image.require(recipe())
    node.import_images(built.archive)
    return built.image


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.parse_args(argv)
    built = debian_image.build(recipe())
    print(describe(built))
    print(f"archive: {built.archive}")
    print(f"IMAGE={built.image}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
