"""Leadership among replicas: run the Lease election, and hand the engine its work on takeover.

With `--leader-elect`, a replica starts as a follower: its watches fill the index (the webhook
answers from it on every replica) while the bodies of stores and ExternalSecrets wait in
`Runtime.following`. When it acquires the Lease it starts the engine and replays those bodies,
stores first; ExternalSecrets already synced join the spread schedule as after a restart, so a
takeover costs no burst of AWS calls and rewrites no Secret whose content did not change. A
leader that loses the Lease stops the operator (the container restarts as a follower), the way
client-go's leader election ends a controller.

Direct delivery's endpoint serves only on the leader (followers hold no values): it starts on
takeover, and the leader labels its own pod so that the chart's Direct Service selects it alone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path

import kopf

from tmpfs_secrets.config import Settings
from tmpfs_secrets.handlers.objects import upsert_external_secret, upsert_store
from tmpfs_secrets.handlers.state import Runtime
from tmpfs_secrets.kube.leader_pod import LeaderPodLabel
from tmpfs_secrets.kube.lease import LeaderElector, LeaseConfig
from tmpfs_secrets.kube.rest import KubeApiError

log = logging.getLogger(__name__)

IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def lease_config(settings: Settings) -> LeaseConfig:
    namespace = settings.lease_namespace or os.environ.get("POD_NAMESPACE", "")
    if not namespace and IN_CLUSTER_NAMESPACE.is_file():
        namespace = IN_CLUSTER_NAMESPACE.read_text().strip()
    if not namespace:
        raise ValueError("leader election needs the Lease's namespace: set --leader-election-namespace")
    identity = settings.identity or os.environ.get("POD_NAME", "") or socket.gethostname()
    return LeaseConfig(
        namespace=namespace,
        name=settings.lease_name,
        identity=identity,
        lease_duration=settings.lease_duration,
        renew_deadline=settings.renew_deadline,
        retry_period=settings.retry_period,
    )


def elect(rt: Runtime, stop: asyncio.Event) -> asyncio.Task[None]:
    """Start following; the returned task leads once elected and sets `stop` if the Lease is lost."""
    rt.following.leading = False
    config = lease_config(rt.settings)
    rt.elector = LeaderElector(rt.kube.rest, config, lambda: take_over(rt))
    elector = rt.elector
    pod = os.environ.get("POD_NAME", "")
    if pod:
        rt.leader_pod = LeaderPodLabel(rt.kube.rest, os.environ.get("POD_NAMESPACE") or config.namespace, pod)
    marker = rt.leader_pod

    async def lead() -> None:
        try:
            if marker is not None:
                await marker.mark(False)  # a container restarted after losing the Lease keeps it
            await elector.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("leader election failed: stopping")
        stop.set()

    return asyncio.create_task(lead(), name="tmpfs-secrets-leader-election")


async def take_over(rt: Runtime) -> None:
    following = rt.following
    following.leading = True  # from now on, events go straight to the engine
    await rt.engine.start()
    stores = ess = 0
    while following.stores:
        (kind, namespace, name), body = following.stores.popitem()
        try:
            await upsert_store(rt, kind, body)
            stores += 1
        except (kopf.PermanentError, kopf.TemporaryError, KubeApiError) as e:
            log.warning("%s %s/%s could not be taken over: %s", kind, namespace or "-", name, e)
    while following.external_secrets:
        ref, body = following.external_secrets.popitem()
        await upsert_external_secret(rt, ref, body)
        ess += 1
    log.info("took over as leader: %d stores and %d ExternalSecrets handed to the engine", stores, ess)
    if rt.direct is not None:
        await rt.direct.start()
    if rt.leader_pod is not None:
        await rt.leader_pod.mark(True)
