"""Marks the operator pod that leads, so that a Service can send Direct delivery's agents to it.

Direct values live only in the leader's memory: an agent that reached a follower would wait for
nothing. With leader election the chart's Direct Service selects the label
`tmpfs-secrets.io/leader: "true"`; the leader sets it on its own pod when it takes over, and
every replica clears it when it starts as a follower (a container restarted after losing the
Lease keeps its pod's labels).
"""

from __future__ import annotations

import logging

from tmpfs_secrets.kube.rest import KubeApiError, Rest
from tmpfs_secrets.vocabulary import LEADER_POD_LABEL

log = logging.getLogger(__name__)


class LeaderPodLabel:
    def __init__(self, rest: Rest, namespace: str, pod: str) -> None:
        self.rest = rest
        self.path = f"/api/v1/namespaces/{namespace}/pods/{pod}"
        self.pod = f"{namespace}/{pod}"

    async def mark(self, leading: bool) -> bool:
        """Set or clear the label; a refusal is logged with what to grant, never raised."""
        value = "true" if leading else None
        try:
            await self.rest.merge_patch(self.path, {"metadata": {"labels": {LEADER_POD_LABEL: value}}})
        except KubeApiError as e:
            log.warning(
                "could not %s the label %s on pod %s (%s): Direct delivery's Service may send agents "
                "to a follower; grant `patch` on pods in the operator's namespace",
                "set" if leading else "clear",
                LEADER_POD_LABEL,
                self.pod,
                e,
            )
            return False
        log.info("pod %s %s the leader label", self.pod, "carries" if leading else "no longer carries")
        return True
