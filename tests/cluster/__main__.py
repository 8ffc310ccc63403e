"""`python -m tests.cluster` (`make cluster`): run the local cluster in the foreground for a person to use.

Outside the bubble it builds what is missing, then runs itself again inside a new bubble with a
host loopback port forwarded to the API server inside, and prints `export KUBECONFIG=...` (a
kubeconfig whose server is that host port) and `IMAGE=<name>` (the local busybox image).
`--no-node` starts the control plane only.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from collections.abc import Sequence

from tests.cluster import binaries, bubble
from tests.cluster.cluster import Cluster


def _run_inside(no_node: bool) -> int:
    started = time.monotonic()
    cluster = Cluster(with_node=not no_node)
    # Ctrl-C and SIGTERM both end in the finally below, which stops every component.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        cluster.start()
        plane = cluster.control_plane
        kubeconfig = cluster.serve_host_port()
        print(f"cluster ready in {time.monotonic() - started:.1f}s; logs: {plane.logs}")
        print("use it from another shell with:")
        print(f"export KUBECONFIG={kubeconfig}")
        if cluster.node is not None:
            print(f"IMAGE={cluster.image}")
        print("press Ctrl-C to stop", flush=True)
        while True:
            for proc in plane.processes:
                proc.check_alive()
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping ...")
    finally:
        cluster.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make cluster",
        description="Start the local cluster in a network bubble and keep it running until Ctrl-C.",
    )
    parser.add_argument("--no-node", action="store_true", help="start the control plane only")
    parser.add_argument("--port", type=int, default=0, help="host loopback port for the API server (0: any)")
    args = parser.parse_args(argv)
    if bubble.inside():
        return _run_inside(args.no_node)
    print("ensuring binaries (the first run builds them from Go modules; this takes a while) ...", flush=True)
    binaries.ensure(binaries.CONTROL_PLANE if args.no_node else binaries.ALL)
    python = shutil.which(sys.executable) or sys.executable
    command = [python, "-m", "tests.cluster", *(["--no-node"] if args.no_node else [])]
    return bubble.run(command, forward=args.port)


if __name__ == "__main__":
    raise SystemExit(main())
