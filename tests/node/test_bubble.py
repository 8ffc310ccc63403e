"""Nothing leaves the bubble, and the scrub that checks and cleans a run's leftovers really does.

The check after the whole suite is the bubble wrapper's: when pytest exits it lists any process,
mount, cgroup or file of the run (and any process still in the namespace) and fails the run.
"""

from __future__ import annotations

import errno
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.cluster import runs
from tests.cluster.polling import wait_until
from tests.node.conftest import Pods, pod_manifest

OUTSIDE = "192.0.2.1"  # TEST-NET-1: never routed anywhere


def test_a_connection_from_the_bubble_to_outside_fails_at_once() -> None:
    with pytest.raises(OSError) as failed:
        socket.create_connection((OUTSIDE, 80), timeout=5).close()
    assert failed.value.errno == errno.ENETUNREACH  # refused locally: no packet was sent


def test_a_name_cannot_be_resolved_inside_the_bubble() -> None:
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("example.com", 443)


def test_a_connection_from_a_pod_to_outside_fails(pods: Pods) -> None:
    pods.apply(pod_manifest("prober", pods.image, "sleep 3600"))
    pods.wait_running("prober")
    result = pods.exec("prober", "nc", "-w", "5", OUTSIDE, "80", check=False)
    assert result.returncode != 0
    assert "unreachable" in result.stderr.lower() or "no route" in result.stderr.lower(), result.stderr


def test_scrub_finds_and_removes_a_runs_processes_mounts_and_folder() -> None:
    run = runs.Run(Path(tempfile.mkdtemp(prefix="scrub-test-", dir=runs.base())))
    sleeper: subprocess.Popen[bytes] | None = None
    try:
        mount = run.dir / "node" / "tmpfs"
        mount.mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mount)], check=True)
        sleeper = subprocess.Popen(["sleep", "600"], cwd=mount)
        # Until the child has exec'ed, its command line is empty: wait for it, not for a time.
        cmdline = Path(f"/proc/{sleeper.pid}/cmdline")
        wait_until("the sleeper to exec", lambda: cmdline.read_bytes().startswith(b"sleep"), 10, 0.01)
        found = runs.leftovers(run)
        assert f"process {sleeper.pid}: sleep 600 " in found
        assert f"mount {mount}" in found
        runs.scrub(run)
        assert sleeper.wait(10) != 0
        assert runs.leftovers(run) == []
        assert not run.dir.exists()
    finally:
        if sleeper is not None and sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait(10)
        runs.unmount_all(run.dir)
        subprocess.run(["rm", "-rf", str(run.dir)], check=False)
