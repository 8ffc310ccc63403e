"""The application images the node tests run, built from Debian packages (see `debian_image.py`).

- `python-reader`: Debian's `python3` and the project's reader helper (`tmpfs_secrets.client`,
  standard library only) under `/app`, the way an application would vendor it.
- `node-reader`: Debian's `nodejs` and `examples/node/` under `/app`.

Both run as user 65532 and work with a read-only root filesystem.

`python -m tests.cluster.app_images` (`make images`) builds what is missing, on the host (it
downloads Debian packages, which the bubble cannot), and prints each image's size and build time.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.cluster import debian_image
from tests.cluster.debian_image import Built, Recipe

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "src" / "tmpfs_secrets"

PYTHON_READER = Recipe(
    name="python-reader",
    packages=("python3",),
    files=(
        ("/app/tmpfs_secrets/__init__.py", PACKAGE / "__init__.py"),
        ("/app/tmpfs_secrets/client.py", PACKAGE / "client.py"),
    ),
    env=("PYTHONPATH=/app",),
    cmd=("python3",),
    workdir="/app",
)

NODE_READER = Recipe(
    name="node-reader",
    packages=("nodejs",),
    files=(("/app", REPO / "examples" / "node"),),
    cmd=("node",),
    workdir="/app",
)

READERS = (PYTHON_READER, NODE_READER)


def describe(built: Built) -> str:
    size = f"{built.archive_bytes / 2**20:.0f} MB compressed"
    if built.unpacked_bytes:
        size += f", {built.unpacked_bytes / 2**20:.0f} MB unpacked"
    when = f"built in {built.seconds:.0f}s" if built.seconds else "cached"
    return f"{built.image}: {size}, {when}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.parse_args(argv)
    started = time.monotonic()
    for recipe in READERS:
        print(describe(debian_image.build(recipe)), flush=True)
    print(f"images ready in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
