"""Build OCI images from Debian packages and PyPI wheels, without Docker or a registry.

    from tests.cluster.debian_image import Recipe, build, find

    recipe = Recipe(name="python-reader", packages=("python3",), files=(("/app/x.py", Path("x.py")),))
    built = build(recipe)           # Built: .archive (OCI layout tar), .image, .size, .seconds
    node.import_images(built.archive)

The root filesystem comes from `mmdebstrap --variant=extract`: only the named packages and their
hard dependencies are unpacked, no maintainer script runs, and the mirror argument is the host's
own apt sources file, so no mirror host is written here. Then, on the host:

- PyPI wheels (`wheels`) are installed with `pip install --only-binary=:all: --target` into the
  image's `dist-packages`, by a host interpreter of the image's Python minor version (no compiler
  is ever used; pip's console scripts and `direct_url.json`, which name host paths, are dropped);
  local Python projects (`projects`) are first built into wheels (`pip wheel --no-deps`) and
  installed the same way, with their dependencies;
- `files` are copied in (a host file or folder each, at a path in the image);
- `/etc/passwd` and `/etc/group` get `root` and the image's user, `nonroot` (65532);
- Python sources are compiled inside the rootfs (`chroot ... python3 -m compileall` with
  unchecked-hash pycs), because a read-only root can never write them at run time and imports
  are about 3 times slower without them.

The rootfs is packed as one layer with fixed times and owners (root, except the user's home) and
no device nodes, so the same inputs give the same image. Archives are cached under
`.cache/images/`, keyed by a hash of the recipe, the host's apt sources and the copied files:
`find(recipe)` looks one up without building (inside the bubble, where nothing can be
downloaded), `build(recipe)` builds it when missing (on the host: it downloads packages).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.cluster import binaries
from tests.cluster.images import write_oci_archive

_FORMAT = "1"  # bump when the way images are assembled changes
REPOSITORY = "tmpfs-secrets.local"
USER_ID = 65532
HOME = "/home/nonroot"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SOURCES_FILES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
# Documentation, manual pages and translations are of no use in a container; licences stay.
_DPKG_EXCLUDES = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/lintian/*",
)
# Left out of the layer: device nodes (the runtime makes /dev) and what apt keeps for itself.
_SKIP = re.compile(r"^(dev/.+|var/cache/apt/.+|var/lib/apt/lists/.+|var/log/.+)$")


@dataclass(frozen=True)
class Project:
    """A local Python project (a folder with pyproject.toml) and the files its wheel is built from."""

    path: Path
    inputs: tuple[str, ...] = ("pyproject.toml",)  # files or folders, relative to `path`


@dataclass(frozen=True)
class Recipe:
    """What goes into an image. Every field is part of the cache key."""

    name: str  # the image is tmpfs-secrets.local/<name>:<key>
    packages: tuple[str, ...]  # Debian packages; their hard dependencies come along
    wheels: tuple[str, ...] = ()  # pip requirement specifiers, installed from binary wheels only
    projects: tuple[Project, ...] = ()  # local Python projects, built into wheels and installed
    files: tuple[tuple[str, Path], ...] = ()  # (path in the image, host file or folder)
    env: tuple[str, ...] = ()  # KEY=value, besides PATH and LANG; "{python}" becomes e.g. "3.11"
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    workdir: str = "/"
    suite: str = ""  # the Debian release; default: the host's (VERSION_CODENAME)

    def with_(self, **changes: object) -> Recipe:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Built:
    """A built (or cached) image archive."""

    archive: Path
    image: str
    seconds: float  # build time; 0 when it came from the cache
    unpacked_bytes: int  # the rootfs layer before compression

    @property
    def archive_bytes(self) -> int:
        return self.archive.stat().st_size


def _say(message: str) -> None:
    print(f"[image] {message}", flush=True)


def sources_file() -> Path:
    """The host's apt sources, passed to mmdebstrap as its mirror argument."""
    for path in SOURCES_FILES:
        if path.is_file() and path.read_text().strip():
            return path
    raise FileNotFoundError(
        f"no apt sources file ({' or '.join(map(str, SOURCES_FILES))}) to take packages from"
    )


