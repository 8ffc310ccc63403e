"""The target Secrets as last seen through one watch (by label), slim, so writes need no GET.

The operator labels every Secret it writes (`tmpfs-secrets.io/target`) and watches those Secrets
with a server-side label selector: a restart costs one LIST instead of a GET per ExternalSecret,
and a Secret deleted or edited by hand is noticed at once, without polling. Only what the writer
compares is kept: metadata without managed fields and without kubectl's last-applied copy (which
holds the data), and a digest of each data value instead of the value. The values themselves
are never kept. Each Secret is held as compact JSON, decoded when the writer reads it: at 10,000
Secrets, dicts and strings would cost several times as much, for what is read once per write.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from tmpfs_secrets.kube.rest import JSON

_KEPT_META = ("name", "namespace", "uid", "resourceVersion", "labels", "annotations", "ownerReferences")
_DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def digest(encoded: str) -> str:
    """What the slim view keeps of one base64 data value: enough to tell whether it changed."""
    return hashlib.blake2b(encoded.encode("ascii", "replace"), digest_size=16).hexdigest()


def slim(body: Mapping[str, Any]) -> JSON:
    """The parts of a Secret the writer reads, with data values replaced by their digests."""
    meta = body.get("metadata") or {}
    kept: dict[str, Any] = {k: _plain(meta[k]) for k in _KEPT_META if meta.get(k) is not None}
    annotations = kept.get("annotations")
    if isinstance(annotations, dict):
        for name in _DROPPED_ANNOTATIONS:
            annotations.pop(name, None)
    data = body.get("data") or {}
    return {
        "metadata": kept,
        "type": body.get("type"),
        "immutable": body.get("immutable"),
        "data": {str(k): digest(str(v)) for k, v in data.items()},
    }


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _version(body: Mapping[str, Any]) -> int | None:
    try:
        return int((body.get("metadata") or {}).get("resourceVersion") or "")
    except ValueError:
        return None


class _Kept:
    """One slim Secret: what `observe` compares, and the rest packed."""

    __slots__ = ("packed", "uid", "version")

    def __init__(self, body: Mapping[str, Any]) -> None:
        self.uid = str((body.get("metadata") or {}).get("uid") or "")
        self.version = _version(body)
        self.packed = json.dumps(slim(body), separators=(",", ":")).encode()

    def unpacked(self) -> JSON:
        loaded: JSON = json.loads(self.packed)
        return loaded


class TargetIndex:
    """Slim target Secrets by (namespace, name), fed by the watch and by the writer's own answers."""

    def __init__(self) -> None:
        self._secrets: dict[tuple[str, str], _Kept] = {}
        self._listed = asyncio.Event()

    def mark_listed(self) -> None:
        """Every target Secret has been listed once: what is not here does not exist."""
        self._listed.set()

    @property
    def listed(self) -> bool:
        return self._listed.is_set()

    async def wait_listed(self, within: float) -> bool:
        """Wait for the first listing; False if it did not come in time (the writer then reads)."""
        if not self._listed.is_set():
            try:
                async with asyncio.timeout(within):
                    await self._listed.wait()
            except TimeoutError:
                return False
        return True

    def keys(self, namespace: str | None = None) -> set[tuple[str, str]]:
        return {k for k in self._secrets if namespace is None or k[0] == namespace}

    def __len__(self) -> int:
        return len(self._secrets)

    def get(self, namespace: str, name: str) -> JSON | None:
        kept = self._secrets.get((namespace, name))
        return kept.unpacked() if kept is not None else None

    def observe(self, body: Mapping[str, Any]) -> bool:
        """Record a Secret from a watch event or a write's answer. True when it is news: a Secret
        we knew changed to a newer version than we last saw or wrote, i.e. someone else wrote it."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        current = self._secrets.get(key)
        if current is not None and current.uid == meta.get("uid"):
            seen, new = current.version, _version(body)
            if seen is not None and new is not None and new <= seen:
                return False  # our own write (already recorded from its answer), or an older event
        self._secrets[key] = _Kept(body)
        return current is not None

    def forget(self, namespace: str, name: str) -> JSON | None:
        """The Secret was deleted; returns what was known of it."""
        kept = self._secrets.pop((namespace, name), None)
        return kept.unpacked() if kept is not None else None
