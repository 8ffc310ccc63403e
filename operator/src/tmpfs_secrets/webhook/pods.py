"""The pod webhook's decision: which Secret volumes and read-only mounts an opted-in pod gets.

A pod opts in with the label `tmpfs-secrets.io/inject: "true"` and names ExternalSecrets of its
namespace in the annotation `tmpfs-secrets.io/secrets`. Each name becomes one Secret volume (the
ExternalSecret's target Secret, with `mount.defaultMode`) and a read-only mount at `mount.path` in
every container, or in those listed in `tmpfs-secrets.io/containers`. Mounts never use `subPath`,
which would freeze the file at its first value.

Everything here is a pure function of the pod and the operator's watch-fed index: admission makes
no Kubernetes request and no AWS call. A pod that already carries the volumes and mounts is left
as it is, so admitting it twice changes nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tmpfs_secrets.kube.index import Target
from tmpfs_secrets.kube.names import (
    CONTAINERS_ANNOTATION,
    DEFAULT_MODE,
    INJECT_LABEL,
    SECRETS_ANNOTATION,
    default_mount_path,
)
from tmpfs_secrets.webhook import agent
from tmpfs_secrets.webhook.agent import AgentConfig
from tmpfs_secrets.webhook.paths import mount_path_problem
from tmpfs_secrets.webhook.review import Verdict

# The target of an ExternalSecret of a namespace, from the watch-fed index; None when unknown.
TargetLookup = Callable[[str, str], Target | None]

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
VOLUME_PREFIX = "tmpfs-secrets-"


class Refused(Exception):
    """The pod can't be admitted as written; the message says what to write instead."""


@dataclass(frozen=True)
class Injection:
    """One ExternalSecret's volume and where it is mounted."""

    external_secret: str
    volume: str
    secret: str
    path: str
    mode: int
    direct: bool = False  # an emptyDir the agent writes, instead of a Secret volume


def volume_name(external_secret: str) -> str:
    """A volume name (a DNS label, at most 63 characters) that is stable for an ExternalSecret."""
    name = VOLUME_PREFIX + external_secret
    if len(name) <= 63 and "." not in external_secret:
        return name
    digest = hashlib.sha256(external_secret.encode()).hexdigest()[:8]
    return f"{VOLUME_PREFIX}{external_secret.replace('.', '-')[:40]}-{digest}"


def parse_names(raw: object, annotation: str, pattern: re.Pattern[str], what: str, example: str) -> list[str]:
    """A comma-separated list of names from an annotation; raises Refused saying what to write."""
    if not isinstance(raw, str) or not raw.strip():
        raise Refused(
            f'annotation {annotation} is empty; write the {what} separated by commas, e.g. "{example}"'
        )
    names = [part.strip() for part in raw.split(",")]
    seen: set[str] = set()
    for name in names:
        if not name:
            raise Refused(
                f"annotation {annotation} {raw!r} has an empty entry (a doubled or trailing comma); "
                f'write the {what} separated by single commas, e.g. "{example}"'
            )
        if not pattern.match(name) or len(name) > 253:
            raise Refused(
                f"annotation {annotation}: {name!r} is not a valid name; {what} are lower-case letters, "
                f"digits and '-', separated by commas, e.g. \"{example}\""
            )
        if name in seen:
            raise Refused(f"annotation {annotation} lists {name!r} twice; list each name once")
        seen.add(name)
    return names


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _norm(path: object) -> str:
    text = str(path or "")
    return text.rstrip("/") or "/"


