"""Install the Debian packages the local cluster needs, before anything enters the bubble.

runc is built with cgo against libseccomp (so `libseccomp-dev` and `pkg-config`), the images
are made from `busybox-static` and (with `mmdebstrap`) from Debian packages, and kube-proxy and
the bubble need `iptables`, `iproute2` (`ip`) and `conntrack`. Installing downloads, so this runs
on the host, never inside the bubble.
Quick and silent when everything is present: `apt-get update` runs only when something is missing.

`python -m tests.cluster.sysdeps` (`make deps`) installs what is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence

PACKAGES: tuple[str, ...] = (
    "libseccomp-dev",
    "pkg-config",
    "busybox-static",
    "iptables",
    "iproute2",
    "conntrack",
    "util-linux",  # unshare, nsenter
    "mmdebstrap",  # root filesystems of the images built from Debian packages (debian_image.py)
)


def missing(packages: Sequence[str] = PACKAGES) -> list[str]:
    """The packages of `packages` that dpkg does not report as installed."""
    if shutil.which("dpkg-query") is None:
        return []  # not Debian: the caller must provide the tools another way
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *packages],
        capture_output=True,
        text=True,
        check=False,
    )
    installed = {
        line.split()[0].split(":")[0] for line in result.stdout.splitlines() if line.endswith(" installed")
    }
    return [p for p in packages if p not in installed]


def ensure(packages: Sequence[str] = PACKAGES) -> list[str]:
    """Install what is missing; return what was installed."""
    todo = missing(packages)
    if not todo:
        return []
    if shutil.which("apt-get") is None:
        raise RuntimeError(f"missing system packages {', '.join(todo)} and no apt-get to install them")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    started = time.monotonic()
    print(f"installing system packages: {' '.join(todo)} ...", flush=True)
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *todo], check=True, env=env
    )
    print(f"installed {' '.join(todo)} in {time.monotonic() - started:.0f}s", flush=True)
    return todo


def main() -> int:
    installed = ensure()
    if not installed:
        print(f"system packages present: {' '.join(PACKAGES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
