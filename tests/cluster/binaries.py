"""Find or build the cluster's binaries, the way envtest finds them.

Lookup order for a binary `name`: `TEST_ASSET_<NAME>` (upper case, `-` as `_`), then
`$KUBEBUILDER_ASSETS/<name>`, then the project's cache folder (`.cache/tools/`, git-ignored, or
`$TMPFS_SECRETS_CACHE/tools/`). What is found nowhere is built from its Go module under `tools/`,
each tool in a small module of its own so that one tool's dependencies never move another's.

`python -m tests.cluster.binaries [NAME ...]` builds what is missing and prints how long it took.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
K8S_VERSION = "v1.37.2"
# The cert-manager module tools/cert-manager builds against (keep equal to its go.mod).
CERT_MANAGER_VERSION = "v1.21.2"
CERT_MANAGER_MODULE = "tmpfs-secrets.io/tools/cert-manager"


def cache_root() -> Path:
    return Path(os.environ.get("TMPFS_SECRETS_CACHE", REPO / ".cache")).resolve()


def _k8s_ldflags() -> list[str]:
    major, minor = K8S_VERSION.lstrip("v").split(".")[:2]
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={K8S_VERSION}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return flags


@dataclass(frozen=True)
class Group:
    """One Go module under tools/ and how its commands are built."""

    module: str  # folder under tools/
    version: str
    tags: str = ""
    cgo: bool = False
    ldflags: tuple[str, ...] = ()
    commands: dict[str, str] = field(default_factory=dict)  # binary name -> Go package

    @property
    def cache_dir(self) -> Path:
        return cache_root() / "tools" / f"{self.module}-{self.version}"


GROUPS: tuple[Group, ...] = (
    Group(
        module="k8sbin",
        version=K8S_VERSION,
        tags="notest,grpcnotrace,selinux",
        ldflags=tuple(_k8s_ldflags()),
        commands={
            name: f"k8s.io/kubernetes/cmd/{name}"
            for name in (
                "kube-apiserver",
                "kube-controller-manager",
                "kubectl",
                "kube-scheduler",
                "kubelet",
                "kube-proxy",
            )
        },
    ),
    Group(module="etcd", version="v3.6.16", commands={"etcd": "go.etcd.io/etcd/server/v3"}),
    Group(
        module="helm",
        version="v3.22.0",
        ldflags=("-X helm.sh/helm/v3/internal/version.version=v3.22.0",),
        commands={"helm": "helm.sh/helm/v3/cmd/helm"},
    ),
    Group(
        module="containerd",
        version="v2.4.2",
        tags="no_btrfs,no_devmapper,no_zfs",
        ldflags=("-X github.com/containerd/containerd/v2/version.Version=v2.4.2",),
        commands={
            "containerd": "github.com/containerd/containerd/v2/cmd/containerd",
            "containerd-shim-runc-v2": "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2",
            "ctr": "github.com/containerd/containerd/v2/cmd/ctr",
        },
    ),
    Group(
        module="runc",
        version="v1.5.3",
        tags="seccomp",
        cgo=True,  # seccomp needs libseccomp through cgo; without it every sandbox fails
        ldflags=("-X main.version=1.5.3",),
        commands={"runc": "github.com/opencontainers/runc"},
    ),
    Group(
        module="cni",
        version="v1.10.0",
        commands={
            "bridge": "github.com/containernetworking/plugins/plugins/main/bridge",
            "host-local": "github.com/containernetworking/plugins/plugins/ipam/host-local",
            "loopback": "github.com/containernetworking/plugins/plugins/main/loopback",
            "portmap": "github.com/containernetworking/plugins/plugins/meta/portmap",
        },
    ),
    # cert-manager's controller and cainjector for the chart's certManager mode (node tests only);
    # the version is the cert-manager module's (tools/cert-manager/go.mod says why it is built so).
    # The cache is keyed by it: after changing tools/cert-manager's own code, remove
    # .cache/tools/cert-manager-<version>/ so the next `make tools` rebuilds.
    Group(
        module="cert-manager",
        version=CERT_MANAGER_VERSION,
        ldflags=(f"-X github.com/cert-manager/cert-manager/pkg/util.AppVersion={CERT_MANAGER_VERSION}",),
        commands={
            "cert-manager-controller": f"{CERT_MANAGER_MODULE}/controller",
            "cert-manager-cainjector": f"{CERT_MANAGER_MODULE}/cainjector",
        },
    ),
    # The node tests' admission webhook (standard library only); bump the version when it changes.
    Group(
        module="echo-webhook",
        version="v1",
        commands={"echo-webhook": "tmpfs-secrets.local/echo-webhook"},
    ),
)

CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
NODE = (
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "runc",
    "bridge",
    "host-local",
    "loopback",
    "portmap",
    "echo-webhook",
)
CERT_MANAGER = ("cert-manager-controller", "cert-manager-cainjector")
ALL = (*CONTROL_PLANE, "helm", *NODE, *CERT_MANAGER)


def group_of(name: str) -> Group:
    for group in GROUPS:
        if name in group.commands:
            return group
    raise KeyError(f"unknown binary {name!r}; known: {', '.join(ALL)}")


def find(name: str) -> Path | None:
    """Where `name` is, by envtest's lookup order, or None."""
    override = os.environ.get("TEST_ASSET_" + name.upper().replace("-", "_"))
    if override:
        return Path(override)
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and (Path(assets) / name).is_file():
        return Path(assets) / name
    cached = group_of(name).cache_dir / name
    return cached if cached.is_file() else None


