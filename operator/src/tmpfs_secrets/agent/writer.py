"""Writes a key set into a folder the way kubelet's atomic writer does, so readers never see a mix.

Each version lives in a new timestamped directory (`..2026_11_29_10_58_00.123456789.xyz`);
`..data` is a symlink to the current one, replaced by an atomic `rename` of a fresh link; each key
is a symlink `KEY -> ..data/KEY`. A reader that resolves `..data` once and reads every key through
that directory (as `tmpfs_secrets.client` does) gets one version whole. The previous directory is
removed after the swap.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (memory)

if TYPE_CHECKING:
    from collections.abc import Mapping

DATA_LINK = "..data"
_TMP_LINK = "..data_tmp"
# Kubernetes' rule for Secret keys; anything else (a path, "..x") could escape or shadow our links.
_KEY_CHARS = frozenset("-._abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


class KeyRefused(ValueError):
    """A key that can't be a file name in the folder (the message names the key, never a value)."""


def check_key(key: str) -> None:
    if not 0 < len(key) <= 253 or not _KEY_CHARS.issuperset(key) or key == "." or key.startswith(".."):
        raise KeyRefused(f"key {key!r} is not a valid file name (letters, digits, '-', '_', '.'; not '..')")


class AtomicWriter:
    """One target folder; `write` replaces its whole key set at once."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = os.fspath(folder)

    def current(self) -> str | None:
        """The path of the version directory `..data` points to, or None before the first write."""
        try:
            return os.path.join(self.folder, os.readlink(os.path.join(self.folder, DATA_LINK)))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def written(self) -> bool:
        return self.current() is not None

    def write(self, data: Mapping[str, bytes], mode: int = 0o440) -> str:
        """Write `data` as a new version with file mode `mode`; returns the new version directory."""
        for key in data:
            check_key(key)
        os.makedirs(self.folder, exist_ok=True)
        old = self.current()
        stamp = time.strftime("..%Y_%m_%d_%H_%M_%S", time.gmtime()) + f".{time.time_ns() % 10**9:09d}"
        version = os.path.join(self.folder, stamp)
        suffix = 0
        while True:
            try:
                os.mkdir(version, 0o755)
                break
            except FileExistsError:
                suffix += 1
                version = os.path.join(self.folder, f"{stamp}.{suffix}")
        os.chmod(version, 0o755)  # mkdir's mode is masked by the umask; readers of other uids need x
        for key, value in data.items():
            fd = os.open(os.path.join(version, key), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                _write_all(fd, value)
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
        tmp = os.path.join(self.folder, _TMP_LINK)
        try:  # noqa: SIM105 (contextlib is one more import in every pod)
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        os.symlink(os.path.basename(version), tmp)
        os.rename(tmp, os.path.join(self.folder, DATA_LINK))  # the one atomic step: readers switch here
        self._link_keys(set(data))
        if old is not None and old != version:
            _remove_tree(old)
        self._prune(os.path.basename(version))
        return version

    def _prune(self, keep: str) -> None:
        # Versions left behind by an agent that stopped mid-write (the volume outlives it).
        for entry in os.scandir(self.folder):
            if (
                entry.name.startswith("..")
                and entry.name not in (DATA_LINK, keep)
                and entry.is_dir(follow_symlinks=False)
            ):
                _remove_tree(entry.path)

    def _link_keys(self, keys: set[str]) -> None:
        for entry in os.scandir(self.folder):
            if entry.name.startswith(".."):
                continue
            if entry.name not in keys and entry.is_symlink():
                os.unlink(entry.path)
        for key in keys:
            link = os.path.join(self.folder, key)
            if not os.path.islink(link):
                os.symlink(f"{DATA_LINK}/{key}", link)


def _write_all(fd: int, value: bytes) -> None:
    view = memoryview(value)
    while view:
        view = view[os.write(fd, view) :]


def _remove_tree(path: str) -> None:
    try:
        for entry in os.scandir(path):
            os.unlink(entry.path)
        os.rmdir(path)
    except FileNotFoundError:
        pass
