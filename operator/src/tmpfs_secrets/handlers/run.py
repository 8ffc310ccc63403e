"""Runs the operator in-process: builds the Kubernetes side and the engine, then runs kopf.

`tmpfs-secrets run` calls `run(settings)`; tests and the demo can too. kopf handles SIGINT and
SIGTERM itself: it stops the watches, runs the cleanup handler (engine stop, client close) and
returns. The webhook and probe servers run beside kopf on the same event loop; they are started
before kopf (so a Service can route to a ready operator as soon as its index is complete) and
stopped after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import kopf

from tmpfs_secrets.config import Settings
from tmpfs_secrets.direct.runtime import DirectSide
from tmpfs_secrets.engine import Engine

# Importing the handler modules registers their handlers in the registry.
from tmpfs_secrets.handlers import leader, lifecycle, objects  # noqa: F401
from tmpfs_secrets.handlers.registry import registry
from tmpfs_secrets.handlers.state import Runtime
from tmpfs_secrets.health import HealthServer, parse_address
from tmpfs_secrets.kube.index import Target
from tmpfs_secrets.kube.listing import await_existing
from tmpfs_secrets.kube.names import EXTERNAL_SECRET
from tmpfs_secrets.kube.runtime import KubeSide
from tmpfs_secrets.tasks import cancel
from tmpfs_secrets.webhook.agent import AgentConfig
from tmpfs_secrets.webhook.objects import Rules
from tmpfs_secrets.webhook.server import Admission, CertificateFiles, WebhookServer


def webhook_server(settings: Settings, kube: KubeSide) -> WebhookServer | None:
    if settings.webhook_cert_dir is None:
        return None
    folder = Path(settings.webhook_cert_dir)
    host, port = parse_address(settings.webhook_address)

    def lookup(namespace: str, name: str) -> Target | None:
        tracked = kube.index.get(EXTERNAL_SECRET.kind, namespace, name)
        return tracked.target if tracked is not None else None

    def direct() -> AgentConfig | None:
        if not (settings.direct_url and settings.agent_image):
            return None
        try:  # small and rarely renewed; read per admission so a renewed CA is used at once
            ca = (folder / "ca.crt").read_text()
        except OSError:
            return None
        return AgentConfig(settings.agent_image, settings.direct_url, ca)

    return WebhookServer(
        Admission(
            direct=direct,
            lookup=lookup,
            ready=lambda: kube.index.complete,
            rules=Rules(settings.allow_operator_identity, settings.min_refresh_interval),
        ),
        CertificateFiles(folder / "tls.crt", folder / "tls.key"),
        host,
        port,
        reload_interval=settings.webhook_cert_reload,
    )


def health_server(
    settings: Settings,
    kube: KubeSide,
    engine: Engine,
    webhook: WebhookServer | None,
    leading: Callable[[], bool] = lambda: True,
) -> HealthServer:
    def index_complete() -> str | None:
        return None if kube.index.complete else "stores and ExternalSecrets not read yet"

    def webhook_serving() -> str | None:
        return None if webhook is None or webhook.serving else "the webhook server is not serving"

    def counts() -> dict[str, dict[str, float]]:
        if webhook is None:
            return {}
        durations = {
            f'route="{route}",quantile="{q:g}"': seconds
            for route in webhook.durations
            for q, seconds in webhook.quantiles(route).items()
        }
        return {
            "tmpfs_secrets_webhook_requests_total": dict(webhook.requests),
            "tmpfs_secrets_webhook_refusals_total": dict(webhook.refusals),
            "tmpfs_secrets_webhook_answer_seconds": durations,
        }

    return HealthServer(
        # A follower's refresh loop is not started: only the leader's can stop or stick.
        liveness=[lambda: engine.health(settings.stuck_after) if leading() else None],
        readiness=[index_complete, webhook_serving],
        counts=counts,
    )


async def run(settings: Settings) -> None:
    kube = await KubeSide.open(settings)
    webhook: WebhookServer | None = None
    health: HealthServer | None = None
    listing: asyncio.Task[None] | None = None
    election: asyncio.Task[None] | None = None
    try:
        engine = Engine(kube.reads, kube.sink, settings)
        stop = asyncio.Event()
        webhook = webhook_server(settings, kube)
        if webhook is not None:
            await webhook.start()
        # Agents reach the operator through the webhooks' Service: same certificate, same reloads.
        direct = DirectSide.attach(settings, kube, webhook.certificates.listener if webhook else None)
        rt = Runtime(settings=settings, kube=kube, engine=engine, direct=direct)
        if settings.health_address is not None:
            health = health_server(settings, kube, engine, webhook, lambda: rt.following.leading)
            await health.start(*parse_address(settings.health_address))
        listing = asyncio.create_task(await_existing(kube.rest, kube.index, settings.namespaces))
        if settings.leader_election:
            # The election runs beside kopf; what the watches see before this replica leads waits
            # in rt.following. Losing the Lease sets `stop`.
            election = rt.election = leader.elect(rt, stop)
        await kopf.operator(
            registry=registry,
            memo=kopf.Memo(runtime=rt),
            # No kopf peering objects: replicas coordinate through our own Lease (--leader-elect).
            standalone=True,
            clusterwide=settings.clusterwide,
            namespaces=list(settings.namespaces),
            liveness_endpoint=settings.liveness,
            stop_flag=stop,
        )
    finally:
        if election is not None:
            election.cancel()
        await cancel([listing])
        if webhook is not None:
            await webhook.stop()
        if health is not None:
            await health.stop()
        await kube.close()
