"""Where the API server is and how to prove who we are: a kubeconfig, or the pod's ServiceAccount.

The operator reads these itself rather than through the `kubernetes` client package: that package
costs every replica about 18 MiB (kopf imports it whenever it is installed) for the few fields
read here. As client-go does: an explicit file, else the files of $KUBECONFIG (merged, the first
definition of a name wins), else ~/.kube/config, else the ServiceAccount mounted in a pod. From the
current context: the cluster's `server`, `certificate-authority(-data)`,
`insecure-skip-tls-verify` and `proxy-url`; the user's `token`, `tokenFile`,
`client-certificate(-data)` with `client-key(-data)`, or an `exec` credential plugin
(client.authentication.k8s.io v1 or v1beta1, returning a token), as `aws eks get-token` is.
Anything else (an `auth-provider`, a username and password) is refused with a message.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")


class KubeconfigError(Exception):
    """The kubeconfig (or the pod's ServiceAccount) cannot be used; the message says what to change."""


@dataclass(frozen=True)
class ExecPlugin:
    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    api_version: str = EXEC_API_VERSIONS[0]


@dataclass(frozen=True)
class Connection:
    server: str
    ca_file: str | None = None
    ca_data: str | None = None  # PEM
    insecure: bool = False
    token: str | None = None
    token_file: str | None = None  # read again as it is rotated (a pod's projected token is)
    cert_file: str | None = None
    cert_data: str | None = None  # PEM
    key_file: str | None = None
    key_data: str | None = None  # PEM
    exec: ExecPlugin | None = None
    proxy: str | None = None
    namespace: str | None = None


def load(path: str | None = None, env: Mapping[str, str] | None = None) -> Connection:
    """The connection of `path`, $KUBECONFIG, ~/.kube/config, or the pod's ServiceAccount."""
    env = os.environ if env is None else env
    if path:
        return from_kubeconfig([Path(path).expanduser()])
    listed = [Path(p).expanduser() for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    existing = [p for p in listed if p.is_file()]
    if existing:
        return from_kubeconfig(existing)
    home = Path(env.get("HOME") or Path.home()) / ".kube" / "config"
    if home.is_file():
        return from_kubeconfig([home])
    return in_cluster(env)


def in_cluster(env: Mapping[str, str], root: Path = SERVICE_ACCOUNT) -> Connection:
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port or not (root / "token").is_file():
        raise KubeconfigError(
            "no kubeconfig found ($KUBECONFIG, ~/.kube/config) and not running in a pod with a "
            "ServiceAccount token; set $KUBECONFIG to a kubeconfig file, or create ~/.kube/config"
        )
    namespace = root / "namespace"
    return Connection(
        server=f"https://{_host(host)}:{port}",
        ca_file=str(root / "ca.crt") if (root / "ca.crt").is_file() else None,
        token_file=str(root / "token"),
        namespace=namespace.read_text().strip() if namespace.is_file() else None,
    )


def from_kubeconfig(paths: Sequence[Path]) -> Connection:
    current: str | None = None
    named: dict[str, dict[str, dict[str, Any]]] = {"clusters": {}, "contexts": {}, "users": {}}
    folder: dict[tuple[str, str], Path] = {}  # relative paths are relative to their own file
    for path in paths:
        try:
            config = yaml.safe_load(path.read_text()) or {}
        except OSError as e:
            raise KubeconfigError(f"cannot read kubeconfig {path}: {e.strerror}") from e
        except yaml.YAMLError as e:
            # Not the parser's message: it quotes the offending line, which may hold a token.
            mark = getattr(e, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise KubeconfigError(f"kubeconfig {path} is not valid YAML{where}") from None
        if not isinstance(config, dict):
            raise KubeconfigError(f"kubeconfig {path} is not a YAML mapping")
        current = current or config.get("current-context")
        for section, field in (("clusters", "cluster"), ("contexts", "context"), ("users", "user")):
            for entry in config.get(section) or []:
                name = str(entry.get("name"))
                if name not in named[section]:
                    named[section][name] = entry.get(field) or {}
                    folder[(section, name)] = path.parent
    if not current:
        raise KubeconfigError(
            f"kubeconfig {_names(paths)} has no current-context; set one (kubectl config use-context)"
        )
    context = named["contexts"].get(current)
    if context is None:
        raise KubeconfigError(
            f"kubeconfig {_names(paths)}: current-context {current!r} is not among its contexts"
        )
    cluster_name, user_name = str(context.get("cluster")), str(context.get("user") or "")
    cluster = named["clusters"].get(cluster_name)
    if cluster is None or not cluster.get("server"):
        raise KubeconfigError(
            f"kubeconfig {_names(paths)}: context {current!r} names cluster {cluster_name!r}, "
            "which has no server"
        )
    user = named["users"].get(user_name, {})
    for unsupported in ("auth-provider", "username", "password"):
        if user.get(unsupported):
            raise KubeconfigError(
                f"kubeconfig user {user_name!r}: {unsupported} is not supported; use a token, a client "
                "certificate or an exec credential plugin"
            )
    cluster_dir = folder.get(("clusters", cluster_name), paths[0].parent)
    user_dir = folder.get(("users", user_name), paths[0].parent)
    # As in client-go, data wins over a file naming the same thing.
    ca_data = _pem(cluster.get("certificate-authority-data"), "certificate-authority-data")
    cert_data = _pem(user.get("client-certificate-data"), "client-certificate-data")
    key_data = _pem(user.get("client-key-data"), "client-key-data")
    return Connection(
        server=str(cluster["server"]).rstrip("/"),
        ca_file=None if ca_data else _path(cluster.get("certificate-authority"), cluster_dir),
        ca_data=ca_data,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        proxy=cluster.get("proxy-url") or None,
        token=user.get("token") or None,
        token_file=_path(user.get("tokenFile"), user_dir),
        cert_file=None if cert_data else _path(user.get("client-certificate"), user_dir),
        cert_data=cert_data,
        key_file=None if key_data else _path(user.get("client-key"), user_dir),
        key_data=key_data,
        exec=_exec(user.get("exec"), user_name),
        namespace=context.get("namespace") or None,
    )


def _exec(spec: Any, user: str) -> ExecPlugin | None:
    if not spec:
        return None
    api_version = str(spec.get("apiVersion") or "")
    if api_version not in EXEC_API_VERSIONS:
        raise KubeconfigError(
            f"kubeconfig user {user!r}: exec apiVersion {api_version!r} is not supported; use one of "
            + ", ".join(EXEC_API_VERSIONS)
        )
    if not spec.get("command"):
        raise KubeconfigError(f"kubeconfig user {user!r}: exec has no command")
    return ExecPlugin(
        command=str(spec["command"]),
        args=tuple(str(a) for a in spec.get("args") or ()),
        env=tuple((str(e["name"]), str(e["value"])) for e in spec.get("env") or ()),
        api_version=api_version,
    )


def _path(value: Any, folder: Path) -> str | None:
    if not value:
        return None
    path = Path(str(value)).expanduser()
    return str(path if path.is_absolute() else folder / path)


def _pem(value: Any, field: str) -> str | None:
    if not value:
        return None
    try:
        return base64.b64decode(str(value), validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError) as e:
        raise KubeconfigError(f"kubeconfig {field} is not base64-encoded PEM") from e


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host  # an IPv6 address


def _names(paths: Sequence[Path]) -> str:
    return ", ".join(str(p) for p in paths)
