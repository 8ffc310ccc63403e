"""Builds Direct delivery for one operator run: the hub in the sink, and the endpoint if asked for.

The hub is always there, so a Direct ExternalSecret's status counts pods even when this operator
serves no endpoint (then none ever connects, and the status says so).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from tmpfs_secrets.config import Settings
from tmpfs_secrets.direct.auth import PodNames, TokenVerifier
from tmpfs_secrets.direct.hub import Hub
from tmpfs_secrets.direct.server import DirectServer
from tmpfs_secrets.direct.status import CountsDebounce
from tmpfs_secrets.kube.runtime import KubeSide


@dataclass
class DirectSide:
    hub: Hub
    debounce: CountsDebounce
    server: DirectServer | None

    @classmethod
    def attach(cls, settings: Settings, kube: KubeSide, context: ssl.SSLContext | None = None) -> DirectSide:
        """`context` serves the endpoint (the webhooks' reloading one); without it, none is served."""
        debounce = CountsDebounce(kube.sink.direct_counts_changed, settings.direct_status_delay)
        hub = Hub(on_counts=debounce.changed)
        kube.sink.direct = hub
        server = None
        if settings.direct_address is not None and context is not None:
            host, _, port = settings.direct_address.rpartition(":")
            server = DirectServer(
                hub,
                TokenVerifier(kube.rest),
                PodNames(kube.rest),
                kube.index,
                context,
                host or "0.0.0.0",
                int(port),
            )
        return cls(hub, debounce, server)

    async def start(self) -> None:
        if self.server is not None:
            await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        await self.debounce.stop()
