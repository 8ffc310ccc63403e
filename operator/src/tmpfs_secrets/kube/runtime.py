"""Builds the Kubernetes side once per operator run and tears it down: client, index, reads, sink."""

from __future__ import annotations

from dataclasses import dataclass

from tmpfs_secrets.config import Settings
from tmpfs_secrets.kube.events import EventRecorder
from tmpfs_secrets.kube.external_secret_watch import ExternalSecretWatch
from tmpfs_secrets.kube.index import ObjectIndex
from tmpfs_secrets.kube.reads import KubeReadsImpl
from tmpfs_secrets.kube.rest import Rest, connect
from tmpfs_secrets.kube.restarts import WorkloadRestarter
from tmpfs_secrets.kube.secrets import SecretWriter
from tmpfs_secrets.kube.sink import KubeSink
from tmpfs_secrets.kube.status import StatusWriter
from tmpfs_secrets.kube.target_watch import TargetWatch
from tmpfs_secrets.kube.targets import TargetIndex


@dataclass
class KubeSide:
    rest: Rest
    index: ObjectIndex
    reads: KubeReadsImpl
    writer: SecretWriter
    sink: KubeSink
    targets: TargetIndex
    target_watch: TargetWatch
    external_secret_watch: ExternalSecretWatch
    events: EventRecorder
    closed: bool = False

    @classmethod
    async def open(cls, settings: Settings) -> KubeSide:
        # Each watched scope holds two connections for good (the ExternalSecrets' and the target
        # Secrets' watches); the writes share the rest.
        watches = 2 * max(1, len(settings.namespaces))
        rest = await connect(settings.kubeconfig, pool_size=max(4, settings.workers * 2) + watches)
        index = ObjectIndex()
        targets = TargetIndex()
        writer = SecretWriter(rest, targets)
        events = EventRecorder(rest, failure_interval=settings.failure_event_interval)
        sink = KubeSink(
            index,
            writer,
            StatusWriter(rest, index),
            events,
            concurrency=settings.workers,
            restarter=WorkloadRestarter(rest),
        )
        return cls(
            rest=rest,
            index=index,
            reads=KubeReadsImpl(rest),
            writer=writer,
            sink=sink,
            targets=targets,
            target_watch=TargetWatch(rest, targets, settings.namespaces),
            external_secret_watch=ExternalSecretWatch(rest, index, settings.namespaces),
            events=events,
        )

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.external_secret_watch.stop()
            await self.target_watch.stop()
            await self.events.close()
            await self.rest.close()
