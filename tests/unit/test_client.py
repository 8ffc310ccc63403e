"""The reader helper on a folder laid out the way kubelet's atomic writer lays out a Secret volume.

Each version of the key set is a timestamped directory, `..data` links to the current one and
each key is a link `KEY -> ..data/KEY`; an update renames a new `..data` link over the old one
and then removes the old directory. The clock is a counter the tests move, never wall time.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import tmpfs_secrets
from tmpfs_secrets.client import ROOT_ENV, SecretNotFound, Secrets

SRC = Path(tmpfs_secrets.__file__).resolve().parents[1]


class AtomicWriter:
    """What kubelet does to a Secret volume's folder, step by step."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._serial = itertools.count()

    def write(self, values: dict[str, str], *, remove_old: bool = True) -> str:
        version = f"..2026_11_29_10_00_00.{next(self._serial):09d}"
        new = self.folder / version
        new.mkdir()
        for key, value in values.items():
            (new / key).write_text(value)
        old = self.current()
        tmp = self.folder / "..data_tmp"
        tmp.symlink_to(version)
        os.rename(tmp, self.folder / "..data")  # the atomic swap
        for key in values:
            link = self.folder / key
            if not link.is_symlink():
                link.symlink_to(f"..data/{key}")
        for link in self.folder.iterdir():
            if not link.name.startswith("..") and link.name not in values:
                link.unlink()
        if old and remove_old:
            self.remove(old)
        return version

    def current(self) -> str | None:
        link = self.folder / "..data"
        return os.readlink(link) if link.is_symlink() else None

    def remove(self, version: str) -> None:
        for f in (self.folder / version).iterdir():
            f.unlink()
        (self.folder / version).rmdir()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def writer(tmp_path: Path) -> AtomicWriter:
    return AtomicWriter(tmp_path / "shop-db")


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_reads_a_key_from_the_folder_under_the_root_by_name(
    writer: AtomicWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer.write({"RDS_PASSWORD": "first", "SUPABASE_SERVICE_ROLE_KEY": "role"})
    monkeypatch.setenv(ROOT_ENV, str(writer.folder.parent))
    secrets = Secrets("shop-db")
    assert secrets.path == writer.folder
    assert secrets.get("RDS_PASSWORD") == "first"
    assert secrets.get_bytes("SUPABASE_SERVICE_ROLE_KEY") == b"role"
    assert secrets.keys() == ["RDS_PASSWORD", "SUPABASE_SERVICE_ROLE_KEY"]


def test_the_default_folder_is_the_default_mount_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ROOT_ENV, raising=False)
    assert Secrets("shop-db").path == Path("/var/run/secrets/tmpfs-secrets.io/shop-db")
    with pytest.raises(ValueError, match="ExternalSecret's name"):
        Secrets()


def test_values_are_served_from_memory_within_the_ttl(writer: AtomicWriter, clock: Clock) -> None:
    version = writer.write({"RDS_PASSWORD": "first"})
    secrets = Secrets(path=writer.folder, ttl=5, clock=clock)
    assert secrets.get("RDS_PASSWORD") == "first"
    # Change the file behind the cache's back (kubelet never does): only a cached value reads "first".
    (writer.folder / version / "RDS_PASSWORD").write_text("changed in place")
    clock.now += 4.9
    assert secrets.get("RDS_PASSWORD") == "first"
    # After the TTL, `..data` still points at the same version, so the value is still not re-read.
    clock.now += 1
    assert secrets.get("RDS_PASSWORD") == "first"


def test_a_new_version_is_read_after_the_ttl(writer: AtomicWriter, clock: Clock) -> None:
    writer.write({"RDS_PASSWORD": "first"})
    secrets = Secrets(path=writer.folder, ttl=5, clock=clock)
    assert secrets.get("RDS_PASSWORD") == "first"
    before = secrets.version()
    writer.write({"RDS_PASSWORD": "rotated"}, remove_old=False)
    clock.now += 4
    assert secrets.get("RDS_PASSWORD") == "first"  # within the TTL
    assert secrets.version() == before
    clock.now += 1
    assert secrets.get("RDS_PASSWORD") == "rotated"
    assert secrets.version() not in (before, None)


def test_invalidate_checks_the_folder_at_once(writer: AtomicWriter, clock: Clock) -> None:
    writer.write({"RDS_PASSWORD": "first"})
    secrets = Secrets(path=writer.folder, ttl=60, clock=clock)
    assert secrets.get("RDS_PASSWORD") == "first"
    writer.write({"RDS_PASSWORD": "rotated"})
    assert secrets.get("RDS_PASSWORD") == "first"
    secrets.invalidate()  # e.g. the database refused the cached password
    assert secrets.get("RDS_PASSWORD") == "rotated"


