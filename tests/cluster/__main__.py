"""`python -m tests.cluster` (`make cluster`): run the local cluster in the foreground for a person to use."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence

from tests.cluster import binaries
from tests.cluster.control_plane import ControlPlane


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make cluster",
        description="Start a local Kubernetes control plane on loopback and keep it running until Ctrl-C.",
    )
    parser.parse_args(argv)
    print("ensuring binaries (the first run builds them from Go modules; this takes a while) ...", flush=True)
    binaries.ensure(binaries.CONTROL_PLANE)
    started = time.monotonic()
    plane = ControlPlane()
    # Ctrl-C and SIGTERM both end in the finally below, which stops every component.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        plane.start()
        print(f"control plane ready in {time.monotonic() - started:.1f}s: {plane.api_url}")
        print(f"logs: {plane.logs}")
        print("use it from another shell with:")
        print(f"export KUBECONFIG={plane.kubeconfig}", flush=True)
        print("press Ctrl-C to stop", flush=True)
        while True:
            for proc in plane.processes:
                proc.check_alive()
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping ...")
    finally:
        plane.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
