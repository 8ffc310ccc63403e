"""One folder and one cgroup name per cluster run, and scrubbing what a run left behind.

Everything a run creates on the host lives under its run folder (`<tmp>/tmpfs-secrets-runs/<id>/`)
or under cgroups named `tmpfs-secrets-<id>`. The folder holds an `owner` file with the owning
process's pid and start time, so a later run can tell a live run from one that was killed and
scrub it: end its processes by pid (shims and containers outlive a killed harness), unmount
what kubelet and containerd mounted, remove its cgroups and its folder. Concurrent runs never
touch each other's folders, because a live owner is never scrubbed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

RUN_DIR_ENV = "TMPFS_SECRETS_RUN_DIR"
_MNT_DETACH = 2


def base() -> Path:
    return Path(tempfile.gettempdir()) / "tmpfs-secrets-runs"


@dataclass(frozen=True)
class Run:
    """A run's folder; its id also names its cgroups."""

    dir: Path

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def cgroup(self) -> str:
        return f"tmpfs-secrets-{self.id}"


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22: start time in clock ticks since boot


def new_run(owner: int | None = None) -> Run:
    """A fresh run folder owned by `owner` (default: this process)."""
    pid = owner or os.getpid()
    folder = base() / f"{pid}-{uuid.uuid4().hex[:6]}"
    folder.mkdir(parents=True)
    (folder / "owner").write_text(f"{pid} {_start_time(pid)}\n")
    return Run(folder)


def current() -> Run:
    """The run folder the bubble wrapper made for this process tree, or a new one."""
    given = os.environ.get(RUN_DIR_ENV)
    if given and Path(given).is_dir():
        return Run(Path(given))
    return new_run()


def _owner_alive(folder: Path) -> bool:
    try:
        pid_text, start = (folder / "owner").read_text().split()
    except (OSError, ValueError):
        # No owner file yet: a run being created right now, or debris; only old debris is stale.
        return time.time() - folder.stat().st_mtime < 3600
    return _start_time(int(pid_text)) == start


def _cgroup_mounts() -> list[Path]:
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        fstype = fields[fields.index("-") + 1]
        if fstype in ("cgroup", "cgroup2"):
            mounts.append(Path(_unescape(fields[4])))
    return mounts


def cgroup_dirs(run: Run) -> list[Path]:
    """The run's cgroup roots that exist, one per hierarchy."""
    return [m / run.cgroup for m in _cgroup_mounts() if (m / run.cgroup).is_dir()]


def _unescape(path: str) -> str:
    return path.encode().decode("unicode_escape") if "\\" in path else path


def mounts_under(folder: Path) -> list[str]:
    prefix = str(folder) + "/"
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape(line.split()[4])
        if point.startswith(prefix) or point == str(folder):
            found.append(point)
    return found


def processes_of(run: Run, folder: Path | None = None) -> set[int]:
    """Processes that belong to the run: in its cgroups, or naming or working in `folder` (its folder)."""
    folder = folder or run.dir
    pids: set[int] = set()
    for root in cgroup_dirs(run):
        for procs in root.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(p) for p in procs.read_text().split())
    marker = str(folder).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if marker in (entry / "cmdline").read_bytes() or os.readlink(entry / "cwd").startswith(
                str(folder)
            ):
                pids.add(int(entry.name))
    pids.discard(os.getpid())
    return pids


def processes_in_netns(inode: int) -> set[int]:
    pids = set()
    target = f"net:[{inode}]"
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns" / "net") == target:
                    pids.add(int(entry.name))
    return pids


def leftovers(run: Run, keep: tuple[str, ...] = ("owner",)) -> list[str]:
    """What of the run is still there, described for a person; empty when it is all gone."""
    found = [f"process {pid}: {_cmdline(pid)}" for pid in sorted(processes_of(run))]
    found += [f"mount {m}" for m in mounts_under(run.dir)]
    found += [f"cgroup {c}" for c in cgroup_dirs(run)]
    if run.dir.exists():
        found += [f"file {p}" for p in sorted(run.dir.iterdir()) if p.name not in keep]
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "(gone)"


def kill(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.1)


def unmount_all(folder: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for _ in range(5):
        points = mounts_under(folder)
        if not points:
            return
        for point in sorted(points, key=lambda p: p.count("/"), reverse=True):
            libc.umount2(point.encode(), _MNT_DETACH)


def remove_cgroups(run: Run) -> None:
    for root in cgroup_dirs(run):
        for _ in range(20):
            children = sorted(
                (p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
            )
            for group in [*children, root]:
                with contextlib.suppress(OSError):
                    group.rmdir()
            if not root.exists():
                break
            time.sleep(0.1)


def scrub(run: Run, folder: Path | None = None) -> None:
    """End the run's processes, unmount its mounts, remove its cgroups and `folder` (its folder).

    With a `folder` inside the run's folder, only the processes naming that folder are ended (and
    those in the run's cgroups), so the rest of the run keeps going.
    """
    folder = folder or run.dir
    for _ in range(3):
        pids = processes_of(run, folder)
        if not pids:
            break
        kill(pids)
    unmount_all(folder)
    remove_cgroups(run)
    shutil.rmtree(folder, ignore_errors=True)


def scrub_stale() -> list[str]:
    """Scrub the runs whose owner is gone (a killed run); return their ids."""
    scrubbed: list[str] = []
    if not base().is_dir():
        return scrubbed
    for folder in sorted(base().iterdir()):
        if folder.is_dir() and not _owner_alive(folder):
            scrub(Run(folder))
            scrubbed.append(folder.name)
    return scrubbed
