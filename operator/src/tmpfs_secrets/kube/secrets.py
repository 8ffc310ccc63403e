"""The Secret writer: delivers a key set into a Kubernetes Secret, writing only on change.

The content hash of what was written is stored in the annotation `tmpfs-secrets.io/content-hash`
and remembered in memory. In steady state a refresh with the same hash costs nothing. Every
Secret written is labelled `tmpfs-secrets.io/target` and watched by that label (`TargetIndex`):
the writer compares with the watched state instead of reading the Secret, so a restarted
operator reads nothing and rewrites nothing that is unchanged, and a Secret that is not in the
complete index is created without a read; only a 409 (it exists without the label: written by
an older version, or someone else's) costs a read. Until the watch has listed the Secrets once
(or without a watch), the writer reads each Secret once instead.

creationPolicy: Owner creates the Secret with an ownerReference (garbage-collected with the
ExternalSecret); Orphan creates it without one (it stays); Merge only adds keys to a Secret that
someone else created and that opts in with the annotation `tmpfs-secrets.io/allow-merge: "true"`,
and never to a ServiceAccount token, a Helm release record or another ExternalSecret's Secret.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tmpfs_secrets.errors import Reason
from tmpfs_secrets.kube.index import Target, Tracked
from tmpfs_secrets.kube.rest import JSON, KubeApiError, Rest, core_path
from tmpfs_secrets.kube.targets import TargetIndex, digest, slim
from tmpfs_secrets.ports import SinkError
from tmpfs_secrets.vocabulary import (
    API_VERSION,
    CONTENT_HASH_ANNOTATION,
    EXTERNAL_SECRET,
    EXTERNAL_SECRET_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    MERGE_ANNOTATION,
    TARGET_LABEL,
    TARGET_LABEL_VALUE,
)

LISTING_WAIT = 30.0  # seconds a write waits for the target watch's first listing, then reads


class TargetError(SinkError):
    """The target Secret can't be written; `reason` and `message` go to the status as they are."""

    def __init__(self, reason: Reason, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.transient = transient


@dataclass(frozen=True, slots=True)
class _Written:
    uid: str
    policy: str
    content_hash: str
    removed: frozenset[str]


# Secret types the operator never writes into, whatever they say: credentials Kubernetes itself
# issues, and Helm's record of a release (rewriting it corrupts the release).
_NEVER_MERGED = ("kubernetes.io/service-account-token", "helm.sh/release.v1")


def merge_refusal(secret: Mapping[str, Any], es_name: str, es_uid: str) -> str | None:
    """Why `creationPolicy: Merge` may not write into this existing Secret; None if it may."""
    meta = secret.get("metadata") or {}
    annotations: Mapping[str, str] = meta.get("annotations") or {}
    kind = str(secret.get("type") or "Opaque")
    if kind in _NEVER_MERGED or (meta.get("labels") or {}).get("owner") == "helm":
        return f"it is of type {kind}, which the operator never writes into"
    owner = annotations.get(EXTERNAL_SECRET_ANNOTATION)
    others = [
        o
        for o in meta.get("ownerReferences") or []
        if o.get("kind") == EXTERNAL_SECRET.kind and o.get("uid") != es_uid
    ]
    if (owner is not None and owner != es_name) or others:
        return "another ExternalSecret writes it"
    if annotations.get(MERGE_ANNOTATION) != "true":
        return (
            f'it does not opt in: its owner can annotate it with {MERGE_ANNOTATION}: "true" to let '
            "ExternalSecrets of this namespace add keys to it"
        )
    return None


def encode(data: Mapping[str, bytes]) -> dict[str, str]:
    return {key: base64.b64encode(value).decode("ascii") for key, value in data.items()}


def owner_reference(es: Tracked) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": EXTERNAL_SECRET.kind,
        "name": es.name,
        "uid": es.uid,
        "controller": True,
    }


