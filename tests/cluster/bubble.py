"""Run a command inside the bubble: a fresh network namespace with no route out.

    python -m tests.cluster.bubble [--forward PORT] -- COMMAND [ARG ...]

The command runs in a new network namespace (`unshare(CLONE_NEWNET)`, never `ip netns exec`,
which also remounts /sys and so hides the cgroup mounts from kubelet and runc). Inside: `lo` up,
a bridge `cni0` with the node's address 10.244.0.1/16, IP forwarding and bridge netfilter on, and
a route for the Service range 10.96.0.0/16 through the bridge (so a ClusterIP is routable before
kube-proxy's DNAT rewrites it). There is no default route, so nothing inside can send a packet
off the machine, not even to a name server. The namespace disappears with its last process.

The wrapper also makes the run's folder (exported as TMPFS_SECRETS_RUN_DIR, see `runs.py`),
scrubs what killed earlier runs left, and after the command exits checks that the run left
nothing behind: no process, mount, cgroup, file of the run, nor a process in the namespace. If it
did, the leftovers are listed, scrubbed, and the exit status is 1.

`--forward PORT` binds 127.0.0.1:PORT on the host (0 picks a free port) before entering the
namespace and hands the listening socket to the command (TMPFS_SECRETS_FORWARD_FD, and the port
in TMPFS_SECRETS_FORWARD_PORT): a socket keeps the namespace it was made in, so the command can
accept host connections on it and relay them to a server inside (see `forward.py`). `run(...,
extra_forwards=N)` hands over N more listeners on free host ports, as `fd:port` pairs separated by
commas in TMPFS_SECRETS_EXTRA_FORWARDS (the demo relays one to the emulated AWS).

Inside, TMPFS_SECRETS_BUBBLE holds the node's address; `inside()` tells whether this process is
in a bubble.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.cluster import runs

NODE_IP = "10.244.0.1"
NODE_CIDR = f"{NODE_IP}/16"
POD_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
BRIDGE = "cni0"
BUBBLE_ENV = "TMPFS_SECRETS_BUBBLE"
FORWARD_FD_ENV = "TMPFS_SECRETS_FORWARD_FD"
FORWARD_PORT_ENV = "TMPFS_SECRETS_FORWARD_PORT"
EXTRA_FORWARDS_ENV = "TMPFS_SECRETS_EXTRA_FORWARDS"

_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1


def inside() -> bool:
    """True when this process runs in a bubble made by this wrapper."""
    return os.environ.get(BUBBLE_ENV) == NODE_IP


def _enter_new_netns() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    # The command ends with the wrapper, however the wrapper ends.
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if libc.unshare(_CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unshare(CLONE_NEWNET): {os.strerror(errno)} (root is needed)")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


def _sysctl(name: str, value: str) -> None:
    Path("/proc/sys", *name.split(".")).write_text(value)


def set_up_network() -> None:
    """Wire the namespace this process is in (called in the fresh namespace, before the command)."""
    _ip("link", "set", "lo", "up")
    _ip("link", "add", BRIDGE, "type", "bridge")
    _ip("addr", "add", NODE_CIDR, "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")
    _ip("route", "add", SERVICE_CIDR, "dev", BRIDGE)
    _sysctl("net.ipv4.ip_forward", "1")
    _sysctl("net.bridge.bridge-nf-call-iptables", "1")


def _inside_main(command: Sequence[str]) -> int:
    set_up_network()
    os.environ[BUBBLE_ENV] = NODE_IP
    os.execvp(command[0], list(command))


def extra_forwards() -> list[tuple[int, int]]:
    """(listening fd, host port) of each extra listener the wrapper handed over."""
    pairs = os.environ.get(EXTRA_FORWARDS_ENV, "")
    return [(int(fd), int(port)) for fd, port in (p.split(":") for p in pairs.split(",") if p)]


def run(command: Sequence[str], forward: int | None = None, extra_forwards: int = 0) -> int:
    """Run `command` in a new bubble; return its exit status (1 if the run left anything behind)."""
    for stale in runs.scrub_stale():
        print(f"bubble: scrubbed the leftovers of killed run {stale}", file=sys.stderr, flush=True)
    run_ = runs.new_run()
    env = dict(os.environ, **{runs.RUN_DIR_ENV: str(run_.dir)})
    pass_fds: tuple[int, ...] = ()
    listener = None
    if forward is not None:
        listener = socket.create_server(("127.0.0.1", forward))
        env[FORWARD_FD_ENV] = str(listener.fileno())
        env[FORWARD_PORT_ENV] = str(listener.getsockname()[1])
        pass_fds = (listener.fileno(),)
    extras = [socket.create_server(("127.0.0.1", 0)) for _ in range(extra_forwards)]
    if extras:
        env[EXTRA_FORWARDS_ENV] = ",".join(f"{s.fileno()}:{s.getsockname()[1]}" for s in extras)
        pass_fds += tuple(s.fileno() for s in extras)
    argv = [sys.executable, "-m", "tests.cluster.bubble", "--inside", "--", *command]
    child = subprocess.Popen(argv, env=env, pass_fds=pass_fds, preexec_fn=_enter_new_netns)
    # A terminal's Ctrl-C reaches the command directly; the wrapper waits for it to finish. Ignored
    # only after the start: an ignored signal is inherited, and the command must still get Ctrl-C.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    netns = os.stat(f"/proc/{child.pid}/ns/net").st_ino

    def relay(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, relay)
    signal.signal(signal.SIGHUP, relay)
    try:
        code = child.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
        if listener is not None:
            listener.close()
        for extra in extras:
            extra.close()
    left = [f"process {pid} in the bubble" for pid in sorted(runs.processes_in_netns(netns))]
    left += runs.leftovers(run_)
    if left:
        print("bubble: the run left these behind (now scrubbed):", file=sys.stderr)
        for item in left:
            print(f"  {item}", file=sys.stderr)
        runs.kill(runs.processes_in_netns(netns))
        code = code or 1
    runs.scrub(run_)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster.bubble", description=__doc__)
    parser.add_argument(
        "--forward", type=int, metavar="PORT", help="host loopback port handed to the command"
    )
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (put it after --)")
    if args.inside:
        return _inside_main(command)
    return run(command, args.forward)


if __name__ == "__main__":
    raise SystemExit(main())
