"""The Debian image builder's pure parts: the cache key and the reproducible layer (no download)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from tests.cluster import debian_image
from tests.cluster.debian_image import Project, Recipe


def test_the_cache_key_follows_the_inputs_and_nothing_else(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text("print('one')\n")
    recipe = Recipe(name="x", packages=("python3",), files=(("/app/app.py", app),))
    first = debian_image.key(recipe)
    assert debian_image.key(recipe) == first
    os.utime(app, (1, 1))  # times are not content
    assert debian_image.key(recipe) == first
    app.write_text("print('two')\n")
    assert debian_image.key(recipe) != first
    assert debian_image.key(recipe.with_(packages=("python3", "nodejs"))) != debian_image.key(recipe)


def test_a_project_is_keyed_by_its_wheel_inputs_only(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "p.py").write_text("X = 1\n")
    recipe = Recipe(name="x", packages=("python3",), projects=(Project(tmp_path, ("pyproject.toml", "src")),))
    first = debian_image.key(recipe)
    (tmp_path / "NOTES.md").write_text("not part of the wheel\n")
    assert debian_image.key(recipe) == first
    (tmp_path / "src" / "p.py").write_text("X = 2\n")
    assert debian_image.key(recipe) != first


def _tree(root: Path, mtime: int) -> None:
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/tool").write_text("#!/bin/true\n")
    (root / "usr/bin/tool").chmod(0o755)
    (root / "bin").symlink_to("usr/bin")
    (root / "home/nonroot").mkdir(parents=True)
    (root / "dev").mkdir()
    (root / "dev/null-ish").write_text("")
    (root / "var/log/apt").mkdir(parents=True)
    (root / "var/log/apt/history.log").write_text("a log with times\n")
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            os.utime(Path(dirpath) / name, (mtime, mtime), follow_symlinks=False)


def test_the_layer_is_the_same_bytes_whatever_the_file_times(tmp_path: Path) -> None:
    _tree(tmp_path / "a", 1_000)
    _tree(tmp_path / "b", 2_000_000)
    layer = debian_image._pack(tmp_path / "a")
    assert layer == debian_image._pack(tmp_path / "b")
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert "dev" in members and not any(name.startswith("dev/") for name in members)
    assert not any(name.startswith("var/log/") for name in members)
    assert members["bin"].issym() and members["bin"].linkname == "usr/bin"
    assert members["usr/bin/tool"].mode & 0o111
    assert all(m.mtime == 0 for m in members.values())
    assert members["home/nonroot"].uid == debian_image.USER_ID
    assert {m.uid for name, m in members.items() if name != "home/nonroot"} == {0}
