"""Runs the operator in-process: builds the Kubernetes side and the engine, then runs kopf.

`tmpfs-secrets run` calls `run(settings)`; tests and the demo can too. kopf handles SIGINT and
SIGTERM itself: it stops the watches, runs the cleanup handler (engine stop, client close) and
returns.
"""

from __future__ import annotations

import kopf

from tmpfs_secrets.config import Settings
from tmpfs_secrets.engine import Engine

# Importing the handler modules registers their handlers in the registry.
from tmpfs_secrets.handlers import lifecycle, objects  # noqa: F401
from tmpfs_secrets.handlers.registry import registry
from tmpfs_secrets.handlers.state import Runtime
from tmpfs_secrets.kube.runtime import KubeSide


async def run(settings: Settings) -> None:
    kube = await KubeSide.open(settings)
    try:
        engine = Engine(kube.reads, kube.sink, settings)
        memo = kopf.Memo(runtime=Runtime(settings=settings, kube=kube, engine=engine))
        await kopf.operator(
            registry=registry,
            memo=memo,
            standalone=True,  # no peering objects: one operator replica per cluster (leader election TBD)
            clusterwide=settings.clusterwide,
            namespaces=list(settings.namespaces),
            liveness_endpoint=settings.liveness,
        )
    finally:
        await kube.close()
