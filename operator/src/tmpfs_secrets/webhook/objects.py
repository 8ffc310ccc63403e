"""The validating webhook's decision for ExternalSecrets, SecretStores and ClusterSecretStores.

It runs the operator's own spec parsers (`tmpfs_secrets.api`), so every check the reconciler
makes is made at admission too, and a check added to the parsers is enforced here with no change.
On top of them come the checks that only make sense before an object is stored: a `mount.path`
in a folder the container runtime or Kubernetes owns, and keys that `data` and `dataFrom` would
both deliver, where that can be known without fetching anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tmpfs_secrets.api import ExternalSecretSpec, Extract, Find, parse_external_secret, parse_store
from tmpfs_secrets.api.duration import DEFAULT_MIN_REFRESH_INTERVAL
from tmpfs_secrets.engine.keys import find_key, split_path
from tmpfs_secrets.errors import SpecError
from tmpfs_secrets.kube.names import CLUSTER_SECRET_STORE, EXTERNAL_SECRET, SECRET_STORE
from tmpfs_secrets.webhook.paths import mount_path_problem
from tmpfs_secrets.webhook.review import Verdict


@dataclass(frozen=True)
class Rules:
    """The operator settings its parsers check against (the operator's defaults unless given)."""

    allow_operator_identity: bool = False
    min_refresh_interval: float = DEFAULT_MIN_REFRESH_INTERVAL


def validate(kind: str, obj: Mapping[str, Any], namespace: str, rules: Rules | None = None) -> Verdict:
    """Allow or refuse one object (CREATE or UPDATE), with a message that says what to change."""
    rules = rules or Rules()
    body = _with_namespace(obj, namespace)
    try:
        if kind == EXTERNAL_SECRET.kind:
            return _external_secret(body, rules)
        if kind in (SECRET_STORE.kind, CLUSTER_SECRET_STORE.kind):
            parse_store({**body, "kind": kind}, allow_operator_identity=rules.allow_operator_identity)
            return Verdict()
    except SpecError as e:
        return Verdict.deny(f"{kind} {_name(body)}: {e.message}")
    return Verdict()


def _external_secret(body: Mapping[str, Any], rules: Rules) -> Verdict:
    spec = parse_external_secret(body, min_refresh_interval=rules.min_refresh_interval)
    raw = body.get("spec")
    mount = raw.get("mount") if isinstance(raw, Mapping) else None
    path = mount.get("path") if isinstance(mount, Mapping) else None
    if isinstance(path, str) and path:
        problem = mount_path_problem(path, "spec.mount.path")
        if problem:
            raise SpecError(problem)
    collisions = key_collisions(spec)
    if collisions:
        raise SpecError(collisions[0])
    return Verdict()


def key_collisions(spec: ExternalSecretSpec) -> list[str]:
    """Keys a `data` entry and a `dataFrom` entry would both deliver, as far as the spec shows.

    An `extract` of a secret delivers each top-level JSON key, so a `data` entry that reads the
    property `p` (or `p.x`) of the same secret under the key `p` collides with it; a `find` over a
    path delivers every parameter under it, so a `data` entry that reads one of those parameters
    collides when its key is the one `find` gives that parameter. Other collisions depend on the
    values in AWS and are resolved at sync time (the `data` entry wins).
    """
    problems = []
    for i, item in enumerate(spec.data):
        for j, source in enumerate(spec.data_from):
            if isinstance(source, Extract):
                if (
                    source.key == item.remote.key
                    and source.version == item.remote.version
                    and item.remote.property
                    and split_path(item.remote.property)[0] == item.secret_key
                ):
                    problems.append(
                        f"spec.data[{i}] and spec.dataFrom[{j}] both deliver key {item.secret_key!r} "
                        f"(the extract of {source.key} already has its top-level key {item.secret_key!r}); "
                        f"remove spec.data[{i}] or give it another secretKey"
                    )
            elif isinstance(source, Find) and source.path is not None and source.name is None:
                # A search by name or tags: which secrets it finds depends on AWS.
                prefix = source.path if source.path.endswith("/") else source.path + "/"
                if (
                    not source.tags
                    and item.remote.key.startswith(prefix)
                    and find_key(source.path, item.remote.key) == item.secret_key
                ):
                    problems.append(
                        f"spec.data[{i}] and spec.dataFrom[{j}] both deliver key {item.secret_key!r} "
                        f"(find under {source.path} already delivers {item.remote.key} "
                        f"as {item.secret_key!r}); "
                        f"remove spec.data[{i}] or give it another secretKey"
                    )
    return problems


def _with_namespace(obj: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """The object with the request's namespace filled in, as the API server will store it."""
    body = dict(obj)
    meta = dict(body.get("metadata") or {})
    if namespace and not meta.get("namespace"):
        meta["namespace"] = namespace
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = f"{meta['generateName']}x"  # the API server adds the suffix after admission
    body["metadata"] = meta
    return body


def _name(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata") or {}
    ns, name = meta.get("namespace"), meta.get("name") or meta.get("generateName") or "?"
    return f"{ns}/{name}" if ns else str(name)