def path(name: str) -> Path:
    """The binary `name`, building it if it is found nowhere."""
    found = find(name)
    if found is None:
        ensure([name])
        found = find(name)
    if found is None or not found.is_file():
        raise FileNotFoundError(f"{name} was not found and could not be built; see the output above")
    return found


def ensure(names: Iterable[str], log: object = sys.stderr) -> float:
    """Build every binary in `names` that is found nowhere; return the seconds spent building."""
    missing: dict[str, list[str]] = {}
    for name in names:
        if find(name) is None:
            missing.setdefault(group_of(name).module, []).append(name)
    started = time.monotonic()
    for group in GROUPS:
        if group.module in missing:
            _build(group, missing[group.module], log)
    return time.monotonic() - started


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise FileNotFoundError(
            "Go 1.26+ is needed to build the cluster binaries. Install Go, or point KUBEBUILDER_ASSETS "
            "(or TEST_ASSET_<NAME>) at prebuilt binaries."
        )
    return go


def _go_binary_name(package: str) -> str:
    """The file `go build -o dir/` writes: the last path element, skipping a major-version suffix."""
    parts = package.split("/")
    last = parts[-1]
    return parts[-2] if len(parts) > 1 and last[0] == "v" and last[1:].isdigit() else last


def _build(group: Group, names: Sequence[str], log: object) -> None:
    started = time.monotonic()
    print(
        f"building {', '.join(names)} ({group.version}) from tools/{group.module} ...", file=log, flush=True
    )  # type: ignore[call-overload]
    env = dict(os.environ, GOTOOLCHAIN="local", CGO_ENABLED="1" if group.cgo else "0", GOFLAGS="-mod=mod")
    group.cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=group.cache_dir) as out:
        cmd = [_go(), "build", "-trimpath", "-o", out + "/"]
        if group.tags:
            cmd += ["-tags", group.tags]
        cmd += ["-ldflags", " ".join(("-s", "-w", *group.ldflags))]
        cmd += [group.commands[n] for n in names]
        subprocess.run(cmd, cwd=REPO / "tools" / group.module, env=env, check=True)
        for name in names:
            os.replace(Path(out) / _go_binary_name(group.commands[name]), group.cache_dir / name)
    print(f"built {', '.join(names)} in {time.monotonic() - started:.0f}s", file=log, flush=True)  # type: ignore[call-overload]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster.binaries", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"binaries to ensure (default: all): {' '.join(ALL)}")
    parser.add_argument("--control-plane", action="store_true", help="only the control plane's binaries")
    args = parser.parse_args(argv)
    names = args.names or (CONTROL_PLANE if args.control_plane else ALL)
    started = time.monotonic()
    spent = ensure(names)
    for name in names:
        print(f"  {name:26} {find(name)}")
    if set(CERT_MANAGER) & set(names):
        # Its CRDs come from the same module's source; fetch it now, while the Go proxy is reachable.
        from tests.cluster import cert_manager

        print(f"  {'cert-manager CRDs':26} {cert_manager.module_dir() / 'deploy' / 'crds'}")
    print(f"tools ready in {time.monotonic() - started:.0f}s ({spent:.0f}s building)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