class SecretWriter:
    def __init__(self, rest: Rest, targets: TargetIndex | None = None) -> None:
        self.rest = rest
        self.targets = targets
        self._written: dict[tuple[str, str], _Written] = {}  # (namespace, secret) -> last write

    def invalidate(self, namespace: str, secret: str) -> None:
        """Forget what we wrote, so the next write reads the Secret again (e.g. on a refresh request)."""
        self._written.pop((namespace, secret), None)

    async def write(
        self, es: Tracked, data: Mapping[str, bytes], content_hash: str, removed: frozenset[str] = frozenset()
    ) -> bool:
        """Bring the target Secret to `data`; True if anything was written."""
        assert es.namespace is not None and es.target is not None
        target = es.target
        key = (es.namespace, target.name)
        wanted = _Written(es.uid, target.creation_policy, content_hash, removed)
        if self._written.get(key) == wanted:
            return False
        path = core_path("secrets", es.namespace, target.name)
        # The watch lists every target Secret once at start; until then (or without a watch),
        # the writer reads instead.
        indexed = self.targets is not None and await self.targets.wait_listed(LISTING_WAIT)
        watched = self.targets.get(es.namespace, target.name) if indexed and self.targets else None
        # A Secret not in the complete index, or a never-synced ExternalSecret's Secret, almost
        # never exists yet: create it without a read, and read it only if the create finds one (409).
        create_first = target.creation_policy != "Merge" and (
            indexed or (key not in self._written and _never_synced(es))
        )
        for attempt in range(3):  # a create or patch can race with another writer; re-read and retry
            secret: JSON | None = None
            if attempt == 0 and watched is not None:
                secret = watched
            elif not (create_first and attempt == 0):
                try:
                    secret = slim(await self.rest.get(path))
                except KubeApiError as e:
                    if not e.not_found:
                        raise _write_failed(es, target, e) from e
            try:
                answer = await self._write_once(es, target, path, secret, data, content_hash, removed)
            except KubeApiError as e:
                if e.conflict:
                    continue
                raise _write_failed(es, target, e) from e
            self._written[key] = wanted
            if answer is not None and self.targets is not None:
                self.targets.observe(answer)
            return answer is not None
        raise TargetError(
            Reason.TARGET_WRITE_FAILED,
            f"Secret {es.namespace}/{target.name} kept changing while it was written; will retry",
            transient=True,
        )

    async def _write_once(
        self,
        es: Tracked,
        target: Target,
        path: str,
        secret: JSON | None,
        data: Mapping[str, bytes],
        content_hash: str,
        removed: frozenset[str],
    ) -> JSON | None:
        """`secret` is the slim view (`targets.slim`: data values as digests); returns the API
        server's answer, or None when nothing needed writing."""
        assert es.namespace is not None
        where = f"{es.namespace}/{target.name}"
        encoded = encode(data)
        if secret is None:
            if target.creation_policy == "Merge":
                raise TargetError(
                    Reason.TARGET_NOT_FOUND,
                    f"Secret {where} does not exist; target.creationPolicy Merge only adds keys to an "
                    "existing Secret: create it first, or use creationPolicy Owner",
                )
            return await self.rest.post(
                core_path("secrets", es.namespace), self._new_secret(es, target, encoded, content_hash)
            )

        meta = secret.get("metadata") or {}
        annotations: dict[str, str] = meta.get("annotations") or {}
        owners: list[dict[str, Any]] = list(meta.get("ownerReferences") or [])
        ours = annotations.get(EXTERNAL_SECRET_ANNOTATION) == es.name or any(
            o.get("uid") == es.uid for o in owners
        )
        if target.creation_policy != "Merge" and not ours:
            raise TargetError(
                Reason.TARGET_CONFLICT,
                f"Secret {where} already exists and is not managed by this ExternalSecret; choose "
                "another target.name, or delete that Secret if nothing else needs it",
            )
        if target.creation_policy == "Merge" and not ours:
            refusal = merge_refusal(secret, es.name, es.uid)
            if refusal is not None:
                raise TargetError(
                    Reason.TARGET_CONFLICT,
                    f"creationPolicy Merge may not write into Secret {where}: {refusal}; "
                    "or choose another target.name",
                )
        current: dict[str, str] = secret.get("data") or {}
        if secret.get("immutable"):
            if ours and all(current.get(k) == digest(v) for k, v in encoded.items()):
                return None  # target.immutable: it already holds these values
            raise TargetError(
                Reason.TARGET_CONFLICT,
                f"Secret {where} is immutable, so new values can't be written into it; delete it so it "
                "is created again with them, or use another target.name",
            )
        if secret.get("type", "Opaque") != target.secret_type and target.creation_policy != "Merge":
            raise TargetError(
                Reason.TARGET_CONFLICT,
                f"Secret {where} has type {secret.get('type', 'Opaque')} but target.template.type says "
                f"{target.secret_type}; a Secret's type can't change: delete it so it is created again",
            )
        patch: dict[str, Any] = {"metadata": {"resourceVersion": meta.get("resourceVersion")}}
        changed_data: dict[str, str | None] = {
            k: v for k, v in encoded.items() if current.get(k) != digest(v)
        }
        changed_data.update({k: None for k in removed if k in current and k not in encoded})
        if changed_data:
            patch["data"] = changed_data
        if annotations.get(CONTENT_HASH_ANNOTATION) != content_hash:
            patch["metadata"]["annotations"] = {CONTENT_HASH_ANNOTATION: content_hash}
        labels = meta.get("labels") or {}
        if labels.get(TARGET_LABEL) != TARGET_LABEL_VALUE:  # so the watch sees it (Merge targets too)
            patch["metadata"]["labels"] = {TARGET_LABEL: TARGET_LABEL_VALUE}
        if target.creation_policy != "Merge":
            new_owners = [o for o in owners if o.get("uid") != es.uid]
            if target.creation_policy == "Owner":
                new_owners.append(owner_reference(es))
            if new_owners != owners:
                patch["metadata"]["ownerReferences"] = new_owners
            wanted_labels = {**dict(target.labels), MANAGED_BY_LABEL: MANAGED_BY}
            if any(labels.get(k) != v for k, v in wanted_labels.items()):
                patch["metadata"].setdefault("labels", {}).update(wanted_labels)
            wanted = {**dict(target.annotations), EXTERNAL_SECRET_ANNOTATION: es.name}
            for key, value in wanted.items():
                if annotations.get(key) != value:
                    patch["metadata"].setdefault("annotations", {})[key] = value
        if len(patch) == 1 and len(patch["metadata"]) == 1:
            return None
        return await self.rest.merge_patch(path, patch)

    @staticmethod
    def _new_secret(
        es: Tracked, target: Target, encoded: dict[str, str], content_hash: str
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": target.name,
            "namespace": es.namespace,
            "labels": {**dict(target.labels), MANAGED_BY_LABEL: MANAGED_BY, TARGET_LABEL: TARGET_LABEL_VALUE},
            "annotations": {
                **dict(target.annotations),
                CONTENT_HASH_ANNOTATION: content_hash,
                EXTERNAL_SECRET_ANNOTATION: es.name,
            },
        }
        if target.creation_policy == "Owner":
            meta["ownerReferences"] = [owner_reference(es)]
        secret: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": target.secret_type,
            "metadata": meta,
            "data": encoded,
        }
        if target.immutable:
            secret["immutable"] = True
        return secret


def _never_synced(es: Tracked) -> bool:
    """No sync and no failure recorded in the status: a new ExternalSecret."""
    return not es.status.get("contentHash") and not es.status.get("conditions")


def _write_failed(es: Tracked, target: Target, error: KubeApiError) -> TargetError:
    where = f"{es.namespace}/{target.name}"
    if error.forbidden:
        return TargetError(
            Reason.TARGET_WRITE_FAILED,
            f"the operator may not write Secret {where} ({error.message}); grant its ServiceAccount "
            "get, create and patch on secrets in this namespace",
        )
    if error.status == 422:
        return TargetError(
            Reason.TARGET_WRITE_FAILED, f"Secret {where} was rejected by the API server: {error.message}"
        )
    return TargetError(
        Reason.TARGET_WRITE_FAILED,
        f"could not write Secret {where}: {error.status} {error.reason}; will retry",
        transient=True,
    )
