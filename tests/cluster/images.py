"""Local OCI images for the node: nothing can be pulled, so images are written from local files.

One rootfs layer holds Debian's static busybox (`/bin/busybox` and a symlink per applet: a POSIX
shell, grep, cat, sleep, wget, httpd, ...) and the tests' `echo-webhook`. Two images share it:
the sandbox ("pause") image, whose command is `sleep infinity`, and the workload image
(`WORKLOAD`). The archive is an OCI image layout (`oci-layout`, `index.json` with the
`io.containerd.image.name` annotation, blobs) that `ctr images import` takes. It is cached under
`.cache/images/`, keyed by its inputs, and written reproducibly (fixed times and owners).
`write_oci_archive` is the writer; `debian_image.py` uses it for images built from Debian packages.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.cluster import binaries

BUSYBOX = Path("/bin/busybox")
_FORMAT = "1"  # bump when the layout of the image changes
_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Images:
    """An image archive and the names it holds."""

    archive: Path
    workload: str
    sandbox: str


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _add(tar: tarfile.TarFile, name: str, *, data: bytes | None = None, mode: int = 0o755, **kw: Any) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.mode = mode
    for key, value in kw.items():
        setattr(info, key, value)
    if data is not None:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def _rootfs(webhook: Path) -> bytes:
    applets = subprocess.run(
        [str(BUSYBOX), "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = {"bin", "sbin", "usr", "usr/bin", "usr/sbin", "usr/local", "usr/local/bin", "etc", "root"}
        dirs |= {"proc", "sys", "dev", "var", "run", "home"}
        for d in sorted(dirs):
            _add(tar, d, type=tarfile.DIRTYPE)
        _add(tar, "tmp", type=tarfile.DIRTYPE, mode=0o1777)
        _add(tar, "bin/busybox", data=BUSYBOX.read_bytes())
        for applet in sorted(set(applets)):
            if applet != "bin/busybox":
                _add(tar, applet, type=tarfile.SYMTYPE, linkname="/bin/busybox", mode=0o777)
        _add(tar, "usr/local/bin/echo-webhook", data=webhook.read_bytes())
        passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
        _add(tar, "etc/passwd", data=passwd, mode=0o644)
        _add(tar, "etc/group", data=b"root:x:0:\nnogroup:x:65534:\n", mode=0o644)
    return buf.getvalue()


def _image(
    blobs: dict[str, bytes], layer: bytes, diff_id: str, config_section: dict[str, Any]
) -> tuple[str, int]:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config_section,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    blobs[_sha(config_bytes)] = config_bytes
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": _sha(config_bytes),
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": _sha(layer),
                "size": len(layer),
            }
        ],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    blobs[_sha(manifest_bytes)] = manifest_bytes
    return _sha(manifest_bytes), len(manifest_bytes)


def write_oci_archive(path: Path, rootfs: bytes, images: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Write an OCI image layout tar at `path`: one gzip layer (`rootfs`, a tar) shared by `images`.

    Each image is (name, its config section: Env, Cmd, Entrypoint, User, WorkingDir, ...). The
    same inputs give the same bytes, so the archive's digests are stable.
    """
    layer = gzip.compress(rootfs, compresslevel=6, mtime=0)
    blobs: dict[str, bytes] = {_sha(layer): layer}
    entries = []
    for name, config_section in images:
        digest, size = _image(blobs, layer, _sha(rootfs), config_section)
        entries.append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest,
                "size": size,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
                },
            }
        )
    index = json.dumps({"schemaVersion": 2, "manifests": entries}, sort_keys=True).encode()
    tmp = path.with_suffix(".tmp")
    with tarfile.open(tmp, "w") as tar:
        _add(tar, "oci-layout", data=b'{"imageLayoutVersion":"1.0.0"}', mode=0o644)
        _add(tar, "index.json", data=index, mode=0o644)
        _add(tar, "blobs", type=tarfile.DIRTYPE)
        _add(tar, "blobs/sha256", type=tarfile.DIRTYPE)
        for digest, data in sorted(blobs.items()):
            _add(tar, f"blobs/sha256/{digest.split(':', 1)[1]}", data=data, mode=0o644)
    tmp.replace(path)


def _write_archive(path: Path, webhook: Path, workload: str, sandbox: str) -> None:
    def config(cmd: list[str]) -> dict[str, Any]:
        return {"Env": [_PATH_ENV], "Cmd": cmd, "WorkingDir": "/"}

    write_oci_archive(
        path, _rootfs(webhook), [(workload, config(["sh"])), (sandbox, config(["sleep", "infinity"]))]
    )


def busybox_images() -> Images:
    """The busybox archive (built once per set of inputs) and its two image names."""
    if not BUSYBOX.is_file():
        raise FileNotFoundError(f"{BUSYBOX} is missing: install Debian's busybox-static (make deps)")
    webhook = binaries.path("echo-webhook")
    key = hashlib.sha256(f"{_FORMAT} {_file_digest(BUSYBOX)} {_file_digest(webhook)}".encode()).hexdigest()[
        :12
    ]
    images = Images(
        archive=binaries.cache_root() / "images" / f"busybox-{key}.tar",
        workload=f"tmpfs-secrets.local/busybox:{key}",
        sandbox=f"tmpfs-secrets.local/pause:{key}",
    )
    if not images.archive.is_file():
        images.archive.parent.mkdir(parents=True, exist_ok=True)
        _write_archive(images.archive, webhook, images.workload, images.sandbox)
    return images
