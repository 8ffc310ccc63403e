"""The engine's Kubernetes reads (`ports.KubeReads`): namespace labels, a Secret key, a SA token.

Namespace labels are answered from a cache kept fresh by the namespace watch (the handlers call
`observe_namespace`), so deciding whether a ClusterSecretStore admits a namespace costs no API
call in steady state. Secret keys and tokens are read on demand: the engine caches credentials
until shortly before they expire.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import time
from collections.abc import Mapping
from typing import Any

from tmpfs_secrets.kube.rest import KubeApiError, Rest, core_path
from tmpfs_secrets.ports import ServiceAccountToken
from tmpfs_secrets.vocabulary import DEFAULT_AUDIENCE, IRSA_AUDIENCE_ANNOTATION, IRSA_ROLE_ANNOTATION

TOKEN_SECONDS = 3600  # what EKS's webhook asks for; the engine refreshes before expiry


class KubeReadsImpl:
    """Implements `tmpfs_secrets.ports.KubeReads` against the API server."""

    def __init__(self, rest: Rest) -> None:
        self.rest = rest
        self._labels: dict[str, dict[str, str]] = {}

    # --- namespace labels ------------------------------------------------------------------------

    def observe_namespace(self, name: str, labels: Mapping[str, str] | None) -> bool:
        """Record a namespace's labels from a watch event; True if they changed (or were unknown)."""
        new = dict(labels or {})
        old = self._labels.get(name)
        self._labels[name] = new
        return old != new

    def is_known_namespace(self, name: str) -> bool:
        return name in self._labels

    def forget_namespace(self, name: str) -> None:
        self._labels.pop(name, None)

    async def namespace_labels(self, namespace: str) -> Mapping[str, str]:
        cached = self._labels.get(namespace)
        if cached is not None:
            return dict(cached)
        try:
            body = await self.rest.get(core_path("namespaces", name=namespace))
        except KubeApiError as e:
            if e.not_found:
                raise KeyError(f"namespace {namespace} does not exist") from None
            raise
        labels = dict((body.get("metadata") or {}).get("labels") or {})
        self._labels[namespace] = labels
        return dict(labels)

    # --- one Secret key --------------------------------------------------------------------------

    async def secret_value(self, namespace: str, name: str, key: str) -> str:
        try:
            body = await self.rest.get(core_path("secrets", namespace, name))
        except KubeApiError as e:
            if e.not_found:
                raise KeyError(
                    f"Secret {namespace}/{name} does not exist; create it or fix the secretRef"
                ) from None
            raise
        data = body.get("data") or {}
        if key not in data:
            keys = ", ".join(sorted(data)) or "none"
            raise KeyError(
                f"Secret {namespace}/{name} has no key {key!r} (its keys: {keys}); fix the secretRef key"
            )
        try:
            return base64.b64decode(data[key], validate=True).decode("utf-8").strip()
        except (binascii.Error, UnicodeDecodeError):
            raise KeyError(f"Secret {namespace}/{name} key {key!r} is not UTF-8 text") from None

    # --- TokenRequest for a ServiceAccount -------------------------------------------------------

    async def service_account_token(self, namespace: str, name: str) -> ServiceAccountToken:
        path = core_path("serviceaccounts", namespace, name)
        try:
            account = await self.rest.get(path)
        except KubeApiError as e:
            if e.not_found:
                raise KeyError(
                    f"ServiceAccount {namespace}/{name} does not exist; "
                    "create it or fix auth.serviceAccountRef"
                ) from None
            raise
        annotations: dict[str, str] = (account.get("metadata") or {}).get("annotations") or {}
        audience = annotations.get(IRSA_AUDIENCE_ANNOTATION) or DEFAULT_AUDIENCE
        request: dict[str, Any] = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": [audience], "expirationSeconds": TOKEN_SECONDS},
        }
        answer = await self.rest.post(f"{path}/token", request)
        status = answer.get("status") or {}
        return ServiceAccountToken(
            token=str(status.get("token", "")),
            role_arn=annotations.get(IRSA_ROLE_ANNOTATION),
            expires_at=_parse_time(status.get("expirationTimestamp")) or time.time() + TOKEN_SECONDS,
        )


def _parse_time(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