def host_suite() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"')
    raise RuntimeError("cannot tell the host's Debian release: set Recipe.suite")


def _walk(path: Path) -> Iterator[Path]:
    if path.is_file():
        yield path
        return
    for root, dirs, files in os.walk(path):
        # egg-info is written by the build itself (and by editable installs): never an input.
        dirs[:] = sorted(
            d for d in dirs if d not in ("__pycache__", "node_modules") and not d.endswith(".egg-info")
        )
        for name in sorted(files):
            if not name.endswith(".pyc"):
                yield Path(root) / name


def key(recipe: Recipe) -> str:
    """The cache key: a hash of everything that goes into the image."""
    digest = hashlib.sha256()
    fields = dataclasses.asdict(recipe)
    fields["files"] = [[dest, str(src)] for dest, src in recipe.files]
    fields["projects"] = [_project_digest(project) for project in recipe.projects]
    fields["suite"] = recipe.suite or host_suite()
    digest.update(json.dumps({"format": _FORMAT, "recipe": fields}, sort_keys=True).encode())
    digest.update(sources_file().read_bytes())
    for dest, src in recipe.files:
        if not src.exists():
            raise FileNotFoundError(f"{src} (for {dest} in image {recipe.name}) does not exist")
        for path in _walk(src):
            digest.update(f"{dest} {path.relative_to(src) if path != src else ''}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _project_digest(project: Project) -> str:
    """A hash of the files a project's wheel is built from."""
    digest = hashlib.sha256()
    for name in project.inputs:
        source = project.path / name
        if not source.exists():
            raise FileNotFoundError(f"{source} (an input of the project {project.path.name}) does not exist")
        for path in _walk(source):
            digest.update(f"{path.relative_to(project.path)}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _archive(recipe: Recipe, image_key: str) -> Path:
    return binaries.cache_root() / "images" / f"{recipe.name}-{image_key}.tar"


def _image_name(recipe: Recipe, image_key: str) -> str:
    return f"{REPOSITORY}/{recipe.name}:{image_key}"


def find(recipe: Recipe) -> Built | None:
    """The cached archive of `recipe`, or None when it has not been built (no download here)."""
    image_key = key(recipe)
    archive = _archive(recipe, image_key)
    if not archive.is_file():
        return None
    meta = (
        json.loads(archive.with_suffix(".json").read_text()) if archive.with_suffix(".json").is_file() else {}
    )
    return Built(archive, _image_name(recipe, image_key), 0.0, int(meta.get("unpacked_bytes", 0)))


def require(recipe: Recipe) -> Built:
    """The cached archive of `recipe`; a clear error when it was never built."""
    built = find(recipe)
    if built is None:
        raise FileNotFoundError(
            f"image {recipe.name} is not built: run `make images` on the host (it downloads Debian "
            "packages, which the bubble cannot)"
        )
    return built


def build(recipe: Recipe, say: Callable[[str], None] = _say) -> Built:
    """The archive of `recipe`, built now (on the host, with network) unless cached."""
    cached = find(recipe)
    if cached is not None:
        return cached
    image_key = key(recipe)
    archive = _archive(recipe, image_key)
    work = archive.parent / f"build-{recipe.name}-{image_key}"
    if work.exists():
        _remove_tree(work)
    work.mkdir(parents=True)
    started = time.monotonic()
    try:
        rootfs = work / "rootfs"
        _debootstrap(recipe, rootfs, say)
        python = _python_version(rootfs)
        if recipe.wheels or recipe.projects:
            _pip_install(recipe, rootfs, python, work, say)
        _copy_files(recipe, rootfs)
        _add_user(rootfs)
        if python:
            _compile(rootfs, python, recipe, say)
        step = time.monotonic()
        layer = _pack(rootfs)
        write_oci_archive(archive, layer, [(_image_name(recipe, image_key), _config(recipe, python))])
        say(
            f"packed {len(layer) / 2**20:.0f} MB into {archive.stat().st_size / 2**20:.0f} MB "
            f"in {time.monotonic() - step:.0f}s"
        )
    finally:
        _remove_tree(work)
    seconds = time.monotonic() - started
    archive.with_suffix(".json").write_text(json.dumps({"unpacked_bytes": len(layer), "seconds": seconds}))
    say(f"built {_image_name(recipe, image_key)} in {seconds:.0f}s")
    return Built(archive, _image_name(recipe, image_key), seconds, len(layer))


# --- steps ---------------------------------------------------------------------------------------


def _run(args: list[str], what: str, **kw: object) -> None:
    result = subprocess.run(args, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-20:])
        raise RuntimeError(f"{what} failed (exit {result.returncode}):\n{tail}")


def _debootstrap(recipe: Recipe, rootfs: Path, say: Callable[[str], None]) -> None:
    if shutil.which("mmdebstrap") is None:
        raise FileNotFoundError("mmdebstrap is missing: install Debian's mmdebstrap (make deps)")
    step = time.monotonic()
    args = ["mmdebstrap", "--variant=extract", "--quiet", f"--include={','.join(recipe.packages)}"]
    args += [f"--dpkgopt={opt}" for opt in _DPKG_EXCLUDES]
    args += [recipe.suite or host_suite(), str(rootfs), str(sources_file())]
    _run(args, f"mmdebstrap of {', '.join(recipe.packages)}")
    say(
        f"{recipe.name}: Debian packages {', '.join(recipe.packages)} "
        f"unpacked in {time.monotonic() - step:.0f}s"
    )


def _python_version(rootfs: Path) -> str | None:
    """The image's Python as "3.11", or None when it has none."""
    found = sorted(
        p.name for p in (rootfs / "usr/bin").glob("python3.*") if re.fullmatch(r"python3\.\d+", p.name)
    )
    return found[-1].removeprefix("python") if found else None


def _host_python(version: str) -> str:
    """A host interpreter with pip, of the image's minor version (wheels must match its ABI)."""
    candidates = [sys.executable, f"python{version}", f"/usr/bin/python{version}"]
    for candidate in candidates:
        exe = shutil.which(candidate) or candidate
        probe = subprocess.run(
            [exe, "-c", "import sys, pip; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return exe
    raise RuntimeError(
        f"the image has Python {version}; install python{version} with pip on the host for its wheels"
    )


def _pip_install(
    recipe: Recipe, rootfs: Path, python: str | None, work: Path, say: Callable[[str], None]
) -> None:
    if python is None:
        raise ValueError("wheels need Python in the image: add python3 to the packages")
    step = time.monotonic()
    host = _host_python(python)
    pip = [host, "-m", "pip", "--disable-pip-version-check", "--quiet", "--no-cache-dir"]
    out = work / "wheels"
    for project in recipe.projects:
        _run(
            [*pip, "wheel", "--no-deps", "--wheel-dir", str(out), str(project.path)],
            f"building a wheel of {project.path}",
        )
    local = sorted(str(w) for w in out.glob("*.whl"))
    target = rootfs / f"usr/local/lib/python{python}/dist-packages"
    args = [*pip, "install", "--no-compile", "--only-binary=:all:", "--no-warn-script-location"]
    args += ["--target", str(target), *recipe.wheels, *local]
    _run(args, f"pip install of {', '.join(recipe.wheels + tuple(Path(w).name for w in local))}")
    # Console scripts and direct_url.json name host paths; `python3 -m ...` is the way in.
    shutil.rmtree(target / "bin", ignore_errors=True)
    for url in target.glob("*.dist-info/direct_url.json"):
        url.unlink()
    installed = sorted(d.name.removesuffix(".dist-info") for d in target.glob("*.dist-info"))
    say(f"{len(installed)} Python distributions installed in {time.monotonic() - step:.0f}s")


def _copy_files(recipe: Recipe, rootfs: Path) -> None:
    for dest, src in recipe.files:
        for path in _walk(src):
            to = rootfs / dest.lstrip("/") / (path.relative_to(src) if path != src else "")
            to.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, to)
            to.chmod(0o755 if os.access(path, os.X_OK) else 0o644)


def _add_user(rootfs: Path) -> None:
    etc = rootfs / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text(
        f"root:x:0:0:root:/root:/usr/sbin/nologin\nnonroot:x:{USER_ID}:{USER_ID}:nonroot:{HOME}:/usr/sbin/nologin\n"
    )
    (etc / "group").write_text(f"root:x:0:\nnonroot:x:{USER_ID}:\n")
    (rootfs / HOME.lstrip("/")).mkdir(parents=True, exist_ok=True)
    tmp = rootfs / "tmp"
    tmp.mkdir(exist_ok=True)
    tmp.chmod(0o1777)


def _compile(rootfs: Path, python: str, recipe: Recipe, say: Callable[[str], None]) -> None:
    step = time.monotonic()
    folders = [
        f"/usr/lib/python{python}",
        "/usr/lib/python3/dist-packages",
        f"/usr/local/lib/python{python}",
    ]
    folders += [dest for dest, _ in recipe.files]
    present = [f for f in folders if (rootfs / f.lstrip("/")).exists()]
    # -j1: no multiprocessing, which would want /dev/shm inside the chroot.
    args = [
        shutil.which("chroot") or "/usr/sbin/chroot",
        str(rootfs),
        f"/usr/bin/python{python}",
        "-m",
        "compileall",
        "-q",
        "-j1",
    ]
    args += ["--invalidation-mode", "unchecked-hash", "-x", r"/(test|tests|lib2to3/tests)/", *present]
    _run(args, "compiling Python sources in the image", env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    say(f"Python sources compiled in {time.monotonic() - step:.0f}s")


def _pack(rootfs: Path) -> bytes:
    """The rootfs as a tar with fixed times and owners, in a stable order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in _tree(rootfs):
            name = path.relative_to(rootfs).as_posix()
            if _SKIP.match(name):
                continue
            info = tar.gettarinfo(str(path), arcname=name)
            if info.type in (tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE):
                continue
            info.mtime = 0
            info.uid = info.gid = USER_ID if name == HOME.lstrip("/") else 0
            info.uname = info.gname = ""
            if info.isreg():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


def _tree(root: Path) -> Iterator[Path]:
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        here = Path(dirpath)
        # Symlinks to folders are entries, not folders to descend into.
        for name in sorted(files + [d for d in dirs if (here / d).is_symlink()]):
            yield here / name
        real = [d for d in dirs if not (here / d).is_symlink()]
        dirs[:] = real
        for d in real:
            yield here / d


def _config(recipe: Recipe, python: str | None) -> dict[str, object]:
    env = [PATH_ENV, "LANG=C.UTF-8", f"HOME={HOME}"]
    if python:
        env += ["PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"]
    env += [item.replace("{python}", python or "") for item in recipe.env]
    config: dict[str, object] = {"Env": env, "User": f"{USER_ID}:{USER_ID}", "WorkingDir": recipe.workdir}
    if recipe.entrypoint:
        config["Entrypoint"] = list(recipe.entrypoint)
    if recipe.cmd:
        config["Cmd"] = list(recipe.cmd)
    return config


def _remove_tree(path: Path) -> None:
    # mmdebstrap leaves read-only folders behind; make them writable so they can go.
    for dirpath, dirs, _ in os.walk(path):
        for d in dirs:
            full = Path(dirpath) / d
            if not full.is_symlink():
                full.chmod(0o755)
    shutil.rmtree(path, ignore_errors=True)