def test_a_swap_that_removes_the_resolved_version_mid_read_moves_to_the_new_one(
    writer: AtomicWriter, clock: Clock
) -> None:
    writer.write({"RDS_USER": "u1", "RDS_PASSWORD": "p1"})
    secrets = Secrets(path=writer.folder, ttl=60, clock=clock)
    assert secrets.get("RDS_USER") == "u1"  # resolves version 1; RDS_PASSWORD not read yet
    writer.write({"RDS_USER": "u2", "RDS_PASSWORD": "p2"})  # version 1's directory is gone
    assert secrets.get("RDS_PASSWORD") == "p2"
    # The cache now belongs to version 2 as a whole: no u1 beside p2.
    assert secrets.get("RDS_USER") == "u2"
    assert secrets.get_all(["RDS_USER", "RDS_PASSWORD"]) == {"RDS_USER": "u2", "RDS_PASSWORD": "p2"}


def test_reads_during_many_swaps_never_fail_and_never_mix_versions(writer: AtomicWriter) -> None:
    writer.write({"RDS_USER": "0", "RDS_PASSWORD": "0"})
    secrets = Secrets(path=writer.folder, ttl=0)
    done = threading.Event()
    swaps = 300

    def rotate() -> None:
        for i in range(1, swaps + 1):
            writer.write({"RDS_USER": str(i), "RDS_PASSWORD": str(i)})
        done.set()

    thread = threading.Thread(target=rotate)
    thread.start()
    seen: set[str] = set()
    reads = 0
    try:
        while not done.is_set():
            pair = secrets.get_all(["RDS_USER", "RDS_PASSWORD"])
            assert pair["RDS_USER"] == pair["RDS_PASSWORD"], pair
            seen.add(pair["RDS_USER"])
            single = int(secrets.get("RDS_PASSWORD"))
            assert 0 <= single <= swaps
            reads += 1
    finally:
        thread.join()
    assert secrets.get("RDS_PASSWORD") == str(swaps)
    assert reads > 0
    assert len(seen) > 1, "the reader never overlapped a swap"


def test_a_plain_folder_without_an_atomic_writer_is_read_too(tmp_path: Path, clock: Clock) -> None:
    (tmp_path / "RDS_PASSWORD").write_text("plain")
    secrets = Secrets(path=tmp_path, ttl=5, clock=clock)
    assert secrets.get("RDS_PASSWORD") == "plain"
    assert secrets.version() is None
    (tmp_path / "RDS_PASSWORD").write_text("edited")
    clock.now += 5  # with no version to compare, every TTL re-reads
    assert secrets.get("RDS_PASSWORD") == "edited"


def test_without_a_folder_values_come_from_the_environment(tmp_path: Path) -> None:
    secrets = Secrets(path=tmp_path / "absent", environ={"RDS_PASSWORD": "from-env"})
    assert secrets.get("RDS_PASSWORD") == "from-env"
    assert secrets.get_all(["RDS_PASSWORD"]) == {"RDS_PASSWORD": "from-env"}
    assert secrets.version() is None
    with pytest.raises(SecretNotFound, match="no environment variable RDS_USER"):
        secrets.get("RDS_USER")
    assert secrets.get("RDS_USER", "fallback") == "fallback"


def test_a_mounted_folder_never_falls_back_to_the_environment(writer: AtomicWriter) -> None:
    writer.write({"RDS_PASSWORD": "mounted-value"})
    secrets = Secrets(path=writer.folder, environ={"RDS_USER": "env-value"})
    with pytest.raises(SecretNotFound) as raised:
        secrets.get("RDS_USER")
    message = str(raised.value)
    assert "RDS_USER" in message and "RDS_PASSWORD" in message  # names the keys that are there
    assert "mounted-value" not in message and "env-value" not in message


def test_the_fallback_can_be_turned_off(tmp_path: Path) -> None:
    secrets = Secrets(path=tmp_path / "absent", env_fallback=False, environ={"RDS_PASSWORD": "x"})
    with pytest.raises(SecretNotFound, match="does not exist"):
        secrets.get("RDS_PASSWORD")


@pytest.mark.parametrize("key", ["", "..data", "../etc/passwd", "a/b", "."])
def test_a_key_is_a_file_name(writer: AtomicWriter, key: str) -> None:
    writer.write({"RDS_PASSWORD": "x"})
    with pytest.raises(ValueError, match="not a key name"):
        Secrets(path=writer.folder).get(key)


def test_importing_the_client_needs_nothing_but_the_standard_library(tmp_path: Path) -> None:
    # -S: no site-packages at all, so kopf, kubernetes and boto3 could not load even if asked for.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import tmpfs_secrets.client as c; "
        "heavy = {'kopf', 'kubernetes', 'boto3', 'botocore', 'cachetools', 'yaml', 'aiohttp'}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy)); "
        "print(c.Secrets(path=sys.argv[2], environ={'K': 'v'}).get('K'))"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code, str(SRC), str(tmp_path / "absent")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out == ["[]", "v"]


def test_importing_the_client_with_the_operator_installed_loads_none_of_its_dependencies() -> None:
    # The package's __init__ stays light too: no importlib.metadata until __version__ is asked for.
    code = (
        "import sys, tmpfs_secrets.client; "
        "heavy = {'kopf', 'kubernetes', 'boto3', 'botocore', 'cachetools', 'importlib.metadata'}; "
        "print(sorted(m for m in sys.modules if m in heavy or m.split('.')[0] in heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