def plan(
    pod: Mapping[str, Any], namespace: str, lookup: TargetLookup, direct: AgentConfig | None = None
) -> tuple[list[Injection], list[str]]:
    """What to inject into `pod` and the warnings for its author; raises Refused."""
    meta = _map(pod.get("metadata"))
    annotations = _map(meta.get("annotations"))
    if SECRETS_ANNOTATION not in annotations:
        raise Refused(
            f'the pod has the label {INJECT_LABEL}: "true" but no annotation {SECRETS_ANNOTATION}; add '
            f'{SECRETS_ANNOTATION}: "<ExternalSecret>[,<ExternalSecret>...]" or remove the label'
        )
    names = parse_names(
        annotations[SECRETS_ANNOTATION],
        SECRETS_ANNOTATION,
        _SUBDOMAIN,
        "ExternalSecret names",
        "shop-db,shop-api",
    )
    injections: list[Injection] = []
    warnings: list[str] = []
    by_path: dict[str, str] = {}
    for name in names:
        target = lookup(namespace, name)
        if target is None:
            warnings.append(
                f"no ExternalSecret {namespace}/{name} (yet): mounting Secret {name} at "
                f"{default_mount_path(name)}; the pod waits until that Secret exists"
            )
            target = Target(name=name, mount_path=default_mount_path(name), default_mode=DEFAULT_MODE)
        if target.delivery == "Direct" and direct is None:
            raise Refused(
                f"ExternalSecret {name} uses target.delivery Direct, but this operator serves no Direct "
                f"delivery (it runs without --direct-address and --agent-image); set "
                f"spec.target.delivery: Secret in {name}, or remove {name} from {SECRETS_ANNOTATION}"
            )
        if target.delivery not in ("Secret", "Direct"):
            raise Refused(f"ExternalSecret {name} uses an unknown target.delivery {target.delivery}")
        path = target.mount_path or default_mount_path(name)
        problem = mount_path_problem(path, f"spec.mount.path of ExternalSecret {name}")
        if problem:
            raise Refused(problem)
        if _norm(path) in by_path:
            raise Refused(
                f"ExternalSecrets {by_path[_norm(path)]} and {name} both mount at {path}; "
                f"give one of them another spec.mount.path"
            )
        by_path[_norm(path)] = name
        injections.append(
            Injection(
                name, volume_name(name), target.name, path, target.default_mode, target.delivery == "Direct"
            )
        )
    return injections, warnings


def _selected(spec: Mapping[str, Any], annotations: Mapping[str, Any]) -> list[tuple[str, int, str]]:
    """(list field, index, container name) of the containers that get the mounts."""
    containers = [
        ("containers", i, str(_map(c).get("name"))) for i, c in enumerate(_list(spec.get("containers")))
    ]
    inits = [
        ("initContainers", i, str(_map(c).get("name")))
        for i, c in enumerate(_list(spec.get("initContainers")))
    ]
    if CONTAINERS_ANNOTATION not in annotations:
        return containers
    wanted = parse_names(
        annotations[CONTAINERS_ANNOTATION], CONTAINERS_ANNOTATION, _LABEL, "container names", "app,migrate"
    )
    known = {entry[2]: entry for entry in (*containers, *inits)}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        listed = ", ".join(e[2] for e in containers) or "none"
        init_listed = ", ".join(e[2] for e in inits) or "none"
        raise Refused(
            f"annotation {CONTAINERS_ANNOTATION} names {', '.join(unknown)}, which the pod does not have; "
            f"its containers are {listed} (init containers: {init_listed})"
        )
    return [known[n] for n in wanted]


def mutate(
    pod: Mapping[str, Any], namespace: str, lookup: TargetLookup, direct: AgentConfig | None = None
) -> Verdict:
    """The admission verdict for one pod: a JSONPatch that adds what is missing, or a refusal."""
    meta = _map(pod.get("metadata"))
    if _map(meta.get("labels")).get(INJECT_LABEL) != "true":
        return Verdict()  # not opted in (the webhook's objectSelector normally keeps these away)
    try:
        return _mutate(pod, _map(meta.get("annotations")), namespace, lookup, direct)
    except Refused as e:
        return Verdict.deny(str(e))


