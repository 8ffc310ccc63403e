"""The last seen state of our own objects, fed by the watch, so the sink writes only differences.

The sink compares what it is about to write with what the API server last told us (status,
generation, target settings) instead of reading the object again: in an idle interval the
operator makes no API calls beyond its watches. Only the slim parts the sink needs are kept. The
pod webhook reads the same index (targets and mounts), so admission makes no API request either.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tmpfs_secrets.ports import ObjectRef
from tmpfs_secrets.vocabulary import DEFAULT_MODE, EXTERNAL_SECRET, REFRESH_ANNOTATION, default_mount_path


@dataclass(frozen=True, slots=True)
class Target:
    """`spec.target` of an ExternalSecret, with the defaults of the CRD applied."""

    name: str
    creation_policy: str = "Owner"  # Owner | Orphan | Merge
    deletion_policy: str = "Retain"  # Retain | Delete
    delivery: str = "Secret"  # Secret | Direct
    immutable: bool = False
    secret_type: str = "Opaque"  # target.template.type
    labels: tuple[tuple[str, str], ...] = ()  # target.template.metadata.labels
    annotations: tuple[tuple[str, str], ...] = ()  # target.template.metadata.annotations
    # `spec.mount` and `spec.rotation`: what the pod webhook injects and whether workloads restart.
    mount_path: str = ""
    default_mode: int = DEFAULT_MODE
    restart_workloads: bool = False

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], default_name: str) -> Target:
        target = spec.get("target") or {}
        template = target.get("template") or {}
        meta = template.get("metadata") or {}
        mount = spec.get("mount") or {}
        rotation = spec.get("rotation") or {}
        mode = mount.get("defaultMode")
        return cls(
            name=str(target.get("name") or default_name),
            creation_policy=str(target.get("creationPolicy") or "Owner"),
            deletion_policy=str(target.get("deletionPolicy") or "Retain"),
            delivery=str(target.get("delivery") or "Secret"),
            immutable=target.get("immutable") is True,
            secret_type=str(template.get("type") or "Opaque"),
            labels=tuple(sorted((str(k), str(v)) for k, v in (meta.get("labels") or {}).items())),
            annotations=tuple(sorted((str(k), str(v)) for k, v in (meta.get("annotations") or {}).items())),
            mount_path=str(mount.get("path") or default_mount_path(default_name)),
            default_mode=mode if isinstance(mode, int) and not isinstance(mode, bool) else DEFAULT_MODE,
            restart_workloads=rotation.get("restartWorkloads") is True,
        )


class Tracked:
    """One object as last seen: identity, generation and status; the target for ExternalSecrets.

    The status is kept as compact JSON and decoded when read: at 10,000 objects a status as
    Python dicts and strings costs several times its JSON, and it is read only when the sink
    writes (a sync or a failure), not in an idle interval. Reading it gives a fresh copy.
    """

    __slots__ = (
        "_status",
        "generation",
        "kind",
        "name",
        "namespace",
        "refresh_request",
        "resource_version",
        "target",
        "uid",
    )

    def __init__(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        uid: str,
        generation: int,
        resource_version: str,
        status: Mapping[str, Any] | None = None,
        target: Target | None = None,
        refresh_request: str | None = None,  # the refresh-requested annotation (ExternalSecrets)
    ) -> None:
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self.generation = generation
        self.resource_version = resource_version
        self.status = dict(status or {})
        self.target = target
        self.refresh_request = refresh_request

    @property
    def status(self) -> dict[str, Any]:
        return json.loads(self._status) if self._status else {}

    @status.setter
    def status(self, value: Mapping[str, Any]) -> None:
        self._status = json.dumps(value, separators=(",", ":")).encode() if value else b""

    def __repr__(self) -> str:
        return (
            f"Tracked({self.kind} {self.namespace}/{self.name} uid={self.uid} generation={self.generation})"
        )


def _newer(candidate: str, current: str) -> bool:
    """Whether a resourceVersion is not older than another; unknown formats count as newer."""
    try:
        return int(candidate) >= int(current)
    except ValueError:
        return True


class ObjectIndex:
    """ExternalSecrets and stores by (kind, namespace, name)."""

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str | None, str], Tracked] = {}
        # Objects a startup LIST found that the watch has not delivered yet; None before that LIST.
        self._awaited: set[tuple[str, str | None, str]] | None = None

    def await_listed(self, keys: Iterable[tuple[str, str | None, str]]) -> None:
        """Remember what a startup LIST found: the index is complete once the watch delivered them."""
        self._awaited = {k for k in keys if k not in self._objects}

    @property
    def complete(self) -> bool:
        """Whether every object of the startup LIST has arrived through the watch."""
        return self._awaited is not None and not self._awaited

    @property
    def awaiting(self) -> int:
        """How many objects of the startup LIST the watch has not delivered yet."""
        return len(self._awaited or ())

    def observe(self, kind: str, body: Mapping[str, Any]) -> Tracked:
        """Record a body from a watch event or an API answer; older resourceVersions are ignored."""
        meta = body.get("metadata") or {}
        key = (kind, meta.get("namespace"), str(meta.get("name")))
        current = self._objects.get(key)
        version = str(meta.get("resourceVersion") or "")
        if (
            current is not None
            and current.uid == meta.get("uid")
            and not _newer(version, current.resource_version)
        ):
            return current
        target = None
        refresh_request = None
        if kind == EXTERNAL_SECRET.kind:
            target = Target.from_spec(body.get("spec") or {}, default_name=key[2])
            request = (meta.get("annotations") or {}).get(REFRESH_ANNOTATION)
            refresh_request = str(request) if request is not None else None
        elif current is not None and current.uid == meta.get("uid"):
            target = current.target
        tracked = Tracked(
            kind=kind,
            namespace=key[1],
            name=key[2],
            uid=str(meta.get("uid") or ""),
            generation=int(meta.get("generation") or 0),
            resource_version=version,
            status=body.get("status") or {},
            target=target,
            refresh_request=refresh_request,
        )
        self._objects[key] = tracked
        if self._awaited:
            self._awaited.discard(key)
        return tracked

    def observe_status(self, kind: str, body: Mapping[str, Any]) -> None:
        """Record the answer to a status patch: its status and resourceVersion, keeping the rest."""
        meta = body.get("metadata") or {}
        current = self.get(kind, meta.get("namespace"), str(meta.get("name")))
        version = str(meta.get("resourceVersion") or "")
        if current is None or current.uid != meta.get("uid") or not _newer(version, current.resource_version):
            return
        current.status = body.get("status") or {}
        current.resource_version = version

    def forget(self, kind: str, namespace: str | None, name: str) -> Tracked | None:
        if self._awaited:
            self._awaited.discard((kind, namespace, name))
        return self._objects.pop((kind, namespace, name), None)

    def get(self, kind: str, namespace: str | None, name: str) -> Tracked | None:
        return self._objects.get((kind, namespace, name))

    def external_secret(self, ref: ObjectRef) -> Tracked | None:
        return self.get(EXTERNAL_SECRET.kind, ref.namespace, ref.name)

    def external_secrets_in(self, namespace: str) -> Iterator[ObjectRef]:
        return (ref for ref in self.external_secrets() if ref.namespace == namespace)

    def external_secrets(self) -> Iterator[ObjectRef]:
        for kind, ns, name in list(self._objects):
            if kind == EXTERNAL_SECRET.kind:
                yield ObjectRef(str(ns), name)

    def ready_counts(self) -> dict[tuple[str, str], int]:
        """ExternalSecrets by (Ready status, reason); ("Unknown", "") before their first status."""
        counts: dict[tuple[str, str], int] = {}
        for (kind, _, _), tracked in list(self._objects.items()):
            if kind != EXTERNAL_SECRET.kind:
                continue
            ready = next(
                (c for c in tracked.status.get("conditions") or [] if c.get("type") == "Ready"), None
            )
            key = (str(ready.get("status")), str(ready.get("reason") or "")) if ready else ("Unknown", "")
            counts[key] = counts.get(key, 0) + 1
        return counts
