"""The agent's atomic writer: kubelet's layout, modes, key removal, and no torn reads under swaps."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from tmpfs_secrets.agent.writer import DATA_LINK, AtomicWriter, KeyRefused
from tmpfs_secrets.client import Secrets


def test_layout_matches_kubelets_atomic_writer(tmp_path: Path) -> None:
    writer = AtomicWriter(tmp_path / "shop-db")
    assert not writer.written()
    version = writer.write({"USER": b"app", "PASSWORD": b"s3cret"}, 0o440)
    folder = tmp_path / "shop-db"
    version = Path(version)
    assert os.readlink(folder / DATA_LINK) == version.name
    assert version.name.startswith("..")
    assert os.readlink(folder / "PASSWORD") == f"{DATA_LINK}/PASSWORD"
    assert (folder / "PASSWORD").read_bytes() == b"s3cret"
    assert stat.S_IMODE((version / "PASSWORD").stat().st_mode) == 0o440
    assert stat.S_IMODE(version.stat().st_mode) == 0o755
    assert sorted(p.name for p in folder.iterdir()) == sorted([DATA_LINK, version.name, "PASSWORD", "USER"])


def test_new_version_replaces_old_and_drops_removed_keys(tmp_path: Path) -> None:
    writer = AtomicWriter(tmp_path)
    first = Path(writer.write({"A": b"1", "B": b"2"}, 0o400))
    second = Path(writer.write({"A": b"3"}, 0o444))
    assert not first.exists()
    assert (tmp_path / "A").read_bytes() == b"3"
    assert not os.path.lexists(tmp_path / "B")
    assert stat.S_IMODE((second / "A").stat().st_mode) == 0o444
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([DATA_LINK, second.name, "A"])


def test_leftovers_of_an_interrupted_write_are_pruned(tmp_path: Path) -> None:
    (tmp_path / "..2020_01_01_00_00_00.1").mkdir()
    (tmp_path / "..2020_01_01_00_00_00.1" / "A").write_bytes(b"old")
    version = Path(AtomicWriter(tmp_path).write({"A": b"new"}))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([DATA_LINK, version.name, "A"])


@pytest.mark.parametrize("key", ["..data", "../x", "a/b", "", ".", "..", "x" * 254])
def test_keys_that_could_escape_or_shadow_are_refused(tmp_path: Path, key: str) -> None:
    writer = AtomicWriter(tmp_path)
    writer.write({"A": b"1"})
    with pytest.raises(KeyRefused):
        writer.write({key: b"2", "A": b"2"})
    assert (tmp_path / "A").read_bytes() == b"1"  # nothing of the refused set was applied


def test_no_torn_reads_while_versions_are_swapped(tmp_path: Path) -> None:
    writer = AtomicWriter(tmp_path)
    writer.write({"USER": b"u0", "PASSWORD": b"p0"})
    stop = threading.Event()
    torn: list[tuple[str, str]] = []
    reads = [0]

    def reader() -> None:
        secrets = Secrets(path=tmp_path, ttl=0, env_fallback=False)
        while not stop.is_set():
            pair = secrets.get_all(("USER", "PASSWORD"))
            reads[0] += 1
            if pair["USER"][1:] != pair["PASSWORD"][1:]:
                torn.append((pair["USER"], pair["PASSWORD"]))

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(1, 500):
            writer.write({"USER": f"u{i}".encode(), "PASSWORD": f"p{i}".encode()})
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert reads[0] > 0
    assert torn == []
    assert (tmp_path / "PASSWORD").read_bytes() == b"p499"
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("..2")]) == 1