def _mutate(
    pod: Mapping[str, Any],
    annotations: Mapping[str, Any],
    namespace: str,
    lookup: TargetLookup,
    direct: AgentConfig | None,
) -> Verdict:
    spec = _map(pod.get("spec"))
    injections, warnings = plan(pod, namespace, lookup, direct)
    selected = _selected(spec, annotations)
    volumes = [_map(v) for v in _list(spec.get("volumes"))]
    by_name = {str(v.get("name")): v for v in volumes}
    secret_volumes = {
        str(v.get("name")): str(_map(v.get("secret")).get("secretName")) for v in volumes if "secret" in v
    }
    # An emptyDir volume of ours stands for its ExternalSecret's Direct delivery.
    secret_volumes.update(
        {
            inj.volume: inj.secret
            for inj in injections
            if inj.direct and "emptyDir" in by_name.get(inj.volume, {})
        }
    )
    ops: list[dict[str, Any]] = []
    new_volumes: list[dict[str, Any]] = []
    for inj in injections:
        existing = by_name.get(inj.volume)
        if existing is None and inj.direct:
            new_volumes.append(agent.volume(inj.volume))
        elif existing is None:
            new_volumes.append(
                {"name": inj.volume, "secret": {"secretName": inj.secret, "defaultMode": inj.mode}}
            )
        elif secret_volumes.get(inj.volume) != inj.secret:
            raise Refused(
                f"the pod already has a volume named {inj.volume} that is not Secret {inj.secret}; "
                f"rename that volume ({inj.volume} is reserved for ExternalSecret {inj.external_secret})"
            )
    warnings += _subpath_warnings(spec, injections, secret_volumes)
    directs = [(inj.external_secret, inj.volume) for inj in injections if inj.direct]
    has_agent = any(_map(c).get("name") == agent.AGENT_NAME for c in _list(spec.get("initContainers")))
    if directs and direct is not None and not has_agent and agent.TOKEN_VOLUME not in by_name:
        new_volumes.append(agent.token_volume())
    ops += _append(spec, "/spec/volumes", "volumes", new_volumes)
    for field, index, container_name in selected:
        if field == "initContainers" and _map(_list(spec.get(field))[index]).get("name") == agent.AGENT_NAME:
            continue
        container = _map(_list(spec.get(field))[index])
        mounts = [_map(m) for m in _list(container.get("volumeMounts"))]
        new_mounts: list[dict[str, Any]] = []
        for inj in injections:
            if _already_mounted(container_name, mounts, inj, secret_volumes):
                continue
            new_mounts.append({"name": inj.volume, "mountPath": inj.path, "readOnly": True})
        ops += _append(container, f"/spec/{field}/{index}/volumeMounts", "volumeMounts", new_mounts)
    if directs and direct is not None and not has_agent:
        # First of the init containers, so even those start only once the files exist.
        container = agent.sidecar(direct, directs)
        if isinstance(spec.get("initContainers"), list):
            ops.append({"op": "add", "path": "/spec/initContainers/0", "value": container})
        else:
            ops.append({"op": "add", "path": "/spec/initContainers", "value": [container]})
    return Verdict(allowed=True, warnings=tuple(warnings), patch=tuple(ops))


def _already_mounted(
    container: str, mounts: Sequence[Mapping[str, Any]], inj: Injection, secret_volumes: Mapping[str, str]
) -> bool:
    """Whether the container already sees this Secret at the path; raises Refused on a collision."""
    for mount in mounts:
        if _norm(mount.get("mountPath")) != _norm(inj.path):
            continue
        volume = str(mount.get("name"))
        if secret_volumes.get(volume) == inj.secret and not mount.get("subPath"):
            return True  # injected before, or written by hand: the same Secret at the same path
        raise Refused(
            f"container {container} already mounts volume {volume} at {inj.path}, where ExternalSecret "
            f"{inj.external_secret} is to be mounted; remove that mount or set spec.mount.path of "
            f"{inj.external_secret} to another folder"
        )
    return False


def _subpath_warnings(
    spec: Mapping[str, Any], injections: Sequence[Injection], secret_volumes: Mapping[str, str]
) -> list[str]:
    secrets = {inj.secret for inj in injections}
    warnings = []
    for field in ("initContainers", "containers"):
        for container in _list(spec.get(field)):
            c = _map(container)
            for mount in _list(c.get("volumeMounts")):
                m = _map(mount)
                secret = secret_volumes.get(str(m.get("name")))
                if secret in secrets and m.get("subPath"):
                    warnings.append(
                        f"container {c.get('name')} mounts Secret {secret} with subPath {m.get('subPath')} "
                        f"at {m.get('mountPath')}: that file will never update on rotation; "
                        "mount the whole volume (no subPath) and read the file from the folder"
                    )
    return warnings


def _append(
    parent: Mapping[str, Any], path: str, key: str, items: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    if not items:
        return []
    if not isinstance(parent.get(key), list):
        return [{"op": "add", "path": path, "value": items}]
    return [{"op": "add", "path": f"{path}/-", "value": item} for item in items]
