"""`rotation.restartWorkloads`: restart the workloads that use an ExternalSecret when its content changes.

For apps that read their secrets only at start. When the delivered content of such an
ExternalSecret changes, the Deployments, StatefulSets and DaemonSets of its namespace whose pod
template asks for it (in the `tmpfs-secrets.io/secrets` annotation, or with a Secret volume of its
target) get a pod-template annotation patched, as `kubectl rollout restart` does; their
controllers then roll the pods. The annotation records the content hash per ExternalSecret, so a
repeated delivery of the same content (a retry, an operator restart) never restarts twice.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tmpfs_secrets.kube.conditions import rfc3339
from tmpfs_secrets.kube.index import Tracked
from tmpfs_secrets.kube.names import RESTART_ANNOTATION_PREFIX, SECRETS_ANNOTATION
from tmpfs_secrets.kube.rest import KubeApiError, Rest

log = logging.getLogger(__name__)

WORKLOADS = (("Deployment", "deployments"), ("StatefulSet", "statefulsets"), ("DaemonSet", "daemonsets"))
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


@dataclass(frozen=True)
class Restarts:
    restarted: tuple[str, ...]  # "Deployment/web"
    failed: tuple[str, ...]  # "Deployment/web: 403 Forbidden: ..."


def marker_key(external_secret: str) -> str:
    """The pod-template annotation that records which content of `external_secret` restarted it."""
    name = (
        external_secret
        if len(external_secret) <= 63
        else hashlib.sha256(external_secret.encode()).hexdigest()[:16]
    )
    return f"{RESTART_ANNOTATION_PREFIX}/{name}"


def asks_for(template: Mapping[str, Any], external_secret: str, secret: str) -> bool:
    """Whether a pod template asks for the ExternalSecret (annotation) or mounts its Secret by hand."""
    meta = template.get("metadata") or {}
    listed = str((meta.get("annotations") or {}).get(SECRETS_ANNOTATION) or "")
    if external_secret in (part.strip() for part in listed.split(",")):
        return True
    for volume in (template.get("spec") or {}).get("volumes") or []:
        if ((volume or {}).get("secret") or {}).get("secretName") == secret:
            return True
    return False


class WorkloadRestarter:
    def __init__(self, rest: Rest) -> None:
        self.rest = rest

    async def restart_for(self, es: Tracked, content_hash: str) -> Restarts:
        """Restart every workload of the namespace that uses `es` and has not seen `content_hash`."""
        assert es.namespace is not None and es.target is not None
        key = marker_key(es.name)
        restarted: list[str] = []
        failed: list[str] = []
        for kind, plural in WORKLOADS:
            path = f"/apis/apps/v1/namespaces/{es.namespace}/{plural}"
            try:
                listing = await self.rest.get(path)
            except KubeApiError as e:
                failed.append(f"{kind}s: {e}")
                continue
            for item in listing.get("items") or []:
                name = str(item["metadata"]["name"])
                template = (item.get("spec") or {}).get("template") or {}
                if not asks_for(template, es.name, es.target.name):
                    continue
                annotations = (template.get("metadata") or {}).get("annotations") or {}
                if annotations.get(key) == content_hash:
                    continue  # this content already restarted it
                patch = {
                    "spec": {
                        "template": {
                            "metadata": {
                                "annotations": {key: content_hash, RESTARTED_AT: rfc3339(time.time())}
                            }
                        }
                    }
                }
                try:
                    await self.rest.merge_patch(f"{path}/{name}", patch)
                    restarted.append(f"{kind}/{name}")
                except KubeApiError as e:
                    failed.append(f"{kind}/{name}: {e}")
        if failed:
            log.warning(
                "ExternalSecret %s/%s: could not restart %s", es.namespace, es.name, "; ".join(failed)
            )
        return Restarts(tuple(restarted), tuple(failed))
